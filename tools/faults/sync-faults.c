/*
 * A test shim (LD_PRELOAD) that makes the syncs of the process it is loaded
 * into slow or failing, so tests can see what a server does when a sync
 * takes long or the disk refuses it. Never built into gvfs.
 *
 *   GVFS_SYNC_DELAY_MS=N     every fsync, fdatasync and syncfs waits N ms
 *                            before the system call (so a reply that did
 *                            not wait for its sync goes out before the
 *                            sync is even made)
 *   GVFS_SYNC_FAIL_DIRS=P    while a file exists at path P, fsync of a
 *                            directory fails with EIO (after doing nothing)
 *   GVFS_SYNC_LOG=P          a line is appended to file P as each sync
 *                            begins (a test waits for syncs under way)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void delay(void) {
  const char *log = getenv("GVFS_SYNC_LOG");
  if (log) {
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
      (void)!write(fd, "sync\n", 5);
      close(fd);
    }
  }
  const char *s = getenv("GVFS_SYNC_DELAY_MS");
  long ms = s ? atol(s) : 0;
  if (ms <= 0) return;
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int fails(int fd) {
  const char *flag = getenv("GVFS_SYNC_FAIL_DIRS");
  struct stat st;
  return flag && access(flag, F_OK) == 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  int e = errno;
  if (fails(fd)) {
    errno = EIO;
    return -1;
  }
  delay();
  errno = e;
  return real(fd);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  delay();
  return real(fd);
}

int syncfs(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "syncfs");
  delay();
  return real(fd);
}
