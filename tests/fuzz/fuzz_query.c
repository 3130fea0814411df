/* libFuzzer target for the text helpers of src/core/text.c
 * (include/talon/util.h: what tl_req_query, tl_req_path, tl_req_param, the
 * header-list readers and the middleware use).
 *
 * Input: byte 0 selects the mode, the rest is the text.
 *  - Every mode: tl_pct_decode of the raw text into an exactly sized
 *    buffer (n + 1 bytes, every flag combination) succeeds unless strict
 *    mode meets a bad escape, and returns at most n bytes; into a buffer
 *    one byte short of the result it reports TL_ETOOBIG without writing
 *    past it; tl_form_find on the raw text with a key taken from the
 *    text returns a slice inside it; tl_token_list_next walks the text
 *    (up to its first NUL) as a comma list: elements are non-empty,
 *    inside the text, without ',' and without surrounding blanks, and
 *    tl_token_list_has finds each of them; base64url of the text decodes
 *    back to it, and decoding the raw text never writes past its bound.
 *  - Round trip: the text is cut at '\n' into key/value strings, each is
 *    percent-encoded (every byte outside unreserved characters), joined as
 *    "k=v&k=v..." and looked up: tl_form_find must give back the FIRST
 *    value of each key, decoding to the original bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "talon/util.h"

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    abort();
  return p;
}

static void check_decode(const char *s, size_t n) {
  for (unsigned flags = 0; flags < 4; flags++) {
    char *dst = xmalloc(n + 1);
    size_t m = 0;
    int rc = tl_pct_decode(dst, n + 1, s, n, flags, &m);
    if (rc == TL_EINVAL && (flags & TL_PCT_STRICT) && memchr(s, '%', n)) {
      free(dst);
      continue;
    }
    if (rc != 0 || m > n || dst[m] != '\0')
      abort();
    /* Without '%' there is nothing to decode: output = input, except
     * '+' in form mode. */
    if (!memchr(s, '%', n)) {
      if (m != n)
        abort();
      for (size_t i = 0; i < n; i++)
        if (dst[i] != (((flags & TL_PCT_FORM) && s[i] == '+') ? ' ' : s[i]))
          abort();
    }
    free(dst);
    /* One byte short of the result and its NUL: TL_ETOOBIG, within
     * bounds (an exactly sized heap block catches an overflow). */
    char *small = xmalloc(m);
    if (tl_pct_decode(small, m, s, n, flags, NULL) != TL_ETOOBIG)
      abort();
    free(small);
  }
}

static void check_list(const char *s, size_t n) {
  char *z = xmalloc(n + 1); /* the list up to its first NUL */
  memcpy(z, s, n);
  z[n] = '\0';
  size_t zl = strlen(z), len, count = 0;
  const char *cur = z, *e;
  while (tl_token_list_next(&cur, &e, &len)) {
    if (len == 0 || e < z || e + len > z + zl || cur > z + zl ||
        memchr(e, ',', len))
      abort();
    if (e[0] == ' ' || e[0] == '\t' || e[len - 1] == ' ' || e[len - 1] == '\t')
      abort();
    char *tok = xmalloc(len + 1);
    memcpy(tok, e, len);
    tok[len] = '\0';
    if (!tl_token_list_has(z, tok))
      abort();
    free(tok);
    if (++count > n)
      abort(); /* no progress */
  }
  free(z);
}

static void check_raw_query(const char *s, size_t n) {
  /* The first key of the text, decoded, must be found, and its value must
   * be a slice of the text. */
  size_t end = 0;
  while (end < n && s[end] != '&' && s[end] != '=')
    end++;
  char *key = xmalloc(end + 1);
  size_t kl = 0;
  tl_pct_decode(key, end + 1, s, end, TL_PCT_FORM, &kl);
  if (kl == strlen(key) && end > 0) { /* keys with NUL cannot be asked */
    tl_slice v;
    if (!tl_form_find(s, n, key, &v))
      abort();
    if (v.ptr < s || v.ptr + v.len > s + n)
      abort();
  }
  free(key);
}

static void check_base64url(const char *s, size_t n) {
  char *enc = xmalloc(TL_BASE64URL_LEN(n) + 1);
  if (tl_base64url_encode(enc, TL_BASE64URL_LEN(n) + 1, s, n) != 0 ||
      strlen(enc) != TL_BASE64URL_LEN(n))
    abort();
  char *back = xmalloc(n);
  size_t bl = 0;
  if (tl_base64url_decode(back, n, enc, TL_BASE64URL_LEN(n), &bl) != 0 ||
      bl != n || memcmp(back, s, n) != 0)
    abort();
  free(back);
  free(enc);
  /* The raw text as base64url: whatever the answer, within bounds. */
  size_t room = n * 3 / 4;
  char *out = xmalloc(room);
  int rc = tl_base64url_decode(out, room, s, n, &bl);
  if (rc != 0 && rc != TL_EINVAL)
    abort();
  if (rc == 0 && bl != room)
    abort();
  free(out);
}

static size_t pct_encode(char *out, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
        (c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  return o;
}

typedef struct kv {
  const char *k, *v;
  size_t kl, vl;
} kv;

static void check_round_trip(const char *s, size_t n) {
  kv pairs[32];
  size_t np = 0;
  for (size_t i = 0; i < n && np < 32;) {
    const char *nl = memchr(s + i, '\n', n - i);
    size_t e = nl ? (size_t)(nl - s) : n;
    const char *eq = memchr(s + i, '=', e - i);
    size_t ke = eq ? (size_t)(eq - s) : e;
    pairs[np++] = (kv){s + i, eq ? eq + 1 : s + e, ke - i,
                       eq ? e - ke - 1 : 0};
    i = e + 1;
  }
  char *qs = xmalloc(3 * n + np);
  size_t ql = 0;
  for (size_t i = 0; i < np; i++) {
    if (i)
      qs[ql++] = '&';
    ql += pct_encode(qs + ql, pairs[i].k, pairs[i].kl);
    qs[ql++] = '=';
    ql += pct_encode(qs + ql, pairs[i].v, pairs[i].vl);
  }
  char *exact = xmalloc(ql); /* exactly sized: over-reads are caught */
  memcpy(exact, qs, ql);
  free(qs);
  for (size_t i = 0; i < np; i++) {
    if (pairs[i].kl == 0 || memchr(pairs[i].k, '\0', pairs[i].kl))
      continue;
    size_t first = i;
    for (size_t j = 0; j < i; j++)
      if (pairs[j].kl == pairs[i].kl &&
          memcmp(pairs[j].k, pairs[i].k, pairs[i].kl) == 0) {
        first = j;
        break;
      }
    char *key = xmalloc(pairs[i].kl + 1);
    memcpy(key, pairs[i].k, pairs[i].kl);
    key[pairs[i].kl] = '\0';
    tl_slice v;
    if (!tl_form_find(exact, ql, key, &v))
      abort();
    char *dec = xmalloc(v.len + 1);
    size_t dl = 0;
    tl_pct_decode(dec, v.len + 1, v.ptr, v.len, TL_PCT_FORM, &dl);
    if (dl != pairs[first].vl || memcmp(dec, pairs[first].v, dl) != 0)
      abort();
    free(dec);
    free(key);
  }
  free(exact);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  size_t n = size - 1;
  char *s = xmalloc(n);
  memcpy(s, data + 1, n);
  check_decode(s, n);
  check_list(s, n);
  check_raw_query(s, n);
  check_base64url(s, n);
  if (mode & 1)
    check_round_trip(s, n);
  free(s);
  return 0;
}
