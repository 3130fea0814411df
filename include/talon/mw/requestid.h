/* talon — request ids.
 *
 *   tl_app_use(app, tl_request_id(NULL));
 *   ... in a handler or a later middleware: tl_req_id(req)
 *
 * Each request gets an id: the incoming X-Request-Id when it is sane (1 to
 * `max_length` characters, all of [A-Za-z0-9._-]), otherwise a fresh one
 * (a random UUID version 4, or 32 hex digits, from OpenSSL's RAND_bytes:
 * 122 or 128 random bits). The id is stored as a per-request local under
 * TL_REQUEST_ID_KEY and echoed in the response header. An id that fails
 * the check is dropped, never echoed, so a client cannot inject text into
 * logs or into the response.
 *
 * If the request already has an id (another tl_request_id instance ran
 * first), that id is kept and nothing else happens.
 */
#ifndef TALON_MW_REQUESTID_H
#define TALON_MW_REQUESTID_H

#include <stdbool.h>

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tl_req_set()/tl_req_get() key under which the id (a NUL-terminated
 * string living until the response finishes) is stored. */
#define TL_REQUEST_ID_KEY "talon.request_id"

/* Formats of generated ids. */
enum {
  TL_REQUEST_ID_UUID = 0, /* "1b4e28ba-2fa1-41d2-883f-0016d3cca427" */
  TL_REQUEST_ID_HEX       /* "6f1c0b3e9d2a4c5b8e7f1a2b3c4d5e6f" */
};

/* Options for tl_request_id(). A zero field means the default, in
 * brackets. */
typedef struct tl_request_id_options {
  /* The header read from the request and written on the response, copied.
   * ["X-Request-Id"] */
  const char *header;
  /* Longest incoming id accepted, at most 1024. [128] */
  size_t max_length;
  /* Always generate, ignoring any incoming id (for servers facing
   * untrusted clients directly). [false] */
  bool ignore_incoming;
  /* Do not add the id to the response headers. [false] */
  bool no_echo;
  /* TL_REQUEST_ID_UUID or TL_REQUEST_ID_HEX. [UUID] */
  int format;
} tl_request_id_options;

/* A request-id middleware with `opts` (NULL: defaults) copied; ownership
 * of its context passes to whoever installs it. Returns a value whose fn
 * is NULL on out of memory or for invalid options (a header name that is
 * empty or not a token, max_length over 1024, an unknown format); then
 * tl_app_use returns TL_EINVAL. The middleware returns TL_NEXT, or
 * TL_ENOMEM / TL_EIO (no randomness) and talon answers 500. */
TL_EXTERN tl_middleware tl_request_id(const tl_request_id_options *opts);

/* The id of `req`, or NULL if no tl_request_id middleware ran for it. The
 * string lives until the response finishes. */
TL_EXTERN const char *tl_req_id(tl_req *req);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_REQUESTID_H */
