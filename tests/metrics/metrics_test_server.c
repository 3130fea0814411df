/* The test server of tests/metrics: server-wide counters
 * (tl_app_get_stats) and the Prometheus endpoint (tl_metrics).
 *
 *   metrics_test_server PORT [WORKERS]
 *
 *   GET /internal/m     tl_metrics with path "/internal/m", prefix "app_"
 *   GET /stats-c        tl_app_get_stats as JSON (read before answering)
 *   GET /ok, /redirect, /fail (tl_res_fail 500), /slow (deferred, never
 *   answered: a client that leaves aborts it)
 *   ws  /ws             echo; "pub:<text>" publishes <text> to topic "t"
 *                       (every /ws socket is subscribed, the sender too)
 *   ws  /narrow         max_backpressure 64 KiB: "flood" sends 64 KiB
 *                       messages until one is dropped
 *   ws  /picky          allowed_origins {"http://ok.example"}
 *   ws  /gated          route-level middleware answering 401
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon/mw/metrics.h>

#define TEST_SERVER_NAME "metrics_test_server"
#include "test_server.h"

static void ok(tl_req *req, tl_res *res) {
  tl_res_text(res, "ok\n");
}

static void redirect(tl_req *req, tl_res *res) {
  tl_res_redirect(res, 302, "/ok");
}

static void fail(tl_req *req, tl_res *res) {
  tl_res_fail(res, 500, 0);
}

static void slow(tl_req *req, tl_res *res) {
  tl_res_defer(res, NULL, NULL);
}

static void stats_c(tl_req *req, tl_res *res) {
  tl_app_stats st;
  tl_app_get_stats(tl_req_app(req), &st);
  char body[1024];
  snprintf(
      body, sizeof body,
      "{\"connections\":%llu,\"websockets\":%llu,\"r1\":%llu,"
      "\"r2\":%llu,\"r3\":%llu,\"r4\":%llu,\"r5\":%llu,\"r0\":%llu,"
      "\"aborted\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,"
      "\"msg_in\":%llu,\"msg_out\":%llu,\"dropped\":%llu,"
      "\"refused\":%llu,\"publishes\":%llu,\"ws_count\":%zu}",
      (unsigned long long)st.connections, (unsigned long long)st.websockets,
      (unsigned long long)st.responses[1], (unsigned long long)st.responses[2],
      (unsigned long long)st.responses[3], (unsigned long long)st.responses[4],
      (unsigned long long)st.responses[5], (unsigned long long)st.responses[0],
      (unsigned long long)st.responses_aborted, (unsigned long long)st.bytes_in,
      (unsigned long long)st.bytes_out, (unsigned long long)st.ws_messages_in,
      (unsigned long long)st.ws_messages_out, (unsigned long long)st.ws_dropped,
      (unsigned long long)st.ws_upgrades_refused,
      (unsigned long long)st.publishes, tl_app_ws_count(tl_req_app(req)));
  tl_res_json(res, body);
}

static void ws_open(tl_ws *ws) {
  tl_ws_subscribe(ws, "t");
}

static void ws_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  if (op == TL_WS_TEXT && n >= 4 && memcmp(p, "pub:", 4) == 0) {
    tl_ws_publish(ws, "t", (const char *)p + 4, n - 4, TL_WS_TEXT);
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static const tl_ws_handlers ws_h = {
    .open = ws_open, .message = ws_msg, .publish_to_self = 1};

static char big[64 * 1024];

static void narrow_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  for (int i = 0; i < 1000; i++)
    if (tl_ws_send(ws, big, sizeof big, TL_WS_BINARY) == TL_WS_DROPPED)
      break;
}

static const tl_ws_handlers narrow_h = {.message = narrow_msg,
                                        .max_backpressure = 64 * 1024};

static const char *const origins[] = {"http://ok.example", NULL};
static const tl_ws_handlers picky_h = {.message = ws_msg,
                                       .allowed_origins = origins};

static int gate(tl_req *req, tl_res *res, void *ctx) {
  tl_res_status(res, 401);
  tl_res_text(res, "no\n");
  return TL_DONE;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int workers = argc > 2 ? atoi(argv[2]) : 1;
  tl_app *app = tl_app_new(
      &(tl_app_config){.on_listen = on_listen, .workers = workers});
  if (!app)
    return 1;
  /* Bad options are refused with the constructor's error. */
  if (tl_app_use(app, tl_metrics(&(tl_metrics_options){.prefix = "1x"})) !=
          TL_EINVAL ||
      tl_app_use(app, tl_metrics(&(tl_metrics_options){.path = "m"})) !=
          TL_EINVAL) {
    fprintf(stderr, "bad tl_metrics options were accepted\n");
    return 1;
  }
  CHECK(tl_app_use(app, tl_metrics(&(tl_metrics_options){.path = "/internal/m",
                                                         .prefix = "app_"})));
  CHECK(tl_app_get(app, "/stats-c", stats_c));
  CHECK(tl_app_get(app, "/ok", ok));
  CHECK(tl_app_get(app, "/redirect", redirect));
  CHECK(tl_app_get(app, "/fail", fail));
  CHECK(tl_app_get(app, "/slow", slow));
  CHECK(tl_app_ws(app, "/ws", &ws_h, 0));
  CHECK(tl_app_ws(app, "/narrow", &narrow_h, 0));
  CHECK(tl_app_ws(app, "/picky", &picky_h, 0));
  const tl_middleware gates[] = {{.fn = gate}};
  CHECK(tl_app_ws_route(app, "/gated", &ws_h, 0, gates, 1));
  int err = tl_app_listen(app, "127.0.0.1", port);
  tl_app_free(app);
  return err ? 1 : 0;
}
