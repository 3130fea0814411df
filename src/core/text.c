/* Text helpers of include/talon/util.h: case-insensitive comparison,
 * tokens and comma lists, qvalues, media types, percent-decoding, form
 * pairs and base64url. Pure code (no libuv, no allocation), shared by the
 * core and the middleware, and unit-tested alone
 * (tests/unit/test_text.c). */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "talon/util.h"

static inline unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

bool tl_str_ieq(const char *p, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++) {
    unsigned char a = (unsigned char)p[i], b = (unsigned char)s[i];
    if (a == b) {
      if (!b)
        return false; /* `s` ended where `p` holds a NUL */
      continue;
    }
    /* Equal but for case only if both are letters: (a | 0x20) is then
     * the lower case of each ('@' and '`' are not letters). */
    unsigned char l = (unsigned char)(a | 0x20);
    if (l != (b | 0x20) || (unsigned)(l - 'a') > 'z' - 'a')
      return false;
  }
  return s[n] == '\0';
}

/* ---- tokens and lists ---------------------------------------------------- */

/* RFC 9110 5.6.2 tchar: digits, letters and !#$%&'*+-.^_`|~, one bit per
 * byte value (0-127; bytes >= 128 are not). */
static const uint64_t TCHAR[2] = {0x03ff6cfa00000000u, 0x57ffffffc7fffffeu};

bool tl_is_tchar(int c) {
  return c >= 0 && c < 128 && (TCHAR[c >> 6] >> (c & 63)) & 1;
}

bool tl_is_token(const char *p, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!tl_is_tchar((unsigned char)p[i]))
      return false;
  return true;
}

static bool ows(char c) {
  return c == ' ' || c == '\t';
}

bool tl_token_list_next(const char **cursor, const char **item, size_t *len) {
  const char *p = *cursor;
  if (!p)
    return false;
  while (ows(*p) || *p == ',')
    p++;
  if (!*p) {
    *cursor = p;
    return false;
  }
  /* `start` is neither blank nor a comma, so the element is not empty. */
  const char *start = p;
  while (*p && *p != ',')
    p++;
  const char *end = p;
  while (ows(end[-1]))
    end--;
  *cursor = p;
  *item = start;
  *len = (size_t)(end - start);
  return true;
}

bool tl_token_list_has(const char *list, const char *token) {
  const char *item;
  size_t len;
  while (tl_token_list_next(&list, &item, &len))
    if (tl_str_ieq(item, len, token))
      return true;
  return false;
}

int tl_qvalue(const char *p, size_t n) {
  if (n == 0 || n > 5 || (p[0] != '0' && p[0] != '1'))
    return -1;
  int q = (p[0] - '0') * 1000;
  if (n == 1)
    return q;
  if (p[1] != '.')
    return -1;
  int scale = 100;
  for (size_t i = 2; i < n; i++, scale /= 10) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    q += (p[i] - '0') * scale;
  }
  return q > 1000 ? -1 : q;
}

/* Moves p over blanks, never past end. */
static const char *skip_ows(const char *p, const char *end) {
  while (p < end && ows(*p))
    p++;
  return p;
}

/* Moves p to the first of `stops`, a blank or end. */
static const char *to_delim(const char *p, const char *end, const char *stops) {
  while (p < end && !ows(*p) && !strchr(stops, *p))
    p++;
  return p;
}

bool tl_accept_next(const char **cursor, tl_slice *value, int *q) {
  const char *e;
  size_t n;
  if (!tl_token_list_next(cursor, &e, &n))
    return false;
  const char *end = e + n;
  const char *p = to_delim(e, end, ";");
  *value = (tl_slice){e, (size_t)(p - e)};
  int weight = 1000;
  /* Parameters: ";" name ["=" value], blanks allowed around both. */
  for (;;) {
    p = skip_ows(p, end);
    if (p == end || *p != ';')
      break;
    const char *name = skip_ows(p + 1, end);
    p = to_delim(name, end, "=;");
    size_t nlen = (size_t)(p - name);
    p = skip_ows(p, end);
    const char *val = p;
    size_t vlen = 0;
    if (p < end && *p == '=') {
      val = skip_ows(p + 1, end);
      p = to_delim(val, end, ";");
      vlen = (size_t)(p - val);
    }
    if (tl_str_ieq(name, nlen, "q") && weight >= 0)
      weight = tl_qvalue(val, vlen);
  }
  /* Anything but parameters after the value. */
  *q = p < end ? -1 : weight;
  return true;
}

tl_slice tl_media_type(const char *content_type) {
  if (!content_type)
    return (tl_slice){NULL, 0};
  const char *p = content_type;
  while (ows(*p))
    p++;
  return (tl_slice){p, strcspn(p, "; \t")};
}

/* ---- percent-decoding and forms ------------------------------------------ */

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Decodes the character at src[*i] (an escape takes three) and advances
 * *i. Returns the byte, or -1 for a malformed escape with TL_PCT_STRICT;
 * without it such a '%' stands for itself, as browsers treat it. */
static int decode_at(const char *src, size_t n, size_t *i, unsigned flags) {
  unsigned char c = (unsigned char)src[*i];
  if (c == '%') {
    if (n - *i >= 3) {
      int hi = hexval((unsigned char)src[*i + 1]);
      int lo = hexval((unsigned char)src[*i + 2]);
      if (hi >= 0 && lo >= 0) {
        *i += 3;
        return hi << 4 | lo;
      }
    }
    if (flags & TL_PCT_STRICT)
      return -1;
  }
  (*i)++;
  if (c == '+' && (flags & TL_PCT_FORM))
    return ' ';
  return c;
}

int tl_pct_decode(char *dst, size_t size, const char *src, size_t len,
                  unsigned flags, size_t *out_len) {
  if (size == 0)
    return TL_ETOOBIG;
  /* Each output byte is written at or behind the first input byte it came
   * from, and after that byte was read, so dst == src is safe. `o` stays
   * below `size`, leaving room for the NUL on every path. */
  size_t i = 0, o = 0;
  while (i < len) {
    int c = decode_at(src, len, &i, flags);
    if (c < 0 || o + 1 >= size) {
      dst[o] = '\0';
      return c < 0 ? TL_EINVAL : TL_ETOOBIG;
    }
    dst[o++] = (char)c;
  }
  dst[o] = '\0';
  if (out_len)
    *out_len = o;
  return 0;
}

bool tl_form_next(const char *data, size_t len, size_t *pos, tl_slice *name,
                  tl_slice *value) {
  size_t i = *pos;
  while (i < len) {
    const char *amp = memchr(data + i, '&', len - i);
    size_t end = amp ? (size_t)(amp - data) : len;
    if (end == i) { /* an empty pair */
      i++;
      continue;
    }
    const char *p = data + i;
    const char *eq = memchr(p, '=', end - i);
    if (eq) {
      *name = (tl_slice){p, (size_t)(eq - p)};
      *value = (tl_slice){eq + 1, (size_t)(data + end - (eq + 1))};
    } else {
      *name = (tl_slice){p, end - i};
      *value = (tl_slice){data + end, 0};
    }
    *pos = amp ? end + 1 : len;
    return true;
  }
  *pos = i > len ? i : len;
  return false;
}

/* Whether the form-encoded enc[0..n) decodes to `name`, without decoding
 * into memory. */
static bool form_name_eq(const char *enc, size_t n, const char *name) {
  size_t i = 0, j = 0;
  while (i < n) {
    if (name[j] == '\0' ||
        (unsigned char)name[j] != decode_at(enc, n, &i, TL_PCT_FORM))
      return false;
    j++;
  }
  return name[j] == '\0';
}

bool tl_form_find(const char *data, size_t len, const char *name,
                  tl_slice *value) {
  if (!name)
    return false;
  size_t pos = 0;
  tl_slice k, v;
  while (tl_form_next(data, len, &pos, &k, &v))
    if (form_name_eq(k.ptr, k.len, name)) {
      *value = v;
      return true;
    }
  return false;
}

/* ---- base64url ----------------------------------------------------------- */

static const char b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int tl_base64url_encode(char *dst, size_t size, const void *src, size_t len) {
  if (len > (SIZE_MAX - 3) / 4 || size < TL_BASE64URL_LEN(len) + 1) {
    if (size)
      dst[0] = '\0';
    return TL_ETOOBIG;
  }
  const unsigned char *in = src;
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    dst[o++] = b64url_chars[v >> 18];
    dst[o++] = b64url_chars[(v >> 12) & 63];
    dst[o++] = b64url_chars[(v >> 6) & 63];
    dst[o++] = b64url_chars[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    dst[o++] = b64url_chars[v >> 18];
    dst[o++] = b64url_chars[(v >> 12) & 63];
  } else if (len - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    dst[o++] = b64url_chars[v >> 18];
    dst[o++] = b64url_chars[(v >> 12) & 63];
    dst[o++] = b64url_chars[(v >> 6) & 63];
  }
  dst[o] = '\0';
  return 0;
}

static int b64url_val(unsigned char c) {
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

int tl_base64url_decode(void *dst, size_t size, const char *src, size_t len,
                        size_t *out_len) {
  /* Checked in full before anything is written, so a bad input leaves
   * `dst` (possibly `src` itself) untouched. */
  size_t rem = len % 4;
  if (rem == 1)
    return TL_EINVAL; /* 6 bits cannot make a byte */
  for (size_t i = 0; i < len; i++)
    if (b64url_val((unsigned char)src[i]) < 0)
      return TL_EINVAL;
  /* The bits past the last whole byte must be zero: 4 of them after 2
   * characters, 2 after 3. */
  if (rem && (b64url_val((unsigned char)src[len - 1]) & (rem == 2 ? 15 : 3)))
    return TL_EINVAL;
  size_t n = len / 4 * 3 + (rem ? rem - 1 : 0);
  if (n > size)
    return TL_ETOOBIG;
  /* Byte k is written after character k * 4 / 3 + 1 was read, behind it:
   * decoding in place is safe. */
  unsigned char *out = dst;
  uint32_t acc = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    acc = (acc << 6) | (uint32_t)b64url_val((unsigned char)src[i]);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (out_len)
    *out_len = o;
  return 0;
}
