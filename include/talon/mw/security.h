/* talon — security response headers (like helmet, or Harpia's Shield).
 *
 *   tl_app_use(app, tl_security_headers(NULL));
 *
 * By default every response gets
 *   X-Content-Type-Options: nosniff
 *   X-Frame-Options: DENY
 *   Referrer-Policy: no-referrer
 * and optionally Content-Security-Policy, Cross-Origin-Opener-Policy,
 * Cross-Origin-Resource-Policy and Strict-Transport-Security.
 *
 * Order: the headers are added when the request enters the middleware,
 * before the handler runs (talon has no hook just before the head is
 * written, and tl_res_header() appends: there is no replace). A header an
 * earlier middleware already added is left alone and not duplicated. A
 * handler that adds one of these headers itself produces a second line:
 * to vary a header per route, turn it off here and set it in the handler,
 * or install differently configured instances as router- or route-level
 * middleware instead of one at app level.
 *
 * HSTS: Strict-Transport-Security is only meaningful over TLS, so it is
 * sent only on requests that came over TLS talon terminated
 * (tl_req_is_tls, talon/tls.h), never on plain HTTP. With
 * `trust_proxy`, a request whose X-Forwarded-Proto (first value) is
 * "https" counts as having come over TLS: enable it only behind a proxy
 * that sets (and overwrites) that header.
 */
#ifndef TALON_MW_SECURITY_H
#define TALON_MW_SECURITY_H

#include <stdbool.h>

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X-Frame-Options values. */
enum {
  TL_FRAME_DENY = 0,   /* X-Frame-Options: DENY (the default) */
  TL_FRAME_SAMEORIGIN, /* X-Frame-Options: SAMEORIGIN */
  TL_FRAME_OFF         /* no X-Frame-Options header */
};

/* A restrictive Content-Security-Policy to start from, for apps that serve
 * their own scripts and styles only. */
#define TL_CSP_STRICT                                                          \
  "default-src 'self'; base-uri 'self'; form-action 'self'; "                 \
  "frame-ancestors 'none'; object-src 'none'"

/* Options for tl_security_headers(). A zero field means the default, in
 * brackets. Every string is copied. */
typedef struct tl_security_headers_options {
  /* TL_FRAME_DENY, TL_FRAME_SAMEORIGIN or TL_FRAME_OFF. [DENY] */
  int frame_options;
  /* Referrer-Policy value; "" sends none. ["no-referrer"] */
  const char *referrer_policy;
  /* Content-Security-Policy value (e.g. TL_CSP_STRICT). [NULL: not sent;
   * a policy has to match the app, so talon does not guess one] */
  const char *csp;
  /* Send the policy as Content-Security-Policy-Report-Only. [false] */
  bool csp_report_only;
  /* Cross-Origin-Opener-Policy value, e.g. "same-origin". [NULL: not sent] */
  const char *coop;
  /* Cross-Origin-Resource-Policy value, e.g. "same-origin". [NULL: not
   * sent] */
  const char *corp;
  /* Do not send X-Content-Type-Options: nosniff. [false: sent] */
  bool no_nosniff;
  /* Strict-Transport-Security max-age in seconds, sent only on requests
   * that came over TLS (see above). [0: never sent] */
  unsigned hsts_max_age;
  /* Append "; includeSubDomains" / "; preload" to HSTS. [false] */
  bool hsts_include_subdomains;
  bool hsts_preload;
  /* Trust X-Forwarded-Proto: https as proof of TLS. [false] */
  bool trust_proxy;
} tl_security_headers_options;

/* A security-headers middleware with `opts` (NULL: all defaults) copied;
 * ownership of its context passes to whoever installs it. On out of
 * memory, an out-of-range frame_options, or a string containing CR, LF or
 * NUL, it returns a value whose fn is NULL (tl_app_use then returns
 * TL_EINVAL) and nothing leaks. The middleware itself returns TL_NEXT, or
 * a TL_ENOMEM from tl_res_header (then talon answers 500). */
TL_EXTERN tl_middleware
tl_security_headers(const tl_security_headers_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_SECURITY_H */
