/*
 * libfuse 3's low-level API, handed to JavaScript request by request.
 *
 * Why this is ours: no maintained Node binding of the libfuse 3 low-level
 * API exists (the npm FUSE bindings wrap libfuse 2's high-level, path-based
 * API, which hides the caller's uid/gid/pid, gives every name of a
 * hard-linked file its own kernel inode, keeps times in milliseconds and
 * cannot send the kernel invalidation notices). This file is the smallest
 * layer that gets all of that: it forwards each request, copies nothing it
 * need not, and leaves every decision to the TypeScript front end
 * (src/frontends/fuse/lowlevel-*.ts).
 *
 * Threads:
 *  - requests are read on the JS thread's own event loop: /dev/fuse is
 *    non-blocking and watched by a uv_poll handle, and each readable turn
 *    reads what is queued (fuse_session_receive_buf / process_buf, a few
 *    per turn); each op callback copies its arguments into an ll_req and
 *    queues it to JS through the napi_threadsafe_function, delivered in the
 *    loop's next turn, so many requests are in flight at once. No reader
 *    thread: a request wakes the one thread that answers it (a reader
 *    thread cost each request a second wake-up, on an idle machine a
 *    sleeping CPU woken to hand it over);
 *  - JS answers later with fuse.reply*(req, ...), on the JS thread (a reply
 *    is one writev on /dev/fuse);
 *  - notifications (inval_inode) run on a short-lived thread of their
 *    own, never on the JS thread (which reads the requests). There is no
 *    inval_entry: the kernel's d_invalidate of a directory's entry takes the
 *    directory's inode lock, which a LOOKUP/CREATE/RENAME in that directory
 *    holds while it waits for our answer (the same kill -9 hazard as page
 *    locks, below); names expire by their entry timeout instead.
 *  - inval_inode invalidates ATTRIBUTES only (offset -1), never pages: to
 *    drop a page the kernel must lock it, and a page is locked while a READ
 *    or WRITE of it waits for our answer. Were this process killed then
 *    (kill -9), the notifying thread would sleep uninterruptibly on a lock
 *    only our dead JS thread could release, keep /dev/fuse open, and so the
 *    connection would never be aborted: every caller hung for good. The
 *    kernel drops stale pages itself (FUSE_CAP_AUTO_INVAL_DATA) when the
 *    attributes it fetches next show another size or mtime, in the
 *    caller's context, where waiting on a page lock is safe.
 *  - unmount runs on a thread too (fusermount3 / umount2 can block).
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "gvfs_native.h"

#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fuse.h>
#include <sys/mount.h>
#include <sys/uio.h>
#include <sys/wait.h>

extern char **environ;

/* Offsets and sizes cross to JS as doubles: exact up to 2^53, EFBIG beyond (the backend interface takes numbers). */
#define MAX_EXACT ((uint64_t)1 << 53)

typedef enum {
  LL_LOOKUP, LL_FORGET, LL_GETATTR, LL_SETATTR, LL_READLINK, LL_MKNOD, LL_MKDIR, LL_UNLINK, LL_RMDIR,
  LL_SYMLINK, LL_RENAME, LL_LINK, LL_OPEN, LL_READ, LL_WRITE, LL_FLUSH, LL_RELEASE, LL_FSYNC, LL_OPENDIR,
  LL_READDIR, LL_RELEASEDIR, LL_FSYNCDIR, LL_STATFS, LL_ACCESS, LL_CREATE, LL_FALLOCATE, LL_READDIRPLUS,
  /* Not requests: the loop ended (unmounted from outside, or by us); a notification or unmount finished. */
  LL_EXITED, LL_DONE, LL_REPLIED,
} ll_op;

static const char *const OP_NAMES[] = {
    "lookup", "forget", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
    "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir",
    "readdir", "releasedir", "fsyncdir", "statfs", "access", "create", "fallocate", "readdirplus",
    "exited", "done", "replied",
};

/* Threads per mount answering READs from local files (see replyFds): enough to keep a disk busy. */
#define FD_REPLIERS 3

struct fd_job;

typedef struct ll_session {
  struct fuse_session *se;
  napi_threadsafe_function tsfn;
  /* /dev/fuse watched on the JS thread's loop (NULL once the loop ended), and the buffer requests are read into. */
  uv_poll_t *poll;
  struct fuse_buf fbuf;
  /* Where it is mounted (our unmount goes by path: see unmount_lazily), and /dev/null, opened at mount for it. */
  char *mountpoint;
  int devnull;
  /* The device of the mount we made there (statx at mount): what unmount_lazily checks is still there. */
  unsigned dev_major, dev_minor;
  int have_dev;
  unsigned max_write, max_read, max_readahead;
  /* Requests queued to JS and not yet answered, notification threads running: destroy waits for both. */
  int64_t outstanding;
  int64_t notifying;
  int unmounting, destroyed, destroy_wanted;
  /* READ answers from local files (replyFds): their own threads and queue, started on first use. */
  pthread_mutex_t rq_lock;
  pthread_cond_t rq_cond;
  struct fd_job *rq_head, *rq_tail;
  pthread_t repliers[FD_REPLIERS];
  int nrepliers, rq_stop;
  /* Passthrough (see "passthrough" below): asked for at mount; agreed in INIT; the INIT request being answered. */
  int want_passthrough, passthrough;
  uint64_t init_unique;
  int init_offered;
} ll_session;

typedef struct {
  ll_op op;
  fuse_req_t req;
  uint32_t uid, gid, pid, umask;
  uint64_t ino, ino2, fh, nlookup;
  char *name, *name2;
  uint64_t off, size;
  uint32_t flags, mode;
  uint64_t rdev;
  int to_set, has_fh, datasync;
  struct stat attr;
  char *data;
  size_t datalen;
  /* LL_DONE */
  napi_deferred deferred;
  int result;
} ll_req;

static ll_session *sess_of(fuse_req_t req) {
  return fuse_req_userdata(req);
}

static void req_free(ll_req *r) {
  free(r->name);
  free(r->name2);
  free(r->data);
  free(r);
}

/* Queue to JS (delivered in the loop's next turn). Unbounded queue: never blocks. */
static void post(ll_session *s, ll_req *r) {
  if (r->req) __atomic_fetch_add(&s->outstanding, 1, __ATOMIC_ACQ_REL);
  if (napi_call_threadsafe_function(s->tsfn, r, napi_tsfn_nonblocking) != napi_ok) {
    if (r->req) {
      __atomic_fetch_sub(&s->outstanding, 1, __ATOMIC_ACQ_REL);
      fuse_reply_err(r->req, EIO);
    }
    req_free(r);
  }
}

static ll_req *new_req(ll_op op, fuse_req_t req, fuse_ino_t ino) {
  ll_req *r = calloc(1, sizeof *r);
  if (!r) {
    fuse_reply_err(req, ENOMEM);
    return NULL;
  }
  r->op = op;
  r->req = req;
  r->ino = ino;
  const struct fuse_ctx *c = fuse_req_ctx(req);
  r->uid = c->uid;
  r->gid = c->gid;
  r->pid = (uint32_t)c->pid;
  r->umask = c->umask;
  return r;
}

static int dup_name(ll_req *r, char **dst, const char *src) {
  *dst = strdup(src);
  if (*dst) return 1;
  fuse_reply_err(r->req, ENOMEM);
  req_free(r);
  return 0;
}

#define REQ(op, ino)                     \
  ll_req *r = new_req(op, req, ino);     \
  if (!r) return;
#define FI(fi)                           \
  if (fi) {                              \
    r->fh = (fi)->fh;                    \
    r->flags = (uint32_t)(fi)->flags;    \
    r->has_fh = 1;                       \
  }

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  ll_session *s = userdata;
  conn->max_write = s->max_write;
  /* Must equal the max_read mount option (libfuse checks). */
  conn->max_read = s->max_read;
  conn->max_readahead = s->max_readahead;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  /* open() gets O_TRUNC: one SETATTR less per truncating open. */
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  /* The kernel drops a file's pages when fresh attributes show another size or mtime (close-to-open). */
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  /* Write-behind is ours (open-files.ts): the kernel's writeback cache would change when errors surface. */
  conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
  /* Requests are read into memory (no splice); answers from local files may be spliced (replyFds). No page stealing. */
  conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_MOVE);
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  REQ(LL_LOOKUP, parent);
  if (dup_name(r, &r->name, name)) post(sess_of(req), r);
}

static void forget_one(ll_session *s, fuse_ino_t ino, uint64_t n) {
  ll_req *r = calloc(1, sizeof *r);
  if (!r) return; /* lost: the node stays in the table (a leak, never a wrong answer) */
  r->op = LL_FORGET;
  r->ino = ino;
  r->nlookup = n;
  post(s, r);
}

/* FORGET has no reply to wait for: answered here, counted down in JS. */
static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  ll_session *s = sess_of(req);
  forget_one(s, ino, nlookup);
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  ll_session *s = sess_of(req);
  for (size_t i = 0; i < count; i++) forget_one(s, forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  REQ(LL_GETATTR, ino);
  FI(fi);
  post(sess_of(req), r);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size > MAX_EXACT) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  REQ(LL_SETATTR, ino);
  FI(fi);
  r->attr = *attr;
  r->to_set = to_set;
  post(sess_of(req), r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  REQ(LL_READLINK, ino);
  post(sess_of(req), r);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  REQ(LL_MKNOD, parent);
  r->mode = mode;
  r->rdev = rdev;
  if (dup_name(r, &r->name, name)) post(sess_of(req), r);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  REQ(LL_MKDIR, parent);
  r->mode = mode;
  if (dup_name(r, &r->name, name)) post(sess_of(req), r);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  REQ(LL_UNLINK, parent);
  if (dup_name(r, &r->name, name)) post(sess_of(req), r);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  REQ(LL_RMDIR, parent);
  if (dup_name(r, &r->name, name)) post(sess_of(req), r);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  REQ(LL_SYMLINK, parent);
  if (dup_name(r, &r->name, name) && dup_name(r, &r->name2, link)) post(sess_of(req), r);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname,
                      unsigned int flags) {
  REQ(LL_RENAME, parent);
  r->ino2 = newparent;
  r->flags = flags;
  if (dup_name(r, &r->name, name) && dup_name(r, &r->name2, newname)) post(sess_of(req), r);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  REQ(LL_LINK, ino);
  r->ino2 = newparent;
  if (dup_name(r, &r->name, newname)) post(sess_of(req), r);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  REQ(LL_OPEN, ino);
  FI(fi);
  post(sess_of(req), r);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if ((uint64_t)off + size > MAX_EXACT) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  REQ(LL_READ, ino);
  FI(fi);
  r->off = (uint64_t)off;
  r->size = size;
  post(sess_of(req), r);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  if ((uint64_t)off + size > MAX_EXACT) {
    fuse_reply_err(req, EFBIG);
    return;
  }
  REQ(LL_WRITE, ino);
  FI(fi);
  r->off = (uint64_t)off;
  /* The kernel's buffer is gone when this returns: the one copy, handed to JS as an external Buffer. */
  r->data = malloc(size ? size : 1);
  if (!r->data) {
    fuse_reply_err(req, ENOMEM);
    req_free(r);
    return;
  }
  memcpy(r->data, buf, size);
  r->datalen = size;
  post(sess_of(req), r);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  REQ(LL_FLUSH, ino);
  FI(fi);
  post(sess_of(req), r);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  REQ(LL_RELEASE, ino);
  FI(fi);
  post(sess_of(req), r);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  REQ(LL_FSYNC, ino);
  FI(fi);
  r->datasync = datasync;
  post(sess_of(req), r);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  REQ(LL_OPENDIR, ino);
  FI(fi);
  post(sess_of(req), r);
}

static void ll_readdir_common(ll_op op, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  REQ(op, ino);
  FI(fi);
  r->off = (uint64_t)off;
  r->size = size;
  post(sess_of(req), r);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_common(LL_READDIR, req, ino, size, off, fi);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_common(LL_READDIRPLUS, req, ino, size, off, fi);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  REQ(LL_RELEASEDIR, ino);
  FI(fi);
  post(sess_of(req), r);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  REQ(LL_FSYNCDIR, ino);
  FI(fi);
  r->datasync = datasync;
  post(sess_of(req), r);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  REQ(LL_STATFS, ino);
  post(sess_of(req), r);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  REQ(LL_ACCESS, ino);
  r->mode = (uint32_t)mask;
  post(sess_of(req), r);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  REQ(LL_CREATE, parent);
  FI(fi);
  r->mode = mode;
  if (dup_name(r, &r->name, name)) post(sess_of(req), r);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  REQ(LL_FALLOCATE, ino);
  FI(fi);
  r->mode = (uint32_t)mode;
  r->off = (uint64_t)offset;
  r->size = (uint64_t)length;
  post(sess_of(req), r);
}

static const struct fuse_lowlevel_ops OPS = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .releasedir = ll_releasedir,
    .fsyncdir = ll_fsyncdir,
    .statfs = ll_statfs,
    .access = ll_access,
    .create = ll_create,
    .fallocate = ll_fallocate,
    .readdirplus = ll_readdirplus,
};

/* ------------------------------------------------------------------ JS side */

static void set_num(napi_env env, napi_value o, const char *k, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  napi_set_named_property(env, o, k, v);
}

static void set_big(napi_env env, napi_value o, const char *k, int64_t x) {
  napi_value v;
  napi_create_bigint_int64(env, x, &v);
  napi_set_named_property(env, o, k, v);
}

static void set_str(napi_env env, napi_value o, const char *k, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, k, v);
}

static int64_t ts_ns(struct timespec t) {
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void free_data(napi_env env, void *data, void *hint) {
  free(data);
}

static void stop_repliers(ll_session *s);

/* Destroy once the loop has ended, no request is unanswered and no notification runs. */
static void maybe_destroy(ll_session *s) {
  if (!s->destroy_wanted || s->destroyed) return;
  if (__atomic_load_n(&s->outstanding, __ATOMIC_ACQUIRE) > 0 || __atomic_load_n(&s->notifying, __ATOMIC_ACQUIRE) > 0) return;
  s->destroyed = 1;
  stop_repliers(s); /* idle now (nothing outstanding); they must be gone before libfuse drops their pipes' key */
  fuse_session_destroy(s->se);
  s->se = NULL;
  if (s->devnull >= 0) close(s->devnull); /* not unmounted by us (ended from outside) */
  s->devnull = -1;
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
}

/* On the JS thread: one request → handler({op, req, uid, gid, pid, ...}). */
static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  ll_req *r = data;
  ll_session *s = context;
  if (!env) {
    /* Environment going away: nobody will answer. */
    if (r->req) fuse_reply_err(r->req, EIO);
    req_free(r);
    return;
  }
  if (r->op == LL_DONE || r->op == LL_REPLIED) {
    napi_value v;
    napi_create_int32(env, r->result, &v);
    napi_resolve_deferred(env, r->deferred, v);
    /* A READ answered from local files was counted out only now: after its answer was written. */
    if (r->op == LL_REPLIED && r->result <= 0) __atomic_fetch_sub(&s->outstanding, 1, __ATOMIC_ACQ_REL);
    req_free(r);
    maybe_destroy(s);
    return;
  }
  napi_value o, v;
  napi_create_object(env, &o);
  set_str(env, o, "op", OP_NAMES[r->op]);
  if (r->req) {
    napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)r->req, &v);
    napi_set_named_property(env, o, "req", v);
    set_num(env, o, "uid", r->uid);
    set_num(env, o, "gid", r->gid);
    set_num(env, o, "pid", r->pid);
    set_num(env, o, "umask", r->umask);
  }
  /* Node ids are ours (a counter): exact as doubles. */
  set_num(env, o, "ino", (double)r->ino);
  if (r->has_fh) {
    set_num(env, o, "fh", (double)r->fh);
    set_num(env, o, "flags", r->flags);
  }
  switch (r->op) {
    case LL_FORGET:
      set_num(env, o, "nlookup", (double)r->nlookup);
      break;
    case LL_SETATTR:
      set_num(env, o, "toSet", r->to_set);
      set_num(env, o, "mode", r->attr.st_mode);
      set_num(env, o, "uid2", r->attr.st_uid);
      set_num(env, o, "gid2", r->attr.st_gid);
      set_num(env, o, "size", (double)r->attr.st_size);
      set_big(env, o, "atimeNs", ts_ns(r->attr.st_atim));
      set_big(env, o, "mtimeNs", ts_ns(r->attr.st_mtim));
      break;
    case LL_RENAME:
    case LL_LINK:
      set_num(env, o, "ino2", (double)r->ino2);
      if (r->op == LL_RENAME) set_num(env, o, "renameFlags", r->flags);
      break;
    case LL_READ:
    case LL_READDIR:
    case LL_READDIRPLUS:
    case LL_FALLOCATE:
      set_num(env, o, "off", (double)r->off);
      set_num(env, o, "size", (double)r->size);
      break;
    case LL_WRITE: {
      set_num(env, o, "off", (double)r->off);
      napi_value b;
      if (napi_create_external_buffer(env, r->datalen, r->data, free_data, NULL, &b) == napi_ok) r->data = NULL;
      else napi_create_buffer_copy(env, r->datalen, r->data, NULL, &b);
      napi_set_named_property(env, o, "data", b);
      break;
    }
    case LL_FSYNC:
    case LL_FSYNCDIR:
      set_num(env, o, "datasync", r->datasync);
      break;
    default:
      break;
  }
  if (r->op == LL_MKNOD || r->op == LL_MKDIR || r->op == LL_CREATE || r->op == LL_ACCESS || r->op == LL_FALLOCATE) set_num(env, o, "mode", r->mode);
  if (r->op == LL_MKNOD) set_num(env, o, "rdev", (double)r->rdev);
  if (r->name) set_str(env, o, "name", r->name);
  if (r->name2) set_str(env, o, r->op == LL_SYMLINK ? "target" : "name2", r->name2);
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_status st = napi_call_function(env, undef, js_cb, 1, &o, NULL);
  if (st != napi_ok && r->req) {
    /* The handler threw synchronously: answer so the caller is not left waiting. */
    napi_value ex;
    napi_get_and_clear_last_exception(env, &ex);
    fuse_reply_err(r->req, EIO);
    __atomic_fetch_sub(&s->outstanding, 1, __ATOMIC_ACQ_REL);
    maybe_destroy(s); /* it may have been the last unanswered request of a session waiting to be destroyed */
  }
  req_free(r);
}

/* ------------------------------------------------------------------ passthrough */

/*
 * FUSE passthrough (Linux 6.9+): a file opened with FOPEN_PASSTHROUGH and a
 * backing file registered on /dev/fuse is read (and mapped) by the kernel
 * straight from that file: no READ reaches us, and the page cache is the
 * backing file's own. A read-only mount hands over files the disk cache
 * holds whole (which opens pass through is the front end's to decide:
 * src/frontends/fuse/passthrough.ts).
 *
 * libfuse 3.14 (Debian 12) predates it: its INIT answer cannot ask for
 * FUSE_PASSTHROUGH (a flags2 bit) nor say max_stack_depth, and its
 * fuse_open_out has no backing_id. So the session reads and writes
 * /dev/fuse through libfuse's custom-io hooks, which let us add the two
 * fields to the one INIT answer, and an open that passes through is
 * answered with a fuse_open_out built here. The layouts are the kernel's
 * (include/uapi/linux/fuse.h, protocol 7.40), fixed by its ABI.
 */
#define PT_INIT_EXT (1u << 30)       /* fuse_init_in/out.flags: flags2 is valid */
#define PT_FLAGS2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH = 1ULL << 37, in flags2 */
#define PT_FOPEN_DIRECT_IO (1u << 0)
#define PT_FOPEN_NOFLUSH (1u << 5)
#define PT_FOPEN_PASSTHROUGH (1u << 7)
#define PT_INIT_OUT_FLAGS 12         /* byte offsets in fuse_init_out */
#define PT_INIT_OUT_FLAGS2 32
#define PT_INIT_OUT_STACK_DEPTH 36
#define PT_INIT_IN_FLAGS 12          /* and in fuse_init_in */
#define PT_INIT_IN_FLAGS2 16

static ll_session *get_session(napi_env env, napi_value v);
static double get_double(napi_env env, napi_value v);
static napi_value ret_int(napi_env env, int x);

struct pt_backing_map { /* struct fuse_backing_map */
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

static uint32_t get32(const void *p, size_t off) {
  uint32_t v;
  memcpy(&v, (const char *)p + off, 4);
  return v;
}

static void put32(void *p, size_t off, uint32_t v) {
  memcpy((char *)p + off, &v, 4);
}

/* Every request is read here (on the JS thread): the INIT one is noted, with whether the kernel offers passthrough. */
static ssize_t io_read(int fd, void *buf, size_t len, void *userdata) {
  ll_session *s = userdata;
  ssize_t n = read(fd, buf, len);
  if (n >= (ssize_t)(sizeof(struct fuse_in_header) + PT_INIT_IN_FLAGS2 + 4)) {
    const struct fuse_in_header *h = buf;
    if (h->opcode == FUSE_INIT && s->want_passthrough) {
      uint32_t flags = get32(h + 1, PT_INIT_IN_FLAGS), flags2 = get32(h + 1, PT_INIT_IN_FLAGS2);
      s->init_offered = (flags & PT_INIT_EXT) && (flags2 & PT_FLAGS2_PASSTHROUGH);
      __atomic_store_n(&s->init_unique, h->unique, __ATOMIC_RELEASE);
    }
  }
  return n;
}

/* Every answer is written here: the INIT answer gets passthrough added when the kernel offered it and we want it. */
static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata) {
  ll_session *s = userdata;
  if (fd < 0) {
    /* No descriptor (a failed mount's clean-up): the request is gone, as an interrupted one is (ENOENT, which libfuse does not print). */
    errno = ENOENT;
    return -1;
  }
  uint64_t u = __atomic_load_n(&s->init_unique, __ATOMIC_ACQUIRE);
  if (u && count == 2 && iov[0].iov_len >= sizeof(struct fuse_out_header) &&
      ((struct fuse_out_header *)iov[0].iov_base)->unique == u) {
    __atomic_store_n(&s->init_unique, 0, __ATOMIC_RELEASE);
    struct fuse_out_header *h = iov[0].iov_base;
    if (h->error == 0 && s->init_offered && iov[1].iov_len >= PT_INIT_OUT_STACK_DEPTH + 4 && iov[1].iov_len <= 256) {
      char out[256];
      memcpy(out, iov[1].iov_base, iov[1].iov_len);
      put32(out, PT_INIT_OUT_FLAGS, get32(out, PT_INIT_OUT_FLAGS) | PT_INIT_EXT);
      put32(out, PT_INIT_OUT_FLAGS2, get32(out, PT_INIT_OUT_FLAGS2) | PT_FLAGS2_PASSTHROUGH);
      /* Backing files sit on a plain file system: one level of stacking below us. */
      put32(out, PT_INIT_OUT_STACK_DEPTH, 1);
      struct iovec v[2] = {iov[0], {out, iov[1].iov_len}};
      ssize_t n = writev(fd, v, 2);
      if (n >= 0) s->passthrough = 1;
      return n;
    }
  }
  return writev(fd, iov, count);
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len, unsigned int flags, void *userdata) {
  (void)userdata;
  return splice(fdin, offin, fdout, offout, len, flags);
}

static const struct fuse_custom_io IO = {.read = io_read, .writev = io_writev, .splice_send = io_splice_send};

/* passthrough(session) → whether the kernel agreed to passthrough in INIT (false before INIT, or if not asked). */
static napi_value js_passthrough(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  ll_session *s = argc ? get_session(env, argv[0]) : NULL;
  napi_value v;
  napi_get_boolean(env, s && s->se && s->passthrough, &v);
  return v;
}

/* (session, x): the live session (NULL if gone or not one) and x. */
static ll_session *session_and_arg(napi_env env, napi_callback_info info, napi_value *arg) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  ll_session *s = argc == 2 ? get_session(env, argv[0]) : NULL;
  *arg = argv[1];
  return s && s->se && !s->destroyed ? s : NULL;
}

/*
 * backingOpen(session, fd) → backing id (> 0) or -errno: registers the open
 * file `fd` with the connection (the kernel takes its own reference: `fd`
 * may be closed after). Root only (CAP_SYS_ADMIN: -EPERM otherwise, as
 * without passthrough). An ioctl that does no I/O: fine on the JS thread.
 */
static napi_value js_backing_open(napi_env env, napi_callback_info info) {
  napi_value arg;
  ll_session *s = session_and_arg(env, info, &arg);
  if (!s) return ret_int(env, -EBADF);
  struct pt_backing_map m = {(int32_t)get_double(env, arg), 0, 0};
  int id = ioctl(fuse_session_fd(s->se), PT_IOC_BACKING_OPEN, &m);
  return ret_int(env, id < 0 ? -errno : id);
}

/* backingClose(session, id) → 0 or -errno. Opens already answered with `id` keep the file. */
static napi_value js_backing_close(napi_env env, napi_callback_info info) {
  napi_value arg;
  ll_session *s = session_and_arg(env, info, &arg);
  if (!s) return ret_int(env, -EBADF);
  uint32_t id = (uint32_t)get_double(env, arg);
  int r = ioctl(fuse_session_fd(s->se), PT_IOC_BACKING_CLOSE, &id);
  return ret_int(env, r < 0 ? -errno : 0);
}

/* ------------------------------------------------------------------ mount */

/* Requests read in one readable turn at most, before the loop gets to run anything else. */
#define READS_PER_TURN 16

static void free_poll(uv_handle_t *h) {
  free(h);
}

/*
 * Reading ends (on the JS thread): unmounted from outside, the connection
 * aborted, or our unmount. The handle stops watching the descriptor now,
 * before anyone closes it (libfuse's unmount and destroy do); JS hears
 * "exited".
 */
static void end_loop(ll_session *s) {
  if (!s->poll) return;
  uv_poll_stop(s->poll);
  uv_close((uv_handle_t *)s->poll, free_poll);
  s->poll = NULL;
  free(s->fbuf.mem);
  s->fbuf.mem = NULL;
  ll_req *r = calloc(1, sizeof *r);
  if (r) {
    r->op = LL_EXITED;
    post(s, r);
  }
}

/* /dev/fuse is readable: read and hand on what is queued (never blocks: the descriptor is non-blocking). */
static void on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  ll_session *s = h->data;
  if (status < 0) {
    end_loop(s);
    return;
  }
  for (int i = 0; i < READS_PER_TURN; i++) {
    if (fuse_session_exited(s->se)) {
      end_loop(s);
      return;
    }
    int res = fuse_session_receive_buf(s->se, &s->fbuf);
    if (res == -EINTR) continue;
    if (res == -EAGAIN) return;
    /* 0: unmounted (ENODEV) or exited; < 0: the device failed (libfuse printed why). */
    if (res <= 0) {
      end_loop(s);
      return;
    }
    fuse_session_process_buf(s->se, &s->fbuf);
  }
}

static int get_u64(napi_env env, napi_value v, uint64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_bigint) {
    bool lossless;
    return napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok && lossless;
  }
  if (t == napi_number) {
    double d;
    napi_get_value_double(env, v, &d);
    if (d < 0 || d > 18446744073709549568.0) return 0;
    *out = (uint64_t)d;
    return 1;
  }
  return 0;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_bigint) {
    bool lossless;
    return napi_get_value_bigint_int64(env, v, out, &lossless) == napi_ok && lossless;
  }
  if (t == napi_number) return napi_get_value_int64(env, v, out) == napi_ok;
  return 0;
}

static double get_double(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static char *get_str(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    return NULL;
  }
  return s;
}

static ll_session *get_session(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

/* Watch the session's /dev/fuse on this environment's loop (non-blocking reads); NULL if that cannot be. */
static uv_poll_t *start_poll(napi_env env, ll_session *s) {
  uv_loop_t *loop = NULL;
  int fd = fuse_session_fd(s->se);
  int fl = fcntl(fd, F_GETFL);
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) return NULL;
  uv_poll_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  if (uv_poll_init(loop, p, fd) != 0) {
    free(p);
    return NULL;
  }
  p->data = s;
  if (uv_poll_start(p, UV_READABLE, on_readable) != 0) {
    uv_close((uv_handle_t *)p, free_poll);
    return NULL;
  }
  return p;
}

/*
 * The device (major:minor) of the mount at the top of `path`, asking nothing of it: a stat with an empty mask
 * and AT_STATX_DONT_SYNC takes a FUSE mount's root from what the kernel holds (no request, so the JS thread,
 * which answers them, may call it; so may a dead or hung mount's owner). 0 or -errno.
 */
static int dev_at(const char *path, unsigned *maj, unsigned *min) {
  struct statx sx;
  if (statx(AT_FDCWD, path, AT_STATX_DONT_SYNC | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, 0, &sx) != 0) return -errno;
  *maj = sx.stx_dev_major;
  *min = sx.stx_dev_minor;
  return 0;
}

/* mount(mountpoint, options "-o" string (with max_read=maxRead), maxWrite, maxRead, maxReadahead, handler, debug, passthrough) → session */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, options, maxWrite, maxRead, maxReadahead, handler[, debug])");
    return NULL;
  }
  char *mp = get_str(env, argv[0]);
  char *opts = get_str(env, argv[1]);
  bool debug = false;
  if (argc > 6) napi_get_value_bool(env, argv[6], &debug);
  bool want_pt = false;
  if (argc > 7) napi_get_value_bool(env, argv[7], &want_pt);
  ll_session *s = calloc(1, sizeof *s);
  if (s) {
    pthread_mutex_init(&s->rq_lock, NULL);
    pthread_cond_init(&s->rq_cond, NULL);
  }
  if (!mp || !opts || !s) {
    free(mp);
    free(opts);
    free(s);
    napi_throw_type_error(env, NULL, "mountpoint and options must be strings without NUL");
    return NULL;
  }
  s->max_write = (unsigned)get_double(env, argv[2]);
  s->max_read = (unsigned)get_double(env, argv[3]);
  s->max_readahead = (unsigned)get_double(env, argv[4]);
  s->want_passthrough = want_pt;
  s->mountpoint = strdup(mp);
  s->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  char *av[5] = {"gvfs", "-o", opts, debug ? "-d" : NULL, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(debug ? 4 : 3, av);
  napi_value name;
  napi_create_string_utf8(env, "gvfs_fuse_ll", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, s, call_js, &s->tsfn) != napi_ok) {
    free(mp);
    free(opts);
    free(s);
    napi_throw_error(env, NULL, "fuse: cannot create the request channel");
    return NULL;
  }
  s->se = fuse_session_new(&args, &OPS, sizeof OPS, s);
  fuse_opt_free_args(&args);
  const char *fail = NULL;
  if (!s->se) fail = "fuse_session_new failed (bad mount options?)";
  else if (fuse_session_mount(s->se, mp) != 0) fail = "fuse_session_mount failed (see stderr)";
  /* /dev/fuse read and written through io_read / io_writev (see passthrough): the same descriptor, before INIT. */
  else if (fuse_session_custom_io(s->se, &IO, fuse_session_fd(s->se)) != 0) {
    fuse_session_unmount(s->se);
    fail = "fuse_session_custom_io failed";
  }
  else if (!(s->poll = start_poll(env, s))) {
    fuse_session_unmount(s->se);
    fail = "cannot watch /dev/fuse on the event loop";
  }
  free(mp);
  free(opts);
  if (!fail) s->have_dev = dev_at(s->mountpoint, &s->dev_major, &s->dev_minor) == 0;
  if (fail) {
    if (s->se) fuse_session_destroy(s->se);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    free(s->mountpoint);
    if (s->devnull >= 0) close(s->devnull);
    free(s);
    napi_throw_error(env, "EIO", fail);
    return NULL;
  }
  napi_value ext;
  /* The session struct lives for the process (a few hundred bytes per mount; freed only with the addon). */
  napi_create_external(env, s, NULL, NULL, &ext);
  return ext;
}

typedef struct {
  ll_session *s;
  int kind; /* 0 inval_inode, 2 unmount */
  uint64_t ino;
  napi_deferred deferred;
} notify_job;

/*
 * Our unmount, lazy (MNT_DETACH as root, fusermount3 -u -z otherwise: works
 * with a dead backend and busy files), without giving up /dev/fuse's
 * descriptor number. libfuse's fuse_session_unmount closes the descriptor
 * first, while answers to requests still outstanding (the JS thread's, the
 * READ repliers') and passthrough ioctls go on using its number: reused by
 * the next open() of the process (a disk-cache block file), such an answer
 * was written into that file. So the fuse device is swapped for /dev/null
 * at the same number (dup3: the last reference to the connection goes, and
 * the kernel aborts it, as the close did: callers waiting get an error), the
 * mount is detached by path, and the number is closed only by
 * fuse_session_destroy, once nothing is outstanding (maybe_destroy).
 * Returns 0, 1 when the mount at the path is not ours any more (left alone), or -errno.
 */
static int unmount_lazily(ll_session *s) {
  int fd = fuse_session_fd(s->se);
  /* Already aborted or unmounted (as libfuse checks): what is mounted at that path now is not ours. */
  struct pollfd p = {.fd = fd, .events = 0};
  int gone = poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
  /*
   * Still alive, ours may yet have been detached from outside (a busy file keeps it) and another mount made
   * at the path, or mounted on top of it: the path's top mount must be the one we made, else it is left alone
   * (ours, aborted below, goes with its last user). Checked before the abort; asks nothing of the connection.
   */
  int not_ours = 0;
  if (!gone && s->have_dev && s->mountpoint) {
    unsigned maj = 0, min = 0;
    not_ours = dev_at(s->mountpoint, &maj, &min) != 0 || maj != s->dev_major || min != s->dev_minor;
  }
  if (s->devnull >= 0) {
    if (dup3(s->devnull, fd, O_CLOEXEC) < 0) fprintf(stderr, "gvfs fuse: unmount: cannot swap /dev/fuse for /dev/null: %s\n", strerror(errno));
    close(s->devnull);
    s->devnull = -1;
  }
  if (gone) return 0;
  if (not_ours) return 1;
  if (!s->mountpoint) return -EINVAL;
  /* NOFOLLOW: a symlink put at the path since cannot turn this into another mount's detach. */
  if (umount2(s->mountpoint, MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return 0;
  /* Not mounted there any more (unmounted from outside): nothing to do. */
  if (errno == EINVAL || errno == ENOENT) return 0;
  if (errno != EPERM) return -errno;
  /* Not root: the set-uid helper, as libfuse's own unmount runs it. */
  char *argv[] = {"fusermount3", "-u", "-q", "-z", "--", s->mountpoint, NULL};
  pid_t pid;
  int e = posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ);
  if (e) return -e;
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -errno;
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static void *notify_main(void *arg) {
  notify_job *n = arg;
  ll_session *s = n->s;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  int res = 0;
  if (n->kind == 0) res = fuse_lowlevel_notify_inval_inode(s->se, n->ino, -1, 0); /* attributes only: see the top */
  else {
    /* Reading ended on the JS thread before this thread started (js_notify). */
    res = unmount_lazily(s);
  }
  /*
   * Done with the session: counted out BEFORE the JS thread hears of it, so the destroy() that follows an
   * unmount (or an answer that comes after) finds nothing notifying and frees the session. Counted out after
   * the post, a JS thread quick enough saw notifying > 0, skipped the destroy and nobody tried again: the
   * request channel stayed referenced and the process never exited. The channel stays valid for the post
   * below through this thread's own reference (taken in start_job).
   */
  __atomic_fetch_sub(&s->notifying, 1, __ATOMIC_ACQ_REL);
  ll_req *r = calloc(1, sizeof *r);
  if (r) {
    r->op = LL_DONE;
    r->deferred = n->deferred;
    r->result = res;
    post(s, r);
  }
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  free(n);
  return NULL;
}

/* Start a notification / unmount thread; its promise resolves with 0 or -errno. */
static napi_value start_job(napi_env env, notify_job *n) {
  napi_value promise;
  napi_create_promise(env, &n->deferred, &promise);
  __atomic_fetch_add(&n->s->notifying, 1, __ATOMIC_ACQ_REL);
  napi_acquire_threadsafe_function(n->s->tsfn); /* the job's own reference, released when it has posted */
  pthread_t t;
  if (pthread_create(&t, NULL, notify_main, n) != 0) {
    __atomic_fetch_sub(&n->s->notifying, 1, __ATOMIC_ACQ_REL);
    napi_release_threadsafe_function(n->s->tsfn, napi_tsfn_release);
    napi_value v;
    napi_create_int32(env, -EAGAIN, &v);
    napi_resolve_deferred(env, n->deferred, v);
    free(n);
    return promise;
  }
  pthread_detach(t);
  return promise;
}

static napi_value js_notify(napi_env env, napi_callback_info info, int kind) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  notify_job *n = calloc(1, sizeof *n);
  if (!n || argc < (kind == 2 ? 1u : 2u) || !(n->s = get_session(env, argv[0]))) {
    free(n);
    napi_throw_type_error(env, NULL, "bad arguments");
    return NULL;
  }
  if (n->s->destroy_wanted || n->s->unmounting) {
    free(n);
    napi_value promise, v;
    napi_deferred d;
    napi_create_promise(env, &d, &promise);
    napi_create_int32(env, -ENOTCONN, &v);
    napi_resolve_deferred(env, d, v);
    return promise;
  }
  n->kind = kind;
  if (kind != 2 && !get_u64(env, argv[1], &n->ino)) n->ino = 0;
  if (kind == 2) {
    n->s->unmounting = 1;
    /* No more requests read: the loop stops watching /dev/fuse before the unmount thread closes it. */
    fuse_session_exit(n->s->se);
    end_loop(n->s);
  }
  return start_job(env, n);
}

static napi_value js_inval_inode(napi_env env, napi_callback_info info) {
  return js_notify(env, info, 0);
}
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  return js_notify(env, info, 2);
}

/* destroy(session): free libfuse's session once nothing refers to it any more (after unmount or exit). */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  ll_session *s = argc ? get_session(env, argv[0]) : NULL;
  if (!s) {
    napi_throw_type_error(env, NULL, "destroy(session)");
    return NULL;
  }
  /* Normally ended already (from outside, or by unmount); never leave the handle watching a descriptor destroy closes. */
  if (s->se) end_loop(s);
  s->destroy_wanted = 1;
  maybe_destroy(s);
  return NULL;
}

/* ------------------------------------------------------------------ replies */

/* The request a reply is for; the reply ends it (libfuse frees it). */
static fuse_req_t take_req(napi_env env, napi_value v, ll_session **sp) {
  uint64_t p = 0;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, v, &p, &lossless) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "req must be the request's bigint");
    return NULL;
  }
  fuse_req_t req = (fuse_req_t)(uintptr_t)p;
  *sp = fuse_req_userdata(req);
  return req;
}

static void answered(ll_session *s) {
  __atomic_fetch_sub(&s->outstanding, 1, __ATOMIC_ACQ_REL);
  maybe_destroy(s);
}

static napi_value prop(napi_env env, napi_value o, const char *k) {
  napi_value v;
  napi_get_named_property(env, o, k, &v);
  return v;
}

static struct timespec ns_ts(napi_env env, napi_value v) {
  int64_t ns = 0;
  get_i64(env, v, &ns);
  struct timespec t;
  t.tv_sec = ns / 1000000000LL;
  t.tv_nsec = ns % 1000000000LL;
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000LL;
    t.tv_sec--;
  }
  return t;
}

/* {ino, mode, nlink, uid, gid, rdev, size, blocks, blksize, atimeNs, mtimeNs, ctimeNs} → struct stat. */
static void get_stat(napi_env env, napi_value o, struct stat *st) {
  memset(st, 0, sizeof *st);
  uint64_t u = 0;
  get_u64(env, prop(env, o, "ino"), &u);
  st->st_ino = u;
  st->st_mode = (mode_t)get_double(env, prop(env, o, "mode"));
  st->st_nlink = (nlink_t)get_double(env, prop(env, o, "nlink"));
  st->st_uid = (uid_t)get_double(env, prop(env, o, "uid"));
  st->st_gid = (gid_t)get_double(env, prop(env, o, "gid"));
  u = 0;
  get_u64(env, prop(env, o, "rdev"), &u);
  st->st_rdev = u;
  u = 0;
  get_u64(env, prop(env, o, "size"), &u);
  st->st_size = (off_t)u;
  u = 0;
  get_u64(env, prop(env, o, "blocks"), &u);
  st->st_blocks = (blkcnt_t)u;
  st->st_blksize = (blksize_t)get_double(env, prop(env, o, "blksize"));
  st->st_atim = ns_ts(env, prop(env, o, "atimeNs"));
  st->st_mtim = ns_ts(env, prop(env, o, "mtimeNs"));
  st->st_ctim = ns_ts(env, prop(env, o, "ctimeNs"));
}

/* {nodeid, attr, attrTimeout, entryTimeout} (seconds) → fuse_entry_param. */
static void get_entry(napi_env env, napi_value o, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  uint64_t u = 0;
  get_u64(env, prop(env, o, "nodeid"), &u);
  e->ino = u;
  napi_value a = prop(env, o, "attr");
  napi_valuetype t;
  napi_typeof(env, a, &t);
  if (t == napi_object) get_stat(env, a, &e->attr);
  e->attr_timeout = get_double(env, prop(env, o, "attrTimeout"));
  e->entry_timeout = get_double(env, prop(env, o, "entryTimeout"));
}

static void get_fi(napi_env env, napi_value o, struct fuse_file_info *fi) {
  memset(fi, 0, sizeof *fi);
  uint64_t u = 0;
  get_u64(env, prop(env, o, "fh"), &u);
  fi->fh = u;
  bool b = false;
  napi_value v = prop(env, o, "keepCache");
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_boolean) napi_get_value_bool(env, v, &b);
  fi->keep_cache = b;
  b = false;
  v = prop(env, o, "directIo");
  napi_typeof(env, v, &t);
  if (t == napi_boolean) napi_get_value_bool(env, v, &b);
  fi->direct_io = b;
  b = false;
  v = prop(env, o, "noFlush");
  napi_typeof(env, v, &t);
  if (t == napi_boolean) napi_get_value_bool(env, v, &b);
  fi->noflush = b;
}

static napi_value ret_int(napi_env env, int x) {
  napi_value v;
  napi_create_int32(env, x, &v);
  return v;
}

#define ARGS(n)                                           \
  size_t argc = n;                                        \
  napi_value argv[n];                                     \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);   \
  if (argc < n) {                                         \
    napi_throw_type_error(env, NULL, "missing arguments"); \
    return NULL;                                          \
  }                                                       \
  ll_session *s;                                          \
  fuse_req_t req = take_req(env, argv[0], &s);            \
  if (!req) return NULL;

/* replyErr(req, errno): errno positive; 0 = success without data. */
static napi_value js_reply_err(napi_env env, napi_callback_info info) {
  ARGS(2);
  int e = (int)get_double(env, argv[1]);
  int res = fuse_reply_err(req, e < 0 ? -e : e);
  answered(s);
  return ret_int(env, res);
}

static napi_value js_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct fuse_entry_param e;
  get_entry(env, argv[1], &e);
  int res = fuse_reply_entry(req, &e);
  answered(s);
  return ret_int(env, res);
}

static napi_value js_reply_create(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  get_entry(env, argv[1], &e);
  get_fi(env, argv[2], &fi);
  int res = fuse_reply_create(req, &e, &fi);
  answered(s);
  return ret_int(env, res);
}

static napi_value js_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct stat st;
  get_stat(env, argv[1], &st);
  int res = fuse_reply_attr(req, &st, get_double(env, argv[2]));
  answered(s);
  return ret_int(env, res);
}

/*
 * {fh, keepCache, directIo, noFlush, backingId}: with a backingId (backingOpen), the
 * open passes through to that file — reads and mmap by the kernel, and with
 * directIo reads and writes still come here, only mmap goes to the file.
 * libfuse's fuse_reply_open cannot say so: the kernel's fuse_open_out
 * (fh, open_flags, backing_id) is sent as the answer's bytes.
 */
static napi_value js_reply_open(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct fuse_file_info fi;
  get_fi(env, argv[1], &fi);
  napi_value b = prop(env, argv[1], "backingId");
  napi_valuetype t;
  napi_typeof(env, b, &t);
  if (t == napi_number) {
    struct {
      uint64_t fh;
      uint32_t open_flags;
      int32_t backing_id;
    } out = {fi.fh, PT_FOPEN_PASSTHROUGH | (fi.direct_io ? PT_FOPEN_DIRECT_IO : 0) | (fi.noflush ? PT_FOPEN_NOFLUSH : 0), (int32_t)get_double(env, b)};
    int res = fuse_reply_buf(req, (const char *)&out, sizeof out);
    answered(s);
    return ret_int(env, res);
  }
  int res = fuse_reply_open(req, &fi);
  answered(s);
  return ret_int(env, res);
}

static napi_value js_reply_buf(napi_env env, napi_callback_info info) {
  ARGS(2);
  void *p = NULL;
  size_t len = 0;
  bool isbuf = false;
  napi_is_buffer(env, argv[1], &isbuf);
  if (isbuf) napi_get_buffer_info(env, argv[1], &p, &len);
  int res = fuse_reply_buf(req, p, len);
  answered(s);
  return ret_int(env, res);
}

/*
 * READ answered from local files (the disk cache's block files), never
 * through JS memory: replyFds(req, [{fd, pos, len}, ...]) → Promise<int>.
 *
 * One of the mount's replier threads splices the extents into a pipe of
 * its own (page references: no copy) and hands that pipe to
 * fuse_reply_data, which splices it on into /dev/fuse (the one copy, into
 * the pages of the kernel's request). Filling our own pipe first is what
 * lets a failed read of a local file come back to JS with nothing sent
 * (the front end then reads the bytes another way); fuse_reply_data given
 * the files directly would answer the program EIO itself. Where a pipe
 * cannot hold the answer (not root: pipe-max-size), the thread reads the
 * extents into memory and writes that instead: still no JS memory, no
 * copy on the JS thread.
 *
 * The promise resolves with 0 (answered), -errno (the answer could not be
 * written: the request is gone all the same), or errno > 0 (a file could
 * not be read: nothing sent, the request still waits for an answer). The
 * descriptors must stay open until then. Own threads, not libuv's pool:
 * libfuse keeps a pipe per calling thread under a key of the session,
 * freed when the thread exits, so the threads end with the session.
 */
#define FD_MAX_EXTENTS 64

typedef struct fd_job {
  struct fd_job *next;
  fuse_req_t req;
  ll_req *done; /* allocated up front: the completion never fails to be posted for want of memory */
  size_t n, total;
  struct {
    int fd;
    off_t pos;
    size_t len;
  } x[FD_MAX_EXTENTS];
} fd_job;

typedef struct {
  int p[2];
  size_t cap;
  size_t refused; /* a size F_SETPIPE_SZ refused (not root: pipe-max-size), not asked again */
} fd_pipe;

static void pipe_drop(fd_pipe *pp) {
  if (pp->p[0] >= 0) close(pp->p[0]);
  if (pp->p[1] >= 0) close(pp->p[1]);
  pp->p[0] = pp->p[1] = -1;
  pp->cap = 0; /* (what was refused stays refused) */
}

/* Room for `need` bytes in this thread's pipe: 1, or 0 if it cannot have that much (then use memory). */
static int pipe_room(fd_pipe *pp, size_t need) {
  if (pp->p[0] < 0) {
    /* Non-blocking: a pipe too small would make splice wait for a reader that is this very thread. */
    if (pipe2(pp->p, O_CLOEXEC | O_NONBLOCK) != 0) return 0;
    /* Not always 64 KiB: a user past pipe-user-pages-soft gets two pages. */
    int c = fcntl(pp->p[1], F_GETPIPE_SZ);
    pp->cap = c > 0 ? (size_t)c : 0;
  }
  if (pp->cap >= need) return 1;
  if (pp->refused && need >= pp->refused) return 0;
  int r = fcntl(pp->p[1], F_SETPIPE_SZ, (int)need);
  if (r < 0) {
    pp->refused = need;
    return 0;
  }
  pp->cap = (size_t)r;
  return pp->cap >= need;
}

static int reply_via_memory(fd_job *j) {
  char *buf = malloc(j->total ? j->total : 1);
  if (!buf) return ENOMEM;
  size_t at = 0;
  for (size_t i = 0; i < j->n; i++) {
    size_t got = 0;
    while (got < j->x[i].len) {
      ssize_t r = pread(j->x[i].fd, buf + at + got, j->x[i].len - got, j->x[i].pos + (off_t)got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        int e = r < 0 ? errno : EIO; /* shorter than promised: not what the caller was told */
        free(buf);
        return e;
      }
      got += (size_t)r;
    }
    at += got;
  }
  int res = fuse_reply_buf(j->req, buf, j->total);
  free(buf);
  return res > 0 ? -res : res;
}

static int reply_via_pipe(fd_job *j, fd_pipe *pp) {
  for (size_t i = 0; i < j->n; i++) {
    loff_t off = j->x[i].pos;
    size_t left = j->x[i].len;
    while (left) {
      ssize_t r = splice(j->x[i].fd, &off, pp->p[1], NULL, left, SPLICE_F_NONBLOCK);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        int e = r < 0 ? errno : EIO;
        pipe_drop(pp); /* whatever went in stays unread: start clean */
        return e;
      }
      left -= (size_t)r;
    }
  }
  struct fuse_bufvec bv = FUSE_BUFVEC_INIT(j->total);
  bv.buf[0].flags = FUSE_BUF_IS_FD;
  bv.buf[0].fd = pp->p[0];
  int res = fuse_reply_data(j->req, &bv, 0);
  /*
   * Bytes may be left in the pipe even when this returns 0: libfuse answers
   * the program with an error itself (and returns 0) when it cannot copy the
   * pipe (memory). Left there, they would open the next answer: a fresh pipe.
   */
  int left = 0;
  if (res != 0 || ioctl(pp->p[0], FIONREAD, &left) != 0 || left != 0) pipe_drop(pp);
  return res > 0 ? -res : res;
}

static void *replier_main(void *arg) {
  ll_session *s = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  long page = sysconf(_SC_PAGESIZE);
  fd_pipe pp = {{-1, -1}, 0, 0};
  for (;;) {
    pthread_mutex_lock(&s->rq_lock);
    while (!s->rq_head && !s->rq_stop) pthread_cond_wait(&s->rq_cond, &s->rq_lock);
    fd_job *j = s->rq_head;
    if (j) {
      s->rq_head = j->next;
      if (!s->rq_head) s->rq_tail = NULL;
    }
    pthread_mutex_unlock(&s->rq_lock);
    if (!j) break;
    /* A piece that does not start on a page boundary can take a pipe slot more. */
    size_t need = j->total + (j->n + 1) * (size_t)page;
    int res = j->total >= 2 * (size_t)page && pipe_room(&pp, need) ? reply_via_pipe(j, &pp) : reply_via_memory(j);
    ll_req *r = j->done;
    r->result = res;
    free(j);
    post(s, r);
  }
  pipe_drop(&pp);
  return NULL;
}

/* Before the session is freed (nothing outstanding: the threads are idle or about to wait). */
static void stop_repliers(ll_session *s) {
  pthread_mutex_lock(&s->rq_lock);
  s->rq_stop = 1;
  pthread_cond_broadcast(&s->rq_cond);
  pthread_mutex_unlock(&s->rq_lock);
  for (int i = 0; i < s->nrepliers; i++) pthread_join(s->repliers[i], NULL);
  s->nrepliers = 0;
}

static napi_value js_reply_fds(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool isarr = false;
  if (argc < 2 || napi_is_array(env, argv[1], &isarr) != napi_ok || !isarr) {
    napi_throw_type_error(env, NULL, "replyFds(req, [{fd, pos, len}, ...])");
    return NULL;
  }
  uint32_t n = 0;
  napi_get_array_length(env, argv[1], &n);
  fd_job *j = calloc(1, sizeof *j);
  ll_req *done = calloc(1, sizeof *done);
  const char *bad = !j || !done ? "out of memory" : n == 0 || n > FD_MAX_EXTENTS ? "1 to 64 extents" : NULL;
  for (uint32_t i = 0; !bad && i < n; i++) {
    napi_value e;
    napi_get_element(env, argv[1], i, &e);
    double fd = get_double(env, prop(env, e, "fd")), pos = get_double(env, prop(env, e, "pos")), len = get_double(env, prop(env, e, "len"));
    if (!(fd >= 0 && fd <= INT32_MAX && pos >= 0 && pos < (double)MAX_EXACT && len > 0 && len <= (1 << 30))) bad = "an extent is not {fd >= 0, pos >= 0, len > 0}";
    else {
      j->x[i].fd = (int)fd;
      j->x[i].pos = (off_t)pos;
      j->x[i].len = (size_t)len;
      j->total += (size_t)len;
    }
  }
  if (bad) {
    free(j);
    free(done);
    napi_throw_type_error(env, NULL, bad);
    return NULL;
  }
  ll_session *s;
  fuse_req_t req = take_req(env, argv[0], &s);
  if (!req) {
    free(j);
    free(done);
    return NULL;
  }
  j->req = req;
  j->n = n;
  j->done = done;
  done->op = LL_REPLIED;
  napi_value promise;
  napi_create_promise(env, &done->deferred, &promise);
  pthread_mutex_lock(&s->rq_lock);
  /* One more thread while all are busy, up to FD_REPLIERS (started here, on the JS thread: no race with stop). */
  if (s->nrepliers < FD_REPLIERS && (s->rq_head || s->nrepliers == 0) && !s->rq_stop) {
    if (pthread_create(&s->repliers[s->nrepliers], NULL, replier_main, s) == 0) s->nrepliers++;
  }
  if (s->nrepliers == 0) {
    pthread_mutex_unlock(&s->rq_lock);
    /* No thread to run it: say so without sending anything (the caller answers another way). */
    napi_value v;
    napi_create_int32(env, EAGAIN, &v);
    napi_resolve_deferred(env, done->deferred, v);
    free(j);
    free(done);
    return promise;
  }
  j->next = NULL;
  if (s->rq_tail) s->rq_tail->next = j;
  else s->rq_head = j;
  s->rq_tail = j;
  pthread_cond_signal(&s->rq_cond);
  pthread_mutex_unlock(&s->rq_lock);
  return promise;
}

static napi_value js_reply_write(napi_env env, napi_callback_info info) {
  ARGS(2);
  int res = fuse_reply_write(req, (size_t)get_double(env, argv[1]));
  answered(s);
  return ret_int(env, res);
}

static napi_value js_reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *t = get_str(env, argv[1]);
  int res = t ? fuse_reply_readlink(req, t) : fuse_reply_err(req, EIO);
  free(t);
  answered(s);
  return ret_int(env, res);
}

static napi_value js_reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(2);
  struct statvfs v;
  memset(&v, 0, sizeof v);
  uint64_t u;
#define F(field, key)                                  \
  u = 0;                                               \
  get_u64(env, prop(env, argv[1], key), &u);           \
  v.field = u;
  F(f_bsize, "bsize");
  F(f_frsize, "frsize");
  F(f_blocks, "blocks");
  F(f_bfree, "bfree");
  F(f_bavail, "bavail");
  F(f_files, "files");
  F(f_ffree, "ffree");
  F(f_favail, "favail");
  F(f_namemax, "namemax");
#undef F
  int res = fuse_reply_statfs(req, &v);
  answered(s);
  return ret_int(env, res);
}

/*
 * replyDir(req, size, plus, entries) → how many entries fit. Each entry:
 * {name, off (the cookie of the NEXT entry), and for plain readdir ino +
 * mode, for readdirplus the entry fields (nodeid, attr, timeouts)}. With
 * plus, every entry that fit (except . and ..) counts as a lookup: the
 * caller counts only the ones this returns.
 */
static napi_value js_reply_dir(napi_env env, napi_callback_info info) {
  ARGS(4);
  size_t size = (size_t)get_double(env, argv[1]);
  bool plus = false;
  napi_get_value_bool(env, argv[2], &plus);
  uint32_t n = 0;
  napi_get_array_length(env, argv[3], &n);
  char *buf = malloc(size ? size : 1);
  if (!buf) {
    fuse_reply_err(req, ENOMEM);
    answered(s);
    return ret_int(env, 0);
  }
  size_t used = 0;
  uint32_t i;
  for (i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, argv[3], i, &e);
    char *name = get_str(env, prop(env, e, "name"));
    if (!name) break;
    int64_t off = 0;
    get_i64(env, prop(env, e, "off"), &off);
    size_t need;
    if (plus) {
      struct fuse_entry_param ep;
      get_entry(env, e, &ep);
      need = fuse_add_direntry_plus(req, buf + used, size - used, name, &ep, off);
    } else {
      struct stat st;
      memset(&st, 0, sizeof st);
      uint64_t u = 0;
      get_u64(env, prop(env, e, "ino"), &u);
      st.st_ino = u;
      st.st_mode = (mode_t)get_double(env, prop(env, e, "mode"));
      need = fuse_add_direntry(req, buf + used, size - used, name, &st, off);
    }
    free(name);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  answered(s);
  return ret_int(env, (int)i);
}

/* ------------------------------------------------------------------ registration */

void gn_fuse_ll_init(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } FNS[] = {
      {"mount", js_mount},
      {"unmount", js_unmount},
      {"destroy", js_destroy},
      {"invalInode", js_inval_inode},
      {"replyErr", js_reply_err},
      {"replyEntry", js_reply_entry},
      {"replyCreate", js_reply_create},
      {"replyAttr", js_reply_attr},
      {"replyOpen", js_reply_open},
      {"passthrough", js_passthrough},
      {"backingOpen", js_backing_open},
      {"backingClose", js_backing_close},
      {"replyBuf", js_reply_buf},
      {"replyFds", js_reply_fds},
      {"replyWrite", js_reply_write},
      {"replyReadlink", js_reply_readlink},
      {"replyStatfs", js_reply_statfs},
      {"replyDir", js_reply_dir},
  };
  napi_value o;
  napi_create_object(env, &o);
  for (size_t i = 0; i < sizeof FNS / sizeof FNS[0]; i++) {
    napi_value f;
    napi_create_function(env, FNS[i].name, NAPI_AUTO_LENGTH, FNS[i].fn, NULL, &f);
    napi_set_named_property(env, o, FNS[i].name, f);
  }
  set_num(env, o, "FUSE_SET_ATTR_MODE", FUSE_SET_ATTR_MODE);
  set_num(env, o, "FUSE_SET_ATTR_UID", FUSE_SET_ATTR_UID);
  set_num(env, o, "FUSE_SET_ATTR_GID", FUSE_SET_ATTR_GID);
  set_num(env, o, "FUSE_SET_ATTR_SIZE", FUSE_SET_ATTR_SIZE);
  set_num(env, o, "FUSE_SET_ATTR_ATIME", FUSE_SET_ATTR_ATIME);
  set_num(env, o, "FUSE_SET_ATTR_MTIME", FUSE_SET_ATTR_MTIME);
  set_num(env, o, "FUSE_SET_ATTR_ATIME_NOW", FUSE_SET_ATTR_ATIME_NOW);
  set_num(env, o, "FUSE_SET_ATTR_MTIME_NOW", FUSE_SET_ATTR_MTIME_NOW);
  set_num(env, o, "FUSE_SET_ATTR_CTIME", FUSE_SET_ATTR_CTIME);
  napi_set_named_property(env, exports, "fuse", o);
}
