/* Listening sockets (listen.c), for the server: open one from a spec (a
 * TCP address, a unix socket file, or a descriptor the process was
 * given), describe it for another worker's server, and close it. The
 * server (server.c) starts accepting on what this opens. */
#ifndef TALON_SRC_CORE_LISTEN_H
#define TALON_SRC_CORE_LISTEN_H

#include "core/conn.h"

/* The port of an IPv4 or IPv6 address (host order), and setting it. */
int tl__addr_port(const struct sockaddr_storage *ss);
void tl__addr_set_port(struct sockaddr_storage *ss, int port);

/* Opens `l` as `sp` says, on `loop`, with the TCP port `port` (in place
 * of the spec's own: a listener's later sockets take its first one's),
 * SO_REUSEPORT when `reuse_port` (INET: the other workers bind the same
 * port), and listening with `backlog`. The caller starts accepting with
 * uv_listen. l->inited says whether the handle was initialised, also on
 * failure: then the caller closes it with tl__listener_close, and the
 * memory must live until the loop has run once more. Returns 0; for INET,
 * a libuv error of socket, bind or listen (UV_EADDRINUSE,
 * UV_EADDRNOTAVAIL, UV_EAFNOSUPPORT, UV_EACCES); for UNIX, UV_EADDRINUSE
 * (something accepts on the file), UV_EEXIST (the path is not a socket),
 * UV_ENAMETOOLONG or another libuv error; for FD, UV_EBADF, UV_ENOTSOCK
 * or TL_EINVAL (not a stream socket of a family talon serves). */
int tl__listener_open(uv_loop_t *loop, tl__listener *l,
                      const tl__listen_spec *sp, int port, bool reuse_port,
                      int backlog);

/* The spec another worker's server opens to listen beside `l` (open):
 * the same address and the bound port (INET, with SO_REUSEPORT), or a
 * copy of l's descriptor (UNIX and FD: one socket, taken from by every
 * worker). `out` borrows l's descriptor while l is open. */
void tl__listener_share(const tl__listener *l, tl__listen_spec *out);

/* Closes `l` (if its handle was initialised, and not yet closing) and
 * removes the socket file it made, if the file is still that one. */
void tl__listener_close(tl__listener *l);

#endif
