/*
 * Reads by directory descriptor and name (issue 17, step 3): GETATTR,
 * LOOKUP, READLINK, READDIR and READDIRPLUS of the local export, one job
 * each, never an absolute path string.
 *
 * Every job opens its object beneath the export root as the server
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, see gn_open_beneath) and
 * checks it against the handle's inode and birth time, as dirops.c does;
 * what it then reads it reads through that descriptor (statx AT_EMPTY_PATH,
 * readlinkat "", getdents64) or by one name relative to it (statx
 * AT_SYMLINK_NOFOLLOW). So a local user who swaps a directory of the export
 * for a symlink cannot make a reply describe anything outside the export:
 * the open fails (EXDEV), finds another inode (ESTALE) or finds the real
 * directory, and a name is one component that is never followed.
 *
 * And no path limit but NFS's 255-byte names: a path below the root longer
 * than the kernel's PATH_MAX is opened in pieces, each piece beneath the
 * directory the previous one opened (gn_open_beneath); the export's own
 * absolute path never reaches the kernel again after the root is opened.
 *
 * Also here: WRITE and truncate as the caller (pwriteAs, ftruncateAs), run
 * by the pool under the caller's fsuid, so the kernel itself clears set-ID
 * bits (a thread whose fsuid is not 0 has no CAP_FSETID) where the server,
 * root, would keep them; and the statx the reply needs in the same job.
 */
#include "gvfs_native.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SX_MASK (STATX_BASIC_STATS | STATX_BTIME)
#define BENEATH (RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)

/*
 * `rel` (relative, any length) beneath `rootfd` with `flags`; -1 and errno.
 * Past PATH_MAX the path is opened in pieces cut at a '/': each piece an
 * O_PATH directory opened beneath the one before, so every piece is as
 * confined as a single openat2 would be.
 */
int gn_open_beneath(int rootfd, const char *rel, int flags) {
  if (!rel || !*rel) rel = ".";
  if (*rel == '/') {
    errno = EXDEV;
    return -1;
  }
  int cur = rootfd;
  const char *p = rel;
  char *piece = NULL;
  int err = 0, fd = -1;
  while (strlen(p) >= PATH_MAX) {
    size_t cut = PATH_MAX - 1;
    while (cut > 0 && p[cut] != '/') cut--;
    if (cut == 0) {
      err = ENAMETOOLONG; /* one component of 4 KiB: no file system has that */
      break;
    }
    if (!piece && !(piece = malloc(PATH_MAX))) {
      err = ENOMEM;
      break;
    }
    memcpy(piece, p, cut);
    piece[cut] = 0;
    int nfd = (int)gn_openat2(cur, piece, O_PATH | O_DIRECTORY | O_NOFOLLOW, 0, BENEATH);
    if (nfd < 0) {
      err = errno;
      break;
    }
    if (cur != rootfd) close(cur);
    cur = nfd;
    for (p += cut; *p == '/'; p++) {
    }
  }
  if (!err) {
    fd = (int)gn_openat2(cur, *p ? p : ".", flags, 0, BENEATH);
    if (fd < 0) err = errno;
  }
  if (cur != rootfd) close(cur);
  free(piece);
  if (err) errno = err;
  return fd;
}

static int64_t btime_ns(const struct statx *x) {
  return x->stx_btime.tv_sec * 1000000000LL + x->stx_btime.tv_nsec;
}

static void fail(gn_job *j, const char *syscall, int err) {
  j->ret = -1;
  j->err = err ? err : EIO;
  j->syscall = syscall;
}

static void ok(gn_job *j, long ret, const char *syscall) {
  j->ret = ret;
  j->err = 0;
  j->syscall = syscall;
}

/*
 * fd[0] root, s[0] the path below it, opened with `flags` as the server and
 * statted into sx[slot]; with `check`, it must be inode n[0] born at n[1]
 * (else ESTALE). The descriptor, or -1 after fail().
 */
static int open_checked(gn_job *j, int flags, int slot, int check) {
  int fd = gn_open_beneath(j->fd[0], j->s[0], flags);
  if (fd < 0) {
    fail(j, "openat2", errno);
    return -1;
  }
  struct statx *x = &j->sx[slot];
  if (statx(fd, "", AT_EMPTY_PATH, SX_MASK, x) != 0) {
    int e = errno;
    close(fd);
    fail(j, "statx", e);
    return -1;
  }
  if (check && (x->stx_ino != (uint64_t)j->n[0] || btime_ns(x) != j->n[1])) {
    close(fd);
    fail(j, "openat2", ESTALE);
    return -1;
  }
  j->have |= 1u << slot;
  return fd;
}

/* A single name: not empty, not "." or "..", no '/'. */
static int one_name(const char *name) {
  return *name && strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && !strchr(name, '/');
}

/* GETATTR: fd[0] root, s[0] path, n[0]/n[1] inode and birth time, n[2] 1: check them. sx[SX_OBJ]. */
void gn_run_stat_of(gn_job *j) {
  j->have = 0;
  int fd = open_checked(j, O_PATH | O_NOFOLLOW, SX_OBJ, j->n[2] != 0);
  if (fd < 0) return;
  close(fd);
  ok(j, 0, "statx");
}

/*
 * LOOKUP: the directory s[0] (checked: n[0], n[1]) as the server, then the
 * name s[1] in it by statx AT_SYMLINK_NOFOLLOW as the caller, so the kernel
 * checks search permission on the directory (POSIX ACLs included).
 * sx[SX_DIR] the directory (also on failure), sx[SX_OBJ] the object.
 */
void gn_run_lookup_in(gn_job *j) {
  j->have = 0;
  const char *name = j->s[1] ? j->s[1] : "";
  if (!one_name(name)) {
    fail(j, "statx", EINVAL);
    return;
  }
  int dfd = open_checked(j, O_PATH | O_DIRECTORY | O_NOFOLLOW, SX_DIR, 1);
  if (dfd < 0) return;
  int e = gn_become(&j->cred);
  if (e) {
    close(dfd);
    fail(j, "setfsuid", e);
    return;
  }
  int r = statx(dfd, name, AT_SYMLINK_NOFOLLOW, SX_MASK, &j->sx[SX_OBJ]);
  e = r ? errno : 0;
  gn_restore(&j->cred);
  close(dfd);
  if (e) {
    fail(j, "statx", e);
    return;
  }
  j->have |= 1u << SX_OBJ;
  ok(j, 0, "statx");
}

/* READLINK: the symlink s[0] (checked) read through its O_PATH descriptor. out: the target; sx[SX_OBJ]. */
void gn_run_readlink_of(gn_job *j) {
  j->have = 0;
  int fd = open_checked(j, O_PATH | O_NOFOLLOW, SX_OBJ, 1);
  if (fd < 0) return;
  j->out = malloc(PATH_MAX + 1);
  long r = j->out ? readlinkat(fd, "", j->out, PATH_MAX) : (errno = ENOMEM, -1);
  int e = r < 0 ? errno : 0;
  close(fd);
  if (e) {
    fail(j, "readlinkat", e);
    return;
  }
  j->outlen = (size_t)r;
  ok(j, 0, "readlinkat");
}

/* Append to a growing buffer; 0 or ENOMEM. */
static int grow(void **p, size_t *cap, size_t need, size_t unit) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need) n *= 2;
  void *q = realloc(*p, n * unit);
  if (!q) return ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/*
 * READDIR: the directory s[0] (checked: n[0], n[1]) opened O_RDONLY as the
 * server; n[2] bit 1: the caller must have read permission on it, asked of
 * the kernel as the caller (faccessat2 AT_EACCESS). getdents64 through the
 * descriptor: out the names, each ended by NUL ("." and ".." left out),
 * inos their inode numbers; sx[SX_DIR] the directory.
 */
void gn_run_readdir_of(gn_job *j) {
  j->have = 0;
  int fd = open_checked(j, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, SX_DIR, 1);
  if (fd < 0) return;
  if (j->n[2] & 1) {
    int e = gn_become(&j->cred);
    if (!e) {
      if (syscall(SYS_faccessat2, fd, "", R_OK, AT_EACCESS | AT_EMPTY_PATH) != 0) e = errno;
      gn_restore(&j->cred);
    }
    if (e) {
      close(fd);
      fail(j, "faccessat2", e);
      return;
    }
  }
  enum { BUF = 64 * 1024 };
  char *buf = malloc(BUF);
  size_t outcap = 0, inocap = 0;
  int e = buf ? 0 : ENOMEM;
  while (!e) {
    long n = syscall(SYS_getdents64, fd, buf, BUF);
    if (n < 0) e = errno;
    if (n <= 0) break;
    for (long off = 0; off < n && !e;) {
      struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
      off += d->d_reclen;
      if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
      size_t len = strlen(d->d_name) + 1;
      e = grow((void **)&j->out, &outcap, j->outlen + len, 1);
      if (!e) e = grow((void **)&j->inos, &inocap, j->nx + 1, sizeof(uint64_t));
      if (e) break;
      memcpy(j->out + j->outlen, d->d_name, len);
      j->outlen += len;
      j->inos[j->nx++] = d->d_ino;
    }
  }
  free(buf);
  close(fd);
  if (e) {
    fail(j, "getdents64", e);
    return;
  }
  ok(j, 0, "getdents64");
}

/*
 * READDIRPLUS's attributes: the directory s[0] (checked) as the server, and
 * each name of s[1] ('/'-separated single names) statted through it,
 * AT_SYMLINK_NOFOLLOW. xs[i] the i-th name's statx where xok[i] is 0, else
 * xok[i] its errno (a name removed since the listing: ENOENT).
 */
void gn_run_stat_names(gn_job *j) {
  j->have = 0;
  int dfd = open_checked(j, O_PATH | O_DIRECTORY | O_NOFOLLOW, SX_DIR, 1);
  if (dfd < 0) return;
  char *names = j->s[1] ? j->s[1] : "";
  size_t n = *names ? 1 : 0;
  for (const char *c = names; *c; c++) n += *c == '/';
  j->xs = n ? calloc(n, sizeof *j->xs) : NULL;
  j->xok = n ? calloc(n, sizeof *j->xok) : NULL;
  if (n && (!j->xs || !j->xok)) {
    close(dfd);
    fail(j, "statx", ENOMEM);
    return;
  }
  char *save = NULL;
  size_t i = 0;
  for (char *name = n ? strtok_r(names, "/", &save) : NULL; name && i < n; name = strtok_r(NULL, "/", &save), i++) {
    if (!one_name(name)) j->xok[i] = EINVAL;
    else if (statx(dfd, name, AT_SYMLINK_NOFOLLOW, SX_MASK, &j->xs[i]) != 0) j->xok[i] = errno ? errno : EIO;
  }
  for (; i < n; i++) j->xok[i] = EINVAL; /* empty names ("a//b") */
  j->nx = n;
  close(dfd);
  ok(j, 0, "statx");
}

/*
 * NFS's WRITE permission rule, as the caller `c` on the file as `st` shows
 * it now: the owner may always write its file (nfsd's owner override, so a
 * program writing through a descriptor of a file it made 0444 keeps
 * working) and root may; anybody else as the kernel says, asked as the
 * caller (faccessat2 AT_EACCESS, with this thread's fsuid and groups), so
 * POSIX ACLs count, even where the group bits (an ACL's mask) say yes and
 * the ACL says no. As knfsd's nfsd_permission. 0, or an errno.
 */
static int may_write(const gn_creds *c, int fd, const struct statx *st) {
  if (c->uid == 0 || c->uid == st->stx_uid) return 0;
  if (syscall(SYS_faccessat2, fd, "", W_OK, AT_EACCESS | AT_EMPTY_PATH) == 0) return 0;
  return errno ? errno : EACCES;
}

/*
 * WRITE as the caller (run by the pool with the caller's fsuid, fsgid and
 * groups): all of buf at offset n[0] through the open descriptor fd[0];
 * n[1] 1 fdatasync, 2 fsync afterwards, on the sync lane (synced_write: a
 * sync needs no identity, and must not hold a worker); sx[SX_OBJ] the file
 * afterwards.
 * With n[2] = 1, first sx[SX_PRE] (the pre-op attributes, fresh: a chmod or
 * chown on the server's disk since the last call counts) and the WRITE
 * permission check on them (may_write): one job per WRITE, like READ.
 * ret: bytes written.
 */
static void synced_write(gn_job *j);

void gn_run_pwrite_as(gn_job *j) {
  j->have = 0;
  if (j->n[2] == 1) {
    if (statx(j->fd[0], "", AT_EMPTY_PATH, SX_MASK, &j->sx[SX_PRE]) != 0) {
      fail(j, "statx", errno);
      return;
    }
    j->have |= 1u << SX_PRE;
    int e = may_write(&j->cred, j->fd[0], &j->sx[SX_PRE]);
    if (e) {
      fail(j, "faccessat2", e);
      return;
    }
  }
  size_t done = 0;
  const char *b = j->buf;
  while (done < j->buflen) {
    ssize_t w = pwrite(j->fd[0], b + done, j->buflen - done, (off_t)(j->n[0] + (int64_t)done));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(j, "pwrite", errno);
      return;
    }
    if (w == 0) {
      fail(j, "pwrite", EIO);
      return;
    }
    done += (size_t)w;
  }
  ok(j, (long)done, "pwrite");
  if (j->n[1] == 1 || j->n[1] == 2) {
    j->then = synced_write; /* the descriptor stays the caller's (JS holds it until the job settles) */
    return;
  }
  if (statx(j->fd[0], "", AT_EMPTY_PATH, SX_MASK, &j->sx[SX_OBJ]) == 0) j->have |= 1u << SX_OBJ;
}

/* gn_run_pwrite_as's second step, on the sync lane, as the server: the sync asked for, then the file's statx. */
static void synced_write(gn_job *j) {
  if ((j->n[1] == 1 && fdatasync(j->fd[0]) != 0) || (j->n[1] == 2 && fsync(j->fd[0]) != 0)) {
    fail(j, j->n[1] == 1 ? "fdatasync" : "fsync", errno);
    return;
  }
  if (statx(j->fd[0], "", AT_EMPTY_PATH, SX_MASK, &j->sx[SX_OBJ]) == 0) j->have |= 1u << SX_OBJ;
}

/*
 * READ in one job: fill buf from offset n[0] through fd[0] (short only at the
 * end of the file), then statx the descriptor for the reply's attributes and
 * EOF. A pread and an fstat as two jobs cost two trips through the pool per
 * READ, the server's most frequent call. ret: bytes read.
 */
void gn_run_pread_as(gn_job *j) {
  j->have = 0;
  size_t done = 0;
  char *b = j->buf;
  while (done < j->buflen) {
    ssize_t r = pread(j->fd[0], b + done, j->buflen - done, (off_t)(j->n[0] + (int64_t)done));
    if (r < 0) {
      if (errno == EINTR) continue;
      fail(j, "pread", errno);
      return;
    }
    if (r == 0) break; /* end of file */
    done += (size_t)r;
  }
  if (statx(j->fd[0], "", AT_EMPTY_PATH, SX_MASK, &j->sx[SX_OBJ]) != 0) {
    fail(j, "statx", errno);
    return;
  }
  j->have |= 1u << SX_OBJ;
  ok(j, (long)done, "pread");
}

/* Truncate as the caller: fd[0] to n[0] bytes; sx[SX_OBJ] the file afterwards. */
void gn_run_ftruncate_as(gn_job *j) {
  j->have = 0;
  if (j->n[0] < 0) {
    fail(j, "ftruncate", EINVAL);
    return;
  }
  if (ftruncate(j->fd[0], (off_t)j->n[0]) != 0) {
    fail(j, "ftruncate", errno);
    return;
  }
  if (statx(j->fd[0], "", AT_EMPTY_PATH, SX_MASK, &j->sx[SX_OBJ]) == 0) j->have |= 1u << SX_OBJ;
  ok(j, 0, "ftruncate");
}
