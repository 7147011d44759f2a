/*
 * The worker pool and the per-thread identity switch.
 *
 * Not libuv's pool: its threads also serve node:fs, and a thread that is
 * another user for a moment must be one we own. Jobs wait in one FIFO;
 * each worker runs one job at a time as the job's caller.
 *
 * Syncs have a lane of their own: syncIn, fsync and fdatasync jobs go
 * there (a sync needs no identity: the descriptor was opened, or written,
 * as whoever could), and so do the one-trip namespace changes (inDir,
 * renameIn) while a lane thread is idle: they switch to the caller for the
 * change alone and then run their sync step (dirops.c: `then`) as the
 * server on the same thread. Otherwise a job whose change must be durable
 * (such a change with the lane busy, a stable pwriteAs) is handed, once the
 * change is made, from its worker to the lane. An fsync may
 * wait long behind other writes to the disk (a VM image being written): on
 * the lane it holds no worker that a LOOKUP or a READ needs meanwhile.
 */
#include "gvfs_native.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A FIFO of jobs and the threads that take from it (waiting: idle; queued: jobs not yet taken). */
typedef struct {
  pthread_cond_t cond;
  gn_job *head, *tail;
  int idle, queued;
} lane;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER; /* set-up (ready) */
static lane work = {PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0};
static lane syncs = {PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0};
/* Threads of the sync lane (one file system's fsyncs mostly wait on one another there anyway). */
#define SYNC_THREADS 4
static int nthreads, nsyncs;
static int umask_private = 1;
static int ready; /* workers that finished their set-up */

/* The process's own identity, which every worker returns to after a job. */
static gn_creds home;

static int same_creds(const gn_creds *a, const gn_creds *b) {
  if (a->uid != b->uid || a->gid != b->gid || a->ngroups != b->ngroups) return 0;
  return memcmp(a->groups, b->groups, sizeof(gid_t) * (size_t)a->ngroups) == 0;
}

/*
 * Raw syscalls on purpose: glibc's setgroups/setfsuid... wrappers would be
 * fine for setfsuid, but setgroups(3) broadcasts to all threads (nptl
 * setxid), and we need every change to stay on this thread.
 */
static int set_fsuid(uid_t u) {
  syscall(SYS_setfsuid, u);
  return (uid_t)syscall(SYS_setfsuid, (uid_t)-1) == u ? 0 : EPERM;
}

static int set_fsgid(gid_t g) {
  syscall(SYS_setfsgid, g);
  return (gid_t)syscall(SYS_setfsgid, (gid_t)-1) == g ? 0 : EPERM;
}

static void restore_home(void) {
  if (syscall(SYS_setgroups, home.ngroups, home.groups) != 0 || set_fsgid(home.gid) != 0 || set_fsuid(home.uid) != 0) {
    /* Running the next caller's job with someone else's identity is worse than dying. */
    fprintf(stderr, "gvfs_native: cannot restore the process credentials (errno %d); aborting\n", errno);
    abort();
  }
}

/* 0, or an errno if the caller's identity could not be taken (e.g. the process is not root). */
int gn_become(const gn_creds *c) {
  if (same_creds(c, &home)) return 0;
  /* Nothing changed yet if this fails (no CAP_SETGID: a server that is not root). */
  if (syscall(SYS_setgroups, c->ngroups, c->groups) != 0) return errno;
  int e = set_fsgid(c->gid);
  if (!e) e = set_fsuid(c->uid);
  if (e) restore_home();
  return e;
}

/* Back to the process's own identity after gn_become(c) succeeded. */
void gn_restore(const gn_creds *c) {
  if (!same_creds(c, &home)) restore_home();
}

int gn_switches_itself(gn_op op) {
  return op == OP_IN_DIR || op == OP_RENAME_IN || op == OP_SYNC_IN || op == OP_ACCESS_OF || op == OP_SETATTR_OF || op == OP_STAT_OF || op == OP_LOOKUP_IN ||
         op == OP_READLINK_OF || op == OP_READDIR_OF || op == OP_STAT_NAMES;
}

static void enqueue(lane *l, gn_job *j) {
  j->next = NULL;
  if (l->tail) l->tail->next = j;
  else l->head = j;
  l->tail = j;
  l->queued++;
  pthread_cond_signal(&l->cond);
}

static void push(lane *l, gn_job *j) {
  pthread_mutex_lock(&lock);
  enqueue(l, j);
  pthread_mutex_unlock(&lock);
}

static gn_job *pop(lane *l) {
  pthread_mutex_lock(&lock);
  while (!l->head) {
    l->idle++;
    pthread_cond_wait(&l->cond, &lock);
    l->idle--;
  }
  gn_job *j = l->head;
  l->head = j->next;
  if (!l->head) l->tail = NULL;
  l->queued--;
  pthread_mutex_unlock(&lock);
  return j;
}

/* Jobs that go to the sync lane whole: nothing in them needs the caller's identity. */
static int sync_op(gn_op op) {
  return op == OP_SYNC_IN || op == OP_FSYNC || op == OP_FDATASYNC;
}

/*
 * The one-trip namespace changes: they switch to the caller for the change
 * alone (dirops.c) and must be durable before they complete. While a sync
 * lane thread is idle, one makes the change and syncs it, with no hand-off
 * from a worker to the lane (a thread wake-up; on an idle machine a sleeping
 * CPU woken). With the lane busy (syncs waiting behind other writes to the
 * disk), a worker makes the change as before: one that fails needs no sync
 * and is answered without waiting for the lane.
 */
static int lane_when_idle(gn_op op) {
  return op == OP_IN_DIR || op == OP_RENAME_IN;
}

/* The sync lane: as the server, never anyone else. */
static void *sync_worker(void *arg) {
  (void)arg;
  for (;;) {
    gn_job *j = pop(&syncs);
    void (*then)(gn_job *) = j->then;
    j->then = NULL;
    if (then) {
      then(j);
    } else if (sync_op(j->op) || lane_when_idle(j->op)) {
      /* A namespace change switches to the caller for the change alone (gn_switches_itself), then syncs here. */
      gn_run(j);
      then = j->then;
      j->then = NULL;
      if (then) then(j);
    } else {
      /* Never run a caller's job as the server. */
      j->ret = -1;
      j->err = EINVAL;
      j->syscall = "sync lane";
    }
    napi_call_threadsafe_function(j->tsfn, j, napi_tsfn_blocking);
  }
  return NULL;
}

static void *worker(void *arg) {
  (void)arg;
  for (;;) {
    gn_job *j = pop(&work);

    int e = 0;
    if (gn_switches_itself(j->op)) {
      /* Opens and checks as the server, the change alone as the caller (dirops.c). */
      gn_run(j);
    } else if ((e = gn_become(&j->cred)) != 0) {
      j->ret = -1;
      j->err = e;
      j->syscall = "setfsuid";
    } else {
      gn_run(j);
      if (!same_creds(&j->cred, &home)) restore_home();
    }
    /* Its change made, the job's sync goes on the sync lane, which completes it. */
    if (j->then) {
      push(&syncs, j);
      continue;
    }
    /* Blocking: the queue is unbounded, so this never waits in practice. */
    napi_call_threadsafe_function(j->tsfn, j, napi_tsfn_blocking);
  }
  return NULL;
}

static void *worker_main(void *arg) {
  /*
   * A private fs_struct (cwd, root, umask) for this thread, so umask(0)
   * here leaves the rest of the process's umask alone.
   */
  int ok = unshare(CLONE_FS) == 0;
  if (ok) umask(0);
  pthread_mutex_lock(&lock);
  if (!ok) umask_private = 0;
  ready++;
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
  return arg ? sync_worker(NULL) : worker(NULL);
}

/*
 * Start the workers and the sync lane (once per process; a call after a
 * start that fell short starts only what is missing, so a load that threw
 * can be retried). Fails unless all of them run: without the sync lane no
 * namespace change would ever complete.
 */
int gn_pool_start(int n) {
  if (nthreads >= n && nsyncs >= SYNC_THREADS) return 0;
  if (!nthreads && !nsyncs) {
    home.uid = geteuid();
    home.gid = getegid();
    int ng = getgroups(GN_MAX_GROUPS, home.groups);
    if (ng < 0) return errno;
    home.ngroups = ng;
  }
  /* Workers inherit this mask: signals stay with Node's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = 0;
  while (!e && (nthreads < n || nsyncs < SYNC_THREADS)) {
    int lane_thread = nthreads >= n; /* the workers first, then the sync lane (arg: non-NULL) */
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    e = pthread_create(&t, &attr, worker_main, lane_thread ? (void *)&syncs : NULL);
    pthread_attr_destroy(&attr);
    if (e) break;
    if (lane_thread) nsyncs++;
    else nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* Wait for the set-up, so gn_private_umask() is final when this returns (once, at load). */
  pthread_mutex_lock(&lock);
  while (ready < nthreads + nsyncs) pthread_cond_wait(&cond, &lock);
  pthread_mutex_unlock(&lock);
  return e;
}

void gn_pool_submit(gn_job *j) {
  j->then = NULL;
  j->keep[0] = j->keep[1] = -1;
  pthread_mutex_lock(&lock);
  /* An idle lane thread for each job already queued there, and one for this one. */
  int lane = sync_op(j->op) || (lane_when_idle(j->op) && syncs.idle > syncs.queued);
  enqueue(lane ? &syncs : &work, j);
  pthread_mutex_unlock(&lock);
}

const gn_creds *gn_home(void) {
  return &home;
}

int gn_pool_threads(void) {
  return nthreads;
}

int gn_private_umask(void) {
  pthread_mutex_lock(&lock);
  int v = umask_private;
  pthread_mutex_unlock(&lock);
  return v;
}

void gn_job_free(gn_job *j) {
  for (int i = 0; i < GN_NSTR; i++) free(j->s[i]);
  if (!j->bufref) free(j->buf);
  free(j->out);
  free(j->xs);
  free(j->xok);
  free(j->inos);
  free(j);
}
