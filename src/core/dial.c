/* Outgoing connections: the resolver, then one attempt per address.
 *
 * Each attempt uses the dial's own handle, not the connection's: a libuv
 * handle whose connect failed cannot be connected again, and closing the
 * connection's handle would free the connection. The connection's handle
 * is made and adopted from the start (so that deadlines, shutdown and
 * close work while the dial runs) on a placeholder socket; when an
 * attempt succeeds its socket is duplicated onto the placeholder's
 * descriptor number (tl__conn_take_socket) and the attempt's handle
 * closes. */
#include "core/dial.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/server.h"
#include "talon/common.h"

struct tl__dial {
  uv_getaddrinfo_t gai;
  uv_connect_t req;
  uv_tcp_t h; /* the attempt in progress */
  tl__server *s;
  tl__conn *c; /* NULL once cancelled or done */
  tl__dial_cb done;
  struct addrinfo *res, *next;
  int last_err;
  bool resolving, h_open;
};

/* Frees the dial once libuv holds none of its parts. */
static void maybe_free(tl__dial *d) {
  if (d->resolving || d->h_open)
    return;
  if (d->res)
    uv_freeaddrinfo(d->res);
  free(d);
}

/* Ends the dial for its connection: `done` runs with it detached. */
static void finish(tl__dial *d, int status, bool dns) {
  tl__conn *c = d->c;
  d->c = NULL;
  if (c)
    d->done(c, status, dns);
}

static void attempt(tl__dial *d);

static void on_h_closed(uv_handle_t *h) {
  tl__dial *d = h->data;
  d->h_open = false;
  if (d->c) {
    if (d->next)
      attempt(d);
    else
      finish(d, d->last_err, false);
  }
  maybe_free(d);
}

static void close_attempt(tl__dial *d) {
  if (d->h_open && !uv_is_closing((uv_handle_t *)&d->h))
    uv_close((uv_handle_t *)&d->h, on_h_closed);
}

/* Moves the connected socket into the connection's handle. */
static int take_socket(tl__dial *d) {
  int fd;
  if (uv_fileno((uv_handle_t *)&d->h, &fd) != 0)
    return TL_EIO;
  return tl__conn_take_socket(d->c, fd);
}

static void on_connected(uv_connect_t *req, int status) {
  tl__dial *d = req->data;
  if (d->c && status == 0) {
    int err = take_socket(d);
    finish(d, err, false);
  } else if (status != 0) {
    d->last_err = status;
  }
  close_attempt(d); /* on_h_closed tries the next address, if failed */
}

static void attempt(tl__dial *d) {
  while (d->next) {
    struct addrinfo *ai = d->next;
    d->next = ai->ai_next;
    int err = uv_tcp_init(&d->s->loop, &d->h);
    if (err) {
      d->last_err = err;
      continue;
    }
    d->h.data = d; /* not tl__conn_mark: that marks a connection */
    d->h_open = true;
    d->req.data = d;
    err = uv_tcp_connect(&d->req, &d->h, ai->ai_addr, on_connected);
    if (err == 0)
      return;
    d->last_err = err;
    close_attempt(d); /* on_h_closed goes on with the next */
    return;
  }
  finish(d, d->last_err ? d->last_err : UV_EADDRNOTAVAIL, false);
  maybe_free(d);
}

static void on_resolved(uv_getaddrinfo_t *req, int status,
                        struct addrinfo *res) {
  tl__dial *d = req->data;
  d->resolving = false;
  d->res = res;
  if (!d->c) {
    maybe_free(d);
    return;
  }
  if (status != 0) {
    finish(d, status, true);
    maybe_free(d);
    return;
  }
  d->next = res;
  attempt(d);
}

tl__dial *tl__dial_start(tl__server *s, tl__conn *c, const char *host, int port,
                         tl__dial_cb done, int *err) {
  /* The connection's handle is a poll on a socket that only holds the
   * place (never watched): the connected one is put under its number. */
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int e = fd < 0 ? uv_translate_sys_error(errno)
                 : tl__sock_open(&s->loop, &c->sock, fd);
  if (e) {
    if (fd >= 0)
      close(fd);
    uv_timer_init(&s->loop, &c->sock.none);
    tl__server_adopt(s, c);
    *err = e;
    return NULL;
  }
  tl__server_adopt(s, c);
  tl__dial *d = calloc(1, sizeof *d);
  if (!d) {
    *err = TL_ENOMEM;
    return NULL;
  }
  d->s = s;
  d->c = c;
  d->done = done;
  d->gai.data = d;
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_protocol = IPPROTO_TCP};
  d->resolving = true;
  int rc =
      uv_getaddrinfo(&s->loop, &d->gai, on_resolved, host, service, &hints);
  if (rc) {
    free(d);
    *err = rc;
    return NULL;
  }
  return d;
}

void tl__dial_cancel(tl__dial *d) {
  d->c = NULL;
  if (d->resolving)
    uv_cancel((uv_req_t *)&d->gai); /* on_resolved frees it */
  close_attempt(d);
  maybe_free(d);
}
