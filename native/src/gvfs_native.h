/*
 * gvfs_native: the system calls Node lacks, run on our own worker threads
 * under the caller's file-system credentials.
 *
 * Why this is ours: Node has no openat/openat2, mknod, renameat2 or statx
 * with nanoseconds on a descriptor, and no way to act as another user for
 * one call. No maintained npm package combines per-thread credentials
 * (setfsuid/setfsgid/setgroups as raw syscalls, which change only the
 * calling thread) with openat2 confinement; the ones that switch identity
 * use glibc's wrappers, which change every thread of the process at once
 * (glibc broadcasts set*id to all threads), so one caller's identity would
 * leak into every other call in flight, libuv's own threads included.
 * nfs-ganesha's FSAL_VFS does the same thing in C.
 *
 * Contract:
 *  - every call is queued to the pool and settles a promise on the JS thread
 *    (napi_threadsafe_function); the event loop never blocks on a syscall;
 *  - a worker takes the caller's fsuid, fsgid and supplementary groups for
 *    exactly one syscall (or one short sequence, see ops.c) and restores the
 *    process's own before it takes the next job; if it cannot restore them
 *    the process aborts rather than run another caller's call as the wrong
 *    user;
 *  - workers have their own umask (0, after unshare(CLONE_FS)): the mode a
 *    caller asks for is the mode the kernel gets (the NFS client applied
 *    its umask already), default ACLs still apply;
 *  - errors reject with a Node-style Error: code ("EACCES"), errno
 *    (negative), syscall.
 */
#ifndef GVFS_NATIVE_H
#define GVFS_NATIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <node_api.h>

#define GN_MAX_GROUPS 256
#define GN_NSTR 4
#define GN_NFD 2
#define GN_NINT 12

typedef struct {
  uid_t uid;
  gid_t gid;
  int ngroups;
  gid_t groups[GN_MAX_GROUPS];
} gn_creds;

typedef enum {
  OP_OPENAT2,
  OP_MKNODAT,
  OP_MKDIRAT,
  OP_SYMLINKAT,
  OP_READLINKAT,
  OP_LINKAT,
  OP_UNLINKAT,
  OP_RENAMEAT2,
  OP_FCHOWNAT,
  OP_FCHMODAT,
  OP_UTIMENSAT,
  OP_STATX,
  OP_FACCESSAT,
  OP_ACCESSMASK,
  OP_NAME_TO_HANDLE,
  OP_OPEN_BY_HANDLE,
  OP_FSYNC,
  OP_FDATASYNC,
  OP_CLOSE,
  OP_WHOAMI,
  /* One trip per NFS call (dirops.c): these switch identity themselves. */
  OP_IN_DIR,
  OP_RENAME_IN,
  OP_SYNC_IN,
  OP_ACCESS_OF,
  OP_SETATTR_OF,
  /* Reads by descriptor and name (lookups.c). */
  OP_STAT_OF,
  OP_LOOKUP_IN,
  OP_READLINK_OF,
  OP_READDIR_OF,
  OP_STAT_NAMES,
  /* Data changes as the caller (the kernel clears set-ID bits). */
  OP_PWRITE_AS,
  OP_PREAD_AS,
  OP_FTRUNCATE_AS,
  /* Descriptors closed in one job (the export's retired descriptors, gathered). */
  OP_CLOSE_MANY,
} gn_op;

/* What OP_IN_DIR does in the directory (n[2]). */
typedef enum { IN_CREATE, IN_MKDIR, IN_SYMLINK, IN_MKNOD, IN_UNLINK } gn_in_kind;

/* Which statx results a job filled (j->have bits) and what they describe. */
enum { SX_OBJ = 0, SX_DIR = 1, SX_DIR2 = 2, SX_DST = 3, SX_PRE = 4, GN_NSX = 5 };

typedef struct gn_job {
  gn_op op;
  gn_creds cred;
  int fd[GN_NFD];
  char *s[GN_NSTR];
  int64_t n[GN_NINT];
  void *buf;
  size_t buflen;
  /* results */
  long ret;
  int err;
  const char *syscall;
  struct statx stx;
  struct statx sx[GN_NSX];
  unsigned have; /* bit i: sx[i] is filled */
  char *out;
  size_t outlen;
  int64_t out_n[4];
  /* OP_STAT_NAMES: one statx per name (xok[i]: 0, or the errno of that name); OP_READDIR_OF: inos */
  struct statx *xs;
  int *xok;
  uint64_t *inos;
  size_t nx;
  napi_ref bufref; /* buf borrowed from a JS Buffer (not copied, not ours to free) */
  /*
   * A second step, run on the sync lane (pool.c) once this one returns, and
   * the descriptors it takes over (it closes them; -1: none). Set by a job
   * whose change must be made durable before it completes (dirops.c).
   */
  void (*then)(struct gn_job *j);
  int keep[2];
  /* completion */
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
  struct gn_job *next;
} gn_job;

/* pool.c */
int gn_pool_start(int nthreads);
void gn_pool_submit(gn_job *j);
int gn_pool_threads(void);
int gn_private_umask(void);
void gn_job_free(gn_job *j);
const gn_creds *gn_home(void);

/* The identity switch for jobs that change identity part-way (dirops.c). */
int gn_become(const gn_creds *c);
void gn_restore(const gn_creds *c);
int gn_switches_itself(gn_op op);

/* ops.c: runs on a worker, with the caller's credentials in force */
void gn_run(gn_job *j);
long gn_openat2(int dirfd, const char *path, int flags, mode_t mode, uint64_t resolve);

/* lookups.c: open beneath the root however long the path; the read-only jobs and the writes as the caller */
int gn_open_beneath(int rootfd, const char *rel, int flags);
void gn_run_stat_of(gn_job *j);
void gn_run_lookup_in(gn_job *j);
void gn_run_readlink_of(gn_job *j);
void gn_run_readdir_of(gn_job *j);
void gn_run_stat_names(gn_job *j);
void gn_run_pwrite_as(gn_job *j);
void gn_run_pread_as(gn_job *j);
void gn_run_ftruncate_as(gn_job *j);

/* dirops.c: runs on a worker as the server; switches to the caller for the change only */
void gn_run_in_dir(gn_job *j);
void gn_run_rename_in(gn_job *j);
void gn_run_sync_in(gn_job *j);
void gn_run_access_of(gn_job *j);
void gn_run_setattr_of(gn_job *j);

/* OP_SETATTR_OF's n[2] bits: what to change. */
enum { SA_CHOWN = 1, SA_MODE = 2, SA_TIMES = 4, SA_TIMES_AS_SERVER = 8 };
int gn_have_openat2(void);

/* fuse_ll.c: the libfuse 3 low-level binding, as exports.fuse. */
void gn_fuse_ll_init(napi_env env, napi_value exports);
void gn_set_walk_only(int on);

#endif
