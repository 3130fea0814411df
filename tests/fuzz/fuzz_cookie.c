/* libFuzzer target for the cookies middleware (middleware/cookies.c): the
 * Cookie header parser behind tl_req_cookie(), the Set-Cookie builder
 * tl_res_cookie() and signed cookies. The middleware runs against the
 * fake request of fake_http.c (its parser is static and reached through
 * the public accessors).
 *
 * Input: byte 0 picks the options (small pair/byte budgets, secrets);
 * the rest, up to a NUL, is cut at '\n' into Cookie header lines; after
 * the NUL come a cookie name and value (separated by '=') for the
 * Set-Cookie round trip, and byte 1 picks its attributes.
 *
 * Checks:
 *  - tl_req_cookie(name) for every name that appears in the input equals
 *    what a straightforward reading of the rules in talon/mw/cookies.h
 *    gives (first occurrence wins), or NULL when a budget cut it off;
 *  - a value never holds a control byte;
 *  - tl_res_cookie() succeeds exactly for a token name and a cookie-octet
 *    value (size and prefix rules aside), never emits CR/LF, and what it
 *    emits reads back to the same value through the parser;
 *  - a value signed with tl_res_cookie_signed() verifies with
 *    tl_req_signed_cookie(), and one flipped signature byte does not. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/cookies.h>

#include "fake_http.h"

static const char *const secrets[] = {"fuzz-secret-number-one-0123456789",
                                      "an-older-fuzz-secret-abcdef", NULL};

static bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_octet(unsigned char c) {
  return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
         (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

static bool ows(char c) {
  return c == ' ' || c == '\t';
}

/* The reference reading of one pair [s, e): on success the name and
 * value slices. Written from the header's prose, not from the code. */
static bool model_pair(const char *s, const char *e, const char **n,
                       size_t *nl, const char **v, size_t *vl) {
  while (s < e && ows(*s))
    s++;
  while (e > s && ows(e[-1]))
    e--;
  const char *eq = memchr(s, '=', (size_t)(e - s));
  if (!eq)
    return false;
  const char *ne = eq;
  while (ne > s && ows(ne[-1]))
    ne--;
  if (ne == s)
    return false;
  for (const char *p = s; p < ne; p++)
    if (!is_tchar((unsigned char)*p))
      return false;
  const char *vs = eq + 1;
  while (vs < e && ows(*vs))
    vs++;
  if (e - vs >= 2 && *vs == '"' && e[-1] == '"') {
    vs++;
    e--;
  }
  for (const char *p = vs; p < e; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return false;
  *n = s;
  *nl = (size_t)(ne - s);
  *v = vs;
  *vl = (size_t)(e - vs);
  return true;
}

/* The first value the model gives to `name` over all header lines. */
static bool model_lookup(char **lines, size_t nlines, const char *name,
                         const char **v, size_t *vl) {
  size_t want = strlen(name);
  for (size_t i = 0; i < nlines; i++) {
    const char *p = lines[i];
    for (;;) {
      const char *semi = strchr(p, ';');
      const char *e = semi ? semi : p + strlen(p);
      const char *n;
      size_t nl;
      if (model_pair(p, e, &n, &nl, v, vl) && nl == want &&
          memcmp(n, name, nl) == 0)
        return true;
      if (!semi)
        break;
      p = semi + 1;
    }
  }
  return false;
}

/* The number of pairs the model accepts over all header lines. */
static size_t model_count(char **lines, size_t nlines) {
  size_t n = 0;
  for (size_t i = 0; i < nlines; i++) {
    const char *p = lines[i];
    for (;;) {
      const char *semi = strchr(p, ';');
      const char *e = semi ? semi : p + strlen(p);
      const char *nm, *v;
      size_t nl, vl;
      n += model_pair(p, e, &nm, &nl, &v, &vl);
      if (!semi)
        break;
      p = semi + 1;
    }
  }
  return n;
}

/* Calls tl_req_cookie for every candidate name of the input and compares
 * with the model. `capped`: a budget may have cut the header short. */
static void check_lookups(tl_req *req, char **lines, size_t nlines,
                          bool capped) {
  for (size_t i = 0; i < nlines; i++) {
    const char *p = lines[i];
    for (;;) {
      const char *semi = strchr(p, ';');
      const char *e = semi ? semi : p + strlen(p);
      const char *n, *mv, *v;
      size_t nl, mvl, vl;
      if (model_pair(p, e, &n, &nl, &v, &vl)) {
        char *name = strndup(n, nl);
        if (!name)
          abort();
        const char *got = tl_req_cookie(req, name);
        if (!model_lookup(lines, nlines, name, &mv, &mvl))
          abort(); /* the model found it a moment ago */
        if (got) {
          if (strlen(got) != mvl || memcmp(got, mv, mvl) != 0)
            abort();
          for (const char *g = got; *g; g++)
            if ((unsigned char)*g < 0x20 || *g == 0x7f)
              abort();
        } else if (!capped) {
          abort();
        }
        free(name);
      }
      if (!semi)
        break;
      p = semi + 1;
    }
  }
}

/* Runs the cookies middleware on a fresh request with these headers. */
static tl_req *request(const tl_middleware *mw, char **lines, size_t n) {
  tl_req *req = fake_req_new();
  for (size_t i = 0; i < n; i++)
    fake_req_add_header(req, "Cookie", lines[i], strlen(lines[i]));
  if (mw->fn(req, fake_req_res(req), mw->ctx) != TL_NEXT)
    abort();
  return req;
}

static bool valid_token(const char *s) {
  if (!*s)
    return false;
  for (; *s; s++)
    if (!is_tchar((unsigned char)*s))
      return false;
  return true;
}

static bool valid_octets(const char *s) {
  for (; *s; s++)
    if (!is_octet((unsigned char)*s))
      return false;
  return true;
}

/* `budget`: the middleware's max_bytes; a pair longer than it is not
 * read back, by contract. */
static void set_cookie_round_trip(const tl_middleware *mw, uint8_t sel,
                                  const char *name, const char *value,
                                  bool have_secrets, size_t budget) {
  tl_cookie_attrs a = {0};
  if (sel & 1)
    a.path = "/";
  if (sel & 2)
    a.max_age = 3600;
  if (sel & 4)
    a.expires = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
  a.secure = sel & 8;
  a.http_only = sel & 16;
  a.same_site = (tl_same_site)((sel >> 5) & 3);

  tl_req *req = request(mw, NULL, 0);
  tl_res *res = fake_req_res(req);
  int rc = tl_res_cookie(res, name, value, &a);
  bool syntax_ok = valid_token(name) && valid_octets(value);
  bool secure = a.secure || a.same_site == TL_SAMESITE_NONE;
  bool prefix_ok =
      (strncmp(name, "__Secure-", 9) != 0 || secure) &&
      (strncmp(name, "__Host-", 7) != 0 || (secure && a.path));
  bool size_ok = strlen(name) + strlen(value) <= 4096;
  if (rc == 0) {
    if (!syntax_ok || !prefix_ok || !size_ok)
      abort();
    const char *h = fake_res_header_at(res, "Set-Cookie", 0);
    size_t nl = strlen(name), vl = strlen(value);
    if (!h || strpbrk(h, "\r\n") || strncmp(h, name, nl) != 0 ||
        h[nl] != '=' || strncmp(h + nl + 1, value, vl) != 0 ||
        (h[nl + 1 + vl] != '\0' && h[nl + 1 + vl] != ';'))
      abort();
    /* What was written reads back the same through the Cookie parser. */
    char *pair = strndup(h, nl + 1 + vl);
    if (!pair)
      abort();
    tl_req *back = request(mw, &pair, 1);
    const char *got = tl_req_cookie(back, name);
    if (strlen(pair) <= budget && (!got || strcmp(got, value) != 0))
      abort();
    fake_req_end(back);
    free(pair);
  } else if (rc == TL_EINVAL) {
    if (syntax_ok && prefix_ok)
      abort();
  } else if (rc == TL_ETOOBIG) {
    if (size_ok)
      abort();
  } else {
    abort();
  }

  rc = tl_res_cookie_signed(res, name, value, NULL);
  if (!have_secrets) {
    if (rc != TL_ESTATE)
      abort();
  } else if (rc == 0) {
    size_t nh = fake_res_header_count(res, "Set-Cookie");
    const char *h = fake_res_header_at(res, "Set-Cookie", nh - 1);
    char *pair = strdup(h);
    if (!pair)
      abort();
    tl_req *back = request(mw, &pair, 1);
    const char *got = tl_req_signed_cookie(back, name);
    if (strlen(pair) <= budget && (!got || strcmp(got, value) != 0))
      abort();
    fake_req_end(back);
    /* One changed signature character must be refused. */
    size_t pl = strlen(pair);
    pair[pl - 1] = pair[pl - 1] == 'A' ? 'B' : 'A';
    back = request(mw, &pair, 1);
    if (tl_req_signed_cookie(back, name))
      abort();
    fake_req_end(back);
    free(pair);
  } else if (rc != TL_EINVAL && rc != TL_ETOOBIG) {
    abort();
  }
  fake_req_end(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint8_t opt = data[0], sel = data[1];
  data += 2;
  size -= 2;
  tl_cookies_options o = {0};
  if (opt & 1)
    o.max_cookies = 1 + (opt >> 4);
  if (opt & 2)
    o.max_bytes = 1 + (size_t)(opt >> 3) * 4;
  bool have_secrets = opt & 4;
  if (have_secrets)
    o.secrets = secrets;
  tl_middleware mw = tl_cookies(&o);
  if (!mw.fn)
    abort();

  const uint8_t *nul = memchr(data, 0, size);
  size_t hlen = nul ? (size_t)(nul - data) : size;
  /* Cookie header lines: copies cut at '\n' (talon never hands a header
   * value with CR or LF to middleware). */
  char *lines[64];
  size_t nlines = 0;
  for (size_t i = 0; i <= hlen && nlines < 64;) {
    const uint8_t *nl = memchr(data + i, '\n', hlen - i);
    size_t e = nl ? (size_t)(nl - data) : hlen;
    lines[nlines] = strndup((const char *)data + i, e - i);
    if (!lines[nlines])
      abort();
    for (char *c = lines[nlines]; *c; c++)
      if (*c == '\r')
        *c = ' ';
    nlines++;
    i = e + 1;
  }
  tl_req *req = request(&mw, lines, nlines);
  /* Past the budgets (small ones from the options, or the defaults: 128
   * pairs, 16384 bytes) a pair may be ignored. */
  bool capped = (opt & 3) != 0 || model_count(lines, nlines) > 128 ||
                hlen > 16384;
  check_lookups(req, lines, nlines, capped);
  fake_req_end(req);

  if (nul) {
    size_t rest = size - hlen - 1;
    char *nv = strndup((const char *)nul + 1, rest);
    if (!nv)
      abort();
    char *eq = strchr(nv, '=');
    const char *value = "";
    if (eq) {
      *eq = '\0';
      value = eq + 1;
    }
    set_cookie_round_trip(&mw, sel, nv, value, have_secrets,
                          o.max_bytes ? o.max_bytes : 16384);
    free(nv);
  }
  for (size_t i = 0; i < nlines; i++)
    free(lines[i]);
  mw.free(mw.ctx);
  return 0;
}
