/* The cookies middleware: lazy Cookie parsing, Set-Cookie building and
 * HMAC-SHA256 signed cookies. Only public headers are used. */
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/cookies.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define DEFAULT_MAX_COOKIES 128u
#define DEFAULT_MAX_BYTES 16384u
/* Browsers keep at most 4096 bytes of name plus value. */
#define MAX_PAIR_BYTES 4096u
/* RFC 6265bis ignores longer attribute values. */
#define MAX_ATTR_BYTES 1024u
#define SIG_LEN TL_BASE64URL_LEN(32) /* 43: an HMAC-SHA256, unpadded */

typedef struct cookies_ctx {
  char **secrets; /* NULL-terminated copies */
  size_t nsecrets;
  unsigned max_cookies;
  size_t max_bytes;
  EVP_MAC *mac; /* HMAC, fetched once */
} cookies_ctx;

typedef struct pair {
  const char *name;
  const char *value;
} pair;

/* Per-request state under TL_COOKIES_KEY, in request memory. */
typedef struct cookies_req {
  const cookies_ctx *ctx;
  tl_req *req;
  bool parsed;
  size_t n;
  pair *pairs;
} cookies_req;

/* ---- character classes ------------------------------------------------ */

/* RFC 6265 cookie-octet. */
static bool is_cookie_octet(unsigned char c) {
  return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
         (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

static bool valid_value(const char *s) {
  for (; *s; s++)
    if (!is_cookie_octet((unsigned char)*s))
      return false;
  return true;
}

/* Path: any CHAR but controls and ';' (RFC 6265 path-value). */
static bool valid_path(const char *s) {
  if (!*s || strlen(s) > MAX_ATTR_BYTES)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c < 0x20 || c >= 0x7f || c == ';')
      return false;
  }
  return true;
}

static bool valid_domain(const char *s) {
  if (!*s || strlen(s) > MAX_ATTR_BYTES)
    return false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z') || c == '-' || c == '.'))
      return false;
  }
  return true;
}

/* ---- HMAC -----------------------------------------------------------------
 */

/* The signature of `name=value` with `secret`, base64url, into `out`
 * (SIG_LEN + 1 bytes). Returns 0 or TL_ENOMEM. */
static int sign(const cookies_ctx *c, const char *secret, const char *name,
                const char *value, size_t vlen, char *out) {
  unsigned char md[EVP_MAX_MD_SIZE];
  size_t mdlen = 0;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  EVP_MAC_CTX *m = EVP_MAC_CTX_new(c->mac);
  if (!m)
    return TL_ENOMEM;
  int ok =
      EVP_MAC_init(m, (const unsigned char *)secret, strlen(secret), params) &&
      EVP_MAC_update(m, (const unsigned char *)name, strlen(name)) &&
      EVP_MAC_update(m, (const unsigned char *)"=", 1) &&
      EVP_MAC_update(m, (const unsigned char *)value, vlen) &&
      EVP_MAC_final(m, md, &mdlen, sizeof md) && mdlen == 32;
  EVP_MAC_CTX_free(m);
  if (!ok)
    return TL_ENOMEM;
  tl_base64url_encode(out, SIG_LEN + 1, md, mdlen);
  OPENSSL_cleanse(md, sizeof md);
  return 0;
}

/* ---- middleware ------------------------------------------------------------
 */

static void ctx_free(void *p) {
  cookies_ctx *c = p;
  if (!c)
    return;
  for (size_t i = 0; i < c->nsecrets; i++) {
    OPENSSL_cleanse(c->secrets[i], strlen(c->secrets[i]));
    free(c->secrets[i]);
  }
  free(c->secrets);
  EVP_MAC_free(c->mac);
  free(c);
}

static int cookies_fn(tl_req *req, tl_res *res, void *ctx) {
  (void)res;
  cookies_req *st = tl_req_alloc(req, sizeof *st);
  if (!st)
    return TL_ENOMEM;
  *st = (cookies_req){.ctx = ctx, .req = req};
  int rc = tl_req_set(req, TL_COOKIES_KEY, st, NULL);
  return rc < 0 ? rc : TL_NEXT;
}

tl_middleware tl_cookies(const tl_cookies_options *opts) {
  tl_middleware none = {0};
  cookies_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    none.error = TL_ENOMEM; /* tl_app_use reports it */
    return none;
  }
  c->max_cookies =
      opts && opts->max_cookies ? opts->max_cookies : DEFAULT_MAX_COOKIES;
  c->max_bytes = opts && opts->max_bytes ? opts->max_bytes : DEFAULT_MAX_BYTES;
  size_t n = 0;
  if (opts && opts->secrets)
    while (opts->secrets[n])
      n++;
  c->secrets = calloc(n + 1, sizeof *c->secrets);
  c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (!c->secrets || !c->mac)
    goto fail;
  for (size_t i = 0; i < n; i++) {
    if (strlen(opts->secrets[i]) < TL_COOKIES_MIN_SECRET)
      goto fail;
    c->secrets[i] = strdup(opts->secrets[i]);
    if (!c->secrets[i])
      goto fail;
    c->nsecrets++;
  }
  return (tl_middleware){
      .fn = cookies_fn, .ctx = c, .free = ctx_free, .name = "cookies"};
fail:
  ctx_free(c);
  return none;
}

/* ---- parsing ------------------------------------------------------------- */

static bool ows(char c) {
  return c == ' ' || c == '\t';
}

/* Parses one cookie-pair [s, e) into the state; skips it if malformed. */
static int add_pair(cookies_req *st, const char *s, const char *e) {
  while (s < e && ows(*s))
    s++;
  while (e > s && ows(e[-1]))
    e--;
  const char *eq = memchr(s, '=', (size_t)(e - s));
  if (!eq)
    return 0;
  const char *ne = eq;
  while (ne > s && ows(ne[-1]))
    ne--;
  if (!tl_is_token(s, (size_t)(ne - s)))
    return 0;
  const char *v = eq + 1, *ve = e;
  while (v < ve && ows(*v))
    v++;
  if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') {
    v++;
    ve--;
  }
  for (const char *p = v; p < ve; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch < 0x20 || ch == 0x7f)
      return 0;
  }
  size_t nl = (size_t)(ne - s), vl = (size_t)(ve - v);
  char *buf = tl_req_alloc(st->req, nl + vl + 2);
  if (!buf)
    return TL_ENOMEM;
  memcpy(buf, s, nl);
  buf[nl] = '\0';
  memcpy(buf + nl + 1, v, vl);
  buf[nl + 1 + vl] = '\0';
  st->pairs[st->n++] = (pair){buf, buf + nl + 1};
  return 0;
}

static int parse(cookies_req *st) {
  const cookies_ctx *c = st->ctx;
  st->parsed = true;
  /* Upper bound of pairs: one per ';' plus one per header, capped. */
  size_t cap = 0, used = 0;
  const char *h;
  for (size_t i = 0; (h = tl_req_header_at(st->req, "cookie", i)); i++) {
    cap++;
    for (const char *p = h; *p; p++)
      cap += *p == ';';
  }
  if (cap > c->max_cookies)
    cap = c->max_cookies;
  if (cap == 0)
    return 0;
  st->pairs = tl_req_alloc(st->req, cap * sizeof *st->pairs);
  if (!st->pairs)
    return TL_ENOMEM;
  for (size_t i = 0; (h = tl_req_header_at(st->req, "cookie", i)); i++) {
    const char *p = h;
    for (;;) {
      const char *semi = strchr(p, ';');
      const char *e = semi ? semi : p + strlen(p);
      /* A pair counts with its separator: stop before one that would
       * reach past the byte budget, so no value is ever cut. */
      size_t len = (size_t)(e - p) + (semi ? 1 : 0);
      if (used + len > c->max_bytes || st->n == cap)
        return 0;
      used += len;
      int rc = add_pair(st, p, e);
      if (rc < 0)
        return rc;
      if (!semi)
        break;
      p = semi + 1;
    }
  }
  return 0;
}

static cookies_req *state(tl_req *req) {
  cookies_req *st = req ? tl_req_get(req, TL_COOKIES_KEY) : NULL;
  if (st && !st->parsed && parse(st) < 0)
    return NULL;
  return st;
}

const char *tl_req_cookie(tl_req *req, const char *name) {
  cookies_req *st = name ? state(req) : NULL;
  if (!st)
    return NULL;
  for (size_t i = 0; i < st->n; i++)
    if (strcmp(st->pairs[i].name, name) == 0)
      return st->pairs[i].value;
  return NULL;
}

const char *tl_req_signed_cookie(tl_req *req, const char *name) {
  const char *raw = tl_req_cookie(req, name);
  if (!raw)
    return NULL;
  cookies_req *st = tl_req_get(req, TL_COOKIES_KEY);
  const cookies_ctx *c = st->ctx;
  const char *dot = strrchr(raw, '.');
  if (!dot || c->nsecrets == 0 || strlen(dot + 1) != SIG_LEN)
    return NULL;
  size_t vlen = (size_t)(dot - raw);
  char sig[SIG_LEN + 8];
  bool ok = false;
  /* Every secret is tried, whatever matched, so the time taken says
   * nothing about which one did. */
  for (size_t i = 0; i < c->nsecrets; i++) {
    if (sign(c, c->secrets[i], name, raw, vlen, sig) < 0)
      return NULL;
    ok |= CRYPTO_memcmp(sig, dot + 1, SIG_LEN) == 0;
  }
  if (!ok)
    return NULL;
  char *out = tl_req_alloc(req, vlen + 1);
  if (!out)
    return NULL;
  memcpy(out, raw, vlen);
  out[vlen] = '\0';
  return out;
}

/* ---- Set-Cookie ------------------------------------------------------------
 */

static const char *const wdays[] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* IMF-fixdate of `t` into `out` (30 bytes). */
static int imf_date(time_t t, char *out, size_t size) {
  struct tm tm;
  if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1601 ||
      tm.tm_year + 1900 > 9999 || tm.tm_wday < 0 || tm.tm_wday > 6 ||
      tm.tm_mon < 0 || tm.tm_mon > 11)
    return TL_EINVAL;
  snprintf(out, size, "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday],
           tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
           tm.tm_min, tm.tm_sec);
  return 0;
}

/* Builds and adds the header. `clear`: deletion form (Max-Age=0, Expires in
 * 1970) instead of attrs->max_age / attrs->expires. */
static int set_cookie(tl_res *res, const char *name, const char *value,
                      const tl_cookie_attrs *attrs, bool clear) {
  static const tl_cookie_attrs none = {0};
  if (!res || !name || !value)
    return TL_EINVAL;
  const tl_cookie_attrs *a = attrs ? attrs : &none;
  size_t nl = strlen(name), vl = strlen(value);
  if (!tl_is_token(name, nl) || !valid_value(value))
    return TL_EINVAL;
  if (nl + vl > MAX_PAIR_BYTES)
    return TL_ETOOBIG;
  if ((a->path && !valid_path(a->path)) ||
      (a->domain && !valid_domain(a->domain)) || a->max_age < 0 ||
      a->same_site < TL_SAMESITE_UNSET || a->same_site > TL_SAMESITE_NONE)
    return TL_EINVAL;
  bool secure = a->secure || a->same_site == TL_SAMESITE_NONE;
  if (strncmp(name, "__Secure-", 9) == 0 && !secure)
    return TL_EINVAL;
  if (strncmp(name, "__Host-", 7) == 0 &&
      (!secure || a->domain || !a->path || strcmp(a->path, "/") != 0))
    return TL_EINVAL;
  char date[40] = "";
  if (clear)
    snprintf(date, sizeof date, "Thu, 01 Jan 1970 00:00:00 GMT");
  else if (a->expires && imf_date(a->expires, date, sizeof date) < 0)
    return TL_EINVAL;
  if (tl_res_head_sent(res))
    return TL_ESTATE;

  size_t cap = nl + vl + 2 + (a->path ? strlen(a->path) + 7 : 0) +
               (a->domain ? strlen(a->domain) + 9 : 0) + 160;
  char *buf = malloc(cap);
  if (!buf)
    return TL_ENOMEM;
  int n = snprintf(buf, cap, "%s=%s", name, value);
  if (a->path)
    n += snprintf(buf + n, cap - (size_t)n, "; Path=%s", a->path);
  if (a->domain)
    n += snprintf(buf + n, cap - (size_t)n, "; Domain=%s", a->domain);
  if (clear)
    n += snprintf(buf + n, cap - (size_t)n, "; Max-Age=0");
  else if (a->max_age > 0)
    n += snprintf(buf + n, cap - (size_t)n, "; Max-Age=%" PRId64, a->max_age);
  if (date[0])
    n += snprintf(buf + n, cap - (size_t)n, "; Expires=%s", date);
  if (secure)
    n += snprintf(buf + n, cap - (size_t)n, "; Secure");
  if (a->http_only)
    n += snprintf(buf + n, cap - (size_t)n, "; HttpOnly");
  static const char *const ss[] = {NULL, "Lax", "Strict", "None"};
  if (a->same_site != TL_SAMESITE_UNSET)
    snprintf(buf + n, cap - (size_t)n, "; SameSite=%s", ss[a->same_site]);
  int rc = tl_res_header(res, "Set-Cookie", buf);
  free(buf);
  return rc;
}

int tl_res_cookie(tl_res *res, const char *name, const char *value,
                  const tl_cookie_attrs *attrs) {
  return set_cookie(res, name, value, attrs, false);
}

int tl_res_clear_cookie(tl_res *res, const char *name,
                        const tl_cookie_attrs *attrs) {
  return set_cookie(res, name, "", attrs, true);
}

int tl_res_cookie_signed(tl_res *res, const char *name, const char *value,
                         const tl_cookie_attrs *attrs) {
  if (!res || !name || !value)
    return TL_EINVAL;
  tl_req *req = tl_res_req(res);
  cookies_req *st = req ? tl_req_get(req, TL_COOKIES_KEY) : NULL;
  if (!st || st->ctx->nsecrets == 0)
    return TL_ESTATE;
  size_t vl = strlen(value);
  if (!valid_value(value))
    return TL_EINVAL;
  if (vl + SIG_LEN + 1 + strlen(name) > MAX_PAIR_BYTES)
    return TL_ETOOBIG;
  char *buf = malloc(vl + SIG_LEN + 2);
  if (!buf)
    return TL_ENOMEM;
  memcpy(buf, value, vl);
  buf[vl] = '.';
  int rc = sign(st->ctx, st->ctx->secrets[0], name, value, vl, buf + vl + 1);
  if (rc == 0)
    rc = set_cookie(res, name, buf, attrs, false);
  free(buf);
  return rc;
}
