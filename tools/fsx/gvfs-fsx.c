/*
 * gvfs-fsx: a random file-operation exerciser in the spirit of fsx (Apple /
 * xfstests), for checking a gvfs mount against an in-memory model.
 *
 * One file, one deterministic sequence of operations per seed: read, write,
 * mapped read, mapped write + msync, truncate up and down, O_APPEND writes
 * from a second descriptor, copy_file_range, close/reopen, fsync. After
 * every operation the size (fstat and lseek SEEK_END) and the bytes the
 * operation touched are checked against the model, and every -P operations
 * the whole file. A mismatch prints the seed, the operation number, the last
 * operations and the first differing offset, and exits 1. A failed system
 * call exits 2 (that is what a killed mount produces in the crash test).
 *
 * The sequence depends only on the seed and the model (never on what the
 * file system returns), so the model state after any operation can be
 * replayed without a file system: -K F:K checks a file that was left behind
 * by a crash against the model at the last fsync (op F) and what the
 * operations up to K (the last one started) may have changed.
 *
 * Build: cc -O2 -Wall -o build/gvfs-fsx tools/fsx/gvfs-fsx.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

enum kind { OP_READ, OP_WRITE, OP_MAPREAD, OP_MAPWRITE, OP_TRUNC, OP_APPEND, OP_COPY, OP_REOPEN, OP_FSYNC, OP_KINDS };
static const char *kind_name[OP_KINDS] = {"read", "write", "mapread", "mapwrite", "truncate", "append", "copy_range", "close/reopen", "fsync"};
/* Relative frequencies (a disabled kind gets 0). */
static int weight[OP_KINDS] = {15, 20, 10, 10, 10, 10, 8, 5, 5};

struct op {
	long n;
	enum kind kind;
	int64_t off, len, src;	/* src: copy_file_range source offset */
	int64_t size_before, size_after;
};

/* ---- options ---- */
static uint64_t seed = 1;
static long nops = 10000;
static long begin = 1;
static int64_t maxlen = 256 * 1024;
static int64_t maxoplen = 64 * 1024;
static long full_every = 100, progress_every;
static const char *fname, *other_path, *fsync_log;
static int verbose, quiet;
static long crash_f = -1, crash_k = -1;

/* ---- state ---- */
static unsigned char *model, *buf, *rbuf;
static int64_t msize;
static int fd = -1, afd = -1, logfd = -1;
static long pagesize;
static long count[OP_KINDS], copy_emulated;
#define HIST 64
static struct op hist[HIST];
static long cur_op;

/* splitmix64: small, good, and the same everywhere. */
static uint64_t rstate;
static uint64_t rnd64(void)
{
	uint64_t z = (rstate += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}
/* 0 <= r < n (n > 0) */
static int64_t rnd(int64_t n) { return n <= 0 ? 0 : (int64_t)(rnd64() % (uint64_t)n); }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* The byte op n writes at file position p: never 0 (a hole or a lost write shows), and a byte moved elsewhere mismatches. */
static unsigned char pattern(long n, int64_t p) { return (unsigned char)(1 + ((uint64_t)n * 131u + (uint64_t)p) % 255u); }
static void fill(unsigned char *b, long n, int64_t off, int64_t len)
{
	for (int64_t i = 0; i < len; i++) b[i] = pattern(n, off + i);
}

static void print_op(FILE *f, const struct op *o)
{
	fprintf(f, "  #%-7ld %-12s", o->n, kind_name[o->kind]);
	switch (o->kind) {
	case OP_READ: case OP_WRITE: case OP_MAPREAD: case OP_MAPWRITE: case OP_APPEND:
		fprintf(f, " 0x%-8" PRIx64 " +0x%-6" PRIx64 " (..0x%" PRIx64 ")", o->off, o->len, o->off + o->len);
		break;
	case OP_COPY:
		fprintf(f, " 0x%" PRIx64 " -> 0x%" PRIx64 " +0x%" PRIx64, o->src, o->off, o->len);
		break;
	case OP_TRUNC:
		fprintf(f, " to 0x%" PRIx64 " (%s)", o->off, o->off >= o->size_before ? "up" : "down");
		break;
	default:
		break;
	}
	fprintf(f, "  size 0x%" PRIx64 " -> 0x%" PRIx64 "\n", o->size_before, o->size_after);
}

static void print_history(FILE *f, int last)
{
	long first = cur_op - last + 1;
	if (first < 1) first = 1;
	fprintf(f, "last %ld operations:\n", cur_op - first + 1);
	for (long n = first; n <= cur_op; n++) print_op(f, &hist[n % HIST]);
}

static void replay_hint(FILE *f)
{
	fprintf(f, "reproduce: gvfs-fsx -S %" PRIu64 " -N %ld -l %" PRId64 " -o %" PRId64 " [same -M/-R/-W/-T/-A/-F/-c/-Y flags] FILE\n", seed, cur_op, maxlen, maxoplen);
}

static void hexdump(FILE *f, const char *what, const unsigned char *b, int64_t base, int64_t n)
{
	fprintf(f, "  %-9s @0x%08" PRIx64 ":", what, base);
	for (int64_t i = 0; i < n; i++) fprintf(f, " %02x", b[i]);
	fprintf(f, "\n");
}

static void __attribute__((noreturn, format(printf, 1, 2))) mismatch(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "gvfs-fsx: MISMATCH seed %" PRIu64 " op %ld (%s): ", seed, cur_op, cur_op ? kind_name[hist[cur_op % HIST].kind] : "open");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	print_history(stderr, 30);
	replay_hint(stderr);
	fprintf(stderr, "FSX-RESULT mismatch seed=%" PRIu64 " op=%ld\n", seed, cur_op);
	exit(1);
}

static void __attribute__((noreturn, format(printf, 1, 2))) sysfail(const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	fflush(stdout);
	fprintf(stderr, "gvfs-fsx: seed %" PRIu64 " op %ld: ", seed, cur_op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", strerror(e));
	if (verbose) print_history(stderr, 10);
	fprintf(stderr, "FSX-RESULT error seed=%" PRIu64 " op=%ld errno=%d\n", seed, cur_op, e);
	exit(2);
}

/* A mapped access to a file whose mount went away raises SIGBUS: report it as a failed call, not a crash. */
static sigjmp_buf bus_jmp;
static volatile sig_atomic_t in_map;
static void on_sigbus(int sig)
{
	(void)sig;
	if (in_map) siglongjmp(bus_jmp, 1);
	_exit(3);
}

/* ---- the model ---- */
static void model_resize(int64_t n)
{
	if (n > msize) memset(model + msize, 0, n - msize);
	msize = n;
}

/* ---- generating an operation: depends only on the random stream and the model's size ---- */
static enum kind pick_kind(void)
{
	int total = 0;
	for (int k = 0; k < OP_KINDS; k++) total += weight[k];
	int r = (int)rnd(total);
	for (int k = 0; k < OP_KINDS; k++) {
		if (r < weight[k]) return (enum kind)k;
		r -= weight[k];
	}
	return OP_READ;
}

static void gen(struct op *o, long n)
{
	memset(o, 0, sizeof *o);
	o->n = n;
	o->size_before = msize;
	o->kind = pick_kind();
	/* Kinds that cannot run in this state fall back to one that can. */
	if ((o->kind == OP_MAPREAD) && msize == 0) o->kind = weight[OP_READ] ? OP_READ : OP_WRITE;
	if (o->kind == OP_APPEND && msize >= maxlen) o->kind = OP_TRUNC;
	if (o->kind == OP_COPY && msize < 2) o->kind = OP_WRITE;
	switch (o->kind) {
	case OP_READ:
		/* Mostly inside the file, sometimes across or past EOF. */
		o->off = (msize && rnd(8)) ? rnd(msize) : msize + rnd(4096) - min64(msize, 2048);
		if (o->off < 0) o->off = 0;
		o->len = 1 + rnd(maxoplen);
		break;
	case OP_WRITE:
	case OP_MAPWRITE:
		o->off = rnd(maxlen);
		o->len = 1 + rnd(min64(maxoplen, maxlen - o->off));
		break;
	case OP_MAPREAD:
		o->off = rnd(msize);
		o->len = 1 + rnd(min64(maxoplen, msize - o->off));
		break;
	case OP_TRUNC:
		switch (rnd(3)) {
		case 0: o->off = rnd(msize + 1); break;			/* down */
		case 1: o->off = msize + rnd(maxlen - msize + 1); break;	/* up */
		default: o->off = rnd(maxlen + 1); break;
		}
		break;
	case OP_APPEND:
		o->off = msize;
		o->len = 1 + rnd(min64(maxoplen, maxlen - msize));
		break;
	case OP_COPY: {
		/* Within the file; Linux refuses overlapping ranges of one file, so the destination avoids the source. */
		o->src = rnd(msize);
		o->len = 1 + rnd(min64(maxoplen, msize - o->src));
		int ok = 0;
		for (int t = 0; t < 8 && !ok; t++) {
			o->off = rnd(maxlen - o->len + 1);
			ok = o->off + o->len <= o->src || o->src + o->len <= o->off;
		}
		if (!ok) {
			o->kind = OP_WRITE;
			o->off = o->src;
			o->src = 0;
		}
		break;
	}
	default:
		break;
	}
}

/* Applies o to the model; returns the range [*lo, *hi) of positions whose byte or existence changed. */
static void apply(struct op *o, int64_t *lo, int64_t *hi)
{
	*lo = *hi = 0;
	switch (o->kind) {
	case OP_WRITE:
	case OP_MAPWRITE:
	case OP_APPEND:
		if (o->off + o->len > msize) model_resize(o->off + o->len);
		fill(model + o->off, o->n, o->off, o->len);
		*lo = min64(o->off, o->size_before);	/* a write past EOF also makes the gap before it */
		*hi = o->off + o->len;
		break;
	case OP_COPY:
		if (o->off + o->len > msize) model_resize(o->off + o->len);
		memmove(model + o->off, model + o->src, o->len);
		*lo = min64(o->off, o->size_before);
		*hi = o->off + o->len;
		break;
	case OP_TRUNC:
		*lo = min64(o->off, msize);
		*hi = max64(o->off, msize);
		model_resize(o->off);
		break;
	default:
		break;
	}
	o->size_after = msize;
}

/* ---- checking the file against the model ---- */
static void check_size(const char *when)
{
	struct stat st;
	if (fstat(fd, &st) < 0) sysfail("fstat");
	off_t end = lseek(fd, 0, SEEK_END);
	if (end < 0) sysfail("lseek SEEK_END");
	if (st.st_size != msize || end != msize)
		mismatch("size %s: expected 0x%" PRIx64 ", fstat 0x%" PRIx64 ", SEEK_END 0x%" PRIx64, when, msize, (int64_t)st.st_size, (int64_t)end);
}

/* Compares got (at file offset off) with the model; 'what' names the path the bytes came by. */
static void compare(const char *what, const unsigned char *got, int64_t off, int64_t len)
{
	if (memcmp(got, model + off, len) == 0) return;
	int64_t i = 0;
	while (got[i] == model[off + i]) i++;
	int64_t j = i;
	while (j < len && got[j] != model[off + j]) j++;
	int64_t from = max64(0, i - 8), n = min64(24, len - from);
	fflush(stdout);
	fprintf(stderr, "gvfs-fsx: %s of 0x%" PRIx64 "+0x%" PRIx64 " differs at 0x%" PRIx64 " for 0x%" PRIx64 " bytes: expected 0x%02x, actual 0x%02x (size 0x%" PRIx64 ")\n",
		what, off, len, off + i, j - i, model[off + i], got[i], msize);
	hexdump(stderr, "expected", model + off + from, off + from, n);
	hexdump(stderr, "actual", got + from, off + from, n);
	mismatch("%s: first difference at offset 0x%" PRIx64 " (expected 0x%02x, actual 0x%02x)", what, off + i, model[off + i], got[i]);
}

static void pread_all(int f, unsigned char *b, int64_t off, int64_t len, int64_t *got)
{
	*got = 0;
	while (*got < len) {
		ssize_t r = pread(f, b + *got, len - *got, off + *got);
		if (r < 0) sysfail("pread 0x%" PRIx64 "+0x%" PRIx64, off + *got, len - *got);
		if (r == 0) break;
		*got += r;
	}
}

/* Reads [off, off+len) through fd and compares it with the model, including where EOF falls. */
static void check_range(const char *what, int64_t off, int64_t len)
{
	int64_t want = max64(0, min64(len, msize - off)), got;
	pread_all(fd, rbuf, off, len, &got);
	if (got != want) mismatch("%s: read of 0x%" PRIx64 "+0x%" PRIx64 " returned 0x%" PRIx64 " bytes, expected 0x%" PRIx64 " (size 0x%" PRIx64 ")", what, off, len, got, want, msize);
	compare(what, rbuf, off, got);
}

static void check_all(const char *when)
{
	check_size(when);
	int64_t got;
	pread_all(fd, rbuf, 0, msize + 1, &got);
	if (got != msize) mismatch("whole-file read %s returned 0x%" PRIx64 " bytes, expected 0x%" PRIx64, when, got, msize);
	compare("whole-file read", rbuf, 0, msize);
}

/* -C: the file as another mount shows it, after our close. */
static void check_other(void)
{
	int o = open(other_path, O_RDONLY);
	if (o < 0) sysfail("open %s (other path)", other_path);
	struct stat st;
	if (fstat(o, &st) < 0) sysfail("fstat (other path)");
	if (st.st_size != msize) mismatch("size through the other path after close: expected 0x%" PRIx64 ", fstat 0x%" PRIx64, msize, (int64_t)st.st_size);
	int64_t got = 0;
	while (got < msize + 1) {
		ssize_t r = pread(o, rbuf + got, msize + 1 - got, got);
		if (r < 0) sysfail("pread (other path)");
		if (r == 0) break;
		got += r;
	}
	if (got != msize) mismatch("read through the other path returned 0x%" PRIx64 " bytes, expected 0x%" PRIx64, got, msize);
	compare("read through the other path", rbuf, 0, msize);
	close(o);
}

static void open_file(int flags)
{
	fd = open(fname, O_RDWR | flags, 0644);
	if (fd < 0) sysfail("open %s", fname);
}

/* -b: the file takes the model's contents, durably, and is opened anew (as after a close/reopen). */
static void write_model(void)
{
	for (int64_t done = 0; done < msize;) {
		ssize_t r = pwrite(fd, model + done, msize - done, done);
		if (r <= 0) sysfail("pwrite of the model at 0x%" PRIx64, done);
		done += r;
	}
	if (ftruncate(fd, msize) < 0) sysfail("ftruncate to the model's size");
	if (fsync(fd) < 0) sysfail("fsync");
	if (close(fd) < 0) sysfail("close");
	open_file(0);
	check_all("after writing the model (-b)");
}

/* ---- doing an operation on the file ---- */
static void do_write(const struct op *o)
{
	fill(buf, o->n, o->off, o->len);
	int64_t done = 0;
	while (done < o->len) {
		ssize_t r = pwrite(fd, buf + done, o->len - done, o->off + done);
		if (r < 0) sysfail("pwrite 0x%" PRIx64 "+0x%" PRIx64, o->off + done, o->len - done);
		if (r == 0) mismatch("pwrite returned 0");
		done += r;
	}
}

static void do_append(const struct op *o)
{
	if (afd < 0 && (afd = open(fname, O_WRONLY | O_APPEND)) < 0) sysfail("open O_APPEND");
	fill(buf, o->n, o->off, o->len);
	int64_t done = 0;
	while (done < o->len) {
		ssize_t r = write(afd, buf + done, o->len - done);
		if (r < 0) sysfail("write O_APPEND +0x%" PRIx64, o->len - done);
		if (r == 0) mismatch("O_APPEND write returned 0");
		done += r;
	}
	/* Where the append landed, as the appending descriptor sees it. */
	off_t pos = lseek(afd, 0, SEEK_CUR);
	if (pos < 0) sysfail("lseek O_APPEND descriptor");
	if (pos != o->off + o->len) mismatch("O_APPEND write of 0x%" PRIx64 " bytes left its descriptor at 0x%" PRIx64 ", expected 0x%" PRIx64 " (it landed at 0x%" PRIx64 ", EOF was 0x%" PRIx64 ")",
		o->len, (int64_t)pos, o->off + o->len, (int64_t)pos - o->len, o->off);
}

static void *map(int64_t off, int64_t len, int prot, int64_t *pg, int64_t *mlen)
{
	*pg = off & ~(int64_t)(pagesize - 1);
	*mlen = ((off + len - *pg) + pagesize - 1) & ~(int64_t)(pagesize - 1);
	void *p = mmap(NULL, *mlen, prot, MAP_SHARED, fd, *pg);
	if (p == MAP_FAILED) sysfail("mmap 0x%" PRIx64 "+0x%" PRIx64, *pg, *mlen);
	return p;
}

static void do_mapread(const struct op *o)
{
	int64_t pg, mlen;
	unsigned char *p = map(o->off, o->len, PROT_READ, &pg, &mlen);
	in_map = 1;
	if (sigsetjmp(bus_jmp, 1)) {
		in_map = 0;
		errno = EFAULT;
		sysfail("SIGBUS in a mapped read");
	}
	memcpy(rbuf, p + (o->off - pg), o->len);
	/* The part of the EOF page past EOF must read as zeros (stale bytes there after a truncate are a bug). */
	int64_t tail_from = msize, tail_to = min64(pg + mlen, (msize + pagesize - 1) & ~(int64_t)(pagesize - 1));
	int64_t bad = -1;
	for (int64_t q = max64(tail_from, pg); q < tail_to; q++)
		if (p[q - pg]) { bad = q; break; }
	unsigned char badv = bad >= 0 ? p[bad - pg] : 0;
	in_map = 0;
	munmap(p, mlen);
	compare("mapped read", rbuf, o->off, o->len);
	if (bad >= 0) mismatch("mapped read: byte 0x%02x at 0x%" PRIx64 ", past EOF 0x%" PRIx64 " in the EOF page, expected 0", badv, bad, msize);
}

static void do_mapwrite(const struct op *o)
{
	/* A mapping cannot grow the file: extend it first, as fsx does. */
	if (o->off + o->len > o->size_before && ftruncate(fd, o->off + o->len) < 0) sysfail("ftruncate before mapped write");
	int64_t pg, mlen;
	unsigned char *p = map(o->off, o->len, PROT_READ | PROT_WRITE, &pg, &mlen);
	fill(buf, o->n, o->off, o->len);
	in_map = 1;
	if (sigsetjmp(bus_jmp, 1)) {
		in_map = 0;
		errno = EFAULT;
		sysfail("SIGBUS in a mapped write");
	}
	memcpy(p + (o->off - pg), buf, o->len);
	in_map = 0;
	if (msync(p, mlen, MS_SYNC) < 0) sysfail("msync");
	munmap(p, mlen);
}

static void do_copy(const struct op *o)
{
	loff_t src = o->src, dst = o->off;
	int64_t done = 0;
	while (done < o->len) {
		ssize_t r = copy_file_range(fd, &src, fd, &dst, o->len - done, 0);
		if (r < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == ENOSYS) && done == 0) {
			/* Not supported here: copy by hand so the sequence stays the same, and say so at the end. */
			int64_t got;
			copy_emulated++;
			pread_all(fd, buf, o->src, o->len, &got);
			if (got != o->len) mismatch("copy source read 0x%" PRIx64 " of 0x%" PRIx64 " bytes", got, o->len);
			if (pwrite(fd, buf, o->len, o->off) != o->len) sysfail("pwrite (copy emulation)");
			return;
		}
		if (r < 0) sysfail("copy_file_range 0x%" PRIx64 " -> 0x%" PRIx64 " +0x%" PRIx64, (int64_t)src, (int64_t)dst, o->len - done);
		if (r == 0) mismatch("copy_file_range 0x%" PRIx64 " -> 0x%" PRIx64 ": 0 bytes (source at EOF?) after 0x%" PRIx64 " of 0x%" PRIx64, (int64_t)src, (int64_t)dst, done, o->len);
		done += r;
	}
}

static void do_op(struct op *o)
{
	switch (o->kind) {
	case OP_READ: {
		int64_t got, want = max64(0, min64(o->len, msize - o->off));
		pread_all(fd, rbuf, o->off, o->len, &got);
		if (got != want) mismatch("read of 0x%" PRIx64 "+0x%" PRIx64 " returned 0x%" PRIx64 " bytes, expected 0x%" PRIx64, o->off, o->len, got, want);
		compare("read", rbuf, o->off, got);
		break;
	}
	case OP_WRITE: do_write(o); break;
	case OP_MAPREAD: do_mapread(o); break;
	case OP_MAPWRITE: do_mapwrite(o); break;
	case OP_TRUNC:
		if (ftruncate(fd, o->off) < 0) sysfail("ftruncate 0x%" PRIx64, o->off);
		break;
	case OP_APPEND: do_append(o); break;
	case OP_COPY: do_copy(o); break;
	case OP_REOPEN:
		if (close(fd) < 0) sysfail("close");
		if (afd >= 0 && close(afd) < 0) sysfail("close O_APPEND descriptor");
		fd = afd = -1;
		if (other_path) check_other();
		open_file(0);
		break;
	case OP_FSYNC:
		if (fsync(fd) < 0) sysfail("fsync");
		if (logfd >= 0 && dprintf(logfd, "%ld %" PRId64 "\n", o->n, msize) < 0) sysfail("write fsync log");
		break;
	default:
		break;
	}
}

/* After an operation: the size by both routes, and the bytes it touched (and around them). */
static void check_after(const struct op *o, int64_t lo, int64_t hi)
{
	check_size("after the operation");
	if (hi > lo) {
		int64_t from = max64(0, lo - 64), to = min64(hi + 64, maxlen + 64);
		check_range("read-back", from, to - from);
	}
	if (full_every > 0 && o->n % full_every == 0) check_all("(periodic)");
}

/* ---- crash check (-K F:K): the file a crash left, against the model ---- */
/* allowed[p] is a 256-bit set of the bytes position p may hold; a position past EOF in some state may read as 0. */
static uint8_t (*allowed)[32];
static unsigned char *sizes_seen;	/* sizes_seen[s]: the file had size s at some point in the window */
static void allow_state(int64_t lo, int64_t hi)
{
	for (int64_t p = lo; p < hi; p++) {
		unsigned v = p < msize ? model[p] : 0;
		allowed[p][v >> 3] |= (uint8_t)(1u << (v & 7));
	}
	sizes_seen[msize] = 1;
}

static int crash_check(void)
{
	struct op o;
	int64_t lo, hi;
	allowed = calloc(maxlen, sizeof *allowed);
	sizes_seen = calloc(maxlen + 1, 1);
	if (!allowed || !sizes_seen) { perror("calloc"); return 2; }
	for (long n = 1; n <= crash_f; n++) { gen(&o, n); apply(&o, &lo, &hi); }
	unsigned char *synced = malloc(maxlen);
	int64_t synced_size = msize;
	memcpy(synced, model, msize);
	allow_state(0, maxlen);
	/* Op K was under way when the mount died: it may have happened, in part or whole. */
	for (long n = crash_f + 1; n <= crash_k; n++) {
		gen(&o, n);
		apply(&o, &lo, &hi);
		/* A mapped write past EOF is ftruncate, then the bytes: the zeros in between were the file's for a moment. */
		if (o.kind == OP_MAPWRITE && o.off + o.len > o.size_before)
			for (int64_t p = o.size_before; p < o.off + o.len; p++) allowed[p][0] |= 1;
		allow_state(lo, hi);
		/*
		 * Op K extending the file may have reached the server in part: the kernel sends one write() as
		 * several FUSE requests, each ending at a page boundary, when copying from the caller's buffer
		 * comes up short (a page not resident), and a mount killed between them leaves the file ending
		 * at that boundary. A write under way at a crash may be partial on a local disk too.
		 */
		if (n == crash_k && msize > o.size_before) {
			int64_t pg = sysconf(_SC_PAGESIZE);
			for (int64_t p = (o.size_before + pg - 1) / pg * pg; p < msize; p += pg)
				if (p > o.size_before) sizes_seen[p] = 1;
		}
	}
	int f = open(fname, O_RDONLY);
	if (f < 0) {
		if (errno == ENOENT && crash_f == 0) { printf("gvfs-fsx: crash check: no file, and nothing was fsync'ed: accepted\n"); return 0; }
		fprintf(stderr, "gvfs-fsx: crash check: open %s: %s\n", fname, strerror(errno));
		return 2;
	}
	struct stat st;
	fstat(f, &st);
	int64_t size = st.st_size;
	if (size > maxlen || !sizes_seen[size]) {
		fprintf(stderr, "gvfs-fsx: CRASH MISMATCH seed %" PRIu64 ": size 0x%" PRIx64 " was never the file's size between the last fsync (op %ld, size 0x%" PRIx64 ") and op %ld (now 0x%" PRIx64 ")\n",
			seed, size, crash_f, synced_size, crash_k, msize);
		return 1;
	}
	unsigned char *got = malloc(size + 1);
	int64_t n = 0;
	while (n < size) {
		ssize_t r = pread(f, got + n, size - n, n);
		if (r <= 0) { fprintf(stderr, "gvfs-fsx: crash check: read: %s\n", r ? strerror(errno) : "short"); return 2; }
		n += r;
	}
	int64_t changed = 0, bad = 0, first_bad = -1;
	for (int64_t p = 0; p < size; p++) {
		unsigned v = got[p];
		if (!(allowed[p][v >> 3] & (1u << (v & 7)))) { if (first_bad < 0) first_bad = p; bad++; }
		if (p >= synced_size ? v != 0 : v != synced[p]) changed++;
	}
	if (bad) {
		int64_t p = first_bad;
		fprintf(stderr, "gvfs-fsx: CRASH MISMATCH seed %" PRIu64 ": %" PRId64 " bytes hold what the file never held between the last fsync (op %ld) and op %ld; first at 0x%" PRIx64 ": 0x%02x (at the fsync: 0x%02x, at op %ld: 0x%02x)\n",
			seed, bad, crash_f, crash_k, p, got[p], p < synced_size ? synced[p] : 0, crash_k, p < msize ? model[p] : 0);
		int64_t from = max64(0, p - 8), m = min64(24, size - from);
		hexdump(stderr, "at fsync", synced + from, from, min64(m, max64(0, synced_size - from)));
		hexdump(stderr, "actual", got + from, from, m);
		return 1;
	}
	printf("gvfs-fsx: crash check OK: size 0x%" PRIx64 " (0x%" PRIx64 " at the fsync of op %ld, 0x%" PRIx64 " at op %ld); every byte one the file held in between; %" PRId64 " bytes newer than the fsync\n",
		size, synced_size, crash_f, msize, crash_k, changed);
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: gvfs-fsx [options] FILE\n"
		"  -S seed      random seed (default 1)\n"
		"  -N ops       number of operations (default 10000)\n"
		"  -b n         begin at operation n: 1..n-1 change only the model, which is then written to FILE\n"
		"               (replays a failure late in a long run in seconds; the history before n is not\n"
		"               exercised, so a failure that depends on it may not come back)\n"
		"  -l len       maximum file length (default 256K)\n"
		"  -o len       maximum length of one operation (default 64K)\n"
		"  -P n         check the whole file every n operations (default 100; 0: only at the end)\n"
		"  -M           no mmap (neither mapped reads nor mapped writes)\n"
		"  -R / -W      no mapped reads / no mapped writes\n"
		"  -T -A -F     no truncate / no O_APPEND writes / no copy_file_range\n"
		"  -c -Y        no close/reopen / no fsync\n"
		"  -f LOG       after every fsync append \"OP SIZE\" to LOG (crash test: the model at the last fsync)\n"
		"  -C PATH      after every close, check the file through PATH (the same file on another mount)\n"
		"  -K F:K       crash check: FILE (left by a crash) against the model at the fsync of op F and\n"
		"               what ops F+1..K may have changed; no operations are run\n"
		"  -p n         print a progress line every n operations\n"
		"  -v -q        print every operation / only failures\n"
		"exit: 0 ok, 1 mismatch, 2 a system call failed\n");
	exit(2);
}

static int64_t parse_len(const char *s)
{
	char *e;
	long long v = strtoll(s, &e, 0);
	if (*e == 'k' || *e == 'K') v <<= 10;
	else if (*e == 'm' || *e == 'M') v <<= 20;
	else if (*e) usage();
	return v;
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, "S:N:b:l:o:P:p:MRWTAFcYf:C:K:vq")) != -1) {
		switch (c) {
		case 'S': seed = strtoull(optarg, NULL, 0); break;
		case 'N': nops = strtol(optarg, NULL, 0); break;
		case 'b': begin = strtol(optarg, NULL, 0); break;
		case 'l': maxlen = parse_len(optarg); break;
		case 'o': maxoplen = parse_len(optarg); break;
		case 'P': full_every = strtol(optarg, NULL, 0); break;
		case 'p': progress_every = strtol(optarg, NULL, 0); break;
		case 'M': weight[OP_MAPREAD] = weight[OP_MAPWRITE] = 0; break;
		case 'R': weight[OP_MAPREAD] = 0; break;
		case 'W': weight[OP_MAPWRITE] = 0; break;
		case 'T': weight[OP_TRUNC] = 0; break;
		case 'A': weight[OP_APPEND] = 0; break;
		case 'F': weight[OP_COPY] = 0; break;
		case 'c': weight[OP_REOPEN] = 0; break;
		case 'Y': weight[OP_FSYNC] = 0; break;
		case 'f': fsync_log = optarg; break;
		case 'C': other_path = optarg; break;
		case 'K':
			if (sscanf(optarg, "%ld:%ld", &crash_f, &crash_k) != 2 || crash_f < 0 || crash_k < crash_f) usage();
			break;
		case 'v': verbose = 1; break;
		case 'q': quiet = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || maxlen < 1 || maxoplen < 1 || nops < 0 || begin < 1 || (crash_k < 0 && begin > nops)) usage();
	fname = argv[optind];
	pagesize = sysconf(_SC_PAGESIZE);
	rstate = seed;
	/* Room for a read that runs past the largest file. */
	model = calloc(maxlen + maxoplen + 4096, 1);
	buf = malloc(maxlen + maxoplen + 4096);
	rbuf = malloc(maxlen + 2 * maxoplen + 8192);
	if (!model || !buf || !rbuf) { perror("malloc"); return 2; }
	if (crash_k >= 0) return crash_check();

	struct sigaction sa = {0};
	sa.sa_handler = on_sigbus;
	sigaction(SIGBUS, &sa, NULL);
	if (fsync_log && (logfd = open(fsync_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644)) < 0) sysfail("open fsync log %s", fsync_log);
	open_file(O_CREAT | O_TRUNC);
	check_size("after open(O_TRUNC)");
	for (long n = 1; n <= nops; n++) {
		struct op *o = &hist[n % HIST];
		int64_t lo, hi;
		cur_op = n;
		gen(o, n);
		if (n < begin) {
			/* Skipped: the model alone (the generator draws the same numbers, so op n is the same op). */
			apply(o, &lo, &hi);
			if (n == begin - 1) write_model();
			continue;
		}
		if (verbose) print_op(stdout, o);
		/* The model first (reads leave it alone), so a failure's history shows this operation and compares with its result. */
		apply(o, &lo, &hi);
		do_op(o);
		count[o->kind]++;
		check_after(o, lo, hi);
		if (progress_every > 0 && n % progress_every == 0) {
			printf("gvfs-fsx: seed %" PRIu64 ": %ld operations OK\n", seed, n);
			fflush(stdout);
		}
	}
	cur_op = nops;
	check_all("at the end");
	if (close(fd) < 0) sysfail("close");
	if (afd >= 0 && close(afd) < 0) sysfail("close O_APPEND descriptor");
	if (other_path) check_other();
	if (!quiet) {
		printf("gvfs-fsx: %ld operations OK (seed %" PRIu64 ", max length 0x%" PRIx64 ", final size 0x%" PRIx64 "):", nops, seed, maxlen, msize);
		for (int k = 0; k < OP_KINDS; k++) printf(" %s %ld", kind_name[k], count[k]);
		if (copy_emulated) printf(" (copy_file_range unsupported %ld times: copied by hand)", copy_emulated);
		printf("\n");
	}
	printf("FSX-RESULT ok seed=%" PRIu64 " ops=%ld\n", seed, nops);
	return 0;
}
