/*
 * A test shim (LD_PRELOAD): GVFS_FAIL_THREAD=K makes the K-th creation of a
 * thread with a 256 KiB stack (the native pool's; Node's own threads use
 * other sizes) fail once with EAGAIN, as when a process is out of threads.
 * Never built into gvfs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
  static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
  static int seen, failed;
  if (!real) real = (int (*)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))dlsym(RTLD_NEXT, "pthread_create");
  const char *k = getenv("GVFS_FAIL_THREAD");
  size_t stack = 0;
  if (k && attr && pthread_attr_getstacksize(attr, &stack) == 0 && stack == 256 * 1024 && !failed && ++seen == atoi(k)) {
    failed = 1;
    return EAGAIN;
  }
  return real(t, attr, fn, arg);
}
