/* The test client (talon/test.h) against an app built here: HTTP requests
 * of every framing, deferred answers, caller-owned buffers, WebSockets
 * (echo, pub/sub, closes both ways, timeouts, a refused upgrade), and the
 * app's start and stop. cmocka; each test gets a fresh app. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <talon.h>
#include <talon/test.h>
#include <talon/timer.h>
#include <uv.h>

/* ---- the app under test ------------------------------------------------- */

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello\n");
}

static void headers(tl_req *req, tl_res *res) {
  const char *x = tl_req_header(req, "X-Test");
  tl_res_header(res, "X-Reply", x ? x : "none");
  tl_res_headerf(res, "X-Method", "%s", tl_req_method(req));
  tl_res_text(res, tl_req_query(req, "q") ? tl_req_query(req, "q") : "");
}

static void echo_body(tl_req *req, tl_res *res) {
  const char *ct = tl_req_header(req, "Content-Type");
  if (ct)
    tl_res_header(res, "Content-Type", ct);
  tl_slice b = tl_req_body(req);
  tl_res_send(res, b.ptr, b.len);
}

static void stream(tl_req *req, tl_res *res) {
  tl_res_write(res, "one,", 4);
  tl_res_write(res, "two,", 4);
  tl_res_end(res, "three", 5);
}

static void free_buf(void *body, void *arg) {
  free(body);
}

static void big(tl_req *req, tl_res *res) {
  size_t n = 3u << 20;
  char *p = malloc(n);
  for (size_t i = 0; i < n; i++)
    p[i] = (char)('A' + i % 23);
  tl_res_send_buffer(res, p, n, free_buf, NULL);
}

static void later(tl_timer *t, void *arg) {
  tl_res_text(arg, "late\n");
}

static void slow(tl_req *req, tl_res *res) {
  tl_res_defer(res, NULL, NULL);
  tl_timer_start(tl_req_app(req), 100, 0, later, res);
}

static void publish(tl_req *req, tl_res *res) {
  tl_slice b = tl_req_body(req);
  tl_app_publish(tl_req_app(req), "room", b.ptr, b.len, TL_WS_TEXT);
  tl_res_status(res, 204);
  tl_res_end(res, NULL, 0);
}

static int ws_upgrade(tl_req *req, tl_res *res, void *data) {
  if (tl_req_query(req, "deny")) {
    tl_res_status(res, 403);
    tl_res_text(res, "denied\n");
    return TL_REJECT;
  }
  if (tl_ws_protocol_offered(req, "chat"))
    tl_ws_select_protocol(res, "chat");
  return TL_ACCEPT;
}

static void ws_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  if (op == TL_WS_TEXT && len == 5 && memcmp(data, "close", 5) == 0) {
    tl_ws_close(ws, 4001, "bye");
    return;
  }
  if (op == TL_WS_TEXT && len == 4 && memcmp(data, "ping", 4) == 0) {
    tl_ws_ping(ws, "p", 1);
    return;
  }
  tl_ws_send(ws, data, len, op);
}

static const tl_ws_handlers echo_ws = {.upgrade = ws_upgrade,
                                       .message = ws_message};

static void sub_open(tl_ws *ws) {
  tl_ws_subscribe(ws, "room");
}

static const tl_ws_handlers sub_ws = {.open = sub_open};

static tl_app *make_app_workers(int workers) {
  tl_app *app = tl_app_new(&(tl_app_config){.no_signal_handlers = 1,
                                            .shutdown_timeout_ms = 1000,
                                            .workers = workers});
  assert_non_null(app);
  assert_int_equal(tl_app_get(app, "/hello", hello), 0);
  assert_int_equal(tl_app_all(app, "/headers", headers), 0);
  assert_int_equal(tl_app_post(app, "/echo", echo_body), 0);
  assert_int_equal(tl_app_get(app, "/stream", stream), 0);
  assert_int_equal(tl_app_get(app, "/big", big), 0);
  assert_int_equal(tl_app_get(app, "/slow", slow), 0);
  assert_int_equal(tl_app_post(app, "/publish", publish), 0);
  assert_int_equal(tl_app_ws(app, "/ws", &echo_ws, 0), 0);
  assert_int_equal(tl_app_ws(app, "/sub", &sub_ws, 0), 0);
  return app;
}

static tl_app *make_app(void) {
  return make_app_workers(0);
}

typedef struct fixture {
  tl_app *app;
  tl_test *t;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  f->app = make_app();
  assert_int_equal(tl_test_start(&f->t, f->app, NULL), 0);
  assert_true(tl_test_port(f->t) > 0);
  assert_ptr_equal(tl_test_app(f->t), f->app);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  assert_int_equal(tl_test_stop(f->t), 0);
  tl_app_free(f->app);
  free(f);
  return 0;
}

/* ---- HTTP ---------------------------------------------------------------- */

static void test_get(void **state) {
  fixture *f = *state;
  tl_test_response r;
  assert_int_equal(tl_test_get(f->t, "/hello", &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "hello\n");
  assert_int_equal(r.body_len, 6);
  assert_string_equal(tl_test_header_get(&r, "content-type"),
                      "text/plain; charset=utf-8");
  assert_string_equal(tl_test_header_get(&r, "Content-Length"), "6");
  assert_null(tl_test_header_get(&r, "X-Nope"));
  tl_test_response_free(&r);
  assert_int_equal(r.nheaders, 0); /* zeroed */
}

static void test_headers_query_and_methods(void **state) {
  fixture *f = *state;
  tl_test_response r;
  const char *h[] = {"X-Test: 42", NULL};
  assert_int_equal(
      tl_test_request(f->t, "DELETE", "/headers?q=a+b", h, NULL, 0, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(tl_test_header_get(&r, "X-Reply"), "42");
  assert_string_equal(tl_test_header_get(&r, "X-Method"), "DELETE");
  assert_string_equal(r.body, "a b");
  tl_test_response_free(&r);
  /* HEAD: headers, no body. */
  assert_int_equal(tl_test_request(f->t, "HEAD", "/hello", NULL, NULL, 0, &r),
                   0);
  assert_int_equal(r.status, 200);
  assert_string_equal(tl_test_header_get(&r, "Content-Length"), "6");
  assert_int_equal(r.body_len, 0);
  tl_test_response_free(&r);
  /* A header line with CR LF is refused before anything is sent. */
  const char *bad[] = {"X-Test: a\r\nX-Evil: 1", NULL};
  assert_int_equal(tl_test_request(f->t, "GET", "/hello", bad, NULL, 0, &r),
                   TL_EINVAL);
}

static void test_post_body(void **state) {
  fixture *f = *state;
  tl_test_response r;
  assert_int_equal(
      tl_test_post(f->t, "/echo", "application/json", "{\"a\":1}", &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"a\":1}");
  assert_string_equal(tl_test_header_get(&r, "Content-Type"),
                      "application/json");
  tl_test_response_free(&r);
  /* Binary, with NUL bytes. */
  char bin[1000];
  for (size_t i = 0; i < sizeof bin; i++)
    bin[i] = (char)(i % 7);
  assert_int_equal(
      tl_test_request(f->t, "POST", "/echo", NULL, bin, sizeof bin, &r), 0);
  assert_int_equal(r.body_len, sizeof bin);
  assert_memory_equal(r.body, bin, sizeof bin);
  tl_test_response_free(&r);
}

static void test_body_over_the_limit(void **state) {
  fixture *f = *state;
  size_t n = 3u << 20; /* the app's limit is 1 MiB */
  char *big = calloc(1, n);
  tl_test_response r;
  assert_int_equal(tl_test_request(f->t, "POST", "/echo", NULL, big, n, &r),
                   0);
  assert_int_equal(r.status, 413);
  tl_test_response_free(&r);
  free(big);
}

static void test_chunked_and_big_and_deferred(void **state) {
  fixture *f = *state;
  tl_test_response r;
  assert_int_equal(tl_test_get(f->t, "/stream", &r), 0);
  assert_string_equal(tl_test_header_get(&r, "Transfer-Encoding"), "chunked");
  assert_string_equal(r.body, "one,two,three");
  tl_test_response_free(&r);
  assert_int_equal(tl_test_get(f->t, "/big", &r), 0);
  assert_int_equal(r.body_len, 3u << 20);
  for (size_t i = 0; i < r.body_len; i += 4099)
    assert_int_equal(r.body[i], 'A' + i % 23);
  tl_test_response_free(&r);
  assert_int_equal(tl_test_get(f->t, "/slow", &r), 0);
  assert_string_equal(r.body, "late\n");
  tl_test_response_free(&r);
}

static void test_not_found_and_not_allowed(void **state) {
  fixture *f = *state;
  tl_test_response r;
  assert_int_equal(tl_test_get(f->t, "/nope", &r), 0);
  assert_int_equal(r.status, 404);
  tl_test_response_free(&r);
  assert_int_equal(tl_test_post(f->t, "/hello", NULL, "x", &r), 0);
  assert_int_equal(r.status, 405);
  assert_non_null(strstr(tl_test_header_get(&r, "Allow"), "GET"));
  tl_test_response_free(&r);
}

/* ---- WebSocket ----------------------------------------------------------- */

static void test_ws_echo(void **state) {
  fixture *f = *state;
  tl_test_ws *ws;
  const char *h[] = {"Sec-WebSocket-Protocol: x, chat", NULL};
  assert_int_equal(tl_test_ws_open(f->t, "/ws", h, &ws, NULL), 0);
  assert_string_equal(tl_test_ws_protocol(ws), "chat");
  assert_int_equal(tl_test_ws_send_text(ws, "hi"), 0);
  tl_test_msg m;
  assert_int_equal(tl_test_ws_recv(ws, &m, 2000), 0);
  assert_int_equal(m.op, TL_WS_TEXT);
  assert_string_equal(m.data, "hi");
  tl_test_msg_free(&m);
  /* A large binary message (several reads, a 64-bit length). */
  size_t n = 200000;
  unsigned char *bin = malloc(n);
  for (size_t i = 0; i < n; i++)
    bin[i] = (unsigned char)(i * 31);
  assert_int_equal(tl_test_ws_send(ws, TL_WS_BINARY, bin, n), 0);
  assert_int_equal(tl_test_ws_recv(ws, &m, 2000), 0);
  assert_int_equal(m.op, TL_WS_BINARY);
  assert_int_equal(m.len, n);
  assert_memory_equal(m.data, bin, n);
  tl_test_msg_free(&m);
  free(bin);
  /* The server pings; the client answers by itself and waits on, for
   * no longer than it was asked to. */
  assert_int_equal(tl_test_ws_send_text(ws, "ping"), 0);
  uint64_t t0 = tl_hrtime();
  assert_int_equal(tl_test_ws_recv(ws, &m, 200), UV_ETIMEDOUT);
  assert_true(tl_hrtime() - t0 < 2000000000ull);
  /* A ping of ours is answered with a pong. */
  assert_int_equal(tl_test_ws_send(ws, TL_WS_PING, "x", 1), 0);
  assert_int_equal(tl_test_ws_send_text(ws, "after"), 0);
  assert_int_equal(tl_test_ws_recv(ws, &m, 2000), 0);
  assert_string_equal(m.data, "after");
  assert_int_equal(tl_test_ws_pongs(ws), 1);
  tl_test_msg_free(&m);
  /* A clean close from our side. */
  assert_int_equal(tl_test_ws_close(ws, 1000, "done"), 0);
  assert_int_equal(tl_test_ws_close_code(ws), 1000);
  assert_int_equal(tl_test_ws_send_text(ws, "late"), TL_ECLOSED);
  tl_test_ws_free(ws);
}

static void test_ws_server_closes(void **state) {
  fixture *f = *state;
  tl_test_ws *ws;
  assert_int_equal(tl_test_ws_open(f->t, "/ws", NULL, &ws, NULL), 0);
  assert_null(tl_test_ws_protocol(ws));
  tl_test_msg m;
  assert_int_equal(tl_test_ws_recv(ws, &m, 100), UV_ETIMEDOUT);
  assert_int_equal(tl_test_ws_send_text(ws, "close"), 0);
  assert_int_equal(tl_test_ws_recv(ws, &m, 2000), TL_ECLOSED);
  assert_int_equal(tl_test_ws_close_code(ws), 4001);
  assert_string_equal(tl_test_ws_close_reason(ws), "bye");
  assert_int_equal(tl_test_ws_recv(ws, &m, 100), TL_ECLOSED);
  tl_test_ws_free(ws);
}

static void test_ws_refused(void **state) {
  fixture *f = *state;
  tl_test_ws *ws = (tl_test_ws *)1;
  tl_test_response r;
  assert_int_equal(tl_test_ws_open(f->t, "/ws?deny=1", NULL, &ws, &r),
                   TL_ESTATE);
  assert_null(ws);
  assert_int_equal(r.status, 403);
  assert_string_equal(r.body, "denied\n");
  tl_test_response_free(&r);
  /* A plain GET on a ws route: 426. */
  assert_int_equal(tl_test_get(f->t, "/ws", &r), 0);
  assert_int_equal(r.status, 426);
  tl_test_response_free(&r);
}

static void test_ws_publish(void **state) {
  fixture *f = *state;
  tl_test_ws *a, *b;
  assert_int_equal(tl_test_ws_open(f->t, "/sub", NULL, &a, NULL), 0);
  assert_int_equal(tl_test_ws_open(f->t, "/sub", NULL, &b, NULL), 0);
  tl_test_response r;
  assert_int_equal(tl_test_post(f->t, "/publish", "text/plain", "news", &r),
                   0);
  assert_int_equal(r.status, 204);
  tl_test_response_free(&r);
  tl_test_msg m;
  assert_int_equal(tl_test_ws_recv(a, &m, 2000), 0);
  assert_string_equal(m.data, "news");
  tl_test_msg_free(&m);
  assert_int_equal(tl_test_ws_recv(b, &m, 2000), 0);
  assert_string_equal(m.data, "news");
  tl_test_msg_free(&m);
  tl_test_ws_free(a);
  tl_test_ws_free(b);
}

/* ---- start and stop ------------------------------------------------------ */

static void test_stop_with_open_socket(void **state) {
  tl_app *app = make_app();
  tl_test *t;
  assert_int_equal(tl_test_start(&t, app, NULL), 0);
  tl_test_ws *ws;
  assert_int_equal(tl_test_ws_open(t, "/ws", NULL, &ws, NULL), 0);
  assert_int_equal(tl_test_stop(t), 0); /* graceful: the socket is closed */
  assert_int_equal(tl_test_ws_wait_close(ws, 2000), 0);
  assert_int_equal(tl_test_ws_close_code(ws), 1001); /* going away */
  tl_test_ws_free(ws);
  tl_app_free(app);
}

static void test_start_fails_cleanly(void **state) {
  tl_app *app = make_app();
  tl_test *t = (tl_test *)1;
  assert_int_equal(
      tl_test_start(&t, app, &(tl_test_options){.host = "not-an-address"}),
      TL_EINVAL);
  assert_null(t);
  assert_int_equal(tl_test_start(&t, NULL, NULL), TL_EINVAL);
  tl_app_free(app);
}

static void test_two_apps_side_by_side(void **state) {
  tl_app *a = make_app(), *b = make_app();
  tl_test *ta, *tb;
  assert_int_equal(tl_test_start(&ta, a, NULL), 0);
  assert_int_equal(tl_test_start(&tb, b, NULL), 0);
  assert_int_not_equal(tl_test_port(ta), tl_test_port(tb));
  tl_test_response r;
  assert_int_equal(tl_test_get(tb, "/hello", &r), 0);
  assert_int_equal(r.status, 200);
  tl_test_response_free(&r);
  assert_int_equal(tl_test_stop(ta), 0);
  assert_int_equal(tl_test_get(tb, "/hello", &r), 0); /* b still runs */
  tl_test_response_free(&r);
  assert_int_equal(tl_test_stop(tb), 0);
  assert_int_equal(tl_test_get(NULL, "/", &r), TL_EINVAL);
  tl_app_free(a);
  tl_app_free(b);
}

/* The test client uses the public API only, so an app of several workers
 * runs under it as in production: connections spread over the workers,
 * a publish reaches subscribers on every worker. */
static void test_app_with_workers(void **state) {
  tl_app *app = make_app_workers(3);
  tl_test *t;
  assert_int_equal(tl_test_start(&t, app, NULL), 0);
  tl_test_ws *subs[6];
  for (int i = 0; i < 6; i++)
    assert_int_equal(tl_test_ws_open(t, "/sub", NULL, &subs[i], NULL), 0);
  tl_test_response r;
  for (int i = 0; i < 10; i++) {
    assert_int_equal(tl_test_get(t, "/hello", &r), 0);
    assert_int_equal(r.status, 200);
    tl_test_response_free(&r);
  }
  /* Subscriptions are made in the open callbacks: wait until every socket
   * has answered one round trip before publishing. */
  for (int i = 0; i < 6; i++) {
    tl_test_msg m;
    assert_int_equal(tl_test_ws_send(subs[i], TL_WS_PING, "s", 1), 0);
    assert_int_equal(tl_test_ws_recv(subs[i], &m, 200), UV_ETIMEDOUT);
    assert_int_equal(tl_test_ws_pongs(subs[i]), 1);
  }
  assert_int_equal(tl_test_post(t, "/publish", "text/plain", "all", &r), 0);
  assert_int_equal(r.status, 204);
  tl_test_response_free(&r);
  for (int i = 0; i < 6; i++) {
    tl_test_msg m;
    assert_int_equal(tl_test_ws_recv(subs[i], &m, 2000), 0);
    assert_string_equal(m.data, "all");
    tl_test_msg_free(&m);
    tl_test_ws_free(subs[i]);
  }
  assert_int_equal(tl_test_stop(t), 0);
  tl_app_free(app);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_get, setup, teardown),
      cmocka_unit_test_setup_teardown(test_headers_query_and_methods, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_post_body, setup, teardown),
      cmocka_unit_test_setup_teardown(test_body_over_the_limit, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_chunked_and_big_and_deferred,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_found_and_not_allowed, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ws_echo, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ws_server_closes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ws_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ws_publish, setup, teardown),
      cmocka_unit_test(test_stop_with_open_socket),
      cmocka_unit_test(test_start_fails_cleanly),
      cmocka_unit_test(test_two_apps_side_by_side),
      cmocka_unit_test(test_app_with_workers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
