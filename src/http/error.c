/* Error pages: the error middleware (talon/error.h) and talon's own
 * pages when none answers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int tl_router_use_error(tl_router *r, tl_error_middleware mw) {
  if (!r || !mw.fn)
    return TL_EINVAL;
  if (r->owner && r->owner->compiled_ok)
    return TL_ESTATE;
  if (r->nemw == r->cap_emw) {
    size_t cap = r->cap_emw ? r->cap_emw * 2 : 2;
    tl_error_middleware *p = realloc(r->emw, cap * sizeof *p);
    if (!p)
      return TL_ENOMEM;
    r->emw = p;
    r->cap_emw = cap;
  }
  r->emw[r->nemw++] = mw;
  return 0;
}

bool tl__error_hooked(const tl__http *http) {
  return http->root && http->root->nemw > 0;
}

static bool answered(const tl__hconn *h) {
  return (h->res.flags & TL__R_FINISHED) || (h->conn.flags & TL__CONN_CLOSING);
}

/* talon's page: the reason phrase as text. */
static void default_page(tl_res *res, int status) {
  char body[64];
  snprintf(body, sizeof body, "%s\n", tl__status_reason(status));
  if (res->flags & TL__R_HAS_CTYPE)
    tl_res_remove_header(res, "Content-Type");
  tl_res_text(res, body);
}

void tl__error_run(tl__hconn *h, tl_req *req, int status, int code,
                   const char *message, bool failure) {
  tl_res *res = &h->res;
  if (failure) {
    tl__buf_reset(&res->hdrs, 4096);
    res->flags &= ~(TL__R_HAS_CLEN | TL__R_HAS_CTYPE);
  }
  res->status = status;
  if (res->flags & TL__R_IN_ERROR) {
    /* An error middleware failed the request again: no second round. */
    default_page(res, status);
    return;
  }
  tl_error e = {status, code, message ? message : tl__status_reason(status)};
  const tl_router *rt = req && req->route && req->route->router
                            ? req->route->router
                            : h->http->root;
  res->flags |= TL__R_IN_ERROR;
  for (; rt; rt = rt->parent) {
    for (size_t i = 0; i < rt->nemw; i++) {
      int rc = rt->emw[i].fn(req, res, &e, rt->emw[i].ctx);
      if (answered(h) || (res->flags & TL__R_DEFERRED)) {
        res->flags &= ~TL__R_IN_ERROR;
        return;
      }
      if (rc == TL_DONE) {
        /* Answered with what was set (like a middleware's TL_DONE). */
        res->flags &= ~TL__R_IN_ERROR;
        tl_res_end(res, NULL, 0);
        return;
      }
    }
  }
  res->flags &= ~TL__R_IN_ERROR;
  default_page(res, res->status);
}

int tl_res_fail(tl_res *res, int status, int code) {
  if (status < 400 || status > 599)
    return TL_EINVAL;
  if (res->flags & TL__R_FINISHED)
    return TL_ESTATE;
  tl__hconn *h = res->h;
  if (h->conn.flags & TL__CONN_CLOSING)
    return TL_ECLOSED;
  res->flags |= TL__R_FAILED;
  if (res->flags & TL__R_HEAD_SENT) {
    /* Too late for a page, and the body must not look whole: what is
     * queued goes to the kernel, then the connection closes without the
     * last chunk (the response is aborted: on_close). */
    tl__conn_flush(&h->conn);
    tl__conn_close(&h->conn);
    return 0;
  }
  /* A deferred response that fails: what the handler deferred for is
   * over; the error middleware may defer again. */
  res->flags &= ~TL__R_DEFERRED;
  res->abort_cb = NULL;
  h->req.waiting = false;
  tl__error_run(h, &h->req, status, code, NULL, true);
  return 0;
}

/* The answer to a request that could not be read (conn.c): the error
 * middleware's page, else "<status> <reason>"; the connection closes. */
void tl__res_send_error(tl__hconn *h, int status, const char *reason) {
  tl_res *res = &h->res;
  tl__buf_reset(&res->hdrs, 4096);
  res->flags = TL__R_CLOSE;
  res->status = status;
  bool plain = true;
  if (tl__error_hooked(h->http)) {
    /* The request is there when its head was read (the body was in
     * progress). */
    tl_req *req = h->phase == TL__P_BODY ? &h->req : NULL;
    tl__error_run(h, req, status, 0, reason, true);
    plain = false;
    if ((res->flags & (TL__R_DEFERRED | TL__R_FINISHED)) == TL__R_DEFERRED) {
      /* Deferred, which these answers cannot be (the connection ends
       * now): its abort callback is the last moment `res` is valid, and
       * talon's page answers. */
      tl_res_abort_cb cb = res->abort_cb;
      res->abort_cb = NULL;
      res->flags &= ~TL__R_DEFERRED;
      if (cb)
        cb(res, res->abort_arg);
      if (!(res->flags & TL__R_HEAD_SENT)) {
        tl__buf_reset(&res->hdrs, 4096);
        res->flags &= ~(TL__R_HAS_CLEN | TL__R_HAS_CTYPE);
        res->status = status;
        plain = true;
      }
    }
  }
  if (plain && !(res->flags & TL__R_FINISHED)) {
    char body[96];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
    tl_res_header(res, "Content-Type", "text/plain; charset=utf-8");
    tl_res_send(res, body, (size_t)n);
  }
  if (!(res->flags & TL__R_FINISHED) && !(h->conn.flags & TL__CONN_CLOSING))
    tl_res_end(res, NULL, 0);
  res->flags |= TL__R_FINISHED;
  res->flags &= ~TL__R_DEFERRED;
  res->abort_cb = NULL;
  tl__conn_end(&h->conn);
}
