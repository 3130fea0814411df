/* examples/echo.c's app, tested in-process with talon's test client
 * (talon/test.h) from cmocka: the page, and the echo of text and binary
 * messages. The conformance suites and browser tests stay where they are
 * (tests/ws, tests/interop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <talon/test.h>

#include "echo.c"

static int setup(void **state) {
  tl_app *app = echo_app(&(tl_app_config){.no_signal_handlers = 1});
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

static void test_page(void **state) {
  tl_test_response r;
  assert_int_equal(tl_test_get(*state, "/", &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.body, "new WebSocket"));
  tl_test_response_free(&r);
}

static void test_echo_keeps_type_and_order(void **state) {
  tl_test_ws *ws;
  assert_int_equal(tl_test_ws_open(*state, "/ws", NULL, &ws, NULL), 0);
  char text[32];
  for (int i = 0; i < 20; i++) {
    snprintf(text, sizeof text, "message %d", i);
    assert_int_equal(tl_test_ws_send_text(ws, text), 0);
  }
  unsigned char bin[3] = {0, 0xff, 7};
  assert_int_equal(tl_test_ws_send(ws, TL_WS_BINARY, bin, 3), 0);
  tl_test_msg m;
  for (int i = 0; i < 20; i++) {
    snprintf(text, sizeof text, "message %d", i);
    assert_int_equal(tl_test_ws_recv(ws, &m, 2000), 0);
    assert_int_equal(m.op, TL_WS_TEXT);
    assert_string_equal(m.data, text);
    tl_test_msg_free(&m);
  }
  assert_int_equal(tl_test_ws_recv(ws, &m, 2000), 0);
  assert_int_equal(m.op, TL_WS_BINARY);
  assert_int_equal(m.len, 3);
  assert_memory_equal(m.data, bin, 3);
  tl_test_msg_free(&m);
  assert_int_equal(tl_test_ws_close(ws, 1000, NULL), 0);
  assert_int_equal(tl_test_ws_close_code(ws), 1000);
  tl_test_ws_free(ws);
}

static void test_large_message(void **state) {
  tl_test_ws *ws;
  assert_int_equal(tl_test_ws_open(*state, "/ws", NULL, &ws, NULL), 0);
  size_t n = 4u << 20; /* well under the example's 64 MiB limit */
  char *p = malloc(n);
  for (size_t i = 0; i < n; i++)
    p[i] = (char)(i % 251);
  assert_int_equal(tl_test_ws_send(ws, TL_WS_BINARY, p, n), 0);
  tl_test_msg m;
  assert_int_equal(tl_test_ws_recv(ws, &m, 5000), 0);
  assert_int_equal(m.len, n);
  assert_memory_equal(m.data, p, n);
  tl_test_msg_free(&m);
  free(p);
  tl_test_ws_free(ws);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_page),
      cmocka_unit_test(test_echo_keeps_type_and_order),
      cmocka_unit_test(test_large_message),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
