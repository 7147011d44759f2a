/*
 * N-API glue: one table row per exported function names the job it queues
 * and how its arguments fill the job; the result comes back on the JS
 * thread through the environment's threadsafe function.
 */
#include "gvfs_native.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define POOL_THREADS 4

/* notify.c: sd_notify(3) for systemd units (Type=notify). */
napi_value gn_sd_notify(napi_env env, napi_callback_info info);
/* fanwatch.c: changes on the export's disk by other programs (fanotify). */
napi_value gn_fan_watch(napi_env env, napi_callback_info info);
napi_value gn_fan_watch_stop(napi_env env, napi_callback_info info);
napi_value gn_fan_watch_pause(napi_env env, napi_callback_info info);

typedef enum { RES_VOID, RES_NUMBER, RES_STRING, RES_STATX, RES_HANDLE, RES_WHOAMI, RES_DIROP, RES_TEXT, RES_DIRENTS, RES_STATLIST } res_kind;

/*
 * Argument letters, in order: d = descriptor (int32, into fd[]), s = string
 * (into s[]), i = integer (into n[]), u = unsigned 64-bit integer, e.g. an
 * inode number (into n[], same bits), b = Buffer (copied), B = Buffer
 * (borrowed: referenced until the job settles, not copied), c = credentials
 * {uid, gid, gids} (always last).
 */
typedef struct {
  const char *name;
  gn_op op;
  const char *args;
  res_kind res;
} op_desc;

static const op_desc OPS[] = {
    {"openat2", OP_OPENAT2, "dsiiic", RES_NUMBER},
    {"mknodat", OP_MKNODAT, "dsiiic", RES_VOID},
    {"mkdirat", OP_MKDIRAT, "dsic", RES_VOID},
    {"symlinkat", OP_SYMLINKAT, "sdsc", RES_VOID},
    {"readlinkat", OP_READLINKAT, "dsc", RES_STRING},
    {"linkat", OP_LINKAT, "dsdsic", RES_VOID},
    {"unlinkat", OP_UNLINKAT, "dsic", RES_VOID},
    {"renameat2", OP_RENAMEAT2, "dsdsic", RES_VOID},
    {"fchownat", OP_FCHOWNAT, "dsiiic", RES_VOID},
    {"fchmodat", OP_FCHMODAT, "dsiic", RES_VOID},
    {"utimensat", OP_UTIMENSAT, "dsiiiiic", RES_VOID},
    {"statx", OP_STATX, "dsiic", RES_STATX},
    {"faccessat", OP_FACCESSAT, "dsiic", RES_VOID},
    {"accessMask", OP_ACCESSMASK, "dsic", RES_NUMBER},
    {"nameToHandleAt", OP_NAME_TO_HANDLE, "dsic", RES_HANDLE},
    {"openByHandleAt", OP_OPEN_BY_HANDLE, "dibic", RES_NUMBER},
    {"fsync", OP_FSYNC, "dc", RES_VOID},
    {"fdatasync", OP_FDATASYNC, "dc", RES_VOID},
    {"close", OP_CLOSE, "dc", RES_VOID},
    {"whoami", OP_WHOAMI, "c", RES_WHOAMI},
    /* One job per NFS call (dirops.c): root, dir path, dir ino, dir birth ns, kind, name, target, mode, major, minor. */
    {"inDir", OP_IN_DIR, "dsuiissiiic", RES_DIROP},
    /* root, from dir (path, ino, birth ns), from name, to dir (path, ino, birth ns), to name, flags. */
    {"renameIn", OP_RENAME_IN, "dsuissuisic", RES_DIROP},
    /* root, dir path, ino, birth ns, a name in it ("" none): both fsync'd as the server, {dir}. */
    {"syncIn", OP_SYNC_IN, "dsuisc", RES_DIROP},
    /* root, object path, ino, birth ns: R/W/X as the caller (fd = the mask), the object's statx. */
    {"accessOf", OP_ACCESS_OF, "dsuic", RES_DIROP},
    /* root, object path, ino, birth ns, what (SA_*), uid, gid, mode, atime s/ns, mtime s/ns: the object's statx after. */
    {"setattrOf", OP_SETATTR_OF, "dsuiiiiiiiiic", RES_DIROP},
    /* lookups.c. root, path, ino, birth ns, check (0/1): {obj}. */
    {"statOf", OP_STAT_OF, "dsuiic", RES_DIROP},
    /* root, dir path, ino, birth ns, name: {dir, obj}, the name statted as the caller. */
    {"lookupIn", OP_LOOKUP_IN, "dsuisc", RES_DIROP},
    /* root, path, ino, birth ns: {text, obj}. */
    {"readlinkOf", OP_READLINK_OF, "dsuic", RES_TEXT},
    /* root, dir path, ino, birth ns, flags (1: read permission as the caller): {names, inos, dir}. */
    {"readdirOf", OP_READDIR_OF, "dsuiic", RES_DIRENTS},
    /* root, dir path, ino, birth ns, names joined by '/': {dir, list: (statx | errno)[]}. */
    {"statNames", OP_STAT_NAMES, "dsuisc", RES_STATLIST},
    /* fd, data, offset, sync (0, 1 data, 2 file), check (1: WRITE permission first), as the caller: {fd: bytes, pre, obj}. */
    {"pwriteAs", OP_PWRITE_AS, "dBiiic", RES_DIROP},
    /* fd, buffer to fill, offset, as the caller: {fd: bytes read (short only at end of file), obj}. */
    {"preadAs", OP_PREAD_AS, "dBic", RES_DIROP},
    /* fd, length, as the caller: {obj}. */
    {"ftruncateAs", OP_FTRUNCATE_AS, "dic", RES_DIROP},
    /* descriptors as int32s (host order), copied: all closed in one job; ret: how many failed. */
    {"closeMany", OP_CLOSE_MANY, "bc", RES_NUMBER},
};

/* Jobs queued since load (info().jobs): what tests count to hold the local export to one trip per call. */
static uint64_t jobs_queued;
/* closeMany jobs (background: the export's retired descriptors, gathered), counted apart from `jobs`. */
static uint64_t close_jobs;

static const char *const SX_KEYS[GN_NSX] = {"obj", "dir", "dir2", "dst", "pre"};

/* Per environment (main thread or a worker_thread): its completion channel. */
typedef struct {
  napi_threadsafe_function tsfn;
  int64_t inflight;
  /* whenIdle(): promises resolved once no job of this environment is in flight. */
  napi_deferred *idle;
  size_t nidle, idle_cap;
  /* setStatxScratch: where a statx's fields are written for JS to read, and the JS function that reads them. */
  uint8_t *sx_scratch;
  napi_ref sx_scratch_ref, sx_decode;
} env_data;

static const op_desc *desc_of(gn_op op) {
  for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++)
    if (OPS[i].op == op) return &OPS[i];
  return NULL;
}

static napi_value make_error(napi_env env, int err, const char *syscall, const char *path) {
  const char *code = strerrorname_np(err);
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s, %s%s%s%s", code ? code : "EUNKNOWN", strerror(err), syscall, path ? " '" : "", path ? path : "",
           path ? "'" : "");
  napi_value m, c, e, v;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code ? code : "EUNKNOWN", NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_create_int32(env, -err, &v);
  napi_set_named_property(env, e, "errno", v);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, e, "syscall", v);
  if (path) {
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, e, "path", v);
  }
  return e;
}

static void set_u64(napi_env env, napi_value o, const char *k, uint64_t x) {
  napi_value v;
  napi_create_bigint_uint64(env, x, &v);
  napi_set_named_property(env, o, k, v);
}

static void set_num(napi_env env, napi_value o, const char *k, double x) {
  napi_value v;
  napi_create_double(env, x, &v);
  napi_set_named_property(env, o, k, v);
}

static void set_ns(napi_env env, napi_value o, const char *k, struct statx_timestamp t) {
  napi_value v;
  napi_create_bigint_int64(env, t.tv_sec * 1000000000LL + t.tv_nsec, &v);
  napi_set_named_property(env, o, k, v);
}

/*
 * A statx's fields in the scratch JS registered (setStatxScratch), at the
 * offsets native.ts reads: uint32 mask, mode, nlink, uid, gid, blksize,
 * rdev major/minor, dev major/minor at 0..39; uint64 ino, size, blocks at
 * 40; int64 a/m/c/btime in ns at 64.
 */
#define SX_SCRATCH_BYTES 96
static void statx_to_scratch(uint8_t *p, const struct statx *s) {
  uint32_t w[10] = {s->stx_mask, s->stx_mode, s->stx_nlink, s->stx_uid, s->stx_gid, s->stx_blksize,
                    s->stx_rdev_major, s->stx_rdev_minor, s->stx_dev_major, s->stx_dev_minor};
  uint64_t u[3] = {s->stx_ino, s->stx_size, s->stx_blocks};
  int64_t t[4];
  const struct statx_timestamp *ts[4] = {&s->stx_atime, &s->stx_mtime, &s->stx_ctime, &s->stx_btime};
  for (int i = 0; i < 4; i++) t[i] = ts[i]->tv_sec * 1000000000LL + ts[i]->tv_nsec;
  memcpy(p, w, sizeof w);
  memcpy(p + 40, u, sizeof u);
  memcpy(p + 64, t, sizeof t);
}

/*
 * A Statx object. Built by native.ts's decoder from the scratch: an object
 * made here property by property (napi_set_named_property: a string
 * internalized and a generic store each, four BigInts made through the API)
 * cost ~3.5 µs, about half of a cached 4 KiB READ's native call. The
 * property-by-property build stays for an environment that registered no
 * decoder.
 */
static napi_value statx_object(napi_env env, const struct statx *s) {
  napi_value o;
  env_data *ed = NULL;
  napi_get_instance_data(env, (void **)&ed);
  if (ed && ed->sx_decode) {
    napi_value fn, recv;
    statx_to_scratch(ed->sx_scratch, s);
    napi_get_reference_value(env, ed->sx_decode, &fn);
    napi_get_undefined(env, &recv);
    if (napi_call_function(env, recv, fn, 0, NULL, &o) == napi_ok) return o;
  }
  napi_create_object(env, &o);
  set_num(env, o, "mask", s->stx_mask);
  set_num(env, o, "mode", s->stx_mode);
  set_num(env, o, "nlink", s->stx_nlink);
  set_num(env, o, "uid", s->stx_uid);
  set_num(env, o, "gid", s->stx_gid);
  set_u64(env, o, "ino", s->stx_ino);
  set_u64(env, o, "size", s->stx_size);
  set_u64(env, o, "blocks", s->stx_blocks);
  set_num(env, o, "blksize", s->stx_blksize);
  set_ns(env, o, "atimeNs", s->stx_atime);
  set_ns(env, o, "mtimeNs", s->stx_mtime);
  set_ns(env, o, "ctimeNs", s->stx_ctime);
  set_ns(env, o, "btimeNs", s->stx_btime);
  set_num(env, o, "rdevMajor", s->stx_rdev_major);
  set_num(env, o, "rdevMinor", s->stx_rdev_minor);
  set_num(env, o, "devMajor", s->stx_dev_major);
  set_num(env, o, "devMinor", s->stx_dev_minor);
  return o;
}

/* setStatxScratch(arrayBuffer, decode): the scratch (SX_SCRATCH_BYTES at least, kept alive here) and its reader, for this environment's results. */
static napi_value set_statx_scratch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  env_data *ed = NULL;
  napi_get_instance_data(env, (void **)&ed);
  bool isab = false;
  void *data;
  size_t len = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (!ed || argc < 2 || napi_is_arraybuffer(env, argv[0], &isab) != napi_ok || !isab || napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok ||
      len < SX_SCRATCH_BYTES || t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "setStatxScratch(arrayBuffer of 96 bytes or more, decode)");
    return NULL;
  }
  /* A second copy of native.ts in this environment: its pair replaces the first (each is consistent in itself). */
  if (ed->sx_decode) {
    napi_delete_reference(env, ed->sx_decode);
    napi_delete_reference(env, ed->sx_scratch_ref);
  }
  napi_create_reference(env, argv[0], 1, &ed->sx_scratch_ref);
  napi_create_reference(env, argv[1], 1, &ed->sx_decode);
  ed->sx_scratch = data;
  return NULL;
}

/* The statx results a one-trip job filled, as properties of `o`. */
static void set_stats(napi_env env, napi_value o, const gn_job *j) {
  for (int i = 0; i < GN_NSX; i++)
    if (j->have & (1u << i)) napi_set_named_property(env, o, SX_KEYS[i], statx_object(env, &j->sx[i]));
}

/* On the JS thread: settle the job's promise. env is NULL when the environment is going away. */
static void complete(napi_env env, napi_value js_cb, void *context, void *data) {
  gn_job *j = data;
  env_data *ed = context;
  if (env) {
    napi_value v;
    if (j->ret < 0) {
      /* The name the call was about: for symlinkat the new name, not the target. */
      const char *what = j->op == OP_SYMLINKAT || j->op == OP_IN_DIR || j->op == OP_RENAME_IN || j->op == OP_LOOKUP_IN ? j->s[1] : j->s[0];
      /* syncIn: the name it synced, or its directory when it had none. */
      if (j->op == OP_SYNC_IN && j->s[1] && *j->s[1]) what = j->s[1];
      napi_value err = make_error(env, j->err, j->syscall, what);
      /* The directories' attributes after a failed change: the reply's wcc data without another trip. */
      if (desc_of(j->op)->res >= RES_DIROP) set_stats(env, err, j);
      napi_reject_deferred(env, j->deferred, err);
    } else {
      switch (desc_of(j->op)->res) {
        case RES_VOID:
          napi_get_undefined(env, &v);
          break;
        case RES_NUMBER:
          napi_create_double(env, (double)j->ret, &v);
          break;
        case RES_STRING:
          napi_create_string_utf8(env, j->out, j->outlen, &v);
          break;
        case RES_STATX:
          v = statx_object(env, &j->stx);
          break;
        case RES_HANDLE: {
          napi_create_object(env, &v);
          set_num(env, v, "type", (double)j->out_n[0]);
          set_num(env, v, "mountId", (double)j->out_n[1]);
          napi_value b;
          void *dst;
          napi_create_buffer_copy(env, j->outlen, j->out, &dst, &b);
          napi_set_named_property(env, v, "handle", b);
          break;
        }
        case RES_DIROP:
          napi_create_object(env, &v);
          set_num(env, v, "fd", (double)j->ret);
          set_stats(env, v, j);
          break;
        case RES_TEXT:
          napi_create_object(env, &v);
          napi_value t;
          napi_create_string_utf8(env, j->out ? j->out : "", j->outlen, &t);
          napi_set_named_property(env, v, "text", t);
          set_stats(env, v, j);
          break;
        case RES_DIRENTS: {
          napi_create_object(env, &v);
          napi_value names, x, b;
          napi_create_array_with_length(env, j->nx, &names);
          size_t off = 0;
          for (size_t i = 0; i < j->nx; i++) {
            size_t len = strlen(j->out + off);
            napi_create_string_utf8(env, j->out + off, len, &x);
            napi_set_element(env, names, (uint32_t)i, x);
            off += len + 1;
          }
          napi_set_named_property(env, v, "names", names);
          void *dst;
          napi_create_buffer_copy(env, j->nx * sizeof(uint64_t), j->inos ? (void *)j->inos : (void *)"", &dst, &b);
          napi_set_named_property(env, v, "inos", b);
          set_stats(env, v, j);
          break;
        }
        case RES_STATLIST: {
          napi_create_object(env, &v);
          napi_value list, x;
          napi_create_array_with_length(env, j->nx, &list);
          for (size_t i = 0; i < j->nx; i++) {
            if (j->xok[i]) napi_create_int32(env, -j->xok[i], &x);
            else x = statx_object(env, &j->xs[i]);
            napi_set_element(env, list, (uint32_t)i, x);
          }
          napi_set_named_property(env, v, "list", list);
          set_stats(env, v, j);
          break;
        }
        case RES_WHOAMI: {
          napi_create_object(env, &v);
          set_num(env, v, "fsuid", (double)j->out_n[0]);
          set_num(env, v, "fsgid", (double)j->out_n[1]);
          set_num(env, v, "ngroups", (double)j->out_n[2]);
          set_num(env, v, "group0", (double)j->out_n[3]);
          break;
        }
      }
      napi_resolve_deferred(env, j->deferred, v);
    }
    if (j->bufref) napi_delete_reference(env, j->bufref);
    /* Idle pool: let the process exit, and tell whoever waits for it (whenIdle). */
    if (--ed->inflight == 0) {
      napi_unref_threadsafe_function(env, ed->tsfn);
      napi_value undef;
      napi_get_undefined(env, &undef);
      for (size_t i = 0; i < ed->nidle; i++) napi_resolve_deferred(env, ed->idle[i], undef);
      ed->nidle = 0;
    }
  }
  gn_job_free(j);
}

static int get_int64(napi_env env, napi_value v, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_number) return napi_get_value_int64(env, v, out) == napi_ok;
  if (t == napi_bigint) {
    bool lossless;
    return napi_get_value_bigint_int64(env, v, out, &lossless) == napi_ok && lossless;
  }
  return 0;
}

static int get_string(napi_env env, napi_value v, char **out) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return 0;
  *out = malloc(len + 1);
  if (!*out) return 0;
  napi_get_value_string_utf8(env, v, *out, len + 1, &len);
  /* A NUL inside would silently shorten the name the kernel sees. */
  return strlen(*out) == len;
}

static int get_creds(napi_env env, napi_value v, gn_creds *c) {
  napi_value x;
  int64_t n;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_object) return 0;
  if (napi_get_named_property(env, v, "uid", &x) != napi_ok || !get_int64(env, x, &n) || n < 0 || n > 0xfffffffe) return 0;
  c->uid = (uid_t)n;
  if (napi_get_named_property(env, v, "gid", &x) != napi_ok || !get_int64(env, x, &n) || n < 0 || n > 0xfffffffe) return 0;
  c->gid = (gid_t)n;
  bool isarr;
  uint32_t len;
  if (napi_get_named_property(env, v, "gids", &x) != napi_ok || napi_is_array(env, x, &isarr) != napi_ok || !isarr) return 0;
  napi_get_array_length(env, x, &len);
  if (len > GN_MAX_GROUPS) return 0;
  c->ngroups = (int)len;
  for (uint32_t i = 0; i < len; i++) {
    napi_value e;
    napi_get_element(env, x, i, &e);
    if (!get_int64(env, e, &n) || n < 0 || n > 0xfffffffe) return 0;
    c->groups[i] = (gid_t)n;
  }
  return 1;
}

static napi_value call_op(napi_env env, napi_callback_info info) {
  size_t argc = 16;
  napi_value argv[16];
  void *data;
  napi_get_cb_info(env, info, &argc, argv, NULL, &data);
  const op_desc *d = data;
  env_data *ed;
  napi_get_instance_data(env, (void **)&ed);
  size_t want = strlen(d->args);
  gn_job *j = calloc(1, sizeof *j);
  if (!j) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  int nfd = 0, ns = 0, ni = 0, ok = argc >= want;
  const char *bad = "wrong number of arguments";
  for (size_t i = 0; ok && i < want; i++) {
    int64_t x;
    switch (d->args[i]) {
      case 'd':
        ok = get_int64(env, argv[i], &x) && x >= -100 && x <= 0x7fffffff;
        j->fd[nfd++] = (int)x;
        bad = "a descriptor must be an integer";
        break;
      case 'u': {
        napi_valuetype t;
        uint64_t u = 0;
        bool lossless = false;
        napi_typeof(env, argv[i], &t);
        if (t == napi_bigint) ok = napi_get_value_bigint_uint64(env, argv[i], &u, &lossless) == napi_ok && lossless;
        else ok = get_int64(env, argv[i], &x) && x >= 0 && (u = (uint64_t)x, 1);
        j->n[ni++] = (int64_t)u;
        bad = "an inode number must be a non-negative integer";
        break;
      }
      case 's':
        ok = get_string(env, argv[i], &j->s[ns++]);
        bad = "a name must be a string without NUL";
        break;
      case 'i':
        ok = get_int64(env, argv[i], &j->n[ni++]);
        bad = "an integer argument is not an integer";
        break;
      case 'b': {
        bool isbuf;
        void *p;
        ok = napi_is_buffer(env, argv[i], &isbuf) == napi_ok && isbuf && napi_get_buffer_info(env, argv[i], &p, &j->buflen) == napi_ok;
        if (ok) {
          j->buf = malloc(j->buflen ? j->buflen : 1);
          ok = j->buf != NULL;
          if (ok) memcpy(j->buf, p, j->buflen);
        }
        bad = "a handle must be a Buffer";
        break;
      }
      case 'B': {
        bool isbuf;
        ok = napi_is_buffer(env, argv[i], &isbuf) == napi_ok && isbuf && napi_get_buffer_info(env, argv[i], &j->buf, &j->buflen) == napi_ok &&
             napi_create_reference(env, argv[i], 1, &j->bufref) == napi_ok;
        if (!ok) j->bufref = NULL, j->buf = NULL;
        bad = "data must be a Buffer";
        break;
      }
      case 'c':
        ok = get_creds(env, argv[i], &j->cred);
        bad = "credentials must be {uid, gid, gids[]} (at most 256 groups)";
        break;
    }
  }
  if (!ok) {
    if (j->bufref) napi_delete_reference(env, j->bufref);
    gn_job_free(j);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", bad);
    return NULL;
  }
  j->op = d->op;
  j->tsfn = ed->tsfn;
  napi_value promise;
  napi_create_promise(env, &j->deferred, &promise);
  if (ed->inflight++ == 0) napi_ref_threadsafe_function(env, ed->tsfn);
  __atomic_fetch_add(j->op == OP_CLOSE_MANY ? &close_jobs : &jobs_queued, 1, __ATOMIC_RELAXED);
  gn_pool_submit(j);
  return promise;
}

static napi_value set_walk_only(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool on = false;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) napi_get_value_bool(env, argv[0], &on);
  gn_set_walk_only(on);
  return NULL;
}

/*
 * whenIdle() → a promise resolved once no job of this environment is in
 * flight (at once if none is): what an export waits for before it closes
 * the root descriptor its queued jobs open beneath.
 */
static napi_value when_idle(napi_env env, napi_callback_info info) {
  env_data *ed = NULL;
  napi_get_instance_data(env, (void **)&ed);
  napi_value promise, undef;
  napi_deferred d;
  napi_create_promise(env, &d, &promise);
  napi_get_undefined(env, &undef);
  if (!ed || ed->inflight == 0) {
    napi_resolve_deferred(env, d, undef);
    return promise;
  }
  if (ed->nidle == ed->idle_cap) {
    size_t cap = ed->idle_cap ? 2 * ed->idle_cap : 4;
    napi_deferred *n = realloc(ed->idle, cap * sizeof *n);
    if (!n) {
      napi_value err;
      napi_create_string_utf8(env, "whenIdle: out of memory", NAPI_AUTO_LENGTH, &err);
      napi_create_error(env, NULL, err, &err);
      napi_reject_deferred(env, d, err);
      return promise;
    }
    ed->idle = n;
    ed->idle_cap = cap;
  }
  ed->idle[ed->nidle++] = d;
  return promise;
}

static napi_value get_info(napi_env env, napi_callback_info info) {
  napi_value o, v;
  napi_create_object(env, &o);
  set_num(env, o, "threads", gn_pool_threads());
  napi_get_boolean(env, gn_have_openat2(), &v);
  napi_set_named_property(env, o, "openat2", v);
  napi_get_boolean(env, gn_private_umask(), &v);
  napi_set_named_property(env, o, "privateUmask", v);
  set_num(env, o, "jobs", (double)__atomic_load_n(&jobs_queued, __ATOMIC_RELAXED));
  set_num(env, o, "closeJobs", (double)__atomic_load_n(&close_jobs, __ATOMIC_RELAXED));
  /* This environment's jobs not yet completed (closeMany's included). */
  env_data *ed = NULL;
  napi_get_instance_data(env, (void **)&ed);
  set_num(env, o, "inflight", ed ? (double)ed->inflight : 0);
  return o;
}

static napi_value get_self(napi_env env, napi_callback_info info) {
  const gn_creds *h = gn_home();
  napi_value o, a, v;
  napi_create_object(env, &o);
  set_num(env, o, "uid", h->uid);
  set_num(env, o, "gid", h->gid);
  napi_create_array_with_length(env, (size_t)h->ngroups, &a);
  for (int i = 0; i < h->ngroups; i++) {
    napi_create_double(env, h->groups[i], &v);
    napi_set_element(env, a, (uint32_t)i, v);
  }
  napi_set_named_property(env, o, "gids", a);
  return o;
}

/*
 * preadCached(fd, into, offset, scratch): READ's data and attributes on the
 * JS thread, but only when no part of it can wait. preadv2(RWF_NOWAIT)
 * copies from the page cache or fails with EAGAIN rather than wait for the
 * disk (or a page lock), like a read from a non-blocking socket; the statx
 * is of an open descriptor's in-memory inode (AT_STATX_DONT_SYNC: a network
 * file system is not asked). A pool job costs two thread hand-offs, which
 * were most of a small READ's latency. Returns the bytes read, with the
 * statx left in `scratch` (an ArrayBuffer laid out as statx_to_scratch
 * writes), when the whole range (up to the end of the file) was copied;
 * undefined when some of it was not cached (the caller queues the pool job,
 * which waits); false when the file system cannot do it (EOPNOTSUPP: the
 * caller stops asking).
 */
static napi_value pread_cached(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], res;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd, off;
  void *buf;
  size_t len;
  bool isbuf = false;
  bool isab = false;
  void *scratch;
  size_t slen = 0;
  if (argc < 4 || !get_int64(env, argv[0], &fd) || fd < 0 || fd > 0x7fffffff || napi_is_buffer(env, argv[1], &isbuf) != napi_ok || !isbuf ||
      napi_get_buffer_info(env, argv[1], &buf, &len) != napi_ok || !get_int64(env, argv[2], &off) || off < 0 ||
      napi_is_arraybuffer(env, argv[3], &isab) != napi_ok || !isab || napi_get_arraybuffer_info(env, argv[3], &scratch, &slen) != napi_ok ||
      slen < SX_SCRATCH_BYTES) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "preadCached(fd, buffer, offset, scratch of 96 bytes or more)");
    return NULL;
  }
  struct iovec iov = {buf, len};
  ssize_t r;
  do r = preadv2((int)fd, &iov, 1, (off_t)off, RWF_NOWAIT);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EOPNOTSUPP) return napi_get_boolean(env, false, &res), res;
    if (errno == EAGAIN) return napi_get_undefined(env, &res), res;
    napi_throw(env, make_error(env, errno, "preadv2", NULL));
    return NULL;
  }
  struct statx sx;
  if (statx((int)fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BASIC_STATS | STATX_BTIME, &sx) != 0) {
    napi_throw(env, make_error(env, errno, "statx", NULL));
    return NULL;
  }
  /* Short, yet not at the end of the file: the rest is not cached. */
  if ((size_t)r < len && (uint64_t)off + (uint64_t)r < sx.stx_size) return napi_get_undefined(env, &res), res;
  /* The bytes read; the statx in the scratch, which the caller reads before anything else can write it. */
  statx_to_scratch(scratch, &sx);
  napi_create_double(env, (double)r, &res);
  return res;
}

/*
 * At environment teardown, as a cleanup hook: hooks run last-registered
 * first, so this runs before the hook that closes the channel itself, while
 * it is still valid. (Released from the instance data's finalizer instead,
 * it was released after Node had freed it: abort() at exit once a second
 * channel, fanWatch's, changed the teardown order.)
 */
static void env_cleanup(void *data) {
  env_data *ed = data;
  napi_release_threadsafe_function(ed->tsfn, napi_tsfn_abort);
}

static void add_const(napi_env env, napi_value o, const char *k, double x) {
  set_num(env, o, k, x);
}

static napi_value init(napi_env env, napi_value exports) {
  /*
   * Node's Buffers come from malloc. glibc gives a large one (past a
   * threshold that starts at 128 KiB) its own mapping and unmaps it when
   * freed, and trims the heap's free top past 128 KiB: so a 1 MiB WRITE's
   * record, gathered from the socket's chunks, was fresh memory every time,
   * and the kernel faulted its 256 pages in one by one (165 000 faults per
   * GiB written; on this project's virtual machines that was most of a
   * WRITE's time). Buffers up to 4 MiB now come from the heap, and up to
   * 64 MiB of its free top stays mapped for the next ones (8 500 faults per
   * GiB; peak RSS +10 MiB). Once per process, at load.
   */
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  int e = gn_pool_start(POOL_THREADS);
  if (e) {
    napi_throw_error(env, NULL, "gvfs_native: cannot start the worker threads");
    return NULL;
  }
  env_data *ed = calloc(1, sizeof *ed);
  napi_value name;
  napi_create_string_utf8(env, "gvfs_native", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, ed, complete, &ed->tsfn) != napi_ok) {
    napi_throw_error(env, NULL, "gvfs_native: cannot create the completion channel");
    return NULL;
  }
  napi_unref_threadsafe_function(env, ed->tsfn);
  napi_set_instance_data(env, ed, NULL, NULL);
  napi_add_env_cleanup_hook(env, env_cleanup, ed);

  for (size_t i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
    napi_value fn;
    napi_create_function(env, OPS[i].name, NAPI_AUTO_LENGTH, call_op, (void *)&OPS[i], &fn);
    napi_set_named_property(env, exports, OPS[i].name, fn);
  }
  napi_value fn;
  napi_create_function(env, "whenIdle", NAPI_AUTO_LENGTH, when_idle, NULL, &fn);
  napi_set_named_property(env, exports, "whenIdle", fn);
  napi_create_function(env, "setWalkOnly", NAPI_AUTO_LENGTH, set_walk_only, NULL, &fn);
  napi_set_named_property(env, exports, "setWalkOnly", fn);
  napi_create_function(env, "info", NAPI_AUTO_LENGTH, get_info, NULL, &fn);
  napi_set_named_property(env, exports, "info", fn);
  napi_create_function(env, "self", NAPI_AUTO_LENGTH, get_self, NULL, &fn);
  napi_set_named_property(env, exports, "self", fn);
  napi_create_function(env, "preadCached", NAPI_AUTO_LENGTH, pread_cached, NULL, &fn);
  napi_set_named_property(env, exports, "preadCached", fn);
  napi_create_function(env, "setStatxScratch", NAPI_AUTO_LENGTH, set_statx_scratch, NULL, &fn);
  napi_set_named_property(env, exports, "setStatxScratch", fn);
  napi_create_function(env, "sdNotify", NAPI_AUTO_LENGTH, gn_sd_notify, NULL, &fn);
  napi_set_named_property(env, exports, "sdNotify", fn);
  napi_create_function(env, "fanWatch", NAPI_AUTO_LENGTH, gn_fan_watch, NULL, &fn);
  napi_set_named_property(env, exports, "fanWatch", fn);
  napi_create_function(env, "fanWatchStop", NAPI_AUTO_LENGTH, gn_fan_watch_stop, NULL, &fn);
  napi_set_named_property(env, exports, "fanWatchStop", fn);
  napi_create_function(env, "fanWatchPause", NAPI_AUTO_LENGTH, gn_fan_watch_pause, NULL, &fn);
  napi_set_named_property(env, exports, "fanWatchPause", fn);

  napi_value c;
  napi_create_object(env, &c);
  add_const(env, c, "AT_FDCWD", AT_FDCWD);
  add_const(env, c, "AT_EMPTY_PATH", AT_EMPTY_PATH);
  add_const(env, c, "AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW);
  add_const(env, c, "AT_SYMLINK_FOLLOW", AT_SYMLINK_FOLLOW);
  add_const(env, c, "AT_REMOVEDIR", AT_REMOVEDIR);
  add_const(env, c, "AT_EACCESS", AT_EACCESS);
  add_const(env, c, "AT_STATX_SYNC_AS_STAT", AT_STATX_SYNC_AS_STAT);
  add_const(env, c, "O_PATH", O_PATH);
  add_const(env, c, "O_DIRECTORY", O_DIRECTORY);
  add_const(env, c, "O_NOFOLLOW", O_NOFOLLOW);
  add_const(env, c, "O_RDONLY", O_RDONLY);
  add_const(env, c, "O_WRONLY", O_WRONLY);
  add_const(env, c, "O_RDWR", O_RDWR);
  add_const(env, c, "O_CREAT", O_CREAT);
  add_const(env, c, "O_EXCL", O_EXCL);
  add_const(env, c, "O_TRUNC", O_TRUNC);
  add_const(env, c, "RESOLVE_BENEATH", RESOLVE_BENEATH);
  add_const(env, c, "RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS);
  add_const(env, c, "RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS);
  add_const(env, c, "RESOLVE_NO_XDEV", RESOLVE_NO_XDEV);
  add_const(env, c, "RENAME_NOREPLACE", RENAME_NOREPLACE);
  add_const(env, c, "RENAME_EXCHANGE", RENAME_EXCHANGE);
  add_const(env, c, "STATX_BASIC_STATS", STATX_BASIC_STATS);
  add_const(env, c, "STATX_BTIME", STATX_BTIME);
  add_const(env, c, "UTIME_NOW", UTIME_NOW);
  add_const(env, c, "UTIME_OMIT", UTIME_OMIT);
  add_const(env, c, "S_IFMT", S_IFMT);
  add_const(env, c, "S_IFSOCK", S_IFSOCK);
  add_const(env, c, "S_IFIFO", S_IFIFO);
  add_const(env, c, "S_IFCHR", S_IFCHR);
  add_const(env, c, "S_IFBLK", S_IFBLK);
  add_const(env, c, "S_IFREG", S_IFREG);
  add_const(env, c, "S_IFDIR", S_IFDIR);
  add_const(env, c, "S_IFLNK", S_IFLNK);
  add_const(env, c, "R_OK", R_OK);
  add_const(env, c, "W_OK", W_OK);
  add_const(env, c, "X_OK", X_OK);
  add_const(env, c, "F_OK", F_OK);
  napi_set_named_property(env, exports, "constants", c);
  /* libfuse 3 low-level binding (fuse_ll.c): exports.fuse. */
  gn_fuse_ll_init(env, exports);
  return exports;
}

NAPI_MODULE_INIT() {
  return init(env, exports);
}
