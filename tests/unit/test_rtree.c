/* Unit tests for the route tree (src/http/rtree.c).
 *
 * Besides targeted cases, two tests go wider: one checks the tree against
 * a brute-force reference matcher on random route sets, and one fails
 * every allocation in turn through a second, renamed copy of rtree.c
 * compiled into this file with counting allocators.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/rtree.h"
#include "talon/common.h"

#define V(n) ((void *)(uintptr_t)(n))
#define BIT(s) (1u << (s))

/* ---- helpers ------------------------------------------------------------ */

static int add(tl__rtree *t, int slot, const char *pattern, uintptr_t v) {
  return tl__rtree_add(t, slot, pattern, strlen(pattern), V(v));
}

static void add_ok(tl__rtree *t, int slot, const char *pattern, uintptr_t v) {
  assert_int_equal(add(t, slot, pattern, v), 0);
}

static int match(const tl__rtree *t, int slot, const char *path,
                 tl__rmatch *m) {
  return tl__rtree_match(t, slot, path, strlen(path), m);
}

/* Asserts that `path` matches for `slot`, serving route value `v` through
 * slot `used`, with `nparams` parameters. */
static void expect_match(const tl__rtree *t, int slot, const char *path,
                         uintptr_t v, int used, size_t nparams, tl__rmatch *m) {
  int rc = match(t, slot, path, m);
  if (rc != 0)
    fail_msg("%s: expected a match, got %d", path, rc);
  assert_ptr_equal(m->value, V(v));
  assert_int_equal(m->method_slot, used);
  assert_int_equal(m->nparams, nparams);
}

static void expect_param(const tl__rmatch *m, size_t i, const char *name,
                         const char *value) {
  assert_true(i < m->nparams);
  assert_string_equal(m->params[i].name, name);
  assert_int_equal(m->params[i].value_len, strlen(value));
  assert_memory_equal(m->params[i].value, value, strlen(value));
}

static void expect_code(const tl__rtree *t, int slot, const char *path,
                        int code, unsigned allow) {
  tl__rmatch m;
  int rc = match(t, slot, path, &m);
  if (rc != code)
    fail_msg("%s (slot %d): expected %d, got %d", path, slot, code, rc);
  assert_int_equal(m.allow, allow);
  assert_null(m.value);
  assert_int_equal(m.nparams, 0);
}

/* A deterministic generator, so that failures reproduce. */
static uint32_t rng_state;

static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return (rng_state >> 8) & 0xffffffu;
}

static size_t rng_below(size_t n) {
  return (size_t)rng() % n;
}

/* ---- method slots ------------------------------------------------------- */

static void test_method_slots(void **state) {
  static const char *names[] = {"GET",    "HEAD",    "POST", "PUT", "PATCH",
                                "DELETE", "OPTIONS", "*",    "WS"};
  int i;
  (void)state;
  assert_int_equal(TL__M_COUNT, 9);
  for (i = 0; i < TL__M_COUNT; i++) {
    assert_int_equal(tl__rtree_method_slot(names[i]), i);
    assert_string_equal(tl__rtree_slot_name(i), names[i]);
  }
  assert_int_equal(tl__rtree_method_slot("*"), TL__M_ALL);
  assert_int_equal(tl__rtree_method_slot("get"), -1);
  assert_int_equal(tl__rtree_method_slot("GETX"), -1);
  assert_int_equal(tl__rtree_method_slot("CONNECT"), -1);
  assert_int_equal(tl__rtree_method_slot(""), -1);
  assert_int_equal(tl__rtree_method_slot(NULL), -1);
  assert_null(tl__rtree_slot_name(-1));
  assert_null(tl__rtree_slot_name(TL__M_COUNT));
}

/* ---- paths -------------------------------------------------------------- */

/* WebSocket routes: only an upgrade (the WS slot) reaches them, and the WS
 * slot never falls back to an ALL route. */
static void test_ws_slot(void **state) {
  (void)state;
  tl__rtree *t = tl__rtree_new();
  assert_int_equal(add(t, TL__M_ALL, "/any", 1), 0);
  assert_int_equal(add(t, TL__M_UPGRADE, "/chat/:room", 2), 0);
  assert_int_equal(add(t, TL__M_GET, "/both", 3), 0);
  assert_int_equal(add(t, TL__M_UPGRADE, "/both", 4), 0);
  assert_int_equal(add(t, TL__M_UPGRADE, "/both", 5), TL_EEXIST);
  tl__rmatch m;
  assert_int_equal(match(t, TL__M_UPGRADE, "/chat/lobby", &m), 0);
  assert_ptr_equal(m.value, V(2));
  assert_int_equal(m.method_slot, TL__M_UPGRADE);
  assert_int_equal(m.nparams, 1);
  assert_memory_equal(m.params[0].value, "lobby", 5);
  expect_code(t, TL__M_GET, "/chat/lobby", 405, BIT(TL__M_UPGRADE));
  expect_code(t, TL__M_UPGRADE, "/any", 405, BIT(TL__M_ALL));
  assert_int_equal(match(t, TL__M_GET, "/both", &m), 0);
  assert_ptr_equal(m.value, V(3));
  assert_int_equal(match(t, TL__M_UPGRADE, "/both", &m), 0);
  assert_ptr_equal(m.value, V(4));
  tl__rtree_free(t);
}

static void test_root(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  assert_non_null(t);
  expect_code(t, TL__M_GET, "/", 404, 0);
  add_ok(t, TL__M_GET, "/", 1);
  expect_match(t, TL__M_GET, "/", 1, TL__M_GET, 0, &m);
  expect_code(t, TL__M_GET, "//", 404, 0);
  expect_code(t, TL__M_GET, "/a", 404, 0);
  /* Not a path: no leading '/', or empty. */
  expect_code(t, TL__M_GET, "", 404, 0);
  expect_code(t, TL__M_GET, "*", 404, 0);
  assert_int_equal(tl__rtree_match(t, TL__M_GET, NULL, 0, &m), 404);
  tl__rtree_free(t);
  tl__rtree_free(NULL);
}

static void test_static_and_trailing_slash(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/a", 1);
  add_ok(t, TL__M_GET, "/a/b", 2);
  add_ok(t, TL__M_GET, "/b/", 3);
  add_ok(t, TL__M_GET, "/abc", 4);
  add_ok(t, TL__M_GET, "/ab", 5);
  expect_match(t, TL__M_GET, "/a", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/a/b", 2, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/b/", 3, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/abc", 4, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/ab", 5, TL__M_GET, 0, &m);
  expect_code(t, TL__M_GET, "/a/", 404, 0);
  expect_code(t, TL__M_GET, "/a/b/", 404, 0);
  expect_code(t, TL__M_GET, "/b", 404, 0);
  expect_code(t, TL__M_GET, "/abcd", 404, 0);
  expect_code(t, TL__M_GET, "/A", 404, 0);
  /* The path length is honoured, not a NUL. */
  assert_int_equal(tl__rtree_match(t, TL__M_GET, "/abc", 2, &m), 0);
  assert_ptr_equal(m.value, V(1));
  tl__rtree_free(t);
}

/* Edges are split and re-split in every registration order of these. */
static void test_edge_splits(void **state) {
  static const char *pats[] = {"/abc", "/ab", "/a", "/abd", "/b", "/abcde"};
  static const size_t n = sizeof(pats) / sizeof(pats[0]);
  size_t round, i;
  (void)state;
  rng_state = 7;
  for (round = 0; round < 200; round++) {
    size_t order[sizeof(pats) / sizeof(pats[0])];
    tl__rtree *t = tl__rtree_new();
    tl__rmatch m;
    for (i = 0; i < n; i++)
      order[i] = i;
    for (i = n - 1; i > 0; i--) {
      size_t j = rng_below(i + 1), tmp = order[i];
      order[i] = order[j];
      order[j] = tmp;
    }
    for (i = 0; i < n; i++)
      add_ok(t, TL__M_GET, pats[order[i]], order[i] + 1);
    for (i = 0; i < n; i++)
      expect_match(t, TL__M_GET, pats[i], i + 1, TL__M_GET, 0, &m);
    expect_code(t, TL__M_GET, "/abcd", 404, 0);
    expect_code(t, TL__M_GET, "/abe", 404, 0);
    expect_code(t, TL__M_GET, "/", 404, 0);
    tl__rtree_free(t);
  }
}

static void test_empty_segments(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/a//b", 1);
  add_ok(t, TL__M_GET, "/x/:p/y", 2);
  add_ok(t, TL__M_GET, "//", 3);
  expect_match(t, TL__M_GET, "/a//b", 1, TL__M_GET, 0, &m);
  expect_code(t, TL__M_GET, "/a/b", 404, 0);
  expect_match(t, TL__M_GET, "//", 3, TL__M_GET, 0, &m);
  /* A param never matches an empty segment. */
  expect_code(t, TL__M_GET, "/x//y", 404, 0);
  expect_match(t, TL__M_GET, "/x/q/y", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "p", "q");
  tl__rtree_free(t);
}

static void test_literal_colon(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/a:b", 1);
  add_ok(t, TL__M_GET, "/v1/x:y/:id", 2);
  add_ok(t, TL__M_GET, "/n/:a:b", 3);
  expect_match(t, TL__M_GET, "/a:b", 1, TL__M_GET, 0, &m);
  expect_code(t, TL__M_GET, "/aXb", 404, 0);
  expect_code(t, TL__M_GET, "/a", 404, 0);
  expect_match(t, TL__M_GET, "/v1/x:y/7", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "7");
  expect_code(t, TL__M_GET, "/v1/xzy/7", 404, 0);
  /* Inside a param name, ':' is part of the name. */
  expect_match(t, TL__M_GET, "/n/zz", 3, TL__M_GET, 1, &m);
  expect_param(&m, 0, "a:b", "zz");
  tl__rtree_free(t);
}

/* ---- precedence and backtracking --------------------------------------- */

static void check_precedence(const tl__rtree *t) {
  tl__rmatch m;
  expect_match(t, TL__M_GET, "/u/me", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/u/you", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "you");
  expect_match(t, TL__M_GET, "/u/mex", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "mex");
  expect_match(t, TL__M_GET, "/u/m", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "m");
  expect_match(t, TL__M_GET, "/u/me/x", 4, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "me");
  expect_match(t, TL__M_GET, "/u/you/x", 4, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "you");
  expect_match(t, TL__M_GET, "/u/me/y", 3, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "me/y");
  expect_match(t, TL__M_GET, "/u/", 3, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "");
  expect_match(t, TL__M_GET, "/u/a/b/c", 3, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "a/b/c");
  expect_match(t, TL__M_GET, "/u/me/x/", 3, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "me/x/");
  expect_code(t, TL__M_GET, "/v", 404, 0);
}

static void test_precedence_any_order(void **state) {
  static const char *pats[] = {"/u/me", "/u/:id", "/u/*", "/u/:id/x"};
  size_t a, b, c, d, orders = 0;
  (void)state;
  /* All 24 registration orders. */
  for (a = 0; a < 4; a++)
    for (b = 0; b < 4; b++)
      for (c = 0; c < 4; c++)
        for (d = 0; d < 4; d++) {
          size_t order[4], i;
          tl__rtree *t;
          if (a == b || a == c || a == d || b == c || b == d || c == d)
            continue;
          order[0] = a;
          order[1] = b;
          order[2] = c;
          order[3] = d;
          t = tl__rtree_new();
          for (i = 0; i < 4; i++)
            add_ok(t, TL__M_GET, pats[order[i]], order[i] + 1);
          check_precedence(t);
          tl__rtree_free(t);
          orders++;
        }
  assert_int_equal(orders, 24);
}

static void test_backtrack_path(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/users/me", 1);
  add_ok(t, TL__M_GET, "/users/:id/posts", 2);
  add_ok(t, TL__M_GET, "/a/b/c", 3);
  add_ok(t, TL__M_GET, "/a/:x/d", 4);
  add_ok(t, TL__M_GET, "/a/*", 5);
  add_ok(t, TL__M_GET, "/a/b/c/:y/z", 6);
  add_ok(t, TL__M_GET, "/a/:x/c/q/z", 7);

  expect_match(t, TL__M_GET, "/users/me", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/users/me/posts", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "me");
  expect_match(t, TL__M_GET, "/a/b/c", 3, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/a/b/d", 4, TL__M_GET, 1, &m);
  expect_param(&m, 0, "x", "b");
  expect_match(t, TL__M_GET, "/a/b/e", 5, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "b/e");
  expect_match(t, TL__M_GET, "/a/b/c/q/z", 6, TL__M_GET, 1, &m);
  expect_param(&m, 0, "y", "q");
  /* Static path a/b/c/ fails deeper ("qq" then "/w"), the param branch is
   * tried, then the wildcard. */
  expect_match(t, TL__M_GET, "/a/b/c/q/w", 5, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "b/c/q/w");
  expect_match(t, TL__M_GET, "/a/zz/c/q/z", 7, TL__M_GET, 1, &m);
  expect_param(&m, 0, "x", "zz");
  expect_code(t, TL__M_GET, "/users/me/x", 404, 0);
  expect_code(t, TL__M_GET, "/users/you", 404, 0);
  tl__rtree_free(t);
}

static void test_backtrack_method(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_POST, "/users/me", 1);
  add_ok(t, TL__M_GET, "/users/:id", 2);
  add_ok(t, TL__M_PUT, "/users/*", 3);

  expect_match(t, TL__M_POST, "/users/me", 1, TL__M_POST, 0, &m);
  expect_match(t, TL__M_GET, "/users/me", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "me");
  expect_match(t, TL__M_HEAD, "/users/me", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "me");
  expect_match(t, TL__M_PUT, "/users/me", 3, TL__M_PUT, 1, &m);
  expect_param(&m, 0, "*", "me");
  /* No match for DELETE: allow is the union of all three path matches. */
  expect_code(t, TL__M_DELETE, "/users/me", 405,
              BIT(TL__M_GET) | BIT(TL__M_HEAD) | BIT(TL__M_POST) |
                  BIT(TL__M_PUT));
  expect_code(t, TL__M_POST, "/users/you", 405,
              BIT(TL__M_GET) | BIT(TL__M_HEAD) | BIT(TL__M_PUT));
  expect_code(t, TL__M_GET, "/users/you/x", 405, BIT(TL__M_PUT));
  expect_code(t, TL__M_GET, "/users", 405, BIT(TL__M_PUT));
  tl__rtree_free(t);
}

/* ---- methods ------------------------------------------------------------ */

static void test_404_405_allow(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/x", 1);
  add_ok(t, TL__M_POST, "/x", 2);
  add_ok(t, TL__M_POST, "/p", 3);
  add_ok(t, TL__M_DELETE, "/p", 4);
  add_ok(t, TL__M_OPTIONS, "/o", 5);
  add_ok(t, TL__M_PATCH, "/o", 6);

  expect_match(t, TL__M_GET, "/x", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_POST, "/x", 2, TL__M_POST, 0, &m);
  expect_code(t, TL__M_PUT, "/x", 405,
              BIT(TL__M_GET) | BIT(TL__M_HEAD) | BIT(TL__M_POST));
  /* No GET route: no HEAD bit either. */
  expect_code(t, TL__M_GET, "/p", 405, BIT(TL__M_POST) | BIT(TL__M_DELETE));
  expect_code(t, TL__M_HEAD, "/p", 405, BIT(TL__M_POST) | BIT(TL__M_DELETE));
  expect_code(t, TL__M_GET, "/o", 405, BIT(TL__M_OPTIONS) | BIT(TL__M_PATCH));
  expect_code(t, TL__M_GET, "/y", 404, 0);
  expect_code(t, TL__M_GET, "/x/", 404, 0);
  /* A failed match clears what an earlier one left in `m`. */
  expect_match(t, TL__M_GET, "/x", 1, TL__M_GET, 0, &m);
  assert_int_equal(match(t, TL__M_PUT, "/p", &m), 405);
  assert_null(m.value);
  assert_int_equal(m.nparams, 0);
  tl__rtree_free(t);
}

static void test_head_fallback(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/g", 1);
  add_ok(t, TL__M_GET, "/gh", 2);
  add_ok(t, TL__M_HEAD, "/gh", 3);
  add_ok(t, TL__M_ALL, "/a", 4);
  add_ok(t, TL__M_GET, "/ga", 5);
  add_ok(t, TL__M_ALL, "/ga", 6);
  add_ok(t, TL__M_HEAD, "/h", 7);

  expect_match(t, TL__M_HEAD, "/g", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_HEAD, "/gh", 3, TL__M_HEAD, 0, &m);
  expect_match(t, TL__M_GET, "/gh", 2, TL__M_GET, 0, &m);
  expect_match(t, TL__M_HEAD, "/a", 4, TL__M_ALL, 0, &m);
  /* GET comes before ALL for HEAD. */
  expect_match(t, TL__M_HEAD, "/ga", 5, TL__M_GET, 0, &m);
  /* HEAD does not serve GET. */
  expect_code(t, TL__M_GET, "/h", 405, BIT(TL__M_HEAD));
  expect_match(t, TL__M_HEAD, "/h", 7, TL__M_HEAD, 0, &m);
  tl__rtree_free(t);
}

static void test_all_fallback(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  int s;
  (void)state;
  add_ok(t, TL__M_ALL, "/any", 1);
  add_ok(t, TL__M_ALL, "/mix", 2);
  add_ok(t, TL__M_POST, "/mix", 3);
  for (s = 0; s < TL__M_ALL; s++)
    expect_match(t, s, "/any", 1, TL__M_ALL, 0, &m);
  expect_match(t, TL__M_ALL, "/any", 1, TL__M_ALL, 0, &m);
  expect_match(t, TL__M_POST, "/mix", 3, TL__M_POST, 0, &m);
  expect_match(t, TL__M_GET, "/mix", 2, TL__M_ALL, 0, &m);
  expect_match(t, TL__M_DELETE, "/mix", 2, TL__M_ALL, 0, &m);
  expect_code(t, TL__M_GET, "/none", 404, 0);
  tl__rtree_free(t);
}

/* ALL on a lower-precedence path match serves a method that the better
 * path match lacks. */
static void test_all_on_lower_match(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/f/a", 1);
  add_ok(t, TL__M_ALL, "/f/*", 2);
  expect_match(t, TL__M_GET, "/f/a", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_POST, "/f/a", 2, TL__M_ALL, 1, &m);
  expect_param(&m, 0, "*", "a");
  expect_match(t, TL__M_OPTIONS, "/f", 2, TL__M_ALL, 1, &m);
  expect_param(&m, 0, "*", "");
  tl__rtree_free(t);
}

static void test_other_method(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/g", 1);
  add_ok(t, TL__M_GET, "/ga", 2);
  add_ok(t, TL__M_ALL, "/ga", 3);
  add_ok(t, TL__M_POST, "/p", 4);
  expect_code(t, TL__M_OTHER, "/g", 405, BIT(TL__M_GET) | BIT(TL__M_HEAD));
  expect_match(t, TL__M_OTHER, "/ga", 3, TL__M_ALL, 0, &m);
  expect_code(t, TL__M_OTHER, "/p", 405, BIT(TL__M_POST));
  expect_code(t, TL__M_OTHER, "/none", 404, 0);
  /* Out-of-range slots are treated as TL__M_OTHER. */
  expect_code(t, 99, "/g", 405, BIT(TL__M_GET) | BIT(TL__M_HEAD));
  expect_code(t, -7, "/g", 405, BIT(TL__M_GET) | BIT(TL__M_HEAD));
  expect_code(t, TL__M_COUNT, "/p", 405, BIT(TL__M_POST));
  expect_match(t, 99, "/ga", 3, TL__M_ALL, 0, &m);
  tl__rtree_free(t);
}

/* ---- parameters --------------------------------------------------------- */

static void test_params(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/org/:org/repo/:repo/issues/:n", 1);
  add_ok(t, TL__M_GET, "/:a/:b/:c", 2);
  add_ok(t, TL__M_GET, "/d/:x.json", 3);

  expect_match(t, TL__M_GET, "/org/talon/repo/core/issues/42", 1, TL__M_GET, 3,
               &m);
  expect_param(&m, 0, "org", "talon");
  expect_param(&m, 1, "repo", "core");
  expect_param(&m, 2, "n", "42");
  /* Values are raw slices of the path. */
  expect_match(t, TL__M_GET, "/x%20y/b;c/:c", 2, TL__M_GET, 3, &m);
  expect_param(&m, 0, "a", "x%20y");
  expect_param(&m, 1, "b", "b;c");
  expect_param(&m, 2, "c", ":c");
  /* A param takes the whole segment; a name may contain '.'. */
  expect_match(t, TL__M_GET, "/d/file.json", 3, TL__M_GET, 1, &m);
  expect_param(&m, 0, "x.json", "file.json");
  expect_code(t, TL__M_GET, "/org/talon/repo/core/issues/", 404, 0);
  expect_code(t, TL__M_GET, "/a/b", 404, 0);
  expect_code(t, TL__M_GET, "/a/b/c/d", 404, 0);
  tl__rtree_free(t);
}

static void test_per_route_names(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/u/:id", 1);
  add_ok(t, TL__M_POST, "/u/:name", 2);
  add_ok(t, TL__M_ALL, "/u/:who", 3);
  add_ok(t, TL__M_GET, "/u/:uid/f/*", 4);
  add_ok(t, TL__M_PUT, "/u/:user/f/*", 5);

  expect_match(t, TL__M_GET, "/u/7", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "7");
  expect_match(t, TL__M_HEAD, "/u/7", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "7");
  expect_match(t, TL__M_POST, "/u/8", 2, TL__M_POST, 1, &m);
  expect_param(&m, 0, "name", "8");
  expect_match(t, TL__M_PATCH, "/u/9", 3, TL__M_ALL, 1, &m);
  expect_param(&m, 0, "who", "9");
  expect_match(t, TL__M_GET, "/u/1/f/a/b", 4, TL__M_GET, 2, &m);
  expect_param(&m, 0, "uid", "1");
  expect_param(&m, 1, "*", "a/b");
  expect_match(t, TL__M_PUT, "/u/2/f/c", 5, TL__M_PUT, 2, &m);
  expect_param(&m, 0, "user", "2");
  expect_param(&m, 1, "*", "c");
  tl__rtree_free(t);
}

/* Builds "/:p0/:p1/..." with n params, optionally followed by a
 * wildcard segment. */
static void param_pattern(char *buf, size_t n, int wild) {
  size_t i;
  char *p = buf;
  for (i = 0; i < n; i++)
    p += sprintf(p, "/:p%zu", i);
  if (wild)
    p += sprintf(p, "/*");
  if (p == buf)
    sprintf(p, "/");
}

static void test_param_limits(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  char pat[256], path[256];
  size_t i;
  (void)state;
  param_pattern(pat, TL__MAX_PARAMS + 1, 0);
  assert_int_equal(add(t, TL__M_GET, pat, 1), TL_EINVAL);
  param_pattern(pat, TL__MAX_PARAMS, 1);
  assert_int_equal(add(t, TL__M_GET, pat, 1), TL_EINVAL);
  param_pattern(pat, TL__MAX_PARAMS, 0);
  add_ok(t, TL__M_GET, pat, 2);
  param_pattern(pat, TL__MAX_PARAMS - 1, 1);
  add_ok(t, TL__M_POST, pat, 3);

  path[0] = '\0';
  for (i = 0; i < TL__MAX_PARAMS; i++)
    sprintf(path + strlen(path), "/v%zu", i);
  expect_match(t, TL__M_GET, path, 2, TL__M_GET, TL__MAX_PARAMS, &m);
  for (i = 0; i < TL__MAX_PARAMS; i++) {
    char name[8], value[8];
    sprintf(name, "p%zu", i);
    sprintf(value, "v%zu", i);
    expect_param(&m, i, name, value);
  }
  expect_match(t, TL__M_POST, path, 3, TL__M_POST, TL__MAX_PARAMS, &m);
  expect_param(&m, TL__MAX_PARAMS - 2, "p14", "v14");
  expect_param(&m, TL__MAX_PARAMS - 1, "*", "v15");
  strcat(path, "/more/x");
  expect_match(t, TL__M_POST, path, 3, TL__M_POST, TL__MAX_PARAMS, &m);
  expect_param(&m, TL__MAX_PARAMS - 1, "*", "v15/more/x");
  expect_code(t, TL__M_GET, path, 405, BIT(TL__M_POST));
  tl__rtree_free(t);
}

static void test_wildcard(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/files/*", 1);
  add_ok(t, TL__M_GET, "/*", 2);
  add_ok(t, TL__M_GET, "/u/:id/*", 3);

  expect_match(t, TL__M_GET, "/files/", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "");
  expect_match(t, TL__M_GET, "/files/a", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "a");
  expect_match(t, TL__M_GET, "/files/a/b/c.txt", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "a/b/c.txt");
  expect_match(t, TL__M_GET, "/files//x/", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "/x/");
  /* Decision: the wildcard after "/files/" also matches "/files", with
   * an empty value that points at the end of the path. */
  {
    static const char files[] = "/files";
    expect_match(t, TL__M_GET, files, 1, TL__M_GET, 1, &m);
    expect_param(&m, 0, "*", "");
    assert_ptr_equal(m.params[0].value, files + 6);
  }
  /* Everything else falls to the root wildcard. */
  expect_match(t, TL__M_GET, "/filesx", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "filesx");
  expect_match(t, TL__M_GET, "/file", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "file");
  expect_match(t, TL__M_GET, "/", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "");
  expect_match(t, TL__M_GET, "//", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "/");
  /* A param then a wildcard, including the empty rest. */
  expect_match(t, TL__M_GET, "/u/5", 3, TL__M_GET, 2, &m);
  expect_param(&m, 0, "id", "5");
  expect_param(&m, 1, "*", "");
  expect_match(t, TL__M_GET, "/u/5/", 3, TL__M_GET, 2, &m);
  expect_param(&m, 1, "*", "");
  expect_match(t, TL__M_GET, "/u/5/a/b", 3, TL__M_GET, 2, &m);
  expect_param(&m, 0, "id", "5");
  expect_param(&m, 1, "*", "a/b");
  /* "/u/" has no id: the root wildcard takes it. */
  expect_match(t, TL__M_GET, "/u/", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "u/");
  tl__rtree_free(t);
}

/* The empty-rest wildcard match sits in the static branch, after an exact
 * route and before a param. */
static void test_wildcard_without_slash_precedence(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/:x", 1);
  add_ok(t, TL__M_GET, "/files/*", 2);
  add_ok(t, TL__M_POST, "/files", 3);
  add_ok(t, TL__M_GET, "/filesystem", 4);
  expect_match(t, TL__M_POST, "/files", 3, TL__M_POST, 0, &m);
  expect_match(t, TL__M_GET, "/files", 2, TL__M_GET, 1, &m);
  expect_param(&m, 0, "*", "");
  expect_match(t, TL__M_GET, "/filesystem", 4, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/filesys", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "x", "filesys");
  expect_match(t, TL__M_GET, "/file", 1, TL__M_GET, 1, &m);
  expect_param(&m, 0, "x", "file");
  expect_code(t, TL__M_DELETE, "/files", 405,
              BIT(TL__M_GET) | BIT(TL__M_HEAD) | BIT(TL__M_POST));
  tl__rtree_free(t);
}

/* ---- registration errors ------------------------------------------------ */

static void test_malformed(void **state) {
  static const char *bad[] = {"",     "a",       "a/b",    "*",     ":x",
                              "/:",   "/:/x",    "/a/:",   "/a/:/", "/a/*/b",
                              "/a*",  "/*x",     "/a/**",  "/*/",   "/a/b*",
                              "/:x*", "/a/*b/c", "/a/x*y", "/*/*",  "/a/:x/*/"};
  tl__rtree *t = tl__rtree_new();
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (add(t, TL__M_GET, bad[i], 1) != TL_EINVAL)
      fail_msg("pattern \"%s\" was accepted", bad[i]);
  }
  assert_int_equal(tl__rtree_add(t, TL__M_GET, "/a\0b", 4, V(1)), TL_EINVAL);
  assert_int_equal(tl__rtree_add(t, TL__M_GET, NULL, 0, V(1)), TL_EINVAL);
  assert_int_equal(tl__rtree_add(NULL, TL__M_GET, "/", 1, V(1)), TL_EINVAL);
  assert_int_equal(add(t, -1, "/ok", 1), TL_EINVAL);
  assert_int_equal(add(t, TL__M_COUNT, "/ok", 1), TL_EINVAL);
  assert_int_equal(add(t, TL__M_OTHER, "/ok", 1), TL_EINVAL);
  /* Nothing of the refused patterns was registered. */
  expect_code(t, TL__M_GET, "/a/x/b", 404, 0);
  expect_code(t, TL__M_GET, "/ok", 404, 0);
  expect_code(t, TL__M_GET, "/a", 404, 0);
  /* The length is honoured: only "/ok" is added here. */
  assert_int_equal(tl__rtree_add(t, TL__M_GET, "/ok/*/x", 3, V(9)), 0);
  {
    tl__rmatch m;
    expect_match(t, TL__M_GET, "/ok", 9, TL__M_GET, 0, &m);
  }
  tl__rtree_free(t);
}

static void test_duplicates(void **state) {
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  (void)state;
  add_ok(t, TL__M_GET, "/a", 1);
  assert_int_equal(add(t, TL__M_GET, "/a", 2), TL_EEXIST);
  add_ok(t, TL__M_POST, "/a", 3);
  add_ok(t, TL__M_ALL, "/a", 4);
  assert_int_equal(add(t, TL__M_ALL, "/a", 5), TL_EEXIST);
  add_ok(t, TL__M_GET, "/a/", 6);

  add_ok(t, TL__M_GET, "/u/:id", 7);
  assert_int_equal(add(t, TL__M_GET, "/u/:name", 8), TL_EEXIST);
  add_ok(t, TL__M_POST, "/u/:name", 9);
  add_ok(t, TL__M_GET, "/u/:id/x/:y", 10);
  assert_int_equal(add(t, TL__M_GET, "/u/:q/x/:r", 11), TL_EEXIST);
  add_ok(t, TL__M_GET, "/f/*", 12);
  assert_int_equal(add(t, TL__M_GET, "/f/*", 13), TL_EEXIST);

  /* The first registration stays in place, with its names. */
  expect_match(t, TL__M_GET, "/a", 1, TL__M_GET, 0, &m);
  expect_match(t, TL__M_PUT, "/a", 4, TL__M_ALL, 0, &m);
  expect_match(t, TL__M_GET, "/a/", 6, TL__M_GET, 0, &m);
  expect_match(t, TL__M_GET, "/u/3", 7, TL__M_GET, 1, &m);
  expect_param(&m, 0, "id", "3");
  expect_match(t, TL__M_POST, "/u/3", 9, TL__M_POST, 1, &m);
  expect_param(&m, 0, "name", "3");
  expect_match(t, TL__M_GET, "/u/3/x/4", 10, TL__M_GET, 2, &m);
  expect_param(&m, 0, "id", "3");
  expect_param(&m, 1, "y", "4");
  expect_match(t, TL__M_GET, "/f/z", 12, TL__M_GET, 1, &m);
  tl__rtree_free(t);
}

/* ---- scale -------------------------------------------------------------- */

#define NGEN 1000

static void gen_route(size_t i, char *pat, char *path, size_t *nparams) {
  switch (i % 5) {
  case 0:
    sprintf(pat, "/r%zu", i);
    sprintf(path, "/r%zu", i);
    *nparams = 0;
    break;
  case 1:
    sprintf(pat, "/r%zu/items/:id", i);
    sprintf(path, "/r%zu/items/%zu", i, i * 7);
    *nparams = 1;
    break;
  case 2:
    sprintf(pat, "/s/%zu/:a/x/:b", i);
    sprintf(path, "/s/%zu/A%zu/x/B", i, i);
    *nparams = 2;
    break;
  case 3:
    sprintf(pat, "/w/%zu/*", i);
    sprintf(path, "/w/%zu/deep/%zu/path", i, i);
    *nparams = 1;
    break;
  default:
    sprintf(pat, "/api/v%zu/users/:id/posts/%zu", i % 7, i);
    sprintf(path, "/api/v%zu/users/u%zu/posts/%zu", i % 7, i, i);
    *nparams = 1;
    break;
  }
}

static void test_many_routes(void **state) {
  static size_t order[NGEN];
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  char pat[128], path[128];
  size_t i, np;
  (void)state;
  rng_state = 12345;
  for (i = 0; i < NGEN; i++)
    order[i] = i;
  for (i = NGEN - 1; i > 0; i--) {
    size_t j = rng_below(i + 1), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  for (i = 0; i < NGEN; i++) {
    gen_route(order[i], pat, path, &np);
    add_ok(t, order[i] % 2 ? TL__M_POST : TL__M_GET, pat, order[i] + 1);
  }
  for (i = 0; i < NGEN; i++) {
    int slot = i % 2 ? TL__M_POST : TL__M_GET;
    gen_route(i, pat, path, &np);
    assert_int_equal(add(t, slot, pat, 0), TL_EEXIST);
    expect_match(t, slot, path, i + 1, slot, np, &m);
    switch (i % 5) {
    case 1: {
      char v[32];
      sprintf(v, "%zu", i * 7);
      expect_param(&m, 0, "id", v);
      break;
    }
    case 2:
      assert_string_equal(m.params[1].name, "b");
      assert_int_equal(m.params[1].value_len, 1);
      break;
    case 3: {
      char v[64];
      sprintf(v, "deep/%zu/path", i);
      expect_param(&m, 0, "*", v);
      break;
    }
    case 4: {
      char v[32];
      sprintf(v, "u%zu", i);
      expect_param(&m, 0, "id", v);
      break;
    }
    }
    expect_code(t, slot ^ (TL__M_GET ^ TL__M_POST), path, 405,
                slot == TL__M_GET ? BIT(TL__M_GET) | BIT(TL__M_HEAD)
                                  : BIT(TL__M_POST));
  }
  expect_code(t, TL__M_GET, "/r1000", 404, 0);
  expect_code(t, TL__M_GET, "/r", 404, 0);
  expect_code(t, TL__M_GET, "/s/1000/a/x/b", 404, 0);
  tl__rtree_free(t);
}

static void test_long_paths(void **state) {
  enum { NSEG = 400, BIG = 100000 };
  tl__rtree *t = tl__rtree_new();
  tl__rmatch m;
  char *pat = malloc(NSEG * 8 + 1), *big = malloc(BIG + 1);
  size_t i, n = 0;
  (void)state;
  assert_non_null(pat);
  assert_non_null(big);

  for (i = 0; i < NSEG; i++)
    n += (size_t)sprintf(pat + n, "/seg%zu", i);
  add_ok(t, TL__M_GET, pat, 1);
  expect_match(t, TL__M_GET, pat, 1, TL__M_GET, 0, &m);
  pat[n - 1] = 'X';
  expect_code(t, TL__M_GET, pat, 404, 0);
  pat[n - 1] = '9';

  add_ok(t, TL__M_GET, "/big/*", 2);
  add_ok(t, TL__M_GET, "/p/:v", 3);
  memcpy(big, "/big/", 5);
  for (i = 5; i < BIG; i++)
    big[i] = (i % 50 == 0) ? '/' : (char)('a' + i % 26);
  big[BIG] = '\0';
  expect_match(t, TL__M_GET, big, 2, TL__M_GET, 1, &m);
  assert_ptr_equal(m.params[0].value, big + 5);
  assert_int_equal(m.params[0].value_len, BIG - 5);

  memcpy(big, "/p/", 3);
  for (i = 3; i < BIG; i++)
    big[i] = 'v';
  expect_match(t, TL__M_GET, big, 3, TL__M_GET, 1, &m);
  assert_ptr_equal(m.params[0].value, big + 3);
  assert_int_equal(m.params[0].value_len, BIG - 3);

  /* Many short segments against params that do not go that deep. */
  for (i = 0; i < BIG; i++)
    big[i] = (i % 2 == 0) ? '/' : 'q';
  expect_code(t, TL__M_GET, big, 404, 0);
  free(pat);
  free(big);
  tl__rtree_free(t);
}

/* ---- differential test against a brute-force matcher -------------------- */

#define RMAX 40

typedef struct ref_route {
  char pat[64];
  char shape[64]; /* the pattern with param names removed */
  int slot;
  uintptr_t value;
} ref_route;

typedef struct ref_result {
  int rc;
  uintptr_t value;
  int used;
  unsigned allow;
  size_t ncap;
  const char *names[TL__MAX_PARAMS];
  size_t name_lens[TL__MAX_PARAMS];
  const char *vals[TL__MAX_PARAMS];
  size_t val_lens[TL__MAX_PARAMS];
} ref_result;

static void make_shape(const char *pat, char *shape) {
  while (*pat) {
    *shape++ = *pat;
    if (*pat == ':' && pat[-1] == '/') {
      while (pat[1] && pat[1] != '/')
        pat++;
    }
    pat++;
  }
  *shape = '\0';
}

/* Splits "/a/b" after the leading '/' into segment starts and lengths. */
static size_t split_segs(const char *s, const char **seg, size_t *len) {
  size_t n = 0;
  const char *p = s + 1;
  for (;;) {
    const char *e = strchr(p, '/');
    seg[n] = p;
    len[n] = e ? (size_t)(e - p) : strlen(p);
    n++;
    if (!e)
      return n;
    p = e + 1;
  }
}

/* Matches one pattern against a path: returns 1 and fills the precedence
 * key (0 static, 1 param, 2 wildcard per segment) and the captures. */
static int ref_match_one(const char *pat, const char *path, int *key,
                         size_t *keylen, ref_result *caps) {
  const char *ps[64], *qs[256];
  size_t pl[64], ql[256], np, nq, i;
  np = split_segs(pat, ps, pl);
  nq = split_segs(path, qs, ql);
  caps->ncap = 0;
  for (i = 0; i < np; i++) {
    if (pl[i] == 1 && ps[i][0] == '*') {
      key[i] = 2;
      *keylen = i + 1;
      caps->names[caps->ncap] = "*";
      caps->name_lens[caps->ncap] = 1;
      if (nq > i) {
        caps->vals[caps->ncap] = qs[i];
        caps->val_lens[caps->ncap] = strlen(qs[i]);
      } else if (nq == i) {
        caps->vals[caps->ncap] = "";
        caps->val_lens[caps->ncap] = 0;
      } else {
        return 0;
      }
      caps->ncap++;
      return 1;
    }
    if (i >= nq)
      return 0;
    if (pl[i] > 0 && ps[i][0] == ':') {
      if (ql[i] == 0)
        return 0;
      key[i] = 1;
      caps->names[caps->ncap] = ps[i] + 1;
      caps->name_lens[caps->ncap] = pl[i] - 1;
      caps->vals[caps->ncap] = qs[i];
      caps->val_lens[caps->ncap] = ql[i];
      caps->ncap++;
    } else {
      if (pl[i] != ql[i] || memcmp(ps[i], qs[i], pl[i]) != 0)
        return 0;
      key[i] = 0;
    }
  }
  *keylen = np;
  return np == nq;
}

static int key_less(const int *a, size_t na, const int *b, size_t nb) {
  size_t i;
  for (i = 0; i < na && i < nb; i++)
    if (a[i] != b[i])
      return a[i] < b[i];
  return na < nb;
}

static int ref_pick(const ref_route *r, size_t n, const char *shape, int slot,
                    size_t *which, int *used) {
  size_t i, found_all = n, found_get = n;
  for (i = 0; i < n; i++) {
    if (strcmp(r[i].shape, shape) != 0)
      continue;
    if (r[i].slot == slot && slot >= 0 && slot < TL__M_ALL) {
      *which = i;
      *used = slot;
      return 1;
    }
    if (r[i].slot == TL__M_GET)
      found_get = i;
    if (r[i].slot == TL__M_ALL)
      found_all = i;
  }
  if (slot == TL__M_HEAD && found_get < n) {
    *which = found_get;
    *used = TL__M_GET;
    return 1;
  }
  if (found_all < n) {
    *which = found_all;
    *used = TL__M_ALL;
    return 1;
  }
  return 0;
}

static void ref_match(const ref_route *r, size_t n, int slot, const char *path,
                      ref_result *out) {
  int tried[RMAX] = {0};
  unsigned allow = 0;
  int any = 0;
  out->rc = 404;
  /* Shapes in precedence order: repeatedly take the best untried one. */
  for (;;) {
    size_t i, best = n, which;
    int key[64], bkey[64], used;
    size_t klen, bklen = 0;
    ref_result caps;
    for (i = 0; i < n; i++) {
      if (tried[i] || !ref_match_one(r[i].pat, path, key, &klen, &caps))
        continue;
      if (best == n || key_less(key, klen, bkey, bklen)) {
        best = i;
        memcpy(bkey, key, sizeof(key));
        bklen = klen;
      }
    }
    if (best == n)
      break;
    for (i = 0; i < n; i++)
      if (strcmp(r[i].shape, r[best].shape) == 0) {
        tried[i] = 1;
        allow |= BIT(r[i].slot);
        any = 1;
      }
    if (ref_pick(r, n, r[best].shape, slot, &which, &used)) {
      ref_match_one(r[which].pat, path, key, &klen, out);
      out->rc = 0;
      out->value = r[which].value;
      out->used = used;
      return;
    }
  }
  if (any) {
    out->rc = 405;
    if (allow & BIT(TL__M_GET))
      allow |= BIT(TL__M_HEAD);
    out->allow = allow;
  }
}

static void random_segment(char *out, int last, int allow_special) {
  static const char *statics[] = {"a", "b", "ab", "", "abc", "a:b"};
  static const char *names[] = {"x", "y", "id"};
  size_t c = rng_below(allow_special ? 10 : 6);
  if (c < 6)
    strcpy(out, statics[c]);
  else if (c < 9 || !last)
    sprintf(out, ":%s", names[rng_below(3)]);
  else
    strcpy(out, "*");
}

static void test_random_vs_reference(void **state) {
  static const int rslots[] = {TL__M_GET, TL__M_HEAD, TL__M_POST, TL__M_ALL,
                               TL__M_DELETE};
  static const int qslots[] = {TL__M_GET,    TL__M_HEAD, TL__M_POST,
                               TL__M_DELETE, TL__M_PUT,  TL__M_OTHER};
  static const char *qsegs[] = {"a", "b", "ab", "", "abc", "c", "a:b", "x"};
  size_t round, checked = 0, matched = 0, m405 = 0;
  (void)state;
  rng_state = 2024;
  for (round = 0; round < 300; round++) {
    ref_route routes[RMAX];
    size_t nr = 0, i, want = 1 + rng_below(RMAX), q;
    tl__rtree *t = tl__rtree_new();
    for (i = 0; i < want; i++) {
      ref_route r;
      size_t nseg = 1 + rng_below(4), s, j;
      int dup = 0, rc;
      char *p = r.pat;
      for (s = 0; s < nseg; s++) {
        *p++ = '/';
        random_segment(p, s == nseg - 1, 1);
        p += strlen(p);
      }
      make_shape(r.pat, r.shape);
      r.slot = rslots[rng_below(5)];
      r.value = round * 1000 + i + 1;
      for (j = 0; j < nr; j++)
        if (routes[j].slot == r.slot && strcmp(routes[j].shape, r.shape) == 0)
          dup = 1;
      rc = add(t, r.slot, r.pat, r.value);
      if (rc != (dup ? TL_EEXIST : 0))
        fail_msg("add %s %s: %d", tl__rtree_slot_name(r.slot), r.pat, rc);
      if (!dup)
        routes[nr++] = r;
    }
    for (q = 0; q < 200; q++) {
      char path[128];
      char *p = path;
      size_t nseg = 1 + rng_below(5), s;
      int slot = qslots[rng_below(6)];
      ref_result want_r;
      tl__rmatch m;
      int rc;
      for (s = 0; s < nseg; s++)
        p += sprintf(p, "/%s", qsegs[rng_below(8)]);
      memset(&want_r, 0, sizeof(want_r));
      ref_match(routes, nr, slot, path, &want_r);
      rc = match(t, slot, path, &m);
      if (rc != want_r.rc)
        fail_msg("round %zu %s %d: got %d, want %d", round, path, slot, rc,
                 want_r.rc);
      checked++;
      if (rc == 0) {
        matched++;
        assert_ptr_equal(m.value, V(want_r.value));
        assert_int_equal(m.method_slot, want_r.used);
        assert_int_equal(m.nparams, want_r.ncap);
        for (s = 0; s < m.nparams; s++) {
          assert_int_equal(strlen(m.params[s].name), want_r.name_lens[s]);
          assert_memory_equal(m.params[s].name, want_r.names[s],
                              want_r.name_lens[s]);
          assert_int_equal(m.params[s].value_len, want_r.val_lens[s]);
          if (want_r.val_lens[s] > 0)
            assert_ptr_equal(m.params[s].value, want_r.vals[s]);
        }
      } else {
        if (rc == 405)
          m405++;
        assert_int_equal(m.allow, want_r.allow);
      }
    }
    tl__rtree_free(t);
  }
  /* The generator must exercise all three outcomes substantially. */
  assert_int_equal(checked, 300 * 200);
  assert_true(matched > 3000);
  assert_true(m405 > 1000);
  assert_true(checked - matched - m405 > 3000);
}

/* ---- allocation failure ------------------------------------------------- */

/* A second copy of rtree.c, with renamed entry points and allocators that
 * count live blocks and fail the fi_fail_at-th allocation. */
static size_t fi_calls, fi_fail_at;
static long fi_live;

static void *fi_malloc(size_t n) {
  void *p;
  if (++fi_calls == fi_fail_at)
    return NULL;
  p = malloc(n);
  if (p != NULL)
    fi_live++;
  return p;
}

static void *fi_calloc(size_t n, size_t size) {
  void *p;
  if (++fi_calls == fi_fail_at)
    return NULL;
  p = calloc(n, size);
  if (p != NULL)
    fi_live++;
  return p;
}

static void fi_free(void *p) {
  if (p != NULL)
    fi_live--;
  free(p);
}

int fi_rtree_method_slot(const char *method);
const char *fi_rtree_slot_name(int slot);
tl__rtree *fi_rtree_new(void);
void fi_rtree_free(tl__rtree *t);
int fi_rtree_add(tl__rtree *t, int slot, const char *pattern, size_t len,
                 void *value);
int fi_rtree_match(const tl__rtree *t, int slot, const char *path, size_t len,
                   tl__rmatch *m);

#define tl__rtree_method_slot fi_rtree_method_slot
#define tl__rtree_slot_name fi_rtree_slot_name
#define tl__rtree_new fi_rtree_new
#define tl__rtree_free fi_rtree_free
#define tl__rtree_add fi_rtree_add
#define tl__rtree_match fi_rtree_match
#define malloc fi_malloc
#define calloc fi_calloc
#define free fi_free
#include "http/rtree.c"
#undef malloc
#undef calloc
#undef free
#undef tl__rtree_method_slot
#undef tl__rtree_slot_name
#undef tl__rtree_new
#undef tl__rtree_free
#undef tl__rtree_add
#undef tl__rtree_match

static const struct {
  int slot;
  const char *pat;
  const char *probe;
} fi_routes[] = {
    {TL__M_GET, "/", "/"},
    {TL__M_GET, "/users/:id", "/users/7"},
    {TL__M_GET, "/users/me", "/users/me"},
    {TL__M_POST, "/users/:name", "/users/8"},
    {TL__M_GET, "/users/:id/posts/:post", "/users/1/posts/2"},
    {TL__M_GET, "/usage", "/usage"},
    {TL__M_GET, "/u", "/u"},
    {TL__M_GET, "/files/*", "/files/a/b"},
    {TL__M_ALL, "/files/*", "/files/c"},
    {TL__M_GET, "/files/x", "/files/x"},
    {TL__M_GET, "/a", "/a"},
    {TL__M_GET, "/b", "/b"},
    {TL__M_GET, "/c", "/c"},
    {TL__M_GET, "/d", "/d"},
    {TL__M_GET, "/e", "/e"},
    {TL__M_GET, "/usersX", "/usersX"},
};

static void fi_expect(const tl__rtree *t, size_t i, int present) {
  tl__rmatch m;
  int rc = fi_rtree_match(
      t, fi_routes[i].slot == TL__M_ALL ? TL__M_DELETE : fi_routes[i].slot,
      fi_routes[i].probe, strlen(fi_routes[i].probe), &m);
  if (present) {
    assert_int_equal(rc, 0);
    assert_ptr_equal(m.value, V(i + 1));
  } else {
    assert_true(rc != 0 || m.value != V(i + 1));
  }
}

static void test_alloc_failure(void **state) {
  static const size_t n = sizeof(fi_routes) / sizeof(fi_routes[0]);
  size_t fail_at, injected = 0;
  (void)state;
  for (fail_at = 1;; fail_at++) {
    tl__rtree *t;
    size_t i, j;
    fi_calls = 0;
    fi_fail_at = fail_at;
    fi_live = 0;
    t = fi_rtree_new();
    if (t == NULL) {
      assert_int_equal(fi_live, 0);
      injected++;
      continue;
    }
    for (i = 0; i < n; i++) {
      const char *pat = fi_routes[i].pat;
      int rc = fi_rtree_add(t, fi_routes[i].slot, pat, strlen(pat), V(i + 1));
      if (rc == TL_ENOMEM) {
        injected++;
        /* The tree still works, without the failed route... */
        for (j = 0; j < i; j++)
          fi_expect(t, j, 1);
        fi_expect(t, i, 0);
        /* ...and takes it on a second try. */
        rc = fi_rtree_add(t, fi_routes[i].slot, pat, strlen(pat), V(i + 1));
      }
      assert_int_equal(rc, 0);
    }
    for (i = 0; i < n; i++)
      fi_expect(t, i, 1);
    fi_rtree_free(t);
    assert_int_equal(fi_live, 0);
    if (fi_calls < fail_at)
      break; /* this round ran without an injected failure */
  }
  /* Every allocation of the run was failed once. */
  assert_int_equal(injected, fail_at - 1);
  assert_true(injected > 20);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_method_slots),
      cmocka_unit_test(test_ws_slot),
      cmocka_unit_test(test_root),
      cmocka_unit_test(test_static_and_trailing_slash),
      cmocka_unit_test(test_edge_splits),
      cmocka_unit_test(test_empty_segments),
      cmocka_unit_test(test_literal_colon),
      cmocka_unit_test(test_precedence_any_order),
      cmocka_unit_test(test_backtrack_path),
      cmocka_unit_test(test_backtrack_method),
      cmocka_unit_test(test_404_405_allow),
      cmocka_unit_test(test_head_fallback),
      cmocka_unit_test(test_all_fallback),
      cmocka_unit_test(test_all_on_lower_match),
      cmocka_unit_test(test_other_method),
      cmocka_unit_test(test_params),
      cmocka_unit_test(test_per_route_names),
      cmocka_unit_test(test_param_limits),
      cmocka_unit_test(test_wildcard),
      cmocka_unit_test(test_wildcard_without_slash_precedence),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_duplicates),
      cmocka_unit_test(test_many_routes),
      cmocka_unit_test(test_long_paths),
      cmocka_unit_test(test_random_vs_reference),
      cmocka_unit_test(test_alloc_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
