/*
 * relay: the least a user-level hop can cost. Forwards the bytes of every
 * TCP connection accepted on 127.0.0.1:LISTEN_PORT to TARGET_HOST:TARGET_PORT
 * and back, without looking at them: one read and one write per burst, two
 * threads per connection (one per direction), TCP_NODELAY both ways. The
 * chain benchmark puts two of these between nfsbench and nfs-ganesha, where
 * the proxy client and proxy server stand, to measure what two hops cost on
 * this machine before any NFS work (kernel copies, wake-ups, scheduling).
 *
 *   relay LISTEN_PORT TARGET_HOST TARGET_PORT
 * Prints the port it listens on (useful with 0) on a line, then serves until killed.
 * A benchmark tool, never part of gvfs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF (1 << 20)

/* One relayed connection: both descriptors, closed by whichever pump ends last. */
struct link { int a, b, pumps; };
struct pipe_ends { struct link *l; int from, to; };

static void unref(struct link *l) {
  if (__atomic_sub_fetch(&l->pumps, 1, __ATOMIC_ACQ_REL) == 0) {
    close(l->a);
    close(l->b);
    free(l);
  }
}

static void *pump(void *arg) {
  struct pipe_ends p = *(struct pipe_ends *)arg;
  free(arg);
  char *buf = malloc(BUF);
  for (;;) {
    ssize_t n = buf ? read(p.from, buf, BUF) : -1;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(p.to, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) goto out;
      off += w;
    }
  }
out:
  free(buf);
  /* Either side gone: end both directions (the other pump's read returns 0 or fails). */
  shutdown(p.from, SHUT_RDWR);
  shutdown(p.to, SHUT_RDWR);
  unref(p.l);
  return NULL;
}

static void start(struct link *l, int from, int to) {
  struct pipe_ends *p = malloc(sizeof *p);
  pthread_t t;
  if (p) {
    *p = (struct pipe_ends){ l, from, to };
    if (pthread_create(&t, NULL, pump, p) == 0) {
      pthread_detach(t);
      return;
    }
    free(p);
  }
  /* No thread: this direction is done before it began. */
  shutdown(from, SHUT_RDWR);
  shutdown(to, SHUT_RDWR);
  unref(l);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: relay LISTEN_PORT TARGET_HOST TARGET_PORT\n");
    return 2;
  }
  struct sockaddr_in la = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
  struct sockaddr_in ta = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
  inet_pton(AF_INET, "127.0.0.1", &la.sin_addr);
  if (inet_pton(AF_INET, argv[2], &ta.sin_addr) != 1) {
    fprintf(stderr, "relay: target must be an IPv4 address: %s\n", argv[2]);
    return 2;
  }
  /* A write to a connection the other side has reset fails with EPIPE and ends that connection only. */
  signal(SIGPIPE, SIG_IGN);
  int one = 1;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, (struct sockaddr *)&la, sizeof la) < 0 || listen(ls, 64) < 0) {
    perror("relay: listen");
    return 1;
  }
  socklen_t len = sizeof la;
  getsockname(ls, (struct sockaddr *)&la, &len);
  printf("%d\n", ntohs(la.sin_port));
  fflush(stdout);
  for (;;) {
    int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      perror("relay: accept");
      return 1;
    }
    int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (u < 0 || connect(u, (struct sockaddr *)&ta, sizeof ta) < 0) {
      perror("relay: connect");
      close(c);
      if (u >= 0) close(u);
      continue;
    }
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct link *l = malloc(sizeof *l);
    if (!l) {
      close(c);
      close(u);
      continue;
    }
    *l = (struct link){ c, u, 2 };
    start(l, c, u);
    start(l, u, c);
  }
}
