/* The WebSocket opening handshake on an HTTP connection, and the switch
 * from the HTTP connection to a WebSocket connection.
 *
 * The HTTP connection block is sized for HTTP (parser, header table); a
 * WebSocket needs far less, plus the user's context. So an accepted
 * upgrade moves the socket to a new block (tl__conn_move: the descriptor
 * is duplicated into the new libuv handle, and the TLS state, if any,
 * moves with it) and the HTTP handle is closed, which leaves one small
 * allocation per WebSocket. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "ws/handshake.h"
#include "ws/wsconn.h"

/* The connection's upgrade release hook: the block of an upgrade that
 * did not happen goes. */
static void pending_release(tl__hconn *h) {
  tl_ws *ws = h->up_pending;
  h->up_pending = NULL;
  if (ws)
    tl__ws_discard(ws);
}

/* The WebSocket block waiting on this connection's upgrade, or NULL. */
static tl_ws *pending(const tl__hconn *h) {
  return h->up_release == pending_release ? h->up_pending : NULL;
}

static void reject(tl_res *res, int status, const char *text) {
  tl_res_status(res, status);
  tl_res_text(res, text);
}

static bool origin_allowed(const tl__wsroute *rt, const char *origin) {
  const char *const *list = rt->h.allowed_origins;
  if (!list || !origin)
    return true;
  for (; *list; list++)
    if (strcmp(*list, origin) == 0)
      return true;
  return false;
}

/* permessage-deflate: answers the first offer the route can honour. */
static void negotiate(tl_req *req, tl_ws *ws, tl__buf *head) {
  tl__buf offers = {0};
  for (size_t i = 0;; i++) {
    const char *v = tl_req_header_at(req, "sec-websocket-extensions", i);
    if (!v)
      break;
    if ((i && tl__buf_append(&offers, ", ", 2)) ||
        tl__buf_append(&offers, v, strlen(v)))
      break;
  }
  int c = ws->route->h.compression;
  tl__pmd_policy pol = {
      .compress = (c & (TL_SHARED_COMPRESSOR | TL_DEDICATED_COMPRESSOR)) != 0,
      .ctx_takeover = (c & TL_DEDICATED_COMPRESSOR) != 0,
      .max_window_bits = (c & TL_DEDICATED_COMPRESSOR)
                             ? ws->route->h.compress_window_bits
                             : 15,
      .inflate_takeover = (c & TL_DEDICATED_DECOMPRESSOR) != 0,
  };
  char answer[160];
  tl__pmd_agreed agreed;
  if (offers.len &&
      tl__pmd_negotiate(offers.data, offers.len, &pol, &agreed, answer,
                        sizeof answer) &&
      (ws->pmd = calloc(1, sizeof *ws->pmd))) {
    /* Out of memory here declines the extension, which is allowed. */
    ws->pmd->agreed = agreed;
    tl__buf_append(head, "Sec-WebSocket-Extensions: ", 26);
    tl__buf_append(head, answer, strlen(answer));
    tl__buf_append(head, "\r\n", 2);
  }
  tl__buf_free(&offers);
}

/* Writes the 101 into the new connection's cork and moves the socket. */
static int accept_upgrade(tl__hconn *h) {
  tl_req *req = &h->req;
  tl_res *res = &h->res;
  tl_ws *ws = pending(h);
  tl__conn *old = &h->conn;
  const char *key = tl_req_header(req, "sec-websocket-key");
  char accept[29];
  if (!key || tl__ws_accept_key(key, strlen(key), accept) != 0)
    return TL_EINVAL;
  /* Whatever an earlier pipelined response left corked goes first; a
   * response still queued in the kernel would be overtaken, so refuse. */
  tl__conn_flush(old);
  if (old->flags & TL__CONN_CLOSING)
    return TL_ECLOSED;
  /* An upgrade decided while the server shuts down would open a socket
   * the shutdown has already passed over: refuse it (503). */
  if (old->srv->stopping)
    return TL_ESTATE;
  if (tl__conn_pending(old) > 0)
    return TL_EAGAIN;
  tl__server *srv = old->srv;
  bool inited;
  if (tl__conn_move(old, &ws->conn, &inited) != 0) {
    if (inited) {
      /* The handle was initialised: it must be closed, so the block is
       * freed through the normal close path. */
      h->up_pending = NULL;
      tl__server_adopt(srv, &ws->conn);
      tl__conn_close(&ws->conn);
    }
    return TL_EIO;
  }
  h->up_pending = NULL;
  tl__server_adopt(srv, &ws->conn);

  tl__buf head = {0};
  int err = tl__buf_reserve(&head, 160 + res->hdrs.len);
  if (!err) {
    tl__buf_append(&head,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: ",
                   97);
    tl__buf_append(&head, accept, 28);
    tl__buf_append(&head, "\r\n", 2);
    if (ws->route->h.compression)
      negotiate(req, ws, &head);
    if (h->up_protocol) {
      tl__buf_append(&head, "Sec-WebSocket-Protocol: ", 24);
      tl__buf_append(&head, h->up_protocol, strlen(h->up_protocol));
      tl__buf_append(&head, "\r\n", 2);
    }
    tl__buf_append(&head, res->hdrs.data, res->hdrs.len);
    err = tl__buf_append(&head, "\r\n", 2);
  }
  /* Bytes the client sent behind the handshake are WebSocket frames. */
  tl__buf pre = {0};
  if (!err && h->avail > h->parse_pos)
    err = tl__buf_append(&pre, h->msg + h->parse_pos, h->avail - h->parse_pos);
  if (!err)
    err = tl__buf_append(&pre, h->later.data, h->later.len);
  if (!err)
    err = tl__conn_write(&ws->conn, head.data, head.len);
  tl__buf_free(&head);

  /* The HTTP connection is done: closing it closes only its descriptor.
   * It is closed after the socket has opened, so the upgrade request is
   * still intact for the observers that open calls. */
  if (err) {
    res->flags |= TL__R_FINISHED;
    res->abort_cb = NULL;
    tl__conn_close(old);
    tl__buf_free(&pre);
    tl__conn_close(&ws->conn);
    return err;
  }
  tl__res_upgraded(res); /* finish hooks see the 101 before open runs */
  tl__ws_start(ws, req, pre.data, pre.len);
  tl__conn_close(old);
  tl__buf_free(&pre);
  return 0;
}

/* Finishes an upgrade the handler accepted, or answers the failure. */
static void do_accept(tl__hconn *h) {
  int err = accept_upgrade(h);
  if (err && !(h->conn.flags & TL__CONN_CLOSING)) {
    tl__hconn_upgrade_release(h);
    tl_res_close_after(&h->res);
    reject(&h->res, 503, "Service Unavailable\n");
  }
}

/* The upgrade entry of a ws route: the handshake, the user's upgrade
 * handler, then the switch (or its refusal). */
static void upgrade(tl_req *req, tl_res *res, void *data) {
  tl__hconn *h = req->h;
  const tl__wsroute *rt = data;
  const char *conn = tl_req_header(req, "connection");
  const char *ver = tl_req_header(req, "sec-websocket-version");
  const char *key = tl_req_header(req, "sec-websocket-key");
  if (!ver || strcmp(ver, "13") != 0) {
    tl_res_status(res, 426);
    tl_res_header(res, "Sec-WebSocket-Version", "13");
    tl_res_text(res, "Upgrade Required: WebSocket version 13 only\n");
    return;
  }
  /* RFC 6455 11.3.1: the key appears once. With two, which one the 101
   * answers would be up to whoever reads it (a front end may read the
   * other). */
  if (req->version < 11 || !conn || !tl_token_list_has(conn, "upgrade") ||
      !key || !tl__ws_key_valid(key, strlen(key)) ||
      tl_req_header_at(req, "sec-websocket-key", 1)) {
    reject(res, 400, "Bad Request: invalid WebSocket handshake\n");
    return;
  }
  if (!origin_allowed(rt, tl_req_header(req, "origin"))) {
    reject(res, 403, "Forbidden: origin not allowed\n");
    return;
  }
  /* Upgrades never keep the HTTP connection: success moves the socket,
   * failure closes it (the client may already be sending frames). */
  tl_res_close_after(res);
  tl_ws *ws = tl__ws_new(h->conn.srv, rt);
  if (!ws) {
    reject(res, 503, "Service Unavailable\n");
    return;
  }
  h->up_pending = ws;
  h->up_release = pending_release;
  int rc = TL_ACCEPT;
  if (rt->h.upgrade) {
    rc = rt->h.upgrade(req, res, ws->data);
    if ((res->flags & TL__R_FINISHED) || (h->conn.flags & TL__CONN_CLOSING))
      return; /* the handler answered itself */
  }
  if (rc == TL_ACCEPT) {
    do_accept(h);
  } else if (rc == TL_PENDING) {
    res->flags |= TL__R_DEFERRED;
  } else {
    tl__hconn_upgrade_release(h);
    if (tl_res_get_status(res) == 200)
      tl_res_status(res, 403);
    tl_res_end(res, NULL, 0);
  }
}

int tl_ws_upgrade_accept(tl_res *res) {
  tl__hconn *h = res->h;
  if (!pending(h) || (res->flags & TL__R_FINISHED))
    return TL_ESTATE;
  if (h->conn.flags & TL__CONN_CLOSING)
    return TL_ECLOSED;
  res->flags &= ~TL__R_DEFERRED;
  do_accept(h);
  return 0;
}

bool tl_ws_protocol_offered(const tl_req *req, const char *name) {
  for (size_t i = 0;; i++) {
    const char *list = tl_req_header_at(req, "sec-websocket-protocol", i);
    if (!list)
      return false;
    if (name && tl__ws_protocol_listed(list, name))
      return true;
  }
}

int tl_ws_select_protocol(tl_res *res, const char *name) {
  tl__hconn *h = res->h;
  if (!pending(h))
    return TL_ESTATE;
  if (!name || !tl_ws_protocol_offered(&h->req, name))
    return TL_EINVAL;
  char *copy = strdup(name);
  if (!copy)
    return TL_ENOMEM;
  free(h->up_protocol);
  h->up_protocol = copy;
  return 0;
}

int tl_router_ws_route(tl_router *r, const char *pattern,
                       const tl_ws_handlers *handlers, size_t data_size,
                       const tl_middleware *mw, size_t nmw) {
  if (!handlers)
    return TL_EINVAL;
  tl__wsroute *rt = tl__wsroute_new(handlers, data_size);
  if (!rt)
    return TL_ENOMEM;
  tl__upgrade up = {.run = upgrade, .free = free, .data = rt};
  int err = tl__router_add_upgrade(r, pattern, &up, mw, nmw);
  if (err)
    free(rt);
  return err;
}

int tl_router_ws(tl_router *r, const char *pattern,
                 const tl_ws_handlers *handlers, size_t data_size) {
  return tl_router_ws_route(r, pattern, handlers, data_size, NULL, 0);
}
