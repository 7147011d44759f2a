/*
 * The system calls, run on a worker thread with the caller's credentials in
 * force (pool.c). Each sets j->ret (< 0: failed, j->err = errno) and
 * j->syscall for the error message.
 */
#include "gvfs_native.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

static int have_openat2 = 1; /* cleared on the first ENOSYS */
static int walk_only;        /* tests: force the fallback walk */

int gn_have_openat2(void) {
  return __atomic_load_n(&have_openat2, __ATOMIC_RELAXED) && !__atomic_load_n(&walk_only, __ATOMIC_RELAXED);
}

void gn_set_walk_only(int on) {
  __atomic_store_n(&walk_only, on, __ATOMIC_RELAXED);
}

/* ELOOP when `name` in `dir` is a symlink, else `e`: what openat2 would have said. */
static int symlink_or(int dir, const char *name, int e) {
  struct stat st;
  if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) return ELOOP;
  return e;
}

/*
 * openat2's RESOLVE_BENEATH for kernels without it: one component at a
 * time, never following a symlink (stricter than openat2, which follows
 * symlinks that stay beneath), ".." popping only what this walk opened.
 * Absolute paths and ".." above `dirfd` are EXDEV, as with openat2.
 */
static int walk_open(int dirfd, const char *path, int flags, mode_t mode) {
  size_t len = strlen(path);
  if (len >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  if (path[0] == '/') {
    errno = EXDEV;
    return -1;
  }
  char *copy = strdup(path);
  int *stack = malloc(sizeof(int) * (len / 2 + 2));
  if (!copy || !stack) {
    free(copy);
    free(stack);
    errno = ENOMEM;
    return -1;
  }
  int depth = 0, fd = -1, err = 0;
  char *save = NULL;
  char *comp = strtok_r(copy, "/", &save);
  const char *last = ".";
  while (comp) {
    char *next = strtok_r(NULL, "/", &save);
    int cur = depth ? stack[depth - 1] : dirfd;
    if (strcmp(comp, ".") == 0) {
      if (!next) last = ".";
    } else if (strcmp(comp, "..") == 0) {
      if (depth == 0) {
        err = EXDEV;
        break;
      }
      close(stack[--depth]);
      if (!next) last = ".";
    } else if (!next) {
      last = comp;
    } else {
      int nfd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (nfd < 0) {
        err = errno == ENOTDIR ? symlink_or(cur, comp, ENOTDIR) : errno;
        break;
      }
      stack[depth++] = nfd;
    }
    comp = next;
  }
  if (!err) {
    int cur = depth ? stack[depth - 1] : dirfd;
    fd = openat(cur, last, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) err = errno;
  }
  while (depth > 0) close(stack[--depth]);
  free(stack);
  free(copy);
  if (err) errno = err;
  return fd;
}

long gn_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve) {
  /* Magic links (/proc/self/fd/N) would leave the export whatever else we say. */
  resolve |= RESOLVE_NO_MAGICLINKS;
  if (gn_have_openat2()) {
    struct open_how how = {.flags = (uint64_t)(flags | O_CLOEXEC), .mode = ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? mode : 0, .resolve = resolve};
    long r = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (r >= 0 || errno != ENOSYS) return r;
    __atomic_store_n(&have_openat2, 0, __ATOMIC_RELAXED);
  }
  if (!(resolve & RESOLVE_BENEATH)) return openat(dirfd, path, flags | O_CLOEXEC, mode);
  return walk_open(dirfd, path, flags, mode);
}

static const int access_bits[3] = {R_OK, W_OK, X_OK};

void gn_run(gn_job *j) {
  long r = -1;
  const char *s0 = j->s[0] ? j->s[0] : "";
  const char *s1 = j->s[1] ? j->s[1] : "";
  errno = 0;
  switch (j->op) {
    case OP_OPENAT2:
      j->syscall = "openat2";
      r = gn_openat2(j->fd[0], s0, (int)j->n[0], (mode_t)j->n[1], (uint64_t)j->n[2]);
      break;
    case OP_MKNODAT:
      j->syscall = "mknodat";
      r = mknodat(j->fd[0], s0, (mode_t)j->n[0], makedev((unsigned)j->n[1], (unsigned)j->n[2]));
      break;
    case OP_MKDIRAT:
      j->syscall = "mkdirat";
      r = mkdirat(j->fd[0], s0, (mode_t)j->n[0]);
      break;
    case OP_SYMLINKAT:
      j->syscall = "symlinkat";
      r = symlinkat(s0, j->fd[0], s1);
      break;
    case OP_READLINKAT: {
      j->syscall = "readlinkat";
      j->out = malloc(PATH_MAX + 1);
      if (!j->out) {
        errno = ENOMEM;
        break;
      }
      r = readlinkat(j->fd[0], s0, j->out, PATH_MAX);
      if (r >= 0) j->outlen = (size_t)r;
      break;
    }
    case OP_LINKAT:
      j->syscall = "linkat";
      r = linkat(j->fd[0], s0, j->fd[1], s1, (int)j->n[0]);
      break;
    case OP_UNLINKAT:
      j->syscall = "unlinkat";
      r = unlinkat(j->fd[0], s0, (int)j->n[0]);
      break;
    case OP_RENAMEAT2:
      j->syscall = "renameat2";
      r = syscall(SYS_renameat2, j->fd[0], s0, j->fd[1], s1, (unsigned)j->n[0]);
      break;
    case OP_FCHOWNAT:
      j->syscall = "fchownat";
      r = fchownat(j->fd[0], s0, (uid_t)j->n[0], (gid_t)j->n[1], (int)j->n[2]);
      break;
    case OP_FCHMODAT:
      j->syscall = "fchmodat";
      if (j->n[1] == 0) r = fchmodat(j->fd[0], s0, (mode_t)j->n[0], 0);
      else {
        /* fchmodat2 (Linux 6.6): flags without glibc's /proc emulation. */
        r = syscall(SYS_fchmodat2, j->fd[0], s0, (mode_t)j->n[0], (int)j->n[1]);
        if (r < 0 && errno == ENOSYS && j->n[1] == AT_EMPTY_PATH && *s0 == 0) r = fchmod(j->fd[0], (mode_t)j->n[0]);
      }
      break;
    case OP_UTIMENSAT: {
      j->syscall = "utimensat";
      struct timespec ts[2] = {{.tv_sec = j->n[0], .tv_nsec = j->n[1]}, {.tv_sec = j->n[2], .tv_nsec = j->n[3]}};
      int flags = (int)j->n[4];
      /* An empty name without AT_EMPTY_PATH means the (open, not O_PATH) descriptor itself: Linux's NULL path. */
      r = syscall(SYS_utimensat, j->fd[0], (*s0 || (flags & AT_EMPTY_PATH)) ? s0 : NULL, ts, flags);
      break;
    }
    case OP_STATX:
      j->syscall = "statx";
      r = statx(j->fd[0], s0, (int)j->n[0], (unsigned)j->n[1], &j->stx);
      break;
    case OP_FACCESSAT:
      j->syscall = "faccessat2";
      r = syscall(SYS_faccessat2, j->fd[0], s0, (int)j->n[0], (int)j->n[1]);
      break;
    case OP_ACCESSMASK: {
      /* R, W and X in one trip: bit 4, 2, 1 set for each the caller has. */
      j->syscall = "faccessat2";
      long mask = 0;
      r = 0;
      for (int i = 0; i < 3; i++) {
        if (syscall(SYS_faccessat2, j->fd[0], s0, access_bits[i], (int)j->n[0]) == 0) mask |= 4 >> i;
        else if (errno != EACCES && errno != EROFS && errno != ETXTBSY && errno != EPERM) {
          r = -1;
          break;
        }
      }
      if (r == 0) r = mask;
      break;
    }
    case OP_NAME_TO_HANDLE: {
      j->syscall = "name_to_handle_at";
      struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
      if (!fh) {
        errno = ENOMEM;
        break;
      }
      fh->handle_bytes = MAX_HANDLE_SZ;
      int mount_id = 0;
      r = name_to_handle_at(j->fd[0], s0, fh, &mount_id, (int)j->n[0]);
      if (r == 0) {
        j->out_n[0] = fh->handle_type;
        j->out_n[1] = mount_id;
        j->outlen = fh->handle_bytes;
        j->out = malloc(fh->handle_bytes ? fh->handle_bytes : 1);
        if (j->out) memcpy(j->out, fh->f_handle, fh->handle_bytes);
        else {
          r = -1;
          errno = ENOMEM;
        }
      }
      free(fh);
      break;
    }
    case OP_OPEN_BY_HANDLE: {
      j->syscall = "open_by_handle_at";
      if (j->buflen > MAX_HANDLE_SZ) {
        errno = EINVAL;
        break;
      }
      struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
      if (!fh) {
        errno = ENOMEM;
        break;
      }
      fh->handle_bytes = (unsigned)j->buflen;
      fh->handle_type = (int)j->n[0];
      memcpy(fh->f_handle, j->buf, j->buflen);
      r = open_by_handle_at(j->fd[0], fh, (int)j->n[1] | O_CLOEXEC);
      free(fh);
      break;
    }
    case OP_FSYNC:
      j->syscall = "fsync";
      r = fsync(j->fd[0]);
      break;
    case OP_FDATASYNC:
      j->syscall = "fdatasync";
      r = fdatasync(j->fd[0]);
      break;
    case OP_CLOSE:
      j->syscall = "close";
      r = close(j->fd[0]);
      break;
    case OP_CLOSE_MANY: {
      /* Every descriptor is closed whatever the others do; ret counts the failures (EBADF: a bug upstream). */
      j->syscall = "close";
      const int32_t *fds = j->buf;
      long failed = 0;
      for (size_t i = 0; i < j->buflen / sizeof *fds; i++)
        if (close(fds[i]) != 0 && errno != EINTR) failed++;
      r = failed;
      break;
    }
    case OP_IN_DIR:
      gn_run_in_dir(j);
      return;
    case OP_RENAME_IN:
      gn_run_rename_in(j);
      return;
    case OP_SYNC_IN:
      gn_run_sync_in(j);
      return;
    case OP_ACCESS_OF:
      gn_run_access_of(j);
      return;
    case OP_SETATTR_OF:
      gn_run_setattr_of(j);
      return;
    case OP_STAT_OF:
      gn_run_stat_of(j);
      return;
    case OP_LOOKUP_IN:
      gn_run_lookup_in(j);
      return;
    case OP_READLINK_OF:
      gn_run_readlink_of(j);
      return;
    case OP_READDIR_OF:
      gn_run_readdir_of(j);
      return;
    case OP_STAT_NAMES:
      gn_run_stat_names(j);
      return;
    case OP_PWRITE_AS:
      gn_run_pwrite_as(j);
      return;
    case OP_PREAD_AS:
      gn_run_pread_as(j);
      return;
    case OP_FTRUNCATE_AS:
      gn_run_ftruncate_as(j);
      return;
    case OP_WHOAMI: {
      /* Tests: the identity this thread has while it runs the caller's job. */
      j->syscall = "setfsuid";
      gid_t g[GN_MAX_GROUPS];
      int n = (int)syscall(SYS_getgroups, GN_MAX_GROUPS, g);
      j->out_n[0] = (uid_t)syscall(SYS_setfsuid, (uid_t)-1);
      j->out_n[1] = (gid_t)syscall(SYS_setfsgid, (gid_t)-1);
      j->out_n[2] = n;
      j->out_n[3] = n > 0 ? (int64_t)g[0] : -1;
      r = 0;
      break;
    }
  }
  j->ret = r;
  j->err = r < 0 ? (errno ? errno : EIO) : 0;
}
