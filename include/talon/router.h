/* talon — routes and sub-routers.
 *
 * Patterns are paths made of segments separated by '/':
 *   - static segments match themselves exactly ("/users/me");
 *   - ":name" matches one non-empty segment and captures it as parameter
 *     `name` ("/users/:id");
 *   - a trailing "*" matches the rest of the path, possibly empty, and
 *     captures it as parameter "*" (pattern "/files/" followed by "*").
 * Precedence, whatever the registration order: static > :param > *, tried
 * segment by segment with backtracking, so "/users/me" beats "/users/:id"
 * and "/users/:id/posts" still matches when "/users/me" exists.
 * Matching runs on the raw (not percent-decoded) path and allocates
 * nothing; parameter values are percent-decoded when read.
 * A trailing slash is significant ("/a/" is not "/a"), except that "/" is
 * the root.
 *
 * Methods: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, and "*" (all
 * methods, used when no route for the request's own method exists on that
 * path). A HEAD request is served by the GET route when no HEAD route
 * exists, without a body. A path that exists for other methods only gets
 * 405 with an Allow header; a path that does not exist gets 404 (or the
 * app's not-found handler).
 *
 * Routes are compiled into the app's tree when tl_app_listen() starts;
 * routes registered later are refused with TL_ESTATE.
 */
#ifndef TALON_ROUTER_H
#define TALON_ROUTER_H

#include "middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_router tl_router;

/* An HTTP handler. Finishes `res` (tl_res_send, ...) or defers it with
 * tl_res_defer(); see the lifetime rules in talon/http.h. */
typedef void (*tl_handler)(tl_req *req, tl_res *res);

/* A new, empty router; NULL on out of memory. Owned by the caller until
 * passed to tl_app_mount() or tl_router_mount(), which take ownership; an
 * unmounted router is freed with tl_router_free(). */
TL_EXTERN tl_router *tl_router_new(void);

/* Free an unmounted router and everything registered on it. NULL is a
 * no-op. */
TL_EXTERN void tl_router_free(tl_router *router);

/* Register `handler` for `method` ("GET", ..., or "*" for all methods) and
 * `pattern`, with `nmw` route-level middleware in `mw` (copied; may be
 * NULL when nmw is 0; their ctx ownership passes to talon). Returns 0;
 * TL_EINVAL for an unknown method, a NULL handler or a malformed pattern
 * (not starting with '/', empty ":" name, "*" not last); TL_EEXIST if the
 * same method and pattern (parameter names aside) is already registered;
 * TL_ESTATE after listening started; TL_ENOMEM. */
TL_EXTERN int tl_router_route(tl_router *router, const char *method,
                              const char *pattern, tl_handler handler,
                              const tl_middleware *mw, size_t nmw);

/* Per-route options for tl_router_route_opts(). Zero fields mean the
 * default. */
typedef struct tl_route_options {
  /* Bytes of a request body on this route [0: the app's max_body_bytes],
   * above or below the app's. Over: 413, before any middleware runs when
   * a Content-Length says so, else (a streamed or chunked body) when the
   * limit is crossed. A buffered route takes at most 2 GiB (TL_EINVAL). */
  uint64_t max_body_bytes;
  /* Stream the body: the chain (middleware and handler) runs as soon as
   * the head has arrived, and the body is read as it arrives with
   * tl_req_body_stream() (talon/http.h), at bounded memory, however
   * large. Until a reader is set, nothing of the body is read. A
   * request without a body is dispatched as usual. [0: buffered: the
   * chain runs once the whole body is in memory]. */
  int stream_body;
} tl_route_options;

/* tl_router_route() with `opts` (copied; NULL: defaults). Returns like
 * tl_router_route(), and TL_EINVAL for a buffered route's max_body_bytes
 * over 2 GiB. */
TL_EXTERN int tl_router_route_opts(tl_router *router, const char *method,
                                   const char *pattern, tl_handler handler,
                                   const tl_middleware *mw, size_t nmw,
                                   const tl_route_options *opts);

/* Shorthands for tl_router_route() without route-level middleware. */
TL_EXTERN int tl_router_get(tl_router *r, const char *pattern, tl_handler h);
TL_EXTERN int tl_router_post(tl_router *r, const char *pattern, tl_handler h);
TL_EXTERN int tl_router_put(tl_router *r, const char *pattern, tl_handler h);
TL_EXTERN int tl_router_patch(tl_router *r, const char *pattern, tl_handler h);
TL_EXTERN int tl_router_delete(tl_router *r, const char *pattern, tl_handler h);
TL_EXTERN int tl_router_options(tl_router *r, const char *pattern,
                                tl_handler h);
TL_EXTERN int tl_router_head(tl_router *r, const char *pattern, tl_handler h);
TL_EXTERN int tl_router_all(tl_router *r, const char *pattern, tl_handler h);

/* Add router-level middleware: it runs for every route of this router
 * (and of routers mounted on it), after app-level middleware. `mw` is
 * copied; ownership of mw.ctx passes to talon (mw.free runs when the app,
 * or the unmounted router, is freed). Returns 0, TL_EINVAL (no fn),
 * TL_ESTATE or TL_ENOMEM; on error mw.ctx stays the caller's. */
TL_EXTERN int tl_router_use(tl_router *router, tl_middleware mw);

/* Mount `child` under `prefix` ("/api": its "/users" becomes
 * "/api/users"; its "/" becomes "/api"). Ownership of `child` passes to
 * `parent` on success. Returns 0; TL_EINVAL for a prefix that is not
 * "/"-started, ends in '/', or contains ':' or '*', or for a child that is
 * already mounted (or is the parent); TL_ESTATE; TL_ENOMEM. */
TL_EXTERN int tl_router_mount(tl_router *parent, const char *prefix,
                              tl_router *child);

#ifdef __cplusplus
}
#endif
#endif /* TALON_ROUTER_H */
