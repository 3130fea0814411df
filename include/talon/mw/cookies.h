/* talon — cookies middleware: reading the Cookie header, writing
 * Set-Cookie, and signed cookies (HMAC-SHA256).
 *
 *   static const char *const secrets[] = {"a-long-random-secret-2024", NULL};
 *   tl_cookies_options co = {.secrets = secrets};
 *   tl_app_use(app, tl_cookies(&co));
 *   ...
 *   const char *theme = tl_req_cookie(req, "theme");        // NULL if absent
 *   tl_res_cookie(res, "theme", "dark",
 *                 &(tl_cookie_attrs){.path = "/", .max_age = 86400});
 *
 * Parsing (RFC 6265, section 5.4, read leniently):
 *  - pairs are separated by ';', surrounding spaces and tabs are removed,
 *    a value wrapped in double quotes loses the quotes;
 *  - a pair without '=', with an empty name, with a name that is not an
 *    RFC 7230 token, or with a control character in its value is skipped
 *    (the rest of the header is still read: a malformed pair is never
 *    fatal);
 *  - when a name appears more than once (in one header or across several
 *    Cookie headers) the FIRST occurrence wins: browsers send cookies with
 *    longer paths first, so the first is the most specific one;
 *  - at most `max_cookies` pairs and `max_bytes` bytes of Cookie header(s)
 *    are read; what lies beyond is ignored (whole pairs only, never a cut
 *    value).
 * The header is parsed lazily, on the first tl_req_cookie() call of a
 * request, into request-scoped memory (tl_req_alloc). The middleware's
 * per-request state is stored with tl_req_set() under the key
 * TL_COOKIES_KEY ("tl.cookies"); its layout is private.
 */
#ifndef TALON_MW_COOKIES_H
#define TALON_MW_COOKIES_H

#include <stdbool.h>
#include <time.h>

#include "../app.h"
#include "../http.h"
#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tl_req_set() key of the cookies middleware's per-request state. */
#define TL_COOKIES_KEY "tl.cookies"

/* The shortest secret tl_cookies() accepts, in bytes. */
#define TL_COOKIES_MIN_SECRET 16

/* Options for tl_cookies(). Zero fields take the default in brackets. */
typedef struct tl_cookies_options {
  /* Secrets for signed cookies: a NULL-terminated array of NUL-terminated
   * strings, each at least TL_COOKIES_MIN_SECRET bytes. The first one
   * signs; every one verifies, so a new secret can be put first while the
   * old ones still accept cookies signed before the rotation. Copied by
   * tl_cookies(). [NULL: no signed cookies; tl_res_cookie_signed and
   * tl_req_signed_cookie then fail / return NULL] */
  const char *const *secrets;
  /* Cookie pairs read per request; further pairs are ignored [128]. */
  unsigned max_cookies;
  /* Bytes of Cookie header(s) read per request; pairs reaching past this
   * are ignored [16384]. */
  size_t max_bytes;
} tl_cookies_options;

/* The cookies middleware. `opts` may be NULL (all defaults); everything in
 * it (the secrets too) is copied, nothing stays borrowed. The returned
 * value goes to tl_app_use / tl_router_use / a route's middleware array,
 * which take ownership of its ctx. On out of memory, or if a secret is
 * shorter than TL_COOKIES_MIN_SECRET bytes, the returned middleware has
 * fn == NULL (tl_app_use then returns TL_EINVAL) and owns nothing. */
TL_EXTERN tl_middleware tl_cookies(const tl_cookies_options *opts);

/* The value of cookie `name` sent by the client (first occurrence wins;
 * surrounding quotes removed), or NULL if absent, if `name` or `req` is
 * NULL, if the cookies middleware did not run for this request, or if
 * memory ran out. The string lives until the response finishes. */
TL_EXTERN const char *tl_req_cookie(tl_req *req, const char *name);

/* Like tl_req_cookie() for a cookie written with tl_res_cookie_signed():
 * the value without its signature if the signature matches one of the
 * secrets (compared in constant time), or NULL if the cookie is absent,
 * unsigned, tampered with, signed with an unknown secret, or if the
 * middleware has no secrets. Lives until the response finishes. */
TL_EXTERN const char *tl_req_signed_cookie(tl_req *req, const char *name);

/* SameSite attribute values. */
typedef enum tl_same_site {
  TL_SAMESITE_UNSET = 0, /* no attribute (the browser's default, Lax) */
  TL_SAMESITE_LAX,
  TL_SAMESITE_STRICT,
  TL_SAMESITE_NONE /* forces Secure (browsers refuse None without it) */
} tl_same_site;

/* Attributes of a Set-Cookie header. A zeroed struct (or NULL) sets none:
 * a session cookie for the current path. */
typedef struct tl_cookie_attrs {
  /* Path attribute; NULL: none. No control characters, no ';'. */
  const char *path;
  /* Domain attribute; NULL: none (host-only). Letters, digits, '-' and
   * '.' only. */
  const char *domain;
  /* Max-Age in seconds; 0: none. Negative: TL_EINVAL (use
   * tl_res_clear_cookie to delete). */
  int64_t max_age;
  /* Expires, as a time_t written as an IMF-fixdate ("Sun, 06 Nov 1994
   * 08:49:37 GMT"); 0: none. */
  time_t expires;
  bool secure;
  bool http_only;
  tl_same_site same_site;
} tl_cookie_attrs;

/* Add a Set-Cookie header "name=value; attributes" to `res`. `name` must
 * be a non-empty RFC 7230 token; `value` (may be empty, not NULL) must be
 * RFC 6265 cookie-octets: printable US-ASCII except space, '"', ',', ';'
 * and '\\' (percent-encode or base64url anything else). A name starting
 * with "__Secure-" needs `secure`; one starting with "__Host-" needs
 * `secure`, path "/" and no domain. Every pointer is copied. Returns 0;
 * TL_EINVAL for a NULL argument, a bad character in any part (CR, LF,
 * ';', ',' ... : no header injection), a negative max_age, an unknown
 * same_site, a broken prefix rule or an expires gmtime cannot convert;
 * TL_ETOOBIG if name and value together pass 4096 bytes (browsers drop
 * such cookies); TL_ESTATE once the head has been sent; TL_ENOMEM. */
TL_EXTERN int tl_res_cookie(tl_res *res, const char *name, const char *value,
                            const tl_cookie_attrs *attrs);

/* Like tl_res_cookie() with the value `value "." base64url(HMAC-SHA256(
 * secret, name "=" value))` (43 signature characters), signed with the
 * first secret of the cookies middleware that ran for this response's
 * request. Returns like tl_res_cookie(), and TL_ESTATE if the cookies
 * middleware did not run for this request or has no secrets. */
TL_EXTERN int tl_res_cookie_signed(tl_res *res, const char *name,
                                   const char *value,
                                   const tl_cookie_attrs *attrs);

/* Ask the client to delete cookie `name`: a Set-Cookie with an empty
 * value, Max-Age=0 and Expires in 1970. The cookie is only deleted if
 * path and domain match the ones it was set with, so pass the same
 * `attrs` (may be NULL; its max_age and expires are ignored). Returns like
 * tl_res_cookie(). */
TL_EXTERN int tl_res_clear_cookie(tl_res *res, const char *name,
                                  const tl_cookie_attrs *attrs);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_COOKIES_H */
