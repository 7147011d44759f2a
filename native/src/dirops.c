/*
 * One trip to the pool per NFS call that changes a directory (issue 17).
 *
 * A CREATE used to cost four jobs (open the directory beneath the root,
 * check it, make the object as the caller, close it) plus Node's own stats
 * for the reply; each job is a queue hand-off, a worker wake-up and a
 * completion on the JS thread. Here one job does it all, in this order:
 *
 *   as the server: open the directory beneath the export root
 *     (openat2 RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS, O_PATH|O_DIRECTORY|
 *     O_NOFOLLOW) and check its inode and birth time against the handle's
 *     (ESTALE if it is another directory now);
 *   as the caller: the one system call that changes something;
 *   as the server: statx of the new (or, before removal, the old) object
 *     through the directory descriptor and of the directory itself (the
 *     reply's attributes and wcc data), then close.
 *
 * Why not keep directory descriptors open in a cache keyed by handle
 * instead (no open at all)? A descriptor follows its directory wherever it
 * goes: a local user who moves an exported directory out of the export
 * (mv /export/d /tmp/d) would leave us a descriptor that creates files in
 * /tmp/d for as long as it stays cached, with no path left to check it
 * against. Opening beneath the root on every call keeps the window of that
 * race to the one call in flight, as before, and the cost of the open is one
 * path walk in the kernel, not a trip through the pool.
 */
#include "gvfs_native.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

#define SX_MASK (STATX_BASIC_STATS | STATX_BTIME)

static int64_t btime_ns(const struct statx *x) {
  return x->stx_btime.tv_sec * 1000000000LL + x->stx_btime.tv_nsec;
}

/* statx as the server into j->sx[slot]; 0 or -1 (errno). */
static int stat_into(gn_job *j, int slot, int dirfd, const char *name) {
  int r = statx(dirfd, name, *name ? AT_SYMLINK_NOFOLLOW : AT_EMPTY_PATH, SX_MASK, &j->sx[slot]);
  if (r == 0) j->have |= 1u << slot;
  return r;
}

/*
 * The directory `rel` beneath `rootfd`, checked to be (ino, gen), as an
 * O_PATH descriptor; -1 with errno (ESTALE: another directory is there now).
 */
static int open_dir(gn_job *j, int rootfd, const char *rel, uint64_t ino, int64_t gen, int slot) {
  int fd = gn_open_beneath(rootfd, rel, O_PATH | O_DIRECTORY | O_NOFOLLOW); /* any length: lookups.c */
  if (fd < 0) return -1;
  if (stat_into(j, slot, fd, "") != 0 || j->sx[slot].stx_ino != ino || btime_ns(&j->sx[slot]) != gen) {
    int e = (j->have & (1u << slot)) ? ESTALE : errno;
    j->have &= ~(1u << slot);
    close(fd);
    errno = e;
    return -1;
  }
  j->have &= ~(1u << slot); /* the pre-op stat is not what the reply wants: the post-op one is */
  return fd;
}

/*
 * Durability of a namespace change (RFC 1813 §1.6: CREATE, MKDIR, SYMLINK,
 * MKNOD, REMOVE, RMDIR, RENAME and LINK are synchronous: what a reply says
 * was done must survive the server's crash). The new object first, then the
 * directory that names it, both before the reply, as the server. A file
 * system without a journal (ext4 -O ^has_journal) writes a directory's
 * blocks on fsync of the directory but not the inodes its new entries name,
 * so the object is synced on its own; one that cannot be opened for that (a
 * symlink, a device, a socket, or a file the server may not read when it is
 * not root) costs a syncfs of the file system instead.
 */
static int sync_fs(int fd) {
  return syncfs(fd) == 0 ? 0 : errno;
}

/* fsync the directory behind O_PATH descriptor `dfd` (reopened to read); syncfs of `rootfd` if it cannot be. */
static int sync_dir(int dfd, int rootfd) {
  int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == EACCES ? sync_fs(rootfd) : errno;
  int e = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return e;
}

/*
 * fsync object `name` in `dfd`, never opening anything but what was checked:
 * the name is opened O_PATH (no open of a device or FIFO happens) and its
 * type read from that descriptor; a directory is then reopened through it
 * (openat "."), a regular file through /proc/self/fd (the same open file,
 * not the name again: a device swapped in meanwhile is never opened). A
 * symlink, a special file, or a file the server may not reopen: syncfs.
 */
static int sync_entry(int dfd, const char *name, int rootfd) {
  int pfd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (pfd < 0) return errno == ENOENT ? 0 : errno; /* gone already: nothing of it to keep */
  struct statx x;
  int e = statx(pfd, "", AT_EMPTY_PATH, STATX_TYPE, &x) == 0 ? 0 : errno;
  int fd = -1;
  if (!e && S_ISDIR(x.stx_mode)) {
    fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } else if (!e && S_ISREG(x.stx_mode)) {
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", pfd);
    fd = open(self, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  }
  close(pfd);
  if (e) return e;
  if (fd < 0) return sync_fs(rootfd);
  e = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return e;
}

static void fail(gn_job *j, const char *syscall, int err) {
  j->ret = -1;
  j->err = err ? err : EIO;
  j->syscall = syscall;
}

/*
 * fd[0] root, s[0] the directory's path below it, n[0] its inode, n[1] its
 * birth time (ns), n[2] what (gn_in_kind), s[1] the name, s[2] a symlink's
 * target, n[3] mode (IN_UNLINK: unlinkat flags), n[4]/n[5] device major and
 * minor. Result: ret (the new file's descriptor for IN_CREATE, else 0);
 * sx[SX_OBJ] the new object (IN_UNLINK: the object as it was before), sx[SX_DIR]
 * the directory afterwards (also on failure, for the wcc data).
 */
static void synced_in_dir(gn_job *j);
static void synced_rename(gn_job *j);

void gn_run_in_dir(gn_job *j) {
  const char *name = j->s[1] ? j->s[1] : "";
  j->have = 0;
  int dfd = open_dir(j, j->fd[0], j->s[0] ? j->s[0] : "", (uint64_t)j->n[0], j->n[1], SX_DIR);
  if (dfd < 0) {
    fail(j, "openat2", errno);
    return;
  }
  gn_in_kind kind = (gn_in_kind)j->n[2];
  mode_t mode = (mode_t)j->n[3];
  /* What is removed, as it was: the caller's reply does not need it, the server's caches do. */
  if (kind == IN_UNLINK) stat_into(j, SX_OBJ, dfd, name);
  int e = gn_become(&j->cred);
  if (e) {
    close(dfd);
    fail(j, "setfsuid", e);
    return;
  }
  long r;
  const char *sc;
  switch (kind) {
    case IN_CREATE:
      sc = "openat2";
      r = gn_openat2(dfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, mode, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
      break;
    case IN_MKDIR:
      sc = "mkdirat";
      r = mkdirat(dfd, name, mode);
      break;
    case IN_SYMLINK:
      sc = "symlinkat";
      r = symlinkat(j->s[2] ? j->s[2] : "", dfd, name);
      break;
    case IN_MKNOD:
      sc = "mknodat";
      r = mknodat(dfd, name, mode, makedev((unsigned)j->n[4], (unsigned)j->n[5]));
      break;
    case IN_UNLINK:
      sc = "unlinkat";
      r = unlinkat(dfd, name, (int)j->n[3]);
      break;
    default:
      sc = "in_dir";
      r = -1;
      errno = EINVAL;
  }
  e = r < 0 ? errno : 0;
  gn_restore(&j->cred);
  if (r < 0) {
    j->have &= ~(1u << SX_OBJ);
    stat_into(j, SX_DIR, dfd, "");
    close(dfd);
    fail(j, sc, e);
    return;
  }
  if (kind == IN_CREATE) stat_into(j, SX_OBJ, (int)r, "");
  else if (kind != IN_UNLINK) stat_into(j, SX_OBJ, dfd, name);
  stat_into(j, SX_DIR, dfd, "");
  j->ret = kind == IN_CREATE ? r : 0;
  j->err = 0;
  j->syscall = sc;
  /* Durable before the reply, on the sync lane: the directory and the new file's descriptor go with it. */
  j->keep[0] = dfd;
  j->keep[1] = kind == IN_CREATE ? (int)r : -1;
  j->then = synced_in_dir;
}

/*
 * gn_run_in_dir's second step, on the sync lane (pool.c): a sync may wait
 * long behind other writes to the same disk, and must not hold a worker a
 * LOOKUP or READ needs meanwhile. The new object (a new file through its
 * descriptor), then the directory. Made but not known to be on disk: the
 * caller hears EIO (knfsd's commit_metadata does the same); the statx stays
 * with the error, so the server's caches follow the change all the same.
 */
static void synced_in_dir(gn_job *j) {
  gn_in_kind kind = (gn_in_kind)j->n[2];
  int dfd = j->keep[0], fd = j->keep[1];
  int e = kind == IN_CREATE ? (fsync(fd) == 0 ? 0 : errno) : kind == IN_UNLINK ? 0 : sync_entry(dfd, j->s[1] ? j->s[1] : "", j->fd[0]);
  if (!e) e = sync_dir(dfd, j->fd[0]);
  close(dfd);
  if (!e) return;
  if (kind == IN_CREATE) close(fd);
  fail(j, "fsync", e);
}

/*
 * fd[0] root; s[0]/n[0]/n[1] the source directory (path, inode, birth time),
 * s[1] the source name; s[2]/n[2]/n[3] the target directory, s[3] the target
 * name; n[4] renameat2 flags. Result: sx[SX_OBJ] what was moved and sx[SX_DST]
 * what the target name held (when it held something), both as they were;
 * sx[SX_DIR] and sx[SX_DIR2] both directories afterwards (also on failure).
 */
void gn_run_rename_in(gn_job *j) {
  j->have = 0;
  int ffd = open_dir(j, j->fd[0], j->s[0] ? j->s[0] : "", (uint64_t)j->n[0], j->n[1], SX_DIR);
  if (ffd < 0) {
    fail(j, "openat2", errno);
    return;
  }
  int same = j->n[0] == j->n[2] && j->n[1] == j->n[3];
  int tfd = same ? ffd : open_dir(j, j->fd[0], j->s[2] ? j->s[2] : "", (uint64_t)j->n[2], j->n[3], SX_DIR2);
  if (tfd < 0) {
    int e = errno;
    close(ffd);
    fail(j, "openat2", e);
    return;
  }
  const char *from = j->s[1] ? j->s[1] : "", *to = j->s[3] ? j->s[3] : "";
  stat_into(j, SX_OBJ, ffd, from);
  stat_into(j, SX_DST, tfd, to);
  int e = gn_become(&j->cred), became = !e;
  long r = -1;
  if (became) {
    r = syscall(SYS_renameat2, ffd, from, tfd, to, (unsigned)j->n[4]);
    e = r < 0 ? errno : 0;
    gn_restore(&j->cred);
  }
  if (e) j->have &= ~((1u << SX_OBJ) | (1u << SX_DST));
  stat_into(j, SX_DIR, ffd, "");
  if (!same) stat_into(j, SX_DIR2, tfd, "");
  if (e) {
    if (!same) close(tfd);
    close(ffd);
    fail(j, became ? "renameat2" : "setfsuid", e);
    return;
  }
  j->ret = 0;
  j->err = 0;
  j->syscall = "renameat2";
  /* Durable before the reply, on the sync lane (as gn_run_in_dir's). */
  j->keep[0] = tfd;
  j->keep[1] = same ? -1 : ffd;
  j->then = synced_rename;
}

/* gn_run_rename_in's second step, on the sync lane: the target directory (the new name), then the source (the old name gone). */
static void synced_rename(gn_job *j) {
  int tfd = j->keep[0], ffd = j->keep[1];
  int e = sync_dir(tfd, j->fd[0]);
  if (!e && ffd >= 0) e = sync_dir(ffd, j->fd[0]);
  close(tfd);
  if (ffd >= 0) close(ffd);
  if (e) fail(j, "fsync", e);
}

/*
 * ACCESS in one trip: fd[0] root, s[0] the object's path below it, n[0] its
 * inode, n[1] its birth time. As the server: open it beneath the root
 * (O_PATH|O_NOFOLLOW: a symlink itself) and check it; as the caller:
 * faccessat2(AT_EACCESS) for R, W and X (POSIX ACLs count). Result: ret the
 * mask (4 R, 2 W, 1 X), sx[SX_OBJ] the object.
 */
/* The object s[0] beneath root fd[0] (O_PATH|O_NOFOLLOW), checked to be (n[0], n[1]); -1 after fail(). */
static int open_object(gn_job *j) {
  j->have = 0;
  int fd = gn_open_beneath(j->fd[0], j->s[0], O_PATH | O_NOFOLLOW);
  if (fd < 0) {
    fail(j, "openat2", errno);
    return -1;
  }
  if (stat_into(j, SX_OBJ, fd, "") != 0 || j->sx[SX_OBJ].stx_ino != (uint64_t)j->n[0] || btime_ns(&j->sx[SX_OBJ]) != j->n[1]) {
    int e = (j->have & (1u << SX_OBJ)) ? ESTALE : errno;
    j->have = 0;
    close(fd);
    fail(j, "openat2", e);
    return -1;
  }
  return fd;
}

void gn_run_access_of(gn_job *j) {
  static const int bits[3] = {R_OK, W_OK, X_OK};
  int fd = open_object(j);
  if (fd < 0) return;
  int e = gn_become(&j->cred);
  if (e) {
    close(fd);
    fail(j, "setfsuid", e);
    return;
  }
  long mask = 0;
  for (int i = 0; i < 3 && !e; i++) {
    if (syscall(SYS_faccessat2, fd, "", bits[i], AT_EACCESS | AT_EMPTY_PATH) == 0) mask |= 4 >> i;
    else if (errno != EACCES && errno != EROFS && errno != ETXTBSY && errno != EPERM) e = errno;
  }
  gn_restore(&j->cred);
  close(fd);
  if (e) {
    fail(j, "faccessat2", e);
    return;
  }
  j->ret = mask;
  j->err = 0;
  j->syscall = "faccessat2";
}

/*
 * SETATTR's owner, mode and times in one trip: fd[0] root, s[0]/n[0]/n[1]
 * the object (opened beneath the root as the server and checked, as in
 * accessOf), n[2] what (SA_*), n[3]/n[4] uid/gid (-1: unchanged), n[5] mode,
 * n[6..9] atime and mtime (sec, nsec; UTIME_OMIT/UTIME_NOW in nsec). As the
 * caller, in this order: fchownat, fchmodat2, utimensat, all AT_EMPTY_PATH
 * on the O_PATH descriptor (never following a symlink). SA_TIMES_AS_SERVER:
 * one time "now" by a caller who is not the owner: the kernel checks write
 * permission as the caller (faccessat2 AT_EACCESS), the server sets the time
 * (utimensat wants the owner there, NFS only write permission). Result:
 * sx[SX_OBJ] the object afterwards (also on failure, for the wcc data).
 */
void gn_run_setattr_of(gn_job *j) {
  int fd = open_object(j);
  if (fd < 0) return;
  j->have = 0;
  int what = (int)j->n[2];
  int e = gn_become(&j->cred), became = !e;
  const char *sc = "setfsuid";
  if (!e && (what & SA_CHOWN)) {
    sc = "fchownat";
    if (fchownat(fd, "", (uid_t)j->n[3], (gid_t)j->n[4], AT_EMPTY_PATH) != 0) e = errno;
  }
  if (!e && (what & SA_MODE)) {
    sc = "fchmodat";
    /* fchmodat2 (Linux 6.6): AT_EMPTY_PATH on an O_PATH descriptor, never /proc. */
    if (syscall(SYS_fchmodat2, fd, "", (mode_t)j->n[5], AT_EMPTY_PATH) != 0) e = errno;
    if (e == ENOSYS) e = fchmod(fd, (mode_t)j->n[5]) != 0 ? errno : 0;
  }
  struct timespec ts[2] = {{.tv_sec = j->n[6], .tv_nsec = j->n[7]}, {.tv_sec = j->n[8], .tv_nsec = j->n[9]}};
  int as_server = (what & SA_TIMES) && (what & SA_TIMES_AS_SERVER);
  if (!e && as_server) {
    sc = "faccessat2";
    if (syscall(SYS_faccessat2, fd, "", W_OK, AT_EACCESS | AT_EMPTY_PATH) != 0) e = errno;
  }
  if (!e && (what & SA_TIMES) && !as_server) {
    sc = "utimensat";
    if (syscall(SYS_utimensat, fd, "", ts, AT_EMPTY_PATH) != 0) e = errno;
  }
  if (became) gn_restore(&j->cred);
  if (!e && as_server) {
    sc = "utimensat";
    if (syscall(SYS_utimensat, fd, "", ts, AT_EMPTY_PATH) != 0) e = errno;
  }
  stat_into(j, SX_OBJ, fd, "");
  close(fd);
  if (e) {
    fail(j, sc, e);
    return;
  }
  j->ret = 0;
  j->err = 0;
  j->syscall = sc;
}

/*
 * A namespace change made in several trips (root giving a new object away,
 * LINK, RENAME on a server that is not root) made durable in one more:
 * fd[0] root, s[0]/n[0]/n[1] the directory (opened beneath the root and
 * checked as in gn_run_in_dir), s[1] a name in it to sync first ("" none).
 * As the server. Result: sx[SX_DIR] the directory afterwards.
 */
void gn_run_sync_in(gn_job *j) {
  j->have = 0;
  int dfd = open_dir(j, j->fd[0], j->s[0] ? j->s[0] : "", (uint64_t)j->n[0], j->n[1], SX_DIR);
  if (dfd < 0) {
    fail(j, "openat2", errno);
    return;
  }
  const char *name = j->s[1] ? j->s[1] : "";
  int e = *name ? sync_entry(dfd, name, j->fd[0]) : 0;
  if (!e) e = sync_dir(dfd, j->fd[0]);
  stat_into(j, SX_DIR, dfd, "");
  close(dfd);
  if (e) {
    fail(j, "fsync", e);
    return;
  }
  j->ret = 0;
  j->err = 0;
  j->syscall = "fsync";
}
