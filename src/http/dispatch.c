/* Dispatch: route matching and the middleware chain. */
#include <string.h>

#include "http/http.h"

static int method_slot(uint8_t m) {
  switch (m) {
  case HTTP_GET: return TL__M_GET;
  case HTTP_HEAD: return TL__M_HEAD;
  case HTTP_POST: return TL__M_POST;
  case HTTP_PUT: return TL__M_PUT;
  case HTTP_PATCH: return TL__M_PATCH;
  case HTTP_DELETE: return TL__M_DELETE;
  case HTTP_OPTIONS: return TL__M_OPTIONS;
  default: return TL__M_OTHER;
  }
}

void tl__route_req(tl_req *r) {
  tl__hconn *h = r->h;
  tl__rmatch m;
  const char *path = h->msg + r->url_off;
  size_t plen = tl__req_path_len(r, NULL);
  r->slot = method_slot(r->method);
  r->nparams = 0;
  r->route = NULL;
  r->allow = 0;
  if (plen == 0 || path[0] != '/') {
    /* "*" (OPTIONS *) or an absolute-form target: no route has it. */
    r->match_status = 404;
    return;
  }
  r->ws_upgrade = false;
  if (r->method == HTTP_GET) {
    r->ws_upgrade =
        r->upgrade_hdr &&
        tl_token_list_has(tl__req_hdr_value(r, r->upgrade_hdr), "websocket");
  }
  r->match_status = 404;
  if (r->ws_upgrade)
    r->match_status =
        tl__rtree_match(h->http->tree, TL__M_UPGRADE, path, plen, &m);
  if (r->match_status != 0)
    r->match_status = tl__rtree_match(h->http->tree, r->slot, path, plen, &m);
  if (r->match_status == 405 && (m.allow & (1u << TL__M_UPGRADE)) &&
      (r->slot == TL__M_GET || r->slot == TL__M_HEAD))
    r->match_status = 426; /* a WebSocket endpoint, asked for by plain GET */
  if (r->match_status == 0) {
    r->route = m.value;
    r->nparams = m.nparams;
    for (size_t i = 0; i < m.nparams; i++) {
      r->params[i].name = m.params[i].name;
      r->params[i].off = (uint32_t)(m.params[i].value - h->msg);
      r->params[i].len = (uint32_t)m.params[i].value_len;
      r->params[i].decoded = NULL;
    }
  } else if (r->match_status == 405) {
    r->allow = m.allow & ~(1u << TL__M_UPGRADE);
  }
}

static void send_405(tl_req *r, tl_res *res) {
  char allow[96];
  size_t n = 0;
  allow[0] = '\0';
  unsigned bits = r->allow;
  if (bits & (1u << TL__M_ALL))
    bits = (1u << TL__M_ALL) - 1;
  if (bits & (1u << TL__M_GET))
    bits |= 1u << TL__M_HEAD;
  for (int s = 0; s < TL__M_ALL; s++) {
    if (!(bits & (1u << s)))
      continue;
    const char *name = tl__rtree_slot_name(s);
    size_t l = strlen(name);
    if (n + l + 3 >= sizeof allow)
      break;
    if (n) {
      memcpy(allow + n, ", ", 2);
      n += 2;
    }
    memcpy(allow + n, name, l + 1);
    n += l;
  }
  tl_res_header(res, "Allow", allow);
  tl__error_run(r->h, r, 405, 0, NULL, false);
}

static void send_426(tl_res *res) {
  tl_res_status(res, 426);
  tl_res_header(res, "Upgrade", "websocket");
  tl_res_header(res, "Connection", "Upgrade");
  tl_res_header(res, "Sec-WebSocket-Version", "13");
  tl_res_text(res, "Upgrade Required: this is a WebSocket endpoint\n");
}

/* Whether the chain must stop: the response was finished (the connection
 * moves on only after we return) or the connection is closing. */
static bool answered(const tl__hconn *h) {
  return (h->res.flags & TL__R_FINISHED) || (h->conn.flags & TL__CONN_CLOSING);
}

/* Runs the chain from r->mw_idx on. */
static void run_chain(tl_req *r) {
  tl__hconn *h = r->h;
  tl_res *res = &h->res;
  tl_router *root = h->http->root;
  for (;;) {
    size_t napp = root->nmw;
    const tl_middleware *mw = NULL;
    if (r->mw_idx < napp)
      mw = &root->mw[r->mw_idx];
    else if (r->route && r->mw_idx - napp < r->route->nchain)
      mw = r->route->chain[r->mw_idx - napp];
    if (!mw)
      break;
    r->mw_idx++;
    int rc = mw->fn(r, res, mw->ctx);
    if (answered(h) || (res->flags & TL__R_FAILED))
      return; /* a failure's error middleware answered or deferred */
    if (rc == TL_NEXT && !(res->flags & TL__R_DEFERRED))
      continue;
    if (rc == TL_PENDING || (res->flags & TL__R_DEFERRED)) {
      r->waiting = true;
      res->flags |= TL__R_DEFERRED;
      return;
    }
    if (rc < 0) {
      if (!(res->flags & TL__R_HEAD_SENT)) {
        res->flags &= ~TL__R_DEFERRED;
        tl__error_run(h, r, 500, rc, NULL, true);
      } else {
        res->flags |= TL__R_CLOSE;
        tl_res_end(res, NULL, 0);
      }
      return;
    }
    /* TL_DONE without an answer: finish what was set. */
    tl_res_end(res, NULL, 0);
    return;
  }
  if (r->route && r->route->up.run)
    r->route->up.run(r, res, r->route->up.data);
  else if (r->route)
    r->route->handler(r, res);
  else if (r->match_status == 426)
    send_426(res);
  else if (r->match_status == 405)
    send_405(r, res);
  else if (h->http->not_found)
    h->http->not_found(r, res);
  else
    tl__error_run(h, r, 404, 0, NULL, false);
  if (!answered(h) && !(res->flags & TL__R_DEFERRED))
    tl_res_end(res, NULL, 0);
}

void tl__dispatch(tl__hconn *h) {
  tl_req *r = &h->req;
  tl_res *res = &h->res;
  tl__conn_timeout(&h->conn, 0);
  res->status = 200;
  res->flags = 0;
  if (!r->keep_alive || h->shutting_down || llhttp_get_upgrade(&h->parser))
    res->flags |= TL__R_CLOSE;
  if (r->method == HTTP_HEAD)
    res->flags |= TL__R_NO_BODY;
  r->mw_idx = 0; /* routed when its head was complete (conn.c) */
  r->waiting = false;
  run_chain(r);
}

int tl_next(tl_req *req, tl_res *res) {
  if (!req->waiting || (res->flags & TL__R_FINISHED))
    return TL_ESTATE;
  req->waiting = false;
  res->flags &= ~TL__R_DEFERRED;
  res->abort_cb = NULL;
  run_chain(req);
  return 0;
}

void tl__req_reset(tl_req *r) {
  for (size_t i = 0; i < r->nlocals; i++)
    if (r->locals[i].free_fn)
      r->locals[i].free_fn(r->locals[i].value);
  r->nlocals = r->cap_locals = 0;
  r->locals = NULL; /* arena memory */
  r->path = NULL;
  r->nparams = 0;
  r->route = NULL;
  r->waiting = false;
}
