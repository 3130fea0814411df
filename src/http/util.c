/* Pure string helpers for HTTP: case-insensitive compares, percent
 * decoding, query lookup, token lists. No libuv; unit-tested alone. */
#include <stdbool.h>
#include <string.h>

#include "http/util.h"

static inline unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

int tl__strncasecmp_eq(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen)
    return 0;
  for (size_t i = 0; i < alen; i++)
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
      return 0;
  return 1;
}

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Decodes one character at src[*i]; advances *i. A '%' not followed by two
 * hex digits stands for itself (lenient, like browsers). */
static unsigned char decode_at(const char *src, size_t n, size_t *i,
                               bool plus_space) {
  unsigned char c = (unsigned char)src[*i];
  if (c == '%' && n - *i >= 3) {
    int hi = hexval((unsigned char)src[*i + 1]);
    int lo = hexval((unsigned char)src[*i + 2]);
    if (hi >= 0 && lo >= 0) {
      *i += 3;
      return (unsigned char)(hi << 4 | lo);
    }
  }
  (*i)++;
  if (c == '+' && plus_space)
    return ' ';
  return c;
}

size_t tl__pct_decode(char *dst, const char *src, size_t n, bool plus_space) {
  size_t i = 0, o = 0;
  while (i < n)
    dst[o++] = (char)decode_at(src, n, &i, plus_space);
  return o;
}

bool tl__pct_key_eq(const char *enc, size_t n, const char *name) {
  size_t i = 0, j = 0;
  while (i < n) {
    if (name[j] == '\0')
      return false;
    if ((unsigned char)name[j] != decode_at(enc, n, &i, true))
      return false;
    j++;
  }
  return name[j] == '\0';
}

bool tl__query_find(const char *qs, size_t n, const char *name,
                    const char **val, size_t *vlen) {
  size_t i = 0;
  while (i < n) {
    size_t end = i;
    while (end < n && qs[end] != '&')
      end++;
    size_t eq = i;
    while (eq < end && qs[eq] != '=')
      eq++;
    if (end > i && tl__pct_key_eq(qs + i, eq - i, name)) {
      if (eq < end) {
        *val = qs + eq + 1;
        *vlen = end - eq - 1;
      } else {
        *val = qs + end;
        *vlen = 0;
      }
      return true;
    }
    i = end + 1;
  }
  return false;
}

bool tl__list_next(const char *list, size_t n, size_t *pos, const char **elem,
                   size_t *len) {
  size_t i = *pos;
  for (;;) {
    while (i < n && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
      i++;
    if (i >= n) {
      *pos = i;
      return false;
    }
    size_t start = i;
    while (i < n && list[i] != ',')
      i++;
    size_t end = i;
    while (end > start && (list[end - 1] == ' ' || list[end - 1] == '\t'))
      end--;
    if (end > start) {
      *pos = i;
      *elem = list + start;
      *len = end - start;
      return true;
    }
  }
}

bool tl__token_list_has(const char *list, size_t n, const char *token) {
  size_t tlen = strlen(token), pos = 0, len;
  const char *e;
  while (tl__list_next(list, n, &pos, &e, &len))
    if (tl__strncasecmp_eq(e, len, token, tlen))
      return true;
  return false;
}
