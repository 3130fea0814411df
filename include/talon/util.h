/* talon — text helpers for handlers and middleware: case-insensitive
 * comparison, RFC 9110 tokens and comma-separated lists, qvalues, media
 * types, percent-decoding, form (query) pairs and base64url.
 *
 * They are the pieces the built-in middleware and the core share, so a
 * third-party middleware parses headers and forms the way talon does.
 * Every function here is pure: it touches only the memory it is given,
 * allocates nothing and may be called from any thread. Input is taken as
 * (pointer, length) where it may hold NUL bytes or be a slice of a larger
 * text, and as a NUL-terminated string where it is a whole header value
 * (what tl_req_header() returns).
 */
#ifndef TALON_UTIL_H
#define TALON_UTIL_H

#include <stdbool.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- comparison ---------------------------------------------------------- */

/* Whether the `n` bytes at `p` equal the NUL-terminated `s`, ignoring ASCII
 * case: only A-Z and a-z are folded, whatever the locale, and bytes from
 * 0x80 up must be equal. `p` may be NULL when `n` is 0; `s` must not be
 * NULL. For comparing a slice of a header (a token, a media type) with a
 * literal. */
TL_EXTERN bool tl_str_ieq(const char *p, size_t n, const char *s);

/* ---- tokens and lists (RFC 9110 5.6) ------------------------------------- */

/* Whether the byte `c` is a tchar: a letter, a digit or one of
 * !#$%&'*+-.^_`|~ (the characters of header names, methods, cookie names
 * and most header parameters). Anything outside 0..255 is not. */
TL_EXTERN bool tl_is_tchar(int c);

/* Whether the `n` bytes at `p` are a token: at least one byte, all
 * tchars. */
TL_EXTERN bool tl_is_token(const char *p, size_t n);

/* Walk a comma-separated list (RFC 9110 5.6.1) such as a Vary,
 * Connection or Accept-Encoding value. `*cursor` points into the
 * NUL-terminated list; start it at the list itself. Each call finds the
 * next element, sets `*item` to its first byte and `*len` to its length
 * (an element is what lies between commas, without the spaces and tabs
 * around it; its parameters, e.g. ";q=0.5", are part of it), moves
 * `*cursor` past it and returns true. Empty elements (",," or a trailing
 * comma) are skipped. At the end of the list (or when `*cursor` is NULL)
 * it returns false and leaves `*item` and `*len` as they were. `*item`
 * points into the list and is not NUL-terminated. Commas inside quoted
 * strings are not special: an element with a quoted parameter value that
 * holds a comma is split there.
 *
 *   const char *cur = tl_req_header(req, "Accept-Encoding"), *item;
 *   size_t len;
 *   while (tl_token_list_next(&cur, &item, &len)) ...
 */
TL_EXTERN bool tl_token_list_next(const char **cursor, const char **item,
                                  size_t *len);

/* Whether the NUL-terminated comma-separated `list` holds an element equal
 * to `token`, ignoring ASCII case (see tl_token_list_next() for what an
 * element is: "gzip;q=0" does not equal "gzip"). A NULL `list` holds
 * nothing. */
TL_EXTERN bool tl_token_list_has(const char *list, const char *token);

/* The weight of a qvalue (RFC 9110 12.4.2: "0", "0.5", "1", "1.000", at
 * most three decimals, at most 1) in thousandths, 0 to 1000, from the `n`
 * bytes at `p` (the text after "q="); -1 if they are not a qvalue. */
TL_EXTERN int tl_qvalue(const char *p, size_t n);

/* Walk the elements of an Accept-style list (Accept-Encoding, Accept,
 * Accept-Language: "gzip;q=0.8, br, *;q=0") in the NUL-terminated
 * `*cursor`, which starts at the header value, as tl_token_list_next()
 * does. Each call sets `*value` to the element's first word (the coding,
 * media range or language: the bytes before any ';' or blank; possibly
 * empty), pointing into the list, and `*q` to the element's weight in
 * thousandths (see tl_qvalue()): 1000 without a q parameter, -1 when the
 * element is malformed (a q that is not a qvalue, or anything but
 * parameters after the value; what to make of that is the caller's
 * policy, e.g. a refusal or "not mentioned"). Parameters other than q are
 * skipped. Returns false at the end of the list. */
TL_EXTERN bool tl_accept_next(const char **cursor, tl_slice *value, int *q);

/* The media type of a Content-Type value ("text/html" for
 * " text/html; charset=utf-8"): the bytes after leading spaces and tabs
 * up to the first ';', space, tab or the end, as a slice of
 * `content_type` (not NUL-terminated; it lives as long as that string). No
 * check of its shape is made: compare it with tl_str_ieq(). An empty
 * slice (ptr NULL) for a NULL `content_type`. */
TL_EXTERN tl_slice tl_media_type(const char *content_type);

/* ---- percent-decoding and forms ----------------------------------------- */

/* Flags of tl_pct_decode(). */
enum {
  /* '+' decodes to a space, as in application/x-www-form-urlencoded
   * bodies and query strings (without it '+' stays '+', as in paths). */
  TL_PCT_FORM = 1u << 0,
  /* A '%' not followed by two hex digits is an error (TL_EINVAL).
   * Without it such a '%' stands for itself, as browsers do. */
  TL_PCT_STRICT = 1u << 1,
};

/* Percent-decode the `len` bytes at `src` (%XX with upper- or lower-case
 * hex digits becomes that byte) into `dst`, which has room for `size`
 * bytes, and NUL-terminate the result. The result may hold NUL bytes
 * (from "%00"): use `*out_len`, not strlen, where that matters. Decoding
 * never makes the text longer, so a `dst` of `len` + 1 bytes is always
 * enough, and `dst` may be `src` itself (decoding in place; then `size` is
 * at most the room that buffer has). `flags` is 0 or TL_PCT_* values.
 * `out_len` may be NULL; on success it gets the decoded length (without
 * the NUL). Returns 0; TL_ETOOBIG if the result and its NUL do not fit in
 * `size` bytes (`dst` then holds as much as fits, NUL-terminated, unless
 * `size` is 0); TL_EINVAL with TL_PCT_STRICT for a malformed escape (`dst`
 * then holds what was decoded before it, NUL-terminated). */
TL_EXTERN int tl_pct_decode(char *dst, size_t size, const char *src, size_t len,
                            unsigned flags, size_t *out_len);

/* Walk the name=value pairs of an application/x-www-form-urlencoded text
 * (a form body, or a query string without its '?'): the `len` bytes at
 * `data`, pairs separated by '&'. Start `*pos` at 0. Each call sets `*name`
 * to the bytes before the pair's first '=' and `*value` to the bytes after
 * it (an empty slice at the pair's end when it has no '='), both still
 * encoded and pointing into `data`; advances `*pos`; and returns true.
 * Empty pairs ("&&") are skipped. Returns false at the end. Decode a name
 * or value with tl_pct_decode(..., TL_PCT_FORM, ...). */
TL_EXTERN bool tl_form_next(const char *data, size_t len, size_t *pos,
                            tl_slice *name, tl_slice *value);

/* The first pair of the form text (`len` bytes at `data`, as for
 * tl_form_next()) whose name, decoded with TL_PCT_FORM, equals the
 * NUL-terminated `name` exactly (case-sensitive). Returns true and sets
 * `*value` to that pair's value, still encoded, pointing into `data`;
 * false if there is none or `name` is NULL. An empty `name` finds a pair
 * like "=x". This is how tl_req_query() finds a parameter. */
TL_EXTERN bool tl_form_find(const char *data, size_t len, const char *name,
                            tl_slice *value);

/* ---- base64url (RFC 4648 section 5, without padding) --------------------- */

/* Characters of the base64url encoding of `n` bytes, without the NUL
 * (43 for 32 bytes). */
#define TL_BASE64URL_LEN(n) ((4 * (size_t)(n) + 2) / 3)

/* Encode the `len` bytes at `src` as base64url without '=' padding into
 * `dst`, which has room for `size` bytes, NUL-terminated: it needs
 * TL_BASE64URL_LEN(len) + 1 bytes. Returns 0, or TL_ETOOBIG if `size` is
 * less (`dst` then holds "" if `size` is not 0). */
TL_EXTERN int tl_base64url_encode(char *dst, size_t size, const void *src,
                                  size_t len);

/* Decode the `len` characters at `src`, unpadded base64url in canonical
 * form, into `dst`, which has room for `size` bytes (not NUL-terminated:
 * the result is binary). Canonical means: only A-Z a-z 0-9 '-' '_', no
 * '=' padding or white space, a length that is not 1 more than a multiple
 * of 4, and the unused low bits of the last character zero, so every byte
 * string has exactly one accepted encoding. `len` characters decode to
 * len * 3 / 4 bytes (rounded down). `dst` may be `src` (decoding in
 * place). `out_len` may be NULL; on success it gets the decoded length.
 * Returns 0; TL_EINVAL if `src` is not canonical base64url (nothing is
 * written); TL_ETOOBIG if the result is longer than `size` (nothing is
 * written). */
TL_EXTERN int tl_base64url_decode(void *dst, size_t size, const char *src,
                                  size_t len, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* TALON_UTIL_H */
