/*
 * Changes made on the export's own disk by other programs (issue 20, the
 * poll consistency model): fanotify with FAN_REPORT_DFID_NAME and a
 * filesystem mark, read on a thread of its own, delivered to JS in batches
 * through a threadsafe function (never blocking the event loop).
 *
 * Why fanotify and not inotify or fs.watch: inotify needs one watch per
 * directory (a kernel limit, a race with every new directory, and a path
 * to translate back); fanotify marks the whole file system once and
 * reports each event as (directory file handle, name), which we turn into
 * the export's own handles (inode number + birth time, as
 * src/backends/local-export/handles.ts makes them) here:
 *   - the directory: open_by_handle_at(export root fd, dfid, O_PATH),
 *     statx; whether it lies beneath the export root is decided once per
 *     directory by walking ".." up to the root (cached by kernel handle;
 *     the cache is cleared whenever a directory moves);
 *   - the entry: statx(dirfd, name, AT_SYMLINK_NOFOLLOW) if it still exists.
 * Events caused by this process (the proxy server's own calls, already in
 * the change log: the event's pid is the causing thread's tgid, which is
 * ours for the native workers and libuv alike) are skipped.
 *
 * Needs CAP_SYS_ADMIN (a filesystem mark): fanWatch throws EPERM otherwise.
 * A kernel queue overflow (FAN_Q_OVERFLOW, queue of
 * /proc/sys/fs/fanotify/max_queued_events) or more than `maxPending`
 * records not yet taken by JS is reported as `overflow`: what changed is
 * then unknown.
 *
 * JS API (binding.c registers these):
 *   fanWatch(rootPath, onBatch, maxPending) → external
 *     onBatch({ev: BigInt64Array, overflow, closed, own, outside}), where ev
 *     holds records of 5: dir ino, dir birth ns, entry ino (0: none),
 *     entry birth ns, flags (1: the directory's names changed), and
 *     names[i] the entry's name ("" for the directory itself).
 *   fanWatchStop(ext): the thread ends; a last batch says closed: true.
 *   fanWatchPause(ext, paused): stop reading the queue (tests of overflow).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <node_api.h>

#define REC 5
#define CACHE_SLOTS 4096
#define CACHE_PROBE 8
#define CACHE_FH_MAX 64
#define WALK_MAX 4096

typedef struct {
  uint8_t used, inside;
  int type;
  unsigned len;
  unsigned char fh[CACHE_FH_MAX];
} dir_slot;

typedef struct {
  int fan, root, wake[2];
  uint64_t root_dev_major, root_dev_minor, root_ino;
  pid_t self;
  pthread_t thread;
  napi_threadsafe_function tsfn;
  int stop, paused;
  int joined; /* the thread is joined (JS thread only) */
  int64_t pending, max_pending;
  int lost; /* records were dropped since the last batch that said overflow */
  int64_t own, outside;
  dir_slot *cache;
} watch;

typedef struct {
  int64_t *ev;
  size_t n, cap;
  char *nm; /* each record's name, NUL-terminated, in order ("" when none) */
  size_t nlen, ncap;
  int overflow, closed;
  int64_t own, outside;
} batch;

static uint64_t fnv(const unsigned char *p, size_t n, int type) {
  uint64_t h = 1469598103934665603ULL ^ (uint64_t)(unsigned)type;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

/* 1 inside, 0 outside, -1 not cached. */
static int cache_get(watch *w, const struct file_handle *fh) {
  if (fh->handle_bytes > CACHE_FH_MAX) return -1;
  uint64_t h = fnv(fh->f_handle, fh->handle_bytes, fh->handle_type);
  for (int i = 0; i < CACHE_PROBE; i++) {
    dir_slot *s = &w->cache[(h + i) % CACHE_SLOTS];
    if (!s->used) return -1;
    if (s->type == fh->handle_type && s->len == fh->handle_bytes && !memcmp(s->fh, fh->f_handle, s->len)) return s->inside;
  }
  return -1;
}

static void cache_put(watch *w, const struct file_handle *fh, int inside) {
  if (fh->handle_bytes > CACHE_FH_MAX) return;
  uint64_t h = fnv(fh->f_handle, fh->handle_bytes, fh->handle_type);
  for (int i = 0; i < CACHE_PROBE; i++) {
    dir_slot *s = &w->cache[(h + i) % CACHE_SLOTS];
    if (s->used) continue;
    s->used = 1;
    s->inside = (uint8_t)inside;
    s->type = fh->handle_type;
    s->len = fh->handle_bytes;
    memcpy(s->fh, fh->f_handle, s->len);
    return;
  }
  /* Crowded: start over (correct either way; only costs walks). */
  memset(w->cache, 0, CACHE_SLOTS * sizeof *w->cache);
  cache_put(w, fh, inside);
}

static int64_t btime_ns(const struct statx *x) {
  return x->stx_btime.tv_sec * 1000000000LL + x->stx_btime.tv_nsec;
}

static int stat_fd(int fd, const char *name, struct statx *x) {
  return statx(fd, name, (name[0] ? 0 : AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW, STATX_INO | STATX_BTIME, x);
}

/* Whether directory `fd` lies beneath (or is) the export root: walk ".." up. */
static int beneath_root(watch *w, int fd) {
  int cur = dup(fd);
  int inside = 0;
  for (int depth = 0; cur >= 0 && depth < WALK_MAX; depth++) {
    struct statx x;
    if (stat_fd(cur, "", &x) != 0) break;
    if (x.stx_dev_major != w->root_dev_major || x.stx_dev_minor != w->root_dev_minor) break;
    if (x.stx_ino == w->root_ino) {
      inside = 1;
      break;
    }
    int up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (up < 0) break;
    struct statx p;
    if (stat_fd(up, "", &p) != 0 || p.stx_ino == x.stx_ino) { /* the file system's top */
      close(up);
      break;
    }
    close(cur);
    cur = up;
  }
  if (cur >= 0) close(cur);
  return inside;
}

static void push(batch *b, int64_t a, int64_t g, int64_t c, int64_t cg, int64_t flags, const char *name) {
  size_t len = strlen(name) + 1;
  if (b->nlen + len > b->ncap) {
    size_t cap = b->ncap ? b->ncap * 2 : 4096;
    while (cap < b->nlen + len) cap *= 2;
    char *nm = realloc(b->nm, cap);
    if (!nm) {
      b->overflow = 1;
      return;
    }
    b->nm = nm;
    b->ncap = cap;
  }
  if (b->n + REC > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64 * REC;
    int64_t *ev = realloc(b->ev, cap * sizeof *ev);
    if (!ev) {
      b->overflow = 1; /* cannot say what changed: as if the queue overflowed */
      return;
    }
    b->ev = ev;
    b->cap = cap;
  }
  int64_t *r = b->ev + b->n;
  r[0] = a, r[1] = g, r[2] = c, r[3] = cg, r[4] = flags;
  b->n += REC;
  memcpy(b->nm + b->nlen, name, len);
  b->nlen += len;
}

/* One event: its directory handle and name → a record (or nothing: own, outside, gone). */
static void one_event(watch *w, batch *b, const struct fanotify_event_metadata *m) {
  struct file_handle *fh = NULL;
  const char *name = NULL;
  for (size_t off = m->metadata_len; off + sizeof(struct fanotify_event_info_header) <= m->event_len;) {
    const struct fanotify_event_info_header *h = (const void *)((const char *)m + off);
    if (h->len == 0) break;
    if (h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME || h->info_type == FAN_EVENT_INFO_TYPE_DFID) {
      const struct fanotify_event_info_fid *f = (const void *)h;
      fh = (struct file_handle *)f->handle;
      if (h->info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) name = (const char *)fh->f_handle + fh->handle_bytes;
    }
    off += h->len;
  }
  /* A directory moved: what lies beneath the root changed; decide every directory again. */
  if ((m->mask & FAN_ONDIR) && (m->mask & (FAN_MOVED_FROM | FAN_MOVED_TO | FAN_MOVE_SELF))) memset(w->cache, 0, CACHE_SLOTS * sizeof *w->cache);
  if (m->pid == w->self) {
    w->own++;
    return;
  }
  if (!fh) return;
  int known = cache_get(w, fh);
  if (known == 0) {
    w->outside++;
    return;
  }
  /* (The mount fd must not be O_PATH: the kernel refuses those here.) */
  int dfd = open_by_handle_at(w->root, fh, O_PATH | O_CLOEXEC);
  if (dfd < 0) return; /* the directory is gone: its parent's DELETE event lists it */
  if (known < 0) {
    known = beneath_root(w, dfd);
    cache_put(w, fh, known);
  }
  if (!known) {
    w->outside++;
    close(dfd);
    return;
  }
  struct statx d, c;
  if (stat_fd(dfd, "", &d) != 0) {
    close(dfd);
    return;
  }
  int64_t ci = 0, cg = 0;
  if (name && name[0] && strcmp(name, ".") != 0 && stat_fd(dfd, name, &c) == 0) ci = (int64_t)c.stx_ino, cg = btime_ns(&c);
  close(dfd);
  int names = (m->mask & (FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO)) != 0;
  push(b, (int64_t)d.stx_ino, btime_ns(&d), ci, cg, names, name && strcmp(name, ".") != 0 ? name : "");
}

static void post(watch *w, batch *b) {
  batch *out = malloc(sizeof *out);
  if (!out) {
    free(b->ev);
    free(b->nm);
    w->lost = 1;
    return;
  }
  int64_t recs = (int64_t)(b->n / REC);
  if (!b->closed && __atomic_load_n(&w->pending, __ATOMIC_ACQUIRE) + recs > w->max_pending) {
    /* JS is this far behind: drop the records, say what changed is unknown. */
    free(b->ev);
    free(b->nm);
    b->ev = NULL, b->n = 0, b->cap = 0, recs = 0;
    b->nm = NULL, b->nlen = 0, b->ncap = 0;
    b->overflow = 1;
  }
  if (w->lost) b->overflow = 1, w->lost = 0;
  b->own = w->own, b->outside = w->outside;
  *out = *b;
  __atomic_fetch_add(&w->pending, recs, __ATOMIC_ACQ_REL);
  if (napi_call_threadsafe_function(w->tsfn, out, napi_tsfn_nonblocking) != napi_ok) {
    __atomic_fetch_sub(&w->pending, recs, __ATOMIC_ACQ_REL);
    free(out->ev);
    free(out->nm);
    free(out);
    w->lost = 1;
  }
}

static void *watch_main(void *arg) {
  watch *w = arg;
  /* fanotify wants the buffer aligned for its metadata. */
  const size_t bufsz = 64 * 1024;
  char *buf = aligned_alloc(64, bufsz);
  if (!buf) w->lost = 1;
  while (buf) {
    int paused = __atomic_load_n(&w->paused, __ATOMIC_ACQUIRE);
    struct pollfd p[2] = {{.fd = w->wake[0], .events = POLLIN}, {.fd = w->fan, .events = POLLIN}};
    int r = poll(p, paused ? 1 : 2, paused ? 20 : -1);
    if (r < 0 && errno != EINTR) break;
    if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) break;
    if (p[0].revents) {
      char c[16];
      if (read(w->wake[0], c, sizeof c) < 0) { /* only a wake-up */
      }
      continue;
    }
    if (paused || !(p[1].revents & POLLIN)) continue;
    ssize_t n = read(w->fan, buf, bufsz);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      break;
    }
    batch b = {0};
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->vers != FANOTIFY_METADATA_VERSION) {
        b.overflow = 1;
        continue;
      }
      if (m->mask & FAN_Q_OVERFLOW) {
        b.overflow = 1;
        continue;
      }
      one_event(w, &b, m);
    }
    if (b.n || b.overflow) post(w, &b);
  }
  free(buf);
  /* Ended without being asked (a read error): what changes from now is unknown. */
  if (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) w->lost = 1;
  batch last = {.closed = 1};
  post(w, &last);
  napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
  return NULL;
}

/* On the JS thread: one batch → onBatch({ev, overflow, closed, own, outside}). */
static void call_js(napi_env env, napi_value cb, void *ctx, void *data) {
  watch *w = ctx;
  batch *b = data;
  int64_t recs = (int64_t)(b->n / REC);
  __atomic_fetch_sub(&w->pending, recs, __ATOMIC_ACQ_REL);
  if (env && cb) {
    napi_value o, ab, ta, v, undef;
    void *mem = NULL;
    napi_create_object(env, &o);
    napi_create_arraybuffer(env, b->n * sizeof(int64_t), &mem, &ab);
    if (b->n) memcpy(mem, b->ev, b->n * sizeof(int64_t));
    napi_create_typedarray(env, napi_bigint64_array, b->n, ab, 0, &ta);
    napi_set_named_property(env, o, "ev", ta);
    napi_value names;
    napi_create_array_with_length(env, b->n / REC, &names);
    size_t at = 0;
    for (uint32_t i = 0; i < b->n / REC && at < b->nlen; i++) {
      size_t len = strlen(b->nm + at);
      napi_create_string_utf8(env, b->nm + at, len, &v);
      napi_set_element(env, names, i, v);
      at += len + 1;
    }
    napi_set_named_property(env, o, "names", names);
    napi_get_boolean(env, b->overflow, &v);
    napi_set_named_property(env, o, "overflow", v);
    napi_get_boolean(env, b->closed, &v);
    napi_set_named_property(env, o, "closed", v);
    napi_create_int64(env, b->own, &v);
    napi_set_named_property(env, o, "own", v);
    napi_create_int64(env, b->outside, &v);
    napi_set_named_property(env, o, "outside", v);
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 1, &o, NULL);
  }
  if (b->closed) {
    /* The thread posts nothing after this one: free what it shared with JS. */
    if (!w->joined) pthread_join(w->thread, NULL); /* it is past its last post: returns at once */
    w->joined = 1;
    close(w->fan);
    close(w->root);
    close(w->wake[0]);
    close(w->wake[1]);
    free(w->cache);
    w->fan = -1; /* stop and pause do nothing from now on */
  }
  free(b->ev);
  free(b->nm);
  free(b);
}

/*
 * Environment teardown (process exit or a worker's end) with the watch still
 * running: stop the thread and wait for it here, while the event channel is
 * still valid (cleanup hooks run last-registered first, before the hook that
 * frees the channel), so it never posts into a freed one.
 */
static void env_teardown(void *arg) {
  watch *w = arg;
  if (w->joined) return;
  __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
  char c = 1;
  if (write(w->wake[1], &c, 1) < 0) { /* pipe full: the thread is awake anyway */
  }
  pthread_join(w->thread, NULL);
  w->joined = 1;
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  napi_value code, msg, e, n;
  char text[256];
  snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, err == EPERM ? "EPERM" : err == EINVAL ? "EINVAL" : err == ENOSYS ? "ENOSYS" : err == ENOENT ? "ENOENT" : err == EMFILE ? "EMFILE" : "EIO", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, code, msg, &e);
  napi_create_int32(env, -err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_throw(env, e);
  return NULL;
}

napi_value gn_fan_watch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char root[4096];
  size_t len = 0;
  double maxPending = 0;
  napi_valuetype t;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], root, sizeof root, &len) != napi_ok || len == 0 || len >= sizeof root - 1 ||
      napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function || napi_get_value_double(env, argv[2], &maxPending) != napi_ok || maxPending < 1) {
    napi_throw_type_error(env, NULL, "fanWatch(rootPath: string, onBatch: function, maxPending: number >= 1)");
    return NULL;
  }
  watch *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, ENOMEM, "fanWatch");
  w->fan = w->root = w->wake[0] = w->wake[1] = -1;
  w->self = getpid();
  w->max_pending = (int64_t)maxPending;
  int err = 0;
  const char *what = "fanWatch";
  struct statx rx;
  w->cache = calloc(CACHE_SLOTS, sizeof *w->cache);
  if (!w->cache) err = ENOMEM;
  if (!err && (w->root = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) err = errno, what = "fanWatch: open the export root";
  if (!err && stat_fd(w->root, "", &rx) != 0) err = errno, what = "fanWatch: statx the export root";
  if (!err) w->root_dev_major = rx.stx_dev_major, w->root_dev_minor = rx.stx_dev_minor, w->root_ino = rx.stx_ino;
  if (!err && (w->fan = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME, O_RDONLY | O_CLOEXEC)) < 0) err = errno, what = "fanotify_init(FAN_REPORT_DFID_NAME)";
  uint64_t mask = FAN_MODIFY | FAN_ATTRIB | FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE_SELF | FAN_MOVE_SELF | FAN_ONDIR;
  if (!err && fanotify_mark(w->fan, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, w->root, NULL) != 0) err = errno, what = "fanotify_mark(FAN_MARK_FILESYSTEM)";
  if (!err && pipe2(w->wake, O_CLOEXEC | O_NONBLOCK) != 0) err = errno, what = "fanWatch: pipe2";
  if (err) {
    if (w->fan >= 0) close(w->fan);
    if (w->root >= 0) close(w->root);
    if (w->wake[0] >= 0) close(w->wake[0]), close(w->wake[1]);
    free(w->cache);
    free(w);
    return throw_errno(env, err, what);
  }
  napi_value name;
  napi_create_string_utf8(env, "gvfs_fanwatch", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, w, call_js, &w->tsfn) != napi_ok) {
    close(w->fan), close(w->root), close(w->wake[0]), close(w->wake[1]);
    free(w->cache);
    free(w);
    napi_throw_error(env, NULL, "fanWatch: cannot create the event channel");
    return NULL;
  }
  if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
    close(w->fan), close(w->root), close(w->wake[0]), close(w->wake[1]);
    free(w->cache);
    free(w);
    return throw_errno(env, EAGAIN, "fanWatch: pthread_create");
  }
  /* A watch never keeps the process alive on its own. */
  napi_unref_threadsafe_function(env, w->tsfn);
  napi_add_env_cleanup_hook(env, env_teardown, w);
  napi_value ext;
  /* The struct lives for the process (a few hundred bytes per watch; its buffers are freed at close). */
  napi_create_external(env, w, NULL, NULL, &ext);
  return ext;
}

static watch *watch_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return p;
}

static void wake(watch *w) {
  char c = 1;
  if (write(w->wake[1], &c, 1) < 0) { /* pipe full: the thread is awake anyway */
  }
}

napi_value gn_fan_watch_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watch *w = argc ? watch_of(env, argv[0]) : NULL;
  if (!w) {
    napi_throw_type_error(env, NULL, "fanWatchStop(watch)");
    return NULL;
  }
  if (w->fan >= 0 && !__atomic_exchange_n(&w->stop, 1, __ATOMIC_ACQ_REL)) {
    /* Keep the process alive until the last batch (closed) has been delivered. */
    napi_ref_threadsafe_function(env, w->tsfn);
    wake(w);
  }
  return NULL;
}

napi_value gn_fan_watch_pause(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool paused = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  watch *w = argc == 2 ? watch_of(env, argv[0]) : NULL;
  if (!w || napi_get_value_bool(env, argv[1], &paused) != napi_ok) {
    napi_throw_type_error(env, NULL, "fanWatchPause(watch, paused: boolean)");
    return NULL;
  }
  if (w->fan < 0 || __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) return NULL;
  __atomic_store_n(&w->paused, paused ? 1 : 0, __ATOMIC_RELEASE);
  wake(w);
  return NULL;
}
