/* libFuzzer target for the query-string and list helpers of
 * src/http/util.c (what tl_req_query, tl_req_path, tl_req_param and the
 * header-list readers use).
 *
 * Input: byte 0 selects the mode, the rest is the text.
 *  - Every mode: tl__pct_decode of the raw text into an exactly sized
 *    buffer (both '+' modes) never writes past n bytes and returns at most
 *    n; tl__query_find on the raw text with a key taken from the text
 *    returns a slice inside it, and that key compares equal with
 *    tl__pct_key_eq; tl__list_next walks the text as a comma list:
 *    elements are non-empty, inside the text, without ',' and without
 *    surrounding blanks, and tl__token_list_has finds each of them.
 *  - Round trip: the text is cut at '\n' into key/value strings, each is
 *    percent-encoded (every byte outside unreserved characters), joined as
 *    "k=v&k=v..." and looked up: tl__query_find must give back the FIRST
 *    value of each key, decoding to the original bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/util.h"

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    abort();
  return p;
}

static void check_decode(const char *s, size_t n) {
  for (int plus = 0; plus < 2; plus++) {
    char *dst = xmalloc(n);
    size_t m = tl__pct_decode(dst, s, n, plus);
    if (m > n)
      abort();
    /* Without '%' there is nothing to decode: output = input, except
     * '+' in query mode. */
    if (!memchr(s, '%', n)) {
      if (m != n)
        abort();
      for (size_t i = 0; i < n; i++)
        if (dst[i] != ((plus && s[i] == '+') ? ' ' : s[i]))
          abort();
    }
    free(dst);
  }
}

static void check_list(const char *s, size_t n) {
  size_t pos = 0, len, count = 0;
  const char *e;
  while (tl__list_next(s, n, &pos, &e, &len)) {
    if (len == 0 || e < s || e + len > s + n || pos > n || memchr(e, ',', len))
      abort();
    if (e[0] == ' ' || e[0] == '\t' || e[len - 1] == ' ' || e[len - 1] == '\t')
      abort();
    if (!memchr(e, '\0', len)) {
      char *tok = xmalloc(len + 1);
      memcpy(tok, e, len);
      tok[len] = '\0';
      if (!tl__token_list_has(s, n, tok))
        abort();
      free(tok);
    }
    if (++count > n)
      abort(); /* no progress */
  }
}

static void check_raw_query(const char *s, size_t n) {
  /* The first key of the text, decoded, must be found, and its value must
   * be a slice of the text. */
  size_t end = 0;
  while (end < n && s[end] != '&' && s[end] != '=')
    end++;
  char *key = xmalloc(end + 1);
  size_t kl = tl__pct_decode(key, s, end, true);
  key[kl] = '\0';
  if (kl == strlen(key) && end > 0) { /* keys with NUL cannot be asked */
    if (!tl__pct_key_eq(s, end, key))
      abort();
    const char *v;
    size_t vl;
    if (!tl__query_find(s, n, key, &v, &vl))
      abort();
    if (v < s || v + vl > s + n)
      abort();
  }
  free(key);
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
    const char *v;
    size_t vl;
    if (!tl__query_find(exact, ql, key, &v, &vl))
      abort();
    char *dec = xmalloc(vl);
    size_t dl = tl__pct_decode(dec, v, vl, true);
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
  if (mode & 1)
    check_round_trip(s, n);
  free(s);
  return 0;
}
