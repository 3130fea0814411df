/* Unit tests for the block pool (src/core/pool.c): blocks are zeroed,
 * distinct and keep their contents; in the slab build, slabs are mapped
 * as blocks are needed and go back as they empty (one is kept). Under
 * AddressSanitizer the pool is calloc/free and only the first part runs
 * (there, ASan checks the bounds and the frees). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/pool.h"

#define N 3000
#define SIZE 490 /* rounded up to 496 */

static void fill(unsigned char *b, size_t n, unsigned i) {
  for (size_t k = 0; k < n; k++)
    b[k] = (unsigned char)(i * 31 + k);
}

static int holds(const unsigned char *b, size_t n, unsigned i) {
  for (size_t k = 0; k < n; k++)
    if (b[k] != (unsigned char)(i * 31 + k))
      return 0;
  return 1;
}

static int zero(const unsigned char *b, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (b[k])
      return 0;
  return 1;
}

static void test_blocks(void **state) {
  tl__pool p;
  tl__pool_init(&p, SIZE);
  assert_int_equal(p.size, 496);
  static unsigned char *b[N];
  for (unsigned i = 0; i < N; i++) {
    b[i] = tl__pool_alloc(&p);
    assert_non_null(b[i]);
    assert_true(zero(b[i], SIZE));
    assert_int_equal((uintptr_t)b[i] % 16, 0);
    fill(b[i], SIZE, i);
  }
  for (unsigned i = 0; i < N; i++)
    assert_true(holds(b[i], SIZE, i)); /* no two blocks overlap */
  /* Free every other one, take as many again: reused blocks come back
   * zeroed, the others are untouched. */
  for (unsigned i = 0; i < N; i += 2)
    tl__pool_free(&p, b[i]);
  for (unsigned i = 0; i < N; i += 2) {
    b[i] = tl__pool_alloc(&p);
    assert_non_null(b[i]);
    assert_true(zero(b[i], SIZE));
    fill(b[i], SIZE, i);
  }
  for (unsigned i = 0; i < N; i++)
    assert_true(holds(b[i], SIZE, i));
#ifndef TL__POOL_MALLOC
  /* 3000 blocks of 496 bytes: 528 fit in a 256 KiB slab. */
  assert_int_equal(p.nslabs, (N + 527) / 528);
#endif
  /* Free in a scrambled order; the slabs go back as they empty. */
  for (unsigned i = 0; i < N; i++) {
    unsigned j = (i * 7919u) % N; /* 7919 is prime, N is not a multiple */
    tl__pool_free(&p, b[j]);
  }
#ifndef TL__POOL_MALLOC
  assert_int_equal(p.nslabs, 1); /* the last one is kept */
#endif
  tl__pool_free(&p, NULL);
  tl__pool_destroy(&p);
#ifndef TL__POOL_MALLOC
  assert_int_equal(p.nslabs, 0);
  assert_null(p.partial);
#endif
}

static void test_large_blocks_use_the_heap(void **state) {
  tl__pool p;
  tl__pool_init(&p, TL__POOL_MAX + 1);
  void *a = tl__pool_alloc(&p), *b = tl__pool_alloc(&p);
  assert_non_null(a);
  assert_non_null(b);
  assert_true(zero(a, p.size));
  assert_int_equal(p.nslabs, 0);
  tl__pool_free(&p, a);
  tl__pool_free(&p, b);
  tl__pool_destroy(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_blocks),
      cmocka_unit_test(test_large_blocks_use_the_heap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
