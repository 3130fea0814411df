/* The CSRF middleware: per-session secret, masked tokens, checks on unsafe
 * methods. Only public headers are used. */
#include <talon.h>
#include <talon/mw/csrf.h>
#include <talon/mw/session.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define SECRET_BYTES 32
#define SECRET_CHARS 43 /* base64url, unpadded */
#define TOKEN_BYTES (2 * SECRET_BYTES)
#define TOKEN_CHARS 86

typedef struct csrf_ctx {
  char *header_name;
  char *field_name;
  char *session_key;
} csrf_ctx;

typedef struct csrf_req {
  const csrf_ctx *ctx;
  const char *token; /* cached for the request */
} csrf_req;

/* ---- base64url ---------------------------------------------------------- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(const unsigned char *in, size_t n, char *out) {
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64chars[v >> 18];
    out[o++] = b64chars[(v >> 12) & 63];
    out[o++] = b64chars[(v >> 6) & 63];
    out[o++] = b64chars[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = b64chars[v >> 18];
    out[o++] = b64chars[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = b64chars[v >> 18];
    out[o++] = b64chars[(v >> 12) & 63];
    out[o++] = b64chars[(v >> 6) & 63];
  }
  out[o] = '\0';
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

/* Decodes exactly `n` bytes from unpadded base64url `in` (which must be
 * exactly as long as that takes, in canonical form); false otherwise. */
static bool b64url_decode(const char *in, size_t inlen, unsigned char *out,
                          size_t n) {
  if (inlen != (n * 4 + 2) / 3)
    return false;
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < inlen; i++) {
    int v = b64val((unsigned char)in[i]);
    if (v < 0)
      return false;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  return o == n && acc == 0; /* leftover bits must be zero */
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

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Form decoding of [s, s+n) into `out` (n + 1 bytes): '+' is a space,
 * %XX a byte, a malformed '%' stays. Returns the decoded length. */
static size_t form_decode(const char *s, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '+') {
      out[o++] = ' ';
    } else if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
               (lo = hexval(s[i + 2])) >= 0) {
      out[o++] = (char)(hi << 4 | lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return o;
}

static bool is_form(const char *ct) {
  static const char form[] = "application/x-www-form-urlencoded";
  size_t n = sizeof form - 1;
  if (!ct || strncasecmp(ct, form, n) != 0)
    return false;
  return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

/* The first value of form field `field` in the urlencoded body, decoded
 * into request memory; NULL if absent. */
static const char *form_field(tl_req *req, const char *field) {
  tl_slice body = tl_req_body(req);
  const char *p = body.ptr, *end = body.ptr + body.len;
  size_t flen = strlen(field);
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *pe = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(pe - p));
    const char *ke = eq ? eq : pe;
    size_t klen = (size_t)(ke - p);
    /* A decoded key is never longer than the raw one. */
    if (klen >= flen) {
      char *key = tl_req_alloc(req, klen + 1);
      if (!key)
        return NULL;
      if (form_decode(p, klen, key) == flen && memcmp(key, field, flen) == 0) {
        const char *v = eq ? eq + 1 : pe;
        size_t vlen = (size_t)(pe - v);
        char *val = tl_req_alloc(req, vlen + 1);
        if (!val)
          return NULL;
        form_decode(v, vlen, val);
        return val;
      }
    }
    p = amp ? amp + 1 : end;
  }
  return NULL;
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
  if (!secret_b64 ||
      !b64url_decode(secret_b64, strlen(secret_b64), secret, SECRET_BYTES) ||
      !b64url_decode(token, strlen(token), t, TOKEN_BYTES))
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
  if (!c)
    return none;
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
  if (!stored || !b64url_decode(stored, strlen(stored), secret, SECRET_BYTES)) {
    char enc[SECRET_CHARS + 1];
    if (RAND_bytes(secret, sizeof secret) != 1)
      return NULL;
    b64url_encode(secret, sizeof secret, enc);
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
  b64url_encode(t, TOKEN_BYTES, out);
  st->token = out;
  return out;
}
