/* talon — CORS (cross-origin resource sharing) middleware.
 *
 *   static const char *const origins[] = {"https://app.example", NULL};
 *   tl_cors_options o = {.origins = origins, .credentials = true};
 *   tl_app_use(app, tl_cors(&o));
 *
 * What it does, per request:
 *  - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
 *    answered here and never reaches a handler: 204 with
 *    Access-Control-Allow-Origin, -Methods, -Headers (and -Credentials,
 *    -Max-Age when configured) if the origin is allowed; 403 with no CORS
 *    headers if it is not.
 *  - Any other request with an allowed Origin gets
 *    Access-Control-Allow-Origin (and -Credentials, -Expose-Headers), then
 *    continues to the next middleware or handler. A disallowed origin gets
 *    no CORS headers, and the request is still served (the browser hides
 *    the answer from the page).
 *  - `Vary: Origin` is added to every response whose CORS headers depend
 *    on the Origin (anything but "*" without credentials), whether or not
 *    the request carried an Origin, so shared caches key on it.
 * Install it at app level (tl_app_use) so preflights for paths that have no
 * OPTIONS route (which would otherwise get 405 or 404) are answered too:
 * router- and route-level middleware only runs for a matched route.
 */
#ifndef TALON_MW_CORS_H
#define TALON_MW_CORS_H

#include <stdbool.h>

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Decides whether `origin` (the request's Origin header, NUL-terminated,
 * valid only during the call) is allowed. `arg` is tl_cors_options.allow_arg. */
typedef bool (*tl_cors_allow_fn)(const char *origin, void *arg);

/* Options for tl_cors(). A zero field means the default, in brackets. */
typedef struct tl_cors_options {
  /* Allowed origins, NULL-terminated, compared exactly (ASCII
   * case-insensitively) with the Origin header, e.g.
   * "https://app.example:8443". An entry "*" allows any origin. The list
   * and its strings are copied. [NULL: see `allow`; neither set: "*"] */
  const char *const *origins;
  /* A callback deciding per origin, used when `origins` is NULL. The
   * function and `allow_arg` are borrowed for the middleware's lifetime. */
  tl_cors_allow_fn allow;
  void *allow_arg;
  /* Access-Control-Allow-Methods for preflights, copied.
   * ["GET,HEAD,PUT,PATCH,POST,DELETE"] */
  const char *methods;
  /* Access-Control-Allow-Headers for preflights, copied. [NULL: reflect
   * the request's Access-Control-Request-Headers when it is a well-formed
   * list of header names, with Vary: Access-Control-Request-Headers] */
  const char *allowed_headers;
  /* Access-Control-Expose-Headers on actual requests, copied. [none] */
  const char *exposed_headers;
  /* Send Access-Control-Allow-Credentials: true. Never combined with a
   * literal "*": with credentials, an origin allowed by "*" is reflected
   * instead (and the opaque origin "null" is then NOT allowed by "*").
   * Reflecting every origin with credentials lets any site make
   * credentialed requests: prefer a list. [false] */
  bool credentials;
  /* Access-Control-Max-Age in seconds on preflight answers. [0: not sent,
   * the browser's default (5 s) applies] */
  unsigned max_age;
} tl_cors_options;

/* A CORS middleware with `opts` (NULL: all defaults) copied as described
 * above; ownership of its context passes to whoever installs it
 * (tl_app_use, tl_router_use, route middleware arrays). On out of memory,
 * or if a configured string contains CR, LF or NUL, it returns a value
 * whose fn is NULL (tl_app_use then returns TL_EINVAL) and nothing leaks. */
TL_EXTERN tl_middleware tl_cors(const tl_cors_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_CORS_H */
