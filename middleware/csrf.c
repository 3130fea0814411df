/* The CSRF middleware: per-session secret, masked tokens, checks on unsafe
 * methods. Only public headers are used. */
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/csrf.h>
#include <talon/mw/session.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define SECRET_BYTES 32
#define SECRET_CHARS TL_BASE64URL_LEN(SECRET_BYTES) /* 43 */
#define TOKEN_BYTES (2 * SECRET_BYTES)
#define TOKEN_CHARS TL_BASE64URL_LEN(TOKEN_BYTES) /* 86 */

typedef struct csrf_ctx {
  char *header_name;
  char *field_name;
  char *session_key;
} csrf_ctx;

typedef struct csrf_req {
  const csrf_ctx *ctx;
  const char *token; /* cached for the request */
} csrf_req;

/* The secret and the tokens travel as unpadded base64url; a stored or
 * received value decodes only if it has exactly `n` bytes. */
static bool b64url_decode_exact(const char *in, unsigned char *out, size_t n) {
  size_t got = 0;
  return tl_base64url_decode(out, n, in, strlen(in), &got) == 0 && got == n;
}

/* ---- middleware
 * -------------------------------------------------------------- */

static void ctx_free(void *p) {
  csrf_ctx *c = p;
  if (!c)
    return;
  free(c->header_name);
  free(c->field_name);
  free(c->session_key);
  free(c);
}

static bool safe_method(const char *m) {
  return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 ||
         strcmp(m, "OPTIONS") == 0 || strcmp(m, "TRACE") == 0;
}

static bool is_form(const char *ct) {
  tl_slice mt = tl_media_type(ct);
  return tl_str_ieq(mt.ptr, mt.len, "application/x-www-form-urlencoded");
}

/* The first value of form field `field` in the urlencoded body, decoded
 * into request memory; NULL if absent. */
static const char *form_field(tl_req *req, const char *field) {
  tl_slice body = tl_req_body(req), v;
  if (!tl_form_find(body.ptr, body.len, field, &v))
    return NULL;
  char *val = tl_req_alloc(req, v.len + 1);
  if (val)
    tl_pct_decode(val, v.len + 1, v.ptr, v.len, TL_PCT_FORM, NULL);
  return val;
}

static int reject(tl_res *res, const char *why) {
  tl_res_status(res, 403);
  tl_res_header(res, "Cache-Control", "no-store");
  tl_res_text(res, why);
  return TL_DONE;
}

/* Whether `token` unmasks to the secret stored as `secret_b64`. */
static bool token_matches(const char *token, const char *secret_b64) {
  unsigned char t[TOKEN_BYTES], secret[SECRET_BYTES], x[SECRET_BYTES];
  if (!secret_b64 || !b64url_decode_exact(secret_b64, secret, SECRET_BYTES) ||
      !b64url_decode_exact(token, t, TOKEN_BYTES))
    return false;
  for (size_t i = 0; i < SECRET_BYTES; i++)
    x[i] = t[i] ^ t[SECRET_BYTES + i];
  bool ok = CRYPTO_memcmp(x, secret, SECRET_BYTES) == 0;
  OPENSSL_cleanse(secret, sizeof secret);
  OPENSSL_cleanse(x, sizeof x);
  return ok;
}

static int csrf_fn(tl_req *req, tl_res *res, void *ctx) {
  csrf_ctx *c = ctx;
  csrf_req *st = tl_req_alloc(req, sizeof *st);
  if (!st)
    return TL_ENOMEM;
  *st = (csrf_req){.ctx = c};
  int rc = tl_req_set(req, TL_CSRF_KEY, st, NULL);
  if (rc < 0)
    return rc;
  if (safe_method(tl_req_method(req)))
    return TL_NEXT;
  if (!tl_req_get(req, TL_SESSION_KEY))
    return TL_ESTATE; /* the session middleware must run first */
  const char *token = tl_req_header(req, c->header_name);
  if ((!token || !*token) && is_form(tl_req_header(req, "content-type")))
    token = form_field(req, c->field_name);
  if (!token || !*token)
    return reject(res, "Forbidden: CSRF token missing\n");
  struct tl_session *s = tl_req_session(req);
  if (!s)
    return TL_ENOMEM;
  if (!token_matches(token, tl_session_get(s, c->session_key)))
    return reject(res, "Forbidden: CSRF token invalid\n");
  return TL_NEXT;
}

tl_middleware tl_csrf(const tl_csrf_options *opts) {
  tl_middleware none = {0};
  csrf_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    none.error = TL_ENOMEM; /* tl_app_use reports it */
    return none;
  }
  c->header_name =
      strdup(opts && opts->header_name ? opts->header_name : "X-CSRF-Token");
  c->field_name = strdup(opts && opts->field_name ? opts->field_name : "_csrf");
  c->session_key =
      strdup(opts && opts->session_key ? opts->session_key : "tl.csrf");
  if (!c->header_name || !c->field_name || !c->session_key || !*c->field_name ||
      !*c->session_key) {
    ctx_free(c);
    return none;
  }
  return (tl_middleware){
      .fn = csrf_fn, .ctx = c, .free = ctx_free, .name = "csrf"};
}

const char *tl_csrf_token(tl_req *req) {
  csrf_req *st = req ? tl_req_get(req, TL_CSRF_KEY) : NULL;
  if (!st)
    return NULL;
  if (st->token)
    return st->token;
  struct tl_session *s = tl_req_session(req);
  if (!s)
    return NULL;
  unsigned char secret[SECRET_BYTES], t[TOKEN_BYTES];
  const char *stored = tl_session_get(s, st->ctx->session_key);
  if (!stored || !b64url_decode_exact(stored, secret, SECRET_BYTES)) {
    char enc[SECRET_CHARS + 1];
    if (RAND_bytes(secret, sizeof secret) != 1)
      return NULL;
    tl_base64url_encode(enc, sizeof enc, secret, sizeof secret);
    if (tl_session_set(s, st->ctx->session_key, enc) < 0) {
      OPENSSL_cleanse(secret, sizeof secret);
      return NULL;
    }
  }
  if (RAND_bytes(t, SECRET_BYTES) != 1) {
    OPENSSL_cleanse(secret, sizeof secret);
    return NULL;
  }
  for (size_t i = 0; i < SECRET_BYTES; i++)
    t[SECRET_BYTES + i] = t[i] ^ secret[i];
  OPENSSL_cleanse(secret, sizeof secret);
  char *out = tl_req_alloc(req, TOKEN_CHARS + 1);
  if (!out)
    return NULL;
  tl_base64url_encode(out, TOKEN_CHARS + 1, t, TOKEN_BYTES);
  st->token = out;
  return out;
}
