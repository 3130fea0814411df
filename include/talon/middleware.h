/* talon — middleware.
 *
 * A middleware is a small value: a function that sees every request before
 * its handler, plus an opaque context. It runs at app level (tl_app_use),
 * router level (tl_router_use: only for routes of that router) or route
 * level (the `mw` arguments of tl_app_route / tl_router_route). Order:
 * app middleware in registration order, then the middleware of each router
 * on the way from the app to the route (outermost first), then the route's
 * own, then the handler. App middleware also runs for requests that match
 * no route, before the not-found (404) or method-not-allowed (405) answer,
 * so a middleware like a static file server can answer them.
 *
 * Workers (tl_app_config.workers > 1): a middleware value is registered
 * once and shared by every worker, so its function runs on several
 * threads at the same time, with the same `ctx`. State in `ctx` that
 * requests change needs a lock or atomics; state a request owns (request
 * memory, tl_req_set) does not. The built-in middleware (talon/mw/) is
 * safe with any worker count: session store, rate limit table and access
 * log queue are shared app-wide under locks, the others keep no mutable
 * state. Callbacks given in their options (a rate-limit key, a CORS
 * allow function, compressible, set_headers, error hooks, a session
 * store, a logger sink) are called on the request's worker thread, and
 * so possibly concurrently (the logger's `write` sink excepted: see
 * talon/mw/logger.h).
 */
#ifndef TALON_MIDDLEWARE_H
#define TALON_MIDDLEWARE_H

#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a middleware function returns. */
enum {
  TL_NEXT = 0,   /* continue with the next middleware or the handler */
  TL_DONE = 1,   /* the middleware answered (or will have answered): stop */
  TL_PENDING = 2 /* async: the middleware called tl_res_defer() and will
                    later call tl_next() to continue or finish `res` */
};

/* `ctx` is the middleware's own context (tl_middleware.ctx). A negative
 * return (a TL_E* code) fails the request with 500 and that code: the
 * error middleware (talon/error.h) answers, unless a response was already
 * started (then the connection closes). tl_res_fail() fails it with a
 * status of the middleware's choice. */
typedef int (*tl_mw_fn)(tl_req *req, tl_res *res, void *ctx);

typedef struct tl_middleware {
  tl_mw_fn fn;             /* required */
  void *ctx;               /* passed to fn; owned by the middleware */
  void (*free)(void *ctx); /* called once when the app is freed (may be NULL) */
  const char *name;        /* for diagnostics (static string; may be NULL) */
  /* Set by a constructor that failed (fn NULL): why, TL_ENOMEM or
   * TL_EINVAL; tl_app_use, tl_router_use and the route functions return
   * it. 0 reads as TL_EINVAL. */
  int error;
  /* Called at every tl_app_listen() of the app that holds the middleware
   * (wherever it was registered: app, router or route), on the listening
   * thread, before any request and before the workers start: for
   * middleware that wants app-wide hooks, e.g. tl_app_on_log (the
   * logger's). Also at a later listen of the same app, so it must be
   * idempotent. A non-zero return (a TL_E* code) makes the listen fail
   * with it. May be NULL. */
  int (*attach)(void *ctx, tl_app *app);
} tl_middleware;

/* Continue the chain of a request whose middleware returned TL_PENDING:
 * runs the next middleware (or the handler). Must be called at most once
 * per TL_PENDING, and not after the response was finished or aborted.
 * Returns 0, or TL_ESTATE if the request is not waiting. */
TL_EXTERN int tl_next(tl_req *req, tl_res *res);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MIDDLEWARE_H */
