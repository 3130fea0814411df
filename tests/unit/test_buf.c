/* Unit tests for the growing buffer and the request arena (src/core/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

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
      cmocka_unit_test(test_buf),
      cmocka_unit_test(test_arena),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
