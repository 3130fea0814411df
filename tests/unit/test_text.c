/* Unit tests for the text helpers of include/talon/util.h
 * (src/core/text.c): comparison, tokens and lists, qvalues, media types,
 * percent-decoding, form pairs and base64url, with their edge cases
 * (malformed escapes, truncated base64, caller buffers too small, empty
 * list elements). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "talon/util.h"

/* ---- comparison ---------------------------------------------------------- */

static void test_str_ieq(void **state) {
  assert_true(tl_str_ieq("Content-Length", 14, "content-length"));
  assert_false(tl_str_ieq("Content-Lengt", 13, "content-length"));
  assert_false(tl_str_ieq("Content-Length", 14, "content-lengt"));
  assert_false(tl_str_ieq("a[", 2, "a{"));             /* not a bit trick */
  /* Pairs that differ in bit 0x20 only but are not letters. */
  assert_false(tl_str_ieq("@", 1, "`"));
  assert_false(tl_str_ieq("^", 1, "~"));
  assert_false(tl_str_ieq("_", 1, "\x7f"));
  assert_false(tl_str_ieq("\r", 1, "-"));
  assert_false(tl_str_ieq(" ", 1, ""));
  assert_true(tl_str_ieq("zZaA", 4, "ZzAa"));
  assert_false(tl_str_ieq("\xc3\xa9", 2, "\xc3\x89")); /* ASCII only */
  assert_true(tl_str_ieq("", 0, ""));
  assert_true(tl_str_ieq(NULL, 0, ""));
  assert_false(tl_str_ieq(NULL, 0, "x"));
  /* A NUL inside the slice never equals the end of the literal. */
  assert_false(tl_str_ieq("ab\0", 3, "ab"));
  /* Only the first n bytes count. */
  assert_true(tl_str_ieq("gzip;q=1", 4, "GZIP"));
}

/* ---- tokens and lists ---------------------------------------------------- */

static void test_tchar(void **state) {
  const char *ok = "abzABZ09!#$%&'*+-.^_`|~";
  for (const char *p = ok; *p; p++)
    assert_true(tl_is_tchar((unsigned char)*p));
  const char *bad = " \t\"(),/:;<=>?@[\\]{}\x7f";
  for (const char *p = bad; *p; p++)
    assert_false(tl_is_tchar((unsigned char)*p));
  assert_false(tl_is_tchar(0));
  assert_false(tl_is_tchar(0x80));
  assert_false(tl_is_tchar(0xff));
  assert_false(tl_is_tchar(-1));
  assert_false(tl_is_tchar(256 + 'a'));

  assert_true(tl_is_token("X-Request-Id", 12));
  assert_false(tl_is_token("", 0));
  assert_false(tl_is_token("a b", 3));
  assert_false(tl_is_token("a\0b", 3));
  assert_true(tl_is_token("a b", 1)); /* only the first n bytes */
}

/* The elements of `list` joined with '|'. */
static void walk(const char *list, const char *want) {
  char out[256] = "";
  size_t o = 0;
  const char *cur = list, *item = (const char *)1;
  size_t len = 12345;
  while (tl_token_list_next(&cur, &item, &len)) {
    assert_true(len > 0);
    assert_true(item >= list && item + len <= list + strlen(list));
    if (o)
      out[o++] = '|';
    memcpy(out + o, item, len);
    o += len;
    out[o] = '\0';
  }
  assert_string_equal(out, want);
  /* At the end: false again, the cursor at the NUL. */
  assert_false(tl_token_list_next(&cur, &item, &len));
  assert_int_equal(*cur, '\0');
}

static void test_token_list_next(void **state) {
  walk("keep-alive, Upgrade ,\tfoo", "keep-alive|Upgrade|foo");
  walk("", "");
  walk(" \t ", "");
  walk(",,, ,", "");
  walk(",a,,b,", "a|b");
  walk("gzip;q=0.5 , br", "gzip;q=0.5|br");
  /* Inner blanks stay: not a token, but that is the caller's to judge. */
  walk("a b, c", "a b|c");
  walk("x=\"1,2\"", "x=\"1|2\""); /* quoted commas are not special */

  /* The end leaves item and len alone; a NULL cursor is an empty list. */
  const char *cur = NULL, *item = "keep";
  size_t len = 4;
  assert_false(tl_token_list_next(&cur, &item, &len));
  assert_string_equal(item, "keep");
  assert_int_equal(len, 4);
}

static void test_token_list_has(void **state) {
  const char *l = "keep-alive, Upgrade ,\tfoo";
  assert_true(tl_token_list_has(l, "upgrade"));
  assert_true(tl_token_list_has(l, "KEEP-ALIVE"));
  assert_true(tl_token_list_has(l, "foo"));
  assert_false(tl_token_list_has(l, "keep"));
  assert_false(tl_token_list_has(l, "keep-alive, Upgrade"));
  assert_false(tl_token_list_has("", "x"));
  assert_false(tl_token_list_has(",,", "x"));
  assert_false(tl_token_list_has(NULL, "x"));
  assert_false(tl_token_list_has("gzip;q=0", "gzip"));
  assert_true(tl_token_list_has("Accept-Encoding, *", "*"));
}

static void test_qvalue(void **state) {
  assert_int_equal(tl_qvalue("0", 1), 0);
  assert_int_equal(tl_qvalue("1", 1), 1000);
  assert_int_equal(tl_qvalue("1.", 2), 1000);
  assert_int_equal(tl_qvalue("0.5", 3), 500);
  assert_int_equal(tl_qvalue("0.05", 4), 50);
  assert_int_equal(tl_qvalue("0.001", 5), 1);
  assert_int_equal(tl_qvalue("1.000", 5), 1000);
  assert_int_equal(tl_qvalue("", 0), -1);
  assert_int_equal(tl_qvalue("1.001", 5), -1);  /* over 1 */
  assert_int_equal(tl_qvalue("0.0001", 6), -1); /* four decimals */
  assert_int_equal(tl_qvalue("2", 1), -1);
  assert_int_equal(tl_qvalue(".5", 2), -1);
  assert_int_equal(tl_qvalue("0,5", 3), -1);
  assert_int_equal(tl_qvalue("0.a", 3), -1);
  assert_int_equal(tl_qvalue("0.5 ", 4), -1);
}

static void test_media_type(void **state) {
  tl_slice m = tl_media_type(" text/HTML ; charset=utf-8");
  assert_true(tl_str_ieq(m.ptr, m.len, "text/html"));
  m = tl_media_type("application/json");
  assert_true(tl_str_ieq(m.ptr, m.len, "application/json"));
  m = tl_media_type("a/b\tjunk");
  assert_true(tl_str_ieq(m.ptr, m.len, "a/b"));
  m = tl_media_type(";charset=x");
  assert_int_equal(m.len, 0);
  assert_non_null(m.ptr);
  m = tl_media_type("");
  assert_int_equal(m.len, 0);
  m = tl_media_type(NULL);
  assert_null(m.ptr);
  assert_int_equal(m.len, 0);
}

/* ---- percent-decoding ---------------------------------------------------- */

static void decode(const char *in, unsigned flags, const char *want) {
  char out[256];
  size_t n = 999;
  assert_int_equal(tl_pct_decode(out, sizeof out, in, strlen(in), flags, &n),
                   0);
  assert_int_equal(n, strlen(want));
  assert_string_equal(out, want);
}

static void test_pct_decode(void **state) {
  decode("plain", 0, "plain");
  decode("a%20b", 0, "a b");
  decode("a+b", 0, "a+b");
  decode("a+b", TL_PCT_FORM, "a b");
  decode("a%2Bb", TL_PCT_FORM, "a+b");
  decode("%41%62%2f", 0, "Ab/");
  decode("%zz%4", 0, "%zz%4"); /* malformed escapes stay */
  decode("%4g", 0, "%4g");
  decode("100%", 0, "100%");
  decode("%%41", 0, "%A");
  decode("%e2%82%ac", 0, "\xe2\x82\xac");
  decode("", 0, "");
  decode("", TL_PCT_STRICT, "");
  decode("a%20b", TL_PCT_STRICT | TL_PCT_FORM, "a b");
}

static void test_pct_decode_nul(void **state) {
  char out[8];
  size_t n = 0;
  assert_int_equal(tl_pct_decode(out, sizeof out, "a%00b", 5, 0, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(out, "a\0b", 4); /* with the terminating NUL */
}

static void test_pct_decode_strict(void **state) {
  char out[16];
  size_t n = 777;
  const char *bad[] = {"%", "%4", "%zz", "a%4g", "%%41", "ok%"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(tl_pct_decode(out, sizeof out, bad[i], strlen(bad[i]),
                                   TL_PCT_STRICT, &n),
                     TL_EINVAL);
    assert_int_equal(n, 777); /* only set on success */
  }
  /* What came before the bad escape is there, NUL-terminated. */
  tl_pct_decode(out, sizeof out, "a%41%x", 6, TL_PCT_STRICT, NULL);
  assert_string_equal(out, "aA");
}

static void test_pct_decode_overflow(void **state) {
  char out[8];
  memset(out, 'Z', sizeof out);
  size_t n = 777;
  /* "abcdef" needs 7 bytes: 6 fit, 4 do not. */
  assert_int_equal(tl_pct_decode(out, 7, "abcdef", 6, 0, &n), 0);
  assert_string_equal(out, "abcdef");
  memset(out, 'Z', sizeof out);
  n = 777;
  assert_int_equal(tl_pct_decode(out, 6, "abcdef", 6, 0, &n), TL_ETOOBIG);
  assert_string_equal(out, "abcde"); /* a NUL-terminated prefix */
  assert_int_equal(out[6], 'Z');     /* nothing past size */
  assert_int_equal(n, 777);
  /* Escapes shrink the text: "%41%42" fits in 3 bytes. */
  assert_int_equal(tl_pct_decode(out, 3, "%41%42", 6, 0, &n), 0);
  assert_string_equal(out, "AB");
  assert_int_equal(tl_pct_decode(out, 2, "%41%42", 6, 0, &n), TL_ETOOBIG);
  assert_string_equal(out, "A");
  /* One byte holds only the NUL of an empty result. */
  assert_int_equal(tl_pct_decode(out, 1, "", 0, 0, &n), 0);
  assert_int_equal(n, 0);
  assert_int_equal(tl_pct_decode(out, 1, "x", 1, 0, &n), TL_ETOOBIG);
  assert_string_equal(out, "");
  /* Nothing is written with size 0. */
  out[0] = 'Z';
  assert_int_equal(tl_pct_decode(out, 0, "", 0, 0, &n), TL_ETOOBIG);
  assert_int_equal(out[0], 'Z');
}

static void test_pct_decode_in_place(void **state) {
  char s[] = "a%20b+c%2";
  size_t n = 0;
  assert_int_equal(tl_pct_decode(s, sizeof s, s, strlen(s), TL_PCT_FORM, &n),
                   0);
  assert_int_equal(n, 7);
  assert_string_equal(s, "a b c%2");
  char t[] = "x%41y";
  assert_int_equal(tl_pct_decode(t, sizeof t, t, 5, 0, NULL), 0);
  assert_string_equal(t, "xAy");
}

/* ---- forms --------------------------------------------------------------- */

static void test_form_next(void **state) {
  const char *f = "&a=1&&b&c=&=d&e=x=y&";
  size_t pos = 0, n = strlen(f);
  tl_slice k, v;
  const char *want[][2] = {
      {"a", "1"}, {"b", ""}, {"c", ""}, {"", "d"}, {"e", "x=y"}};
  for (size_t i = 0; i < 5; i++) {
    assert_true(tl_form_next(f, n, &pos, &k, &v));
    assert_int_equal(k.len, strlen(want[i][0]));
    assert_memory_equal(k.ptr, want[i][0], k.len);
    assert_int_equal(v.len, strlen(want[i][1]));
    assert_memory_equal(v.ptr, want[i][1], v.len);
    assert_true(v.ptr >= f && v.ptr + v.len <= f + n);
  }
  assert_false(tl_form_next(f, n, &pos, &k, &v));
  assert_false(tl_form_next(f, n, &pos, &k, &v));
  pos = 0;
  assert_false(tl_form_next("", 0, &pos, &k, &v));
  assert_false(tl_form_next("&&&", 3, &pos, &k, &v));
  /* Not NUL-terminated: the length bounds it. */
  pos = 0;
  assert_true(tl_form_next("a=12345", 3, &pos, &k, &v));
  assert_int_equal(v.len, 1);
  assert_false(tl_form_next("a=12345", 3, &pos, &k, &v));
}

static void test_form_find(void **state) {
  const char *qs = "a=1&b=two+words&c&d=&a=2&e%20f=x&g=%26&h+i=y&=z";
  size_t n = strlen(qs);
  tl_slice v;
  assert_true(tl_form_find(qs, n, "a", &v));
  assert_int_equal(v.len, 1);
  assert_memory_equal(v.ptr, "1", 1); /* the first one */
  assert_true(tl_form_find(qs, n, "b", &v));
  assert_int_equal(v.len, 9);
  assert_memory_equal(v.ptr, "two+words", 9); /* still encoded */
  assert_true(tl_form_find(qs, n, "c", &v));
  assert_int_equal(v.len, 0);
  assert_true(tl_form_find(qs, n, "d", &v));
  assert_int_equal(v.len, 0);
  assert_true(tl_form_find(qs, n, "e f", &v));
  assert_memory_equal(v.ptr, "x", 1);
  assert_true(tl_form_find(qs, n, "h i", &v));
  assert_memory_equal(v.ptr, "y", 1);
  assert_true(tl_form_find(qs, n, "g", &v));
  assert_memory_equal(v.ptr, "%26", 3);
  assert_true(tl_form_find(qs, n, "", &v));
  assert_memory_equal(v.ptr, "z", 1);
  assert_false(tl_form_find(qs, n, "z", &v));
  assert_false(tl_form_find(qs, n, NULL, &v));
  assert_false(tl_form_find("", 0, "a", &v));
  assert_false(tl_form_find("&&&", 3, "a", &v));
  assert_false(tl_form_find("b=1", 3, "", &v));
  /* A prefix of a name is not the name, nor the other way round. */
  assert_false(tl_form_find("ab=1", 4, "a", &v));
  assert_false(tl_form_find("a=1", 3, "ab", &v));
  /* Names are compared decoded and case-sensitively. */
  assert_true(tl_form_find("a%2Bb=1", 7, "a+b", &v));
  assert_false(tl_form_find("A=1", 3, "a", &v));
}

/* ---- base64url ----------------------------------------------------------- */

static void test_base64url_encode(void **state) {
  /* RFC 4648 test vectors, unpadded, plus the two URL-safe characters. */
  const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *want[] = {"",       "Zg",      "Zm8",     "Zm9v",
                        "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  char out[16];
  for (size_t i = 0; i < 7; i++) {
    assert_int_equal(tl_base64url_encode(out, sizeof out, in[i], strlen(in[i])),
                     0);
    assert_string_equal(out, want[i]);
    assert_int_equal(strlen(out), TL_BASE64URL_LEN(strlen(in[i])));
  }
  const unsigned char hi[] = {0xfb, 0xff, 0xbf};
  assert_int_equal(tl_base64url_encode(out, sizeof out, hi, 3), 0);
  assert_string_equal(out, "-_-_");
  assert_int_equal(TL_BASE64URL_LEN(32), 43);
}

static void test_base64url_encode_overflow(void **state) {
  char out[8];
  /* "foobar" needs 8 characters and the NUL: 9 bytes. */
  memset(out, 'Z', sizeof out);
  assert_int_equal(tl_base64url_encode(out, 8, "foobar", 6), TL_ETOOBIG);
  assert_string_equal(out, "");
  assert_int_equal(tl_base64url_encode(out, 0, "f", 1), TL_ETOOBIG);
  assert_int_equal(tl_base64url_encode(out, 3, "f", 1), 0);
  assert_string_equal(out, "Zg");
  assert_int_equal(tl_base64url_encode(out, 1, "", 0), 0);
  assert_string_equal(out, "");
}

static void test_base64url_decode(void **state) {
  unsigned char out[16];
  size_t n = 0;
  const char *in[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  const char *want[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  for (size_t i = 0; i < 7; i++) {
    assert_int_equal(
        tl_base64url_decode(out, sizeof out, in[i], strlen(in[i]), &n), 0);
    assert_int_equal(n, strlen(want[i]));
    assert_memory_equal(out, want[i], n);
  }
  assert_int_equal(tl_base64url_decode(out, sizeof out, "-_-_", 4, &n), 0);
  assert_int_equal(n, 3);
  assert_memory_equal(out, "\xfb\xff\xbf", 3);
  /* In place. */
  char s[] = "Zm9vYmFy";
  assert_int_equal(tl_base64url_decode(s, sizeof s, s, 8, &n), 0);
  assert_memory_equal(s, "foobar", 6);
  /* Round trip of every length up to 40 with all byte values. */
  unsigned char bytes[40], back[40];
  char enc[64];
  for (size_t i = 0; i < sizeof bytes; i++)
    bytes[i] = (unsigned char)(i * 37 + 200);
  for (size_t len = 0; len <= sizeof bytes; len++) {
    assert_int_equal(tl_base64url_encode(enc, sizeof enc, bytes, len), 0);
    assert_int_equal(
        tl_base64url_decode(back, sizeof back, enc, strlen(enc), &n), 0);
    assert_int_equal(n, len);
    assert_memory_equal(back, bytes, len);
  }
}

static void test_base64url_decode_bad(void **state) {
  unsigned char out[16];
  memset(out, 0xAA, sizeof out);
  size_t n = 777;
  const char *bad[] = {
      "Z",     /* truncated: 6 bits */
      "Zm9vY", /* truncated: 4n+1 characters */
      "Zm9v=", /* padding */
      "Zg==",  /* padding */
      "Zm+v",  /* standard base64's '+' */
      "Zm/v",  /* standard base64's '/' */
      "Zm 9",  /* white space */
      "Zh",    /* leftover bits not zero (canonical is "Zg") */
      "Zm9",   /* leftover bits not zero (canonical is "Zm8") */
      "Zm\0v", /* NUL */
  };
  size_t lens[] = {1, 5, 5, 4, 4, 4, 4, 2, 3, 4};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(tl_base64url_decode(out, sizeof out, bad[i], lens[i], &n),
                     TL_EINVAL);
    assert_int_equal(n, 777);
    assert_int_equal(out[0], 0xAA); /* nothing written */
  }
}

static void test_base64url_decode_overflow(void **state) {
  unsigned char out[8];
  memset(out, 0xAA, sizeof out);
  size_t n = 777;
  /* "foobar" decodes to 6 bytes: 5 are too few, 6 enough (no NUL). */
  assert_int_equal(tl_base64url_decode(out, 5, "Zm9vYmFy", 8, &n), TL_ETOOBIG);
  assert_int_equal(out[0], 0xAA);
  assert_int_equal(n, 777);
  assert_int_equal(tl_base64url_decode(out, 6, "Zm9vYmFy", 8, &n), 0);
  assert_int_equal(n, 6);
  assert_int_equal(out[6], 0xAA);
  assert_int_equal(tl_base64url_decode(out, 0, "", 0, &n), 0);
  assert_int_equal(n, 0);
  /* A malformed input is reported as such even when it is also long. */
  assert_int_equal(tl_base64url_decode(out, 1, "Zm9v!", 5, NULL), TL_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_str_ieq),
      cmocka_unit_test(test_tchar),
      cmocka_unit_test(test_token_list_next),
      cmocka_unit_test(test_token_list_has),
      cmocka_unit_test(test_qvalue),
      cmocka_unit_test(test_media_type),
      cmocka_unit_test(test_pct_decode),
      cmocka_unit_test(test_pct_decode_nul),
      cmocka_unit_test(test_pct_decode_strict),
      cmocka_unit_test(test_pct_decode_overflow),
      cmocka_unit_test(test_pct_decode_in_place),
      cmocka_unit_test(test_form_next),
      cmocka_unit_test(test_form_find),
      cmocka_unit_test(test_base64url_encode),
      cmocka_unit_test(test_base64url_encode_overflow),
      cmocka_unit_test(test_base64url_decode),
      cmocka_unit_test(test_base64url_decode_bad),
      cmocka_unit_test(test_base64url_decode_overflow),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
