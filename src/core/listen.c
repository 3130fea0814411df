/* Listening sockets: a TCP address (dual stack or not), a unix socket
 * file (a stale one is cleared, the file goes at close), or a socket
 * descriptor the process was given (systemd socket activation). Every
 * call that can fail runs on the bare descriptor first; the libuv handle
 * is made from a socket that already listens. */
#include "core/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "talon/common.h"

static int sys_err(void) {
  return uv_translate_sys_error(errno);
}

static socklen_t addr_len(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                   : sizeof(struct sockaddr_in);
}

void tl__addr_set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

int tl__addr_port(const struct sockaddr_storage *ss) {
  return ntohs(ss->ss_family == AF_INET6
                   ? ((const struct sockaddr_in6 *)ss)->sin6_port
                   : ((const struct sockaddr_in *)ss)->sin_port);
}

/* Makes the libuv handle of a listening descriptor (taken over: closed
 * with the handle). */
static int adopt(uv_loop_t *loop, tl__listener *l, int fd, bool unix_sock) {
  int err = tl__sock_open(loop, &l->sock, fd);
  if (err) {
    close(fd);
    return err;
  }
  l->inited = true;
  l->unix_sock = unix_sock;
  return 0;
}

static int open_inet(uv_loop_t *loop, tl__listener *l,
                     const tl__listen_spec *sp, int port, bool reuse_port,
                     int backlog) {
  struct sockaddr_storage ss = sp->addr;
  tl__addr_set_port(&ss, port);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sys_err();
  int on = 1, v6only = sp->v6only;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      (reuse_port &&
       setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
      (ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
                                              &v6only, sizeof v6only) != 0) ||
      bind(fd, (const struct sockaddr *)&ss, addr_len(&ss)) != 0 ||
      listen(fd, backlog) != 0) {
    int err = sys_err();
    close(fd);
    return err;
  }
  return adopt(loop, l, fd, false);
}

/* A socket file left by a server that is gone (killed before it could
 * remove it) is removed; a live one (something accepts on it, or its
 * backlog is full) and a file that is not a socket are refused. */
static int clear_stale(const struct sockaddr_un *sun) {
  struct stat st;
  if (lstat(sun->sun_path, &st) != 0)
    return errno == ENOENT ? 0 : sys_err();
  if (!S_ISSOCK(st.st_mode))
    return UV_EEXIST;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return sys_err();
  int rc = connect(fd, (const struct sockaddr *)sun, sizeof *sun);
  int e = errno;
  close(fd);
  if (rc == 0 || e == EAGAIN || e == EPROTOTYPE)
    return UV_EADDRINUSE;
  if (e != ECONNREFUSED)
    return uv_translate_sys_error(e);
  if (unlink(sun->sun_path) != 0 && errno != ENOENT)
    return sys_err();
  return 0;
}

static int open_unix(uv_loop_t *loop, tl__listener *l,
                     const tl__listen_spec *sp, int backlog) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  size_t n = strnlen(sp->path, sizeof sp->path);
  if (n == 0)
    return TL_EINVAL;
  if (n >= sizeof sun.sun_path)
    return UV_ENAMETOOLONG;
  memcpy(sun.sun_path, sp->path, n + 1);
  int err = clear_stale(&sun);
  if (err)
    return err;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return sys_err();
  if (bind(fd, (const struct sockaddr *)&sun, sizeof sun) != 0) {
    err = sys_err();
    close(fd);
    return err;
  }
  struct stat st;
  if (lstat(sp->path, &st) == 0) {
    l->owns_path = true;
    l->path_dev = (uint64_t)st.st_dev;
    l->path_ino = (uint64_t)st.st_ino;
  }
  /* The mode is set before listen(2): until then a client's connect is
   * refused, so none gets in under the umask's permissions. */
  if ((sp->mode && chmod(sp->path, sp->mode) != 0) ||
      listen(fd, backlog) != 0) {
    err = sys_err();
    close(fd);
    tl__listener_close(l); /* removes the file */
    return err;
  }
  return adopt(loop, l, fd, true);
}

static int open_fd(uv_loop_t *loop, tl__listener *l, const tl__listen_spec *sp,
                   int backlog) {
  int type;
  socklen_t tlen = sizeof type;
  struct sockaddr_storage ss;
  socklen_t alen = sizeof ss;
  if (getsockopt(sp->fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 ||
      getsockname(sp->fd, (struct sockaddr *)&ss, &alen) != 0)
    return sys_err(); /* UV_EBADF, UV_ENOTSOCK */
  if (type != SOCK_STREAM ||
      (ss.ss_family != AF_UNIX && ss.ss_family != AF_INET &&
       ss.ss_family != AF_INET6))
    return TL_EINVAL;
  /* A copy: the descriptor given stays the caller's (a later listen can
   * take it again). Listening already (systemd did) or only bound. */
  int fd = fcntl(sp->fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return sys_err();
  if (listen(fd, backlog) != 0) {
    int err = sys_err();
    close(fd);
    return err;
  }
  return adopt(loop, l, fd, ss.ss_family == AF_UNIX);
}

int tl__listener_open(uv_loop_t *loop, tl__listener *l,
                      const tl__listen_spec *sp, int port, bool reuse_port,
                      int backlog) {
  int err;
  switch (sp->kind) {
  case TL__LISTEN_INET:
    err = open_inet(loop, l, sp, port, reuse_port, backlog);
    break;
  case TL__LISTEN_UNIX: err = open_unix(loop, l, sp, backlog); break;
  case TL__LISTEN_FD: err = open_fd(loop, l, sp, backlog); break;
  default: err = TL_EINVAL;
  }
  if (err)
    return err;
  l->port = 0;
  if (!l->unix_sock) {
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(tl__sock_fd(&l->sock), (struct sockaddr *)&bound,
                    &blen) == 0)
      l->port = tl__addr_port(&bound);
  }
  return 0;
}

void tl__listener_share(const tl__listener *l, tl__listen_spec *out) {
  *out = *l->spec;
  out->optional = false;
  if (l->spec->kind == TL__LISTEN_INET) {
    tl__addr_set_port(&out->addr, l->port);
    return;
  }
  out->kind = TL__LISTEN_FD;
  out->fd = tl__sock_fd(&l->sock);
}

void tl__listener_close(tl__listener *l) {
  if (l->owns_path) {
    struct stat st;
    l->owns_path = false;
    if (lstat(l->spec->path, &st) == 0 && (uint64_t)st.st_dev == l->path_dev &&
        (uint64_t)st.st_ino == l->path_ino)
      unlink(l->spec->path);
  }
  if (l->inited && !uv_is_closing(&l->sock.handle))
    tl__sock_close(&l->sock, NULL);
}
