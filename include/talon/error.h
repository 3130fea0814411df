/* talon — error pages the app decides.
 *
 *   static int page(tl_req *req, tl_res *res, const tl_error *e, void *ctx) {
 *     char body[128];
 *     snprintf(body, sizeof body, "{\"error\":%d}", e->status);
 *     tl_res_json(res, body);                 // the status is set already
 *     return TL_DONE;
 *   }
 *   tl_app_use_error(app, (tl_error_middleware){.fn = page});
 *
 * An error middleware is Express's `(err, req, res, next)`: it runs when a
 * request fails instead of being answered, and it answers with the page
 * of its choice (TL_DONE) or passes the error on (TL_NEXT, Express's
 * `next(err)`). When none answers, talon sends its own short text page.
 *
 * What reaches the error middleware, with `tl_error.status`:
 *  - 404: no route matched (after app middleware, and only when no
 *    tl_app_not_found() handler is set); headers set by app middleware are
 *    kept;
 *  - 405: the path exists for other methods; the Allow header is set and
 *    kept;
 *  - a handler or middleware called tl_res_fail(res, status, err): that
 *    status (400-599), and `err`;
 *  - a middleware returned a negative TL_E* code: 500 with that code;
 *  - the request could not be read: 400 malformed, 408 head or body too
 *    slow, 413 body too large, 414 target too long, 417 bad Expect, 431
 *    head too large, 505 HTTP version. For these `req` is NULL unless the
 *    request's head was complete (413 and 408 while the body was read, 417),
 *    the connection closes after the answer, and the answer must be made
 *    before the error middleware returns: one that defers anyway has its
 *    abort callback called at once (the last moment `req` and `res` are
 *    valid), and talon's page answers.
 * For a failure (not 404 and 405), headers set before it are discarded:
 * they belonged to the answer that failed. The status is already set on
 * `res` when an error middleware runs; it may change it.
 *
 * Order: the error middleware of the router that holds the route (the
 * innermost), then of each router it is mounted in, outward, then the
 * app's; each level in registration order. A request that matched no
 * route (404, 405) sees the app's only.
 *
 * A failure after the response's head went out (a streamed body) cannot
 * get a page: what was queued is sent, then the connection is closed
 * without ending the body (no last chunk), so the client sees it cut; the
 * response counts as aborted (tl_res_aborted) and the error middleware is
 * not called.
 */
#ifndef TALON_ERROR_H
#define TALON_ERROR_H

#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What failed, for an error middleware. Valid only during the call. */
typedef struct tl_error {
  int status;          /* the HTTP status to answer with (400-599) */
  int code;            /* a TL_E* or libuv code, or 0 */
  const char *message; /* a short reason ("Not Found"); never NULL */
} tl_error;

/* Answer `res` (any tl_res_* function; the response may also be deferred
 * with tl_res_defer() and finished later, except for requests that could
 * not be read, see above) and return TL_DONE, or return TL_NEXT to let the next
 * error middleware (finally talon's default page) answer. `req` may be NULL
 * (see above). `ctx` is the middleware's own. */
typedef int (*tl_error_fn)(tl_req *req, tl_res *res, const tl_error *err,
                           void *ctx);

typedef struct tl_error_middleware {
  tl_error_fn fn;          /* required */
  void *ctx;               /* passed to fn; owned by the middleware */
  void (*free)(void *ctx); /* called once when the app is freed (may be NULL) */
  const char *name;        /* for diagnostics (static string; may be NULL) */
} tl_error_middleware;

/* Add error middleware to `router` (runs for failures of its routes and
 * of routers mounted in it) or to the app (every failure). `mw` is
 * copied; ownership of mw.ctx passes to talon (mw.free runs when the app,
 * or the unmounted router, is freed). Returns 0, TL_EINVAL (NULL router
 * or fn), TL_ESTATE after listening started, or TL_ENOMEM; on error
 * mw.ctx stays the caller's. */
TL_EXTERN int tl_router_use_error(tl_router *router, tl_error_middleware mw);
TL_EXTERN int tl_app_use_error(tl_app *app, tl_error_middleware mw);

/* Fail the request with `status` (400-599) and `code` (a TL_E* code, or
 * 0): instead of a fixed page, the error middleware answers (see above).
 * For handlers and middleware, also from a later callback of a deferred
 * response; a middleware that fails returns anything afterwards (the
 * chain stops, the response being answered or deferred by the error
 * middleware). Returns 0; TL_EINVAL for a status outside 400-599;
 * TL_ESTATE if the response was finished; TL_ECLOSED if the client is
 * gone. If the head went out already (streaming), the connection is
 * closed as said above, and 0 is returned. After it returns 0, `req` and
 * `res` must not be used, unless tl_res_finished() says the error
 * middleware deferred the response. */
TL_EXTERN int tl_res_fail(tl_res *res, int status, int code);

#ifdef __cplusplus
}
#endif
#endif /* TALON_ERROR_H */
