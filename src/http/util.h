/* Pure HTTP string helpers (no libuv). */
#ifndef TALON_SRC_HTTP_UTIL_H
#define TALON_SRC_HTTP_UTIL_H

#include <stdbool.h>
#include <stddef.h>

/* 1 if a[0..alen) equals b[0..blen) ignoring ASCII case, else 0. */
int tl__strncasecmp_eq(const char *a, size_t alen, const char *b, size_t blen);
/* Percent-decode n bytes of src into dst (room for n bytes); with
 * plus_space '+' becomes ' '. Malformed escapes are kept literally.
 * Returns the decoded length. */
size_t tl__pct_decode(char *dst, const char *src, size_t n, bool plus_space);
/* Whether the query-encoded key enc[0..n) decodes to `name`. */
bool tl__pct_key_eq(const char *enc, size_t n, const char *name);
/* Find the first query parameter whose decoded key is `name` in qs[0..n);
 * sets *val, *vlen to its still-encoded value. */
bool tl__query_find(const char *qs, size_t n, const char *name,
                    const char **val, size_t *vlen);
/* Iterates a comma-separated list[0..n): from *pos, finds the next
 * non-empty element with surrounding whitespace removed. Returns false at
 * the end. */
bool tl__list_next(const char *list, size_t n, size_t *pos, const char **elem,
                   size_t *len);
/* Whether the comma-separated list[0..n) holds `token` (ASCII
 * case-insensitive, whitespace around elements ignored). */
bool tl__token_list_has(const char *list, size_t n, const char *token);

#endif
