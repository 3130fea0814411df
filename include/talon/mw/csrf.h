/* talon — CSRF protection (synchronizer token pattern).
 *
 *   tl_app_use(app, tl_cookies(&cookie_opts));   // with a secret
 *   tl_app_use(app, tl_session(NULL));
 *   tl_app_use(app, tl_csrf(NULL));              // after tl_session
 *
 *   static void form(tl_req *req, tl_res *res) {
 *     char html[512];
 *     snprintf(html, sizeof html,
 *              "<form method=post action=/post>"
 *              "<input type=hidden name=_csrf value=\"%s\">...</form>",
 *              tl_csrf_token(req));
 *     ...
 *   }
 *
 * Each session gets a random 256-bit secret, stored in the session under
 * `session_key` on the first tl_csrf_token() call (which creates the
 * session, setting its cookie, if there was none). On an unsafe method
 * (anything but GET, HEAD, OPTIONS and TRACE: POST, PUT, PATCH, DELETE)
 * the middleware takes the submitted token from the `header_name` header,
 * or else, for a body of type application/x-www-form-urlencoded, from the
 * `field_name` form field (percent- and '+'-decoded), and compares it with
 * the session's secret in constant time. Missing or wrong: the client gets
 * 403 with a text body saying which ("CSRF token missing" / "CSRF token
 * invalid") and the handler does not run. A token is only valid for the
 * session it was issued for.
 *
 * The token handed out is masked: base64url(mask || mask XOR secret), with
 * a fresh random mask per request, so it differs from response to response
 * (no BREACH-style recovery through compressed pages); every token issued
 * for a session stays valid as long as the session's secret does.
 *
 * Requirements: the session middleware (talon/mw/session.h) must run
 * before this one for the same request; without it tl_csrf_token returns
 * NULL and unsafe requests fail with TL_ESTATE (500). Multipart forms are
 * not parsed: send the token in the header for those (and for fetch/XHR).
 * WebSocket upgrades are GET requests and pass; protect them with the ws
 * route's allowed_origins.
 *
 * Per-request state: tl_req_set() key TL_CSRF_KEY ("tl.csrf").
 */
#ifndef TALON_MW_CSRF_H
#define TALON_MW_CSRF_H

#include "../app.h"
#include "../http.h"
#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tl_req_set() key of the CSRF middleware's per-request state. */
#define TL_CSRF_KEY "tl.csrf"

/* Options for tl_csrf(). Zero fields take the default in brackets. */
typedef struct tl_csrf_options {
  /* Request header carrying the token ["X-CSRF-Token"]. Copied. */
  const char *header_name;
  /* Form field carrying the token in urlencoded bodies ["_csrf"]. Copied. */
  const char *field_name;
  /* Session key holding the secret ["tl.csrf"]. Copied. */
  const char *session_key;
} tl_csrf_options;

/* The CSRF middleware. `opts` may be NULL; its strings are copied. On out
 * of memory the returned middleware has fn == NULL (tl_app_use then
 * returns TL_EINVAL). */
TL_EXTERN tl_middleware tl_csrf(const tl_csrf_options *opts);

/* The token to embed in this request's page or form (base64url, 86
 * characters, safe in HTML attributes and URLs), creating the session's
 * secret (and the session, with its cookie) if needed: call it before the
 * response head goes out. The same string for every call within one
 * request; lives until the response finishes. NULL if the CSRF or session
 * middleware did not run for this request, or the session could not be
 * written (see tl_session_set). */
TL_EXTERN const char *tl_csrf_token(tl_req *req);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_CSRF_H */
