/* examples/hello.c's app, tested in-process with talon's test client
 * (talon/test.h) from cmocka: the example's source is compiled here
 * without its main(). The process-level checks (command line, signals)
 * stay in tests/examples/test_hello.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <talon/test.h>

#include "hello.c"

static int setup(void **state) {
  tl_app *app = hello_app(&(tl_app_config){.no_signal_handlers = 1});
  assert_non_null(app);
  tl_test *t;
  assert_int_equal(tl_test_start(&t, app, NULL), 0);
  *state = t;
  return 0;
}

static int teardown(void **state) {
  tl_test *t = *state;
  tl_app *app = tl_test_app(t);
  assert_int_equal(tl_test_stop(t), 0);
  tl_app_free(app);
  return 0;
}

static void test_root(void **state) {
  tl_test_response r;
  assert_int_equal(tl_test_get(*state, "/", &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "Hello World");
  assert_string_equal(tl_test_header_get(&r, "Content-Type"), "text/plain");
  tl_test_response_free(&r);
}

static void test_user_param_is_decoded_and_escaped(void **state) {
  tl_test_response r;
  assert_int_equal(tl_test_get(*state, "/users/a%22b", &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"id\":\"a\\\"b\"}");
  assert_string_equal(tl_test_header_get(&r, "Content-Type"),
                      "application/json");
  tl_test_response_free(&r);
}

static void test_sub_router(void **state) {
  tl_test_response r;
  assert_int_equal(tl_test_get(*state, "/api/health", &r), 0);
  assert_string_equal(r.body, "{\"ok\":true}");
  tl_test_response_free(&r);
  assert_int_equal(tl_test_get(*state, "/api/time", &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "{\"time\":"));
  tl_test_response_free(&r);
}

static void test_unknown_and_wrong_method(void **state) {
  tl_test_response r;
  assert_int_equal(tl_test_get(*state, "/nope", &r), 0);
  assert_int_equal(r.status, 404);
  tl_test_response_free(&r);
  assert_int_equal(tl_test_post(*state, "/", "text/plain", "x", &r), 0);
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(tl_test_header_get(&r, "Allow"), "GET"));
  tl_test_response_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_root),
      cmocka_unit_test(test_user_param_is_decoded_and_escaped),
      cmocka_unit_test(test_sub_router),
      cmocka_unit_test(test_unknown_and_wrong_method),
  };
  /* One app for the group: started once, stopped at the end. */
  return cmocka_run_group_tests(tests, setup, teardown);
}
