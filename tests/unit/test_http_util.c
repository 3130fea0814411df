/* Unit tests for the pure HTTP helpers and the buffers/arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "http/util.h"

static void decode(const char *in, bool plus, const char *want) {
  char out[256];
  size_t n = tl__pct_decode(out, in, strlen(in), plus);
  out[n] = '\0';
  assert_string_equal(out, want);
}

static void test_pct_decode(void **state) {
  decode("plain", false, "plain");
  decode("a%20b", false, "a b");
  decode("a+b", false, "a+b");
  decode("a+b", true, "a b");
  decode("%41%62%2f", false, "Ab/");
  decode("%zz%4", false, "%zz%4"); /* malformed escapes stay */
  decode("100%", false, "100%");
  decode("%e2%82%ac", false, "\xe2\x82\xac");
  decode("", false, "");
}

static void test_pct_decode_nul(void **state) {
  char out[8];
  size_t n = tl__pct_decode(out, "a%00b", 5, false);
  assert_int_equal(n, 3);
  assert_memory_equal(out, "a\0b", 3);
}

static void test_query_find(void **state) {
  const char *qs = "a=1&b=two+words&c&d=&a=2&e%20f=x&g=%26";
  const char *v;
  size_t n;
  assert_true(tl__query_find(qs, strlen(qs), "a", &v, &n));
  assert_int_equal(n, 1);
  assert_memory_equal(v, "1", 1);
  assert_true(tl__query_find(qs, strlen(qs), "b", &v, &n));
  assert_int_equal(n, 9);
  assert_memory_equal(v, "two+words", 9);
  assert_true(tl__query_find(qs, strlen(qs), "c", &v, &n));
  assert_int_equal(n, 0);
  assert_true(tl__query_find(qs, strlen(qs), "d", &v, &n));
  assert_int_equal(n, 0);
  assert_true(tl__query_find(qs, strlen(qs), "e f", &v, &n));
  assert_memory_equal(v, "x", 1);
  assert_true(tl__query_find(qs, strlen(qs), "g", &v, &n));
  assert_memory_equal(v, "%26", 3);
  assert_false(tl__query_find(qs, strlen(qs), "z", &v, &n));
  assert_false(tl__query_find(qs, strlen(qs), "", &v, &n));
  assert_false(tl__query_find("", 0, "a", &v, &n));
  assert_false(tl__query_find("&&&", 3, "a", &v, &n));
  /* A prefix of a key is not the key. */
  assert_false(tl__query_find("ab=1", 4, "a", &v, &n));
  assert_false(tl__query_find("a=1", 3, "ab", &v, &n));
}

static void test_key_eq(void **state) {
  assert_true(tl__pct_key_eq("a+b", 3, "a b"));
  assert_true(tl__pct_key_eq("a%2Bb", 5, "a+b"));
  assert_false(tl__pct_key_eq("ab", 2, "abc"));
  assert_false(tl__pct_key_eq("abc", 3, "ab"));
  assert_true(tl__pct_key_eq("", 0, ""));
}

static void test_case_eq(void **state) {
  assert_true(tl__strncasecmp_eq("Content-Length", 14, "content-length", 14));
  assert_false(tl__strncasecmp_eq("Content-Lengt", 13, "content-length", 14));
  assert_false(tl__strncasecmp_eq("a[", 2, "a{", 2)); /* not a bit trick */
  assert_true(tl__strncasecmp_eq("", 0, "", 0));
}

static void test_token_list(void **state) {
  const char *l = "keep-alive, Upgrade ,\tfoo";
  assert_true(tl__token_list_has(l, strlen(l), "upgrade"));
  assert_true(tl__token_list_has(l, strlen(l), "KEEP-ALIVE"));
  assert_true(tl__token_list_has(l, strlen(l), "foo"));
  assert_false(tl__token_list_has(l, strlen(l), "keep"));
  assert_false(tl__token_list_has("", 0, "x"));
  assert_false(tl__token_list_has(",,", 2, "x"));
}

static void test_buf(void **state) {
  tl__buf b = {0};
  assert_int_equal(tl__buf_append(&b, "hello", 5), 0);
  assert_int_equal(tl__buf_append(&b, " world", 6), 0);
  assert_int_equal(b.len, 11);
  assert_memory_equal(b.data, "hello world", 11);
  tl__buf_consume(&b, 6);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.data, "world", 5);
  for (int i = 0; i < 10000; i++)
    assert_int_equal(tl__buf_append(&b, "x", 1), 0);
  assert_int_equal(b.len, 10005);
  tl__buf_reset(&b, 1024); /* grew past 1024: memory released */
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  tl__buf_free(&b);
}

static void test_arena(void **state) {
  tl__arena a = {0};
  char *p = tl__arena_alloc(&a, 10);
  assert_non_null(p);
  assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
  char *q = tl__arena_alloc(&a, 3);
  assert_int_equal((uintptr_t)q % _Alignof(max_align_t), 0);
  assert_true(q >= p + 10);
  char *big = tl__arena_alloc(&a, 100000);
  assert_non_null(big);
  memset(big, 1, 100000);
  char *s = tl__arena_strndup(&a, "abcdef", 3);
  assert_string_equal(s, "abc");
  tl__arena_reset(&a);
  /* The standard block is kept and reused from its start. */
  char *r = tl__arena_alloc(&a, 10);
  assert_ptr_equal(r, p);
  tl__arena_free(&a);
  assert_null(a.head);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pct_decode), cmocka_unit_test(test_pct_decode_nul),
      cmocka_unit_test(test_query_find), cmocka_unit_test(test_key_eq),
      cmocka_unit_test(test_case_eq),    cmocka_unit_test(test_token_list),
      cmocka_unit_test(test_buf),        cmocka_unit_test(test_arena),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
