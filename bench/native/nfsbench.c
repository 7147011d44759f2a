/*
 * nfsbench: a small NFSv3 benchmark client on libnfs's raw RPC async API.
 *
 * It exists so that benchmarks measure servers, not the client: one thread,
 * one TCP connection, a poll() loop and no copies beyond what libnfs does.
 *
 *   nfsbench --host 127.0.0.1 --nfs-port N --mount-port M --export /path \
 *            --op OP [options]
 *
 *   seqread  --file NAME --size BYTES --xfer BYTES --depth D
 *       READ the first BYTES of NAME in XFER chunks, D in flight; fails
 *       unless exactly BYTES come back.
 *   seqwrite --file NAME --size BYTES --xfer BYTES --depth D
 *       CREATE NAME (UNCHECKED, size 0), UNSTABLE WRITEs, D in flight, then
 *       one COMMIT. The CREATE is not timed; the COMMIT is.
 *   randread --file NAME --size BYTES --ops N --depth D
 *       N READs of 4 KiB at random 4 KiB-aligned offsets below BYTES.
 *   meta     --dir NAME --files N
 *       MKDIR NAME; then, one call at a time, N x CREATE (GUARDED),
 *       N x (LOOKUP + GETATTR), N x REMOVE; then RMDIR. Only the 4N calls
 *       in between are timed.
 *
 * Other options: --uid U --gid G (AUTH_SYS credentials; default the
 * caller's), --timeout SECS (whole run, default 60), --seed S (randread).
 * Sizes accept a K/M/G suffix (binary).
 *
 * Output: one JSON line on stdout. "ops" counts the RPCs of the timed phase,
 * "lat_us_*" are per-RPC latencies from issue to reply (with D in flight they
 * include queueing), "cpu_user_s" and "cpu_sys_s" the CPU nfsbench itself
 * used in the timed phase (getrusage). Any failure (RPC error, NFS status
 * other than NFS3_OK, short read or write, timeout) prints a message on
 * stderr and exits 1.
 *
 * Build: gcc -O2 -Wall -o nfsbench nfsbench.c -lnfs   (see build.sh)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-mount.h>
#include <nfsc/libnfs-raw-nfs.h>

#define RAND_BLOCK 4096u

/* ---------------------------------------------------------------- errors */

static const char *g_op = "?";

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "nfsbench %s: ", g_op);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void on_alarm(int sig)
{
	static const char msg[] = "nfsbench: timed out (--timeout)\n";
	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
		/* nothing left to do */
	}
	_exit(1);
}

/* Fail unless an async RPC completed with a reply. */
static void check_rpc(int status, void *data, const char *what)
{
	if (status == RPC_STATUS_SUCCESS)
		return;
	if (status == RPC_STATUS_ERROR)
		die("%s: RPC error: %s", what, data ? (const char *)data : "(no message)");
	if (status == RPC_STATUS_TIMEOUT)
		die("%s: RPC timed out", what);
	die("%s: RPC cancelled (status %d)", what, status);
}

static void check_nfs(int nfsstat, const char *what, const char *name)
{
	if (nfsstat == NFS3_OK)
		return;
	die("%s%s%s: NFS status %d (%s)", what, name ? " " : "", name ? name : "", nfsstat,
	    nfsstat3_to_str(nfsstat));
}

/* ------------------------------------------------------------------ time */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Per-RPC latencies of the timed phase, in seconds. */
/* User and system CPU seconds this process has used so far. */
static void cpu_s(double *user, double *sys)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	*user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	*sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double *g_lat;
static size_t g_nlat, g_caplat;

static void record_latency(double t0)
{
	if (g_nlat == g_caplat) {
		g_caplat = g_caplat ? g_caplat * 2 : 4096;
		g_lat = realloc(g_lat, g_caplat * sizeof *g_lat);
		if (!g_lat)
			die("out of memory");
	}
	g_lat[g_nlat++] = now_s() - t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* ------------------------------------------------------------ event loop */

/* Run the socket until *done becomes non-zero. */
static void run_until(struct rpc_context *rpc, const int *done)
{
	while (!*done) {
		struct pollfd pfd = { .fd = rpc_get_fd(rpc), .events = (short)rpc_which_events(rpc) };
		int n = poll(&pfd, 1, 100);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		if (rpc_service(rpc, n > 0 ? pfd.revents : 0) < 0)
			die("rpc_service: %s", rpc_get_error(rpc));
	}
}

static void set_nodelay(struct rpc_context *rpc)
{
	int one = 1;
	/* libnfs may already do this; harmless if so. */
	(void)setsockopt(rpc_get_fd(rpc), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------- single synchronous calls */

struct call {
	int done;
	const char *what;
	const char *name; /* for error messages */
	nfs_fh3 fh;       /* out: handle, when the call returns one */
	uint32_t rtmax, wtmax;
	double t0;        /* issue time when timed */
	int timed;
};

static void fh_copy(nfs_fh3 *dst, const char *val, u_int len)
{
	if (len == 0 || len > NFS3_FHSIZE)
		die("server returned a %u-byte file handle", len);
	dst->data.data_len = len;
	dst->data.data_val = malloc(len);
	if (!dst->data.data_val)
		die("out of memory");
	memcpy(dst->data.data_val, val, len);
}

static void finish(struct call *c)
{
	if (c->timed)
		record_latency(c->t0);
	c->done = 1;
}

static void begin(struct call *c, const char *what, const char *name, int timed)
{
	memset(c, 0, sizeof *c);
	c->what = what;
	c->name = name;
	c->timed = timed;
	if (timed)
		c->t0 = now_s();
}

static void issued(int rc, struct rpc_context *rpc, const struct call *c)
{
	if (rc != 0)
		die("%s: could not queue the call: %s", c->what, rpc_get_error(rpc));
}

static void connect_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	(void)rpc;
	check_rpc(status, data, c->what);
	finish(c);
}

static struct rpc_context *connect_to(const char *host, int port, int prog, int vers,
				      const char *what, int uid, int gid)
{
	struct rpc_context *rpc = rpc_init_context();
	struct call c;
	if (!rpc)
		die("rpc_init_context failed");
	if (uid >= 0)
		rpc_set_uid(rpc, uid);
	if (gid >= 0)
		rpc_set_gid(rpc, gid);
	begin(&c, what, NULL, 0);
	if (rpc_connect_port_async(rpc, host, port, prog, vers, connect_cb, &c) != 0)
		die("%s: connect to %s:%d: %s", what, host, port, rpc_get_error(rpc));
	run_until(rpc, &c.done);
	set_nodelay(rpc);
	return rpc;
}

static void mnt_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	mountres3 *res = data;
	(void)rpc;
	check_rpc(status, data, c->what);
	if (res->fhs_status != MNT3_OK)
		die("MNT %s: mount status %d (%s)", c->name, res->fhs_status,
		    mountstat3_to_str(res->fhs_status));
	fh_copy(&c->fh, res->mountres3_u.mountinfo.fhandle.fhandle3_val,
		res->mountres3_u.mountinfo.fhandle.fhandle3_len);
	finish(c);
}

static void fsinfo_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	FSINFO3res *res = data;
	(void)rpc;
	check_rpc(status, data, c->what);
	check_nfs(res->status, c->what, c->name);
	c->rtmax = res->FSINFO3res_u.resok.rtmax;
	c->wtmax = res->FSINFO3res_u.resok.wtmax;
	finish(c);
}

static void lookup_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	LOOKUP3res *res = data;
	(void)rpc;
	check_rpc(status, data, c->what);
	check_nfs(res->status, c->what, c->name);
	fh_copy(&c->fh, res->LOOKUP3res_u.resok.object.data.data_val,
		res->LOOKUP3res_u.resok.object.data.data_len);
	finish(c);
}

static void create_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	CREATE3res *res = data;
	(void)rpc;
	check_rpc(status, data, c->what);
	check_nfs(res->status, c->what, c->name);
	if (res->CREATE3res_u.resok.obj.handle_follows)
		fh_copy(&c->fh, res->CREATE3res_u.resok.obj.post_op_fh3_u.handle.data.data_val,
			res->CREATE3res_u.resok.obj.post_op_fh3_u.handle.data.data_len);
	finish(c);
}

static void mkdir_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	MKDIR3res *res = data;
	(void)rpc;
	check_rpc(status, data, c->what);
	check_nfs(res->status, c->what, c->name);
	if (res->MKDIR3res_u.resok.obj.handle_follows)
		fh_copy(&c->fh, res->MKDIR3res_u.resok.obj.post_op_fh3_u.handle.data.data_val,
			res->MKDIR3res_u.resok.obj.post_op_fh3_u.handle.data.data_len);
	finish(c);
}

/* Replies whose only interesting field is the leading nfsstat3. */
static void status_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct call *c = priv;
	(void)rpc;
	check_rpc(status, data, c->what);
	check_nfs(*(const int *)data, c->what, c->name);
	finish(c);
}

static nfs_fh3 do_mount(struct rpc_context *rpc, const char *path)
{
	struct call c;
	begin(&c, "MNT", path, 0);
	issued(rpc_mount3_mnt_async(rpc, mnt_cb, (char *)path, &c), rpc, &c);
	run_until(rpc, &c.done);
	return c.fh;
}

static struct call do_fsinfo(struct rpc_context *rpc, nfs_fh3 root)
{
	struct call c;
	FSINFO3args a = { .fsroot = root };
	begin(&c, "FSINFO", NULL, 0);
	issued(rpc_nfs3_fsinfo_async(rpc, fsinfo_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
	return c;
}

static nfs_fh3 do_lookup(struct rpc_context *rpc, nfs_fh3 dir, const char *name, int timed)
{
	struct call c;
	LOOKUP3args a = { .what = { .dir = dir, .name = (char *)name } };
	begin(&c, "LOOKUP", name, timed);
	issued(rpc_nfs3_lookup_async(rpc, lookup_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
	return c.fh;
}

static void do_getattr(struct rpc_context *rpc, nfs_fh3 fh, const char *name, int timed)
{
	struct call c;
	GETATTR3args a = { .object = fh };
	begin(&c, "GETATTR", name, timed);
	issued(rpc_nfs3_getattr_async(rpc, status_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
}

/* CREATE with mode 0644 (and size 0 when truncate); returns the handle, LOOKUPs it if the reply had none. */
static nfs_fh3 do_create(struct rpc_context *rpc, nfs_fh3 dir, const char *name, createmode3 how,
			 int truncate, int timed)
{
	struct call c;
	CREATE3args a;
	sattr3 *at;
	memset(&a, 0, sizeof a);
	a.where.dir = dir;
	a.where.name = (char *)name;
	a.how.mode = how;
	at = how == GUARDED ? &a.how.createhow3_u.g_obj_attributes : &a.how.createhow3_u.obj_attributes;
	at->mode.set_it = 1;
	at->mode.set_mode3_u.mode = 0644;
	if (truncate) {
		at->size.set_it = 1;
		at->size.set_size3_u.size = 0;
	}
	begin(&c, "CREATE", name, timed);
	issued(rpc_nfs3_create_async(rpc, create_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
	if (!c.fh.data.data_len)
		return do_lookup(rpc, dir, name, timed);
	return c.fh;
}

static void do_remove(struct rpc_context *rpc, nfs_fh3 dir, const char *name, int timed)
{
	struct call c;
	REMOVE3args a = { .object = { .dir = dir, .name = (char *)name } };
	begin(&c, "REMOVE", name, timed);
	issued(rpc_nfs3_remove_async(rpc, status_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
}

static nfs_fh3 do_mkdir(struct rpc_context *rpc, nfs_fh3 dir, const char *name)
{
	struct call c;
	MKDIR3args a;
	memset(&a, 0, sizeof a);
	a.where.dir = dir;
	a.where.name = (char *)name;
	a.attributes.mode.set_it = 1;
	a.attributes.mode.set_mode3_u.mode = 0755;
	begin(&c, "MKDIR", name, 0);
	issued(rpc_nfs3_mkdir_async(rpc, mkdir_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
	if (!c.fh.data.data_len)
		return do_lookup(rpc, dir, name, 0);
	return c.fh;
}

static void do_rmdir(struct rpc_context *rpc, nfs_fh3 dir, const char *name)
{
	struct call c;
	RMDIR3args a = { .object = { .dir = dir, .name = (char *)name } };
	begin(&c, "RMDIR", name, 0);
	issued(rpc_nfs3_rmdir_async(rpc, status_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
}

static void do_commit(struct rpc_context *rpc, nfs_fh3 fh, const char *name)
{
	struct call c;
	COMMIT3args a = { .file = fh, .offset = 0, .count = 0 };
	begin(&c, "COMMIT", name, 1);
	issued(rpc_nfs3_commit_async(rpc, status_cb, &a, &c), rpc, &c);
	run_until(rpc, &c.done);
}

/* ------------------------------------------------- pipelined READ / WRITE */

struct io {
	uint64_t offset;
	uint32_t count;
	double t0;
};

/* One run of READs or WRITEs, keeping up to `depth` in flight: each reply's callback issues the next request. */
struct pipeline {
	struct rpc_context *rpc;
	nfs_fh3 fh;
	const char *name;
	int write;      /* UNSTABLE WRITEs instead of READs */
	char *wbuf;     /* WRITE payload: each request sends its first `count` bytes */
	struct io *ios; /* one per request, in issue order */
	size_t n, next, completed;
	int inflight, depth;
	uint64_t bytes; /* bytes read or written */
	int done;
};

static struct pipeline g_pipe;

static void read_cb(struct rpc_context *rpc, int status, void *data, void *priv);
static void write_cb(struct rpc_context *rpc, int status, void *data, void *priv);

static void pipe_issue(struct pipeline *p)
{
	while (p->inflight < p->depth && p->next < p->n) {
		struct io *io = &p->ios[p->next++];
		int rc;
		io->t0 = now_s();
		if (p->write) {
			WRITE3args a;
			memset(&a, 0, sizeof a);
			a.file = p->fh;
			a.offset = io->offset;
			a.count = io->count;
			a.stable = UNSTABLE;
			a.data.data_len = io->count;
			a.data.data_val = p->wbuf;
			rc = rpc_nfs3_write_async(p->rpc, write_cb, &a, io);
		} else {
			READ3args a = { .file = p->fh, .offset = io->offset, .count = io->count };
			rc = rpc_nfs3_read_async(p->rpc, read_cb, &a, io);
		}
		if (rc != 0)
			die("%s: could not queue the call: %s", p->write ? "WRITE" : "READ", rpc_get_error(p->rpc));
		p->inflight++;
	}
}

static void io_done(struct pipeline *p, struct io *io)
{
	record_latency(io->t0);
	p->bytes += io->count;
	p->inflight--;
	if (++p->completed == p->n)
		p->done = 1;
	else
		pipe_issue(p);
}

static void read_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct io *io = priv;
	READ3res *res = data;
	(void)rpc;
	check_rpc(status, data, "READ");
	check_nfs(res->status, "READ", g_pipe.name);
	if (res->READ3res_u.resok.count != io->count || res->READ3res_u.resok.data.data_len != io->count)
		die("READ %s at offset %" PRIu64 ": got %u of %u bytes%s", g_pipe.name, io->offset,
		    res->READ3res_u.resok.data.data_len, io->count,
		    res->READ3res_u.resok.eof ? " (eof: is the file shorter than --size?)" : "");
	io_done(&g_pipe, io);
}

static void write_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct io *io = priv;
	WRITE3res *res = data;
	(void)rpc;
	check_rpc(status, data, "WRITE");
	check_nfs(res->status, "WRITE", g_pipe.name);
	if (res->WRITE3res_u.resok.count != io->count)
		die("WRITE %s at offset %" PRIu64 ": server wrote %u of %u bytes", g_pipe.name, io->offset,
		    res->WRITE3res_u.resok.count, io->count);
	io_done(&g_pipe, io);
}

static void pipe_run(struct pipeline *p)
{
	pipe_issue(p);
	run_until(p->rpc, &p->done);
}

/* Requests covering [0, size) in `xfer` pieces (the last one may be shorter). */
static struct io *sequential_ios(uint64_t size, uint32_t xfer, size_t *n)
{
	size_t count = (size_t)((size + xfer - 1) / xfer), i;
	struct io *ios = calloc(count, sizeof *ios);
	if (!ios)
		die("out of memory");
	for (i = 0; i < count; i++) {
		ios[i].offset = (uint64_t)i * xfer;
		ios[i].count = (uint32_t)(size - ios[i].offset < xfer ? size - ios[i].offset : xfer);
	}
	*n = count;
	return ios;
}

/* xorshift64*: enough for spreading offsets, and reproducible with --seed. */
static uint64_t g_rng;
static uint64_t rng_next(void)
{
	g_rng ^= g_rng >> 12;
	g_rng ^= g_rng << 25;
	g_rng ^= g_rng >> 27;
	return g_rng * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------ main */

struct opts {
	const char *host, *export_path, *op, *file, *dir;
	int nfs_port, mount_port, uid, gid, depth;
	uint64_t size, ops, files, seed;
	uint32_t xfer;
	unsigned timeout;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: nfsbench --host H --nfs-port N --mount-port M --export PATH --op OP [options]\n"
		"  --op seqread  --file NAME --size BYTES --xfer BYTES --depth D\n"
		"  --op seqwrite --file NAME --size BYTES --xfer BYTES --depth D\n"
		"  --op randread --file NAME --size BYTES --ops N --depth D\n"
		"  --op meta     --dir NAME --files N\n"
		"  [--uid U] [--gid G] [--timeout SECS (60)] [--seed S]\n"
		"sizes take an optional K, M or G suffix (powers of 1024)\n");
}

static uint64_t parse_num(const char *opt, const char *s)
{
	char *end;
	unsigned long long v;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		die("bad number for %s: '%s'", opt, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		die("bad number for %s: '%s'", opt, s);
	return v;
}

static void parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "host", required_argument, 0, 'h' },      { "nfs-port", required_argument, 0, 'n' },
		{ "mount-port", required_argument, 0, 'm' }, { "export", required_argument, 0, 'e' },
		{ "op", required_argument, 0, 'o' },        { "file", required_argument, 0, 'f' },
		{ "dir", required_argument, 0, 'D' },       { "size", required_argument, 0, 's' },
		{ "xfer", required_argument, 0, 'x' },      { "depth", required_argument, 0, 'd' },
		{ "ops", required_argument, 0, 'O' },       { "files", required_argument, 0, 'F' },
		{ "uid", required_argument, 0, 'u' },       { "gid", required_argument, 0, 'g' },
		{ "timeout", required_argument, 0, 't' },   { "seed", required_argument, 0, 'S' },
		{ "help", no_argument, 0, 'H' },            { 0, 0, 0, 0 },
	};
	int c;
	memset(o, 0, sizeof *o);
	o->host = "127.0.0.1";
	o->uid = o->gid = -1;
	o->depth = 1;
	o->timeout = 60;
	o->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		const char *name = longopts[0].name;
		for (const struct option *l = longopts; l->name; l++)
			if (l->val == c)
				name = l->name;
		switch (c) {
		case 'h': o->host = optarg; break;
		case 'n': o->nfs_port = (int)parse_num(name, optarg); break;
		case 'm': o->mount_port = (int)parse_num(name, optarg); break;
		case 'e': o->export_path = optarg; break;
		case 'o': o->op = optarg; break;
		case 'f': o->file = optarg; break;
		case 'D': o->dir = optarg; break;
		case 's': o->size = parse_num(name, optarg); break;
		case 'x': {
			uint64_t x = parse_num(name, optarg);
			if (x == 0 || x > (64u << 20))
				die("--xfer must be between 1 and 64M");
			o->xfer = (uint32_t)x;
			break;
		}
		case 'd': {
			uint64_t d = parse_num(name, optarg);
			if (d == 0 || d > 1024)
				die("--depth must be between 1 and 1024");
			o->depth = (int)d;
			break;
		}
		case 'O': o->ops = parse_num(name, optarg); break;
		case 'F': o->files = parse_num(name, optarg); break;
		case 'u': o->uid = (int)parse_num(name, optarg); break;
		case 'g': o->gid = (int)parse_num(name, optarg); break;
		case 't': o->timeout = (unsigned)parse_num(name, optarg); break;
		case 'S': o->seed = parse_num(name, optarg); break;
		case 'H': usage(stdout); exit(0);
		default: usage(stderr); exit(1);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'", argv[optind]);
	if (!o->op || !o->export_path || o->nfs_port <= 0 || o->mount_port <= 0 || o->nfs_port > 65535 ||
	    o->mount_port > 65535) {
		usage(stderr);
		die("--op, --export, --nfs-port and --mount-port are required");
	}
	g_op = o->op;
	if (!strcmp(o->op, "seqread") || !strcmp(o->op, "seqwrite")) {
		if (!o->file || !o->size || !o->xfer)
			die("needs --file, --size and --xfer");
	} else if (!strcmp(o->op, "randread")) {
		if (!o->file || o->size < RAND_BLOCK || !o->ops)
			die("needs --file, --size (at least 4096) and --ops");
	} else if (!strcmp(o->op, "meta")) {
		if (!o->dir || !o->files)
			die("needs --dir and --files");
	} else {
		die("unknown op (seqread, seqwrite, randread, meta)");
	}
	if ((o->file && strchr(o->file, '/')) || (o->dir && strchr(o->dir, '/')))
		die("--file and --dir must be single names in the export root");
	if (o->timeout == 0)
		die("--timeout must be positive");
}

int main(int argc, char **argv)
{
	struct opts o;
	struct rpc_context *mnt, *rpc;
	nfs_fh3 root;
	double t0, secs, lat_sum = 0, p50 = 0, p99 = 0, u0, s0, u1, s1;
	uint64_t bytes = 0;
	size_t i;
	int data_op;

	parse_args(argc, argv, &o);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGALRM, on_alarm);
	alarm(o.timeout);

	mnt = connect_to(o.host, o.mount_port, MOUNT_PROGRAM, MOUNT_V3, "connect (MOUNT)", o.uid, o.gid);
	root = do_mount(mnt, o.export_path);
	rpc_destroy_context(mnt);
	rpc = connect_to(o.host, o.nfs_port, NFS_PROGRAM, NFS_V3, "connect (NFS)", o.uid, o.gid);

	data_op = strcmp(o.op, "meta") != 0;
	if (data_op) {
		struct pipeline *p = &g_pipe;
		p->rpc = rpc;
		p->name = o.file;
		p->depth = o.depth;
		g_rng = o.seed ? o.seed : 0x9E3779B97F4A7C15ULL;
		if (!strcmp(o.op, "seqread") || !strcmp(o.op, "seqwrite")) {
			struct call fi = do_fsinfo(rpc, root);
			p->write = !strcmp(o.op, "seqwrite");
			if (!p->write && fi.rtmax && o.xfer > fi.rtmax)
				die("--xfer %u exceeds the server's rtmax %u", o.xfer, fi.rtmax);
			if (p->write && fi.wtmax && o.xfer > fi.wtmax)
				die("--xfer %u exceeds the server's wtmax %u", o.xfer, fi.wtmax);
			p->ios = sequential_ios(o.size, o.xfer, &p->n);
		} else {
			uint64_t blocks = o.size / RAND_BLOCK;
			p->n = (size_t)o.ops;
			p->ios = calloc(p->n, sizeof *p->ios);
			if (!p->ios)
				die("out of memory");
			for (i = 0; i < p->n; i++) {
				p->ios[i].offset = (rng_next() % blocks) * RAND_BLOCK;
				p->ios[i].count = RAND_BLOCK;
			}
		}
		if (p->write) {
			p->wbuf = malloc(o.xfer);
			if (!p->wbuf)
				die("out of memory");
			for (i = 0; i < o.xfer; i++) /* incompressible, not all zeroes */
				p->wbuf[i] = (char)(rng_next() >> 56);
			p->fh = do_create(rpc, root, o.file, UNCHECKED, 1, 0);
		} else {
			p->fh = do_lookup(rpc, root, o.file, 0);
		}

		cpu_s(&u0, &s0);
		t0 = now_s();
		pipe_run(p);
		if (p->write)
			do_commit(rpc, p->fh, o.file);
		secs = now_s() - t0;
		cpu_s(&u1, &s1);
		bytes = p->bytes;
		if (!strcmp(o.op, "seqread") && bytes != o.size)
			die("read %" PRIu64 " of %" PRIu64 " bytes", bytes, o.size);
	} else {
		nfs_fh3 dir = do_mkdir(rpc, root, o.dir);
		char name[32];
		cpu_s(&u0, &s0);
		t0 = now_s();
		for (i = 0; i < o.files; i++) {
			nfs_fh3 fh;
			snprintf(name, sizeof name, "f%zu", i);
			fh = do_create(rpc, dir, name, GUARDED, 0, 1);
			free(fh.data.data_val);
		}
		for (i = 0; i < o.files; i++) {
			nfs_fh3 fh;
			snprintf(name, sizeof name, "f%zu", i);
			fh = do_lookup(rpc, dir, name, 1);
			do_getattr(rpc, fh, name, 1);
			free(fh.data.data_val);
		}
		for (i = 0; i < o.files; i++) {
			snprintf(name, sizeof name, "f%zu", i);
			do_remove(rpc, dir, name, 1);
		}
		secs = now_s() - t0;
		cpu_s(&u1, &s1);
		do_rmdir(rpc, root, o.dir);
	}
	rpc_destroy_context(rpc);

	for (i = 0; i < g_nlat; i++)
		lat_sum += g_lat[i];
	if (g_nlat) {
		size_t k99 = (size_t)(0.99 * (double)g_nlat + 0.999999);
		qsort(g_lat, g_nlat, sizeof *g_lat, cmp_double);
		p50 = g_lat[(g_nlat - 1) / 2];
		p99 = g_lat[(k99 ? k99 : 1) - 1];
	}
	if (secs <= 0)
		secs = 1e-9;
	printf("{\"op\":\"%s\"", o.op);
	if (data_op)
		printf(",\"bytes\":%" PRIu64 ",\"mib_per_s\":%.3f,\"depth\":%d", bytes,
		       (double)bytes / 1048576.0 / secs, o.depth);
	if (data_op)
		printf(",\"xfer\":%u", strcmp(o.op, "randread") ? o.xfer : RAND_BLOCK);
	if (!data_op)
		printf(",\"files\":%" PRIu64, o.files);
	printf(",\"seconds\":%.6f,\"ops\":%zu,\"ops_per_s\":%.1f,\"lat_us_avg\":%.1f,\"lat_us_p50\":%.1f,"
	       "\"lat_us_p99\":%.1f,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f}\n",
	       secs, g_nlat, (double)g_nlat / secs, g_nlat ? lat_sum / (double)g_nlat * 1e6 : 0.0, p50 * 1e6,
	       p99 * 1e6, u1 - u0, s1 - s0);
	return fflush(stdout) == 0 ? 0 : 1;
}
