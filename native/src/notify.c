/*
 * sd_notify(3) without libsystemd: one datagram ("READY=1", "STOPPING=1",
 * "STATUS=...") to the AF_UNIX datagram socket systemd names in
 * $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Node has
 * no unix datagram sockets, and `systemd-notify --ready` run as a child is
 * racy: it sends from another pid, which systemd can only attribute to the
 * unit (NotifyAccess=all) while that child still exists. Sent from the
 * daemon's own pid it works with NotifyAccess=main.
 *
 * Synchronous on the JS thread on purpose: one non-blocking sendto at
 * start and stop, never on a request path.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <node_api.h>

napi_value gn_sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  char msg[4096];
  size_t plen = 0, mlen = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], msg, sizeof msg, &mlen) != napi_ok) {
    napi_throw_type_error(env, NULL, "sdNotify(socketPath: string, message: string)");
    return NULL;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (plen == 0 || plen >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) {
    napi_throw_range_error(env, "EINVAL", "NOTIFY_SOCKET must be an absolute path or @abstract name that fits sun_path");
    return NULL;
  }
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  int err = 0;
  if (fd < 0) err = errno;
  else {
    ssize_t n = sendto(fd, msg, mlen, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
    if (n < 0) err = errno;
    else if ((size_t)n != mlen) err = EMSGSIZE;
    close(fd);
  }
  if (err) {
    char text[128];
    snprintf(text, sizeof text, "sd_notify: %s", strerror(err));
    napi_value code, m, e;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &m);
    napi_create_string_utf8(env, err == ENOENT ? "ENOENT" : err == ECONNREFUSED ? "ECONNREFUSED" : err == EACCES ? "EACCES" : "EIO", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, m, &e);
    napi_throw(env, e);
    return NULL;
  }
  return NULL;
}
