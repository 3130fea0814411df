/* ws_test_server: a talon app with a WebSocket route for every behaviour
 * the Python suite in tests/ws checks.
 *
 * Usage: ws_test_server [PORT]     (0, the default, picks a free port)
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
 *
 * App middleware: X-User header or ?user= query -> tl_req_set("user").
 *
 * WebSocket routes (every route counts opens/closes in /stats):
 *   /echo          echo; max_payload and max_backpressure 64 MiB
 *   /auth          upgrade reads "user" from the middleware into the
 *                  context; none: 401 + X-Auth-Error (and with ?body=1 a
 *                  text body sent by the handler itself); accept adds
 *                  Set-Cookie: session=<user> to the 101. open sends
 *                  "hello <user>"; messages: "whoami" -> "user:<user>",
 *                  others echoed
 *   /async         ?decision=accept|reject&status=N&delay=MS: upgrade
 *                  returns TL_PENDING (tl_res_defer with an abort
 *                  callback); a uv_timer accepts (tl_ws_upgrade_accept)
 *                  or rejects (status N, default 409, + X-Async: rejected,
 *                  text body) after MS ms (default 50). open sends
 *                  "async-open"; messages echoed
 *   /proto         chooses "chat.v2" if offered; open sends
 *                  "proto:<name>" or "proto:none"
 *   /origin        allowed_origins = {"http://good.example"}; echo
 *   /small         max_payload 1024; echo
 *   /idle          idle_timeout_s 1, no pings; echo
 *   /idle-ping     idle_timeout_s 1, send_pings; echo
 *   /lifetime      max_lifetime_s 1; echo
 *   /lifetime-noidle  the same with idle_timeout_s TL_WS_NO_TIMEOUT
 *   /close-me      "close-me" -> tl_ws_close(ws, 4000, "bye"); echo
 *   /flood         max_backpressure 1 MiB. "flood": 64 KiB binary messages
 *                  in a loop inside the message callback until
 *                  TL_WS_BACKPRESSURE, then on until TL_WS_DROPPED (at
 *                  most 4096 sends); "flood-timer": one 64 KiB message
 *                  per 1 ms timer tick (tl_ws_cork), same stop rule.
 *                  Results in /stats; drain records and sends "drained".
 *                  Other messages echoed
 *   /cobl          like /flood "flood" with close_on_backpressure_limit
 *   /ping          "ping-me" -> tl_ws_ping(ws, "srv-ping", 8); a pong is
 *                  counted and answered with "got-pong:<payload>"
 *   /both          HTTP GET "plain http on /both\n" and a ws echo route
 *   /wsonly        ws echo route only (upgrade NULL, no context): plain
 *                  GET gets 426
 *   /gaps          "close:<code>" -> tl_ws_close(ws, code, "by app"), an
 *                  error answered "close-rc:<name>"; "pong:<p>" ->
 *                  tl_ws_pong (rc in /stats); "count" -> "count:<open
 *                  sockets>"; "pause-big" -> tl_ws_pause, then 16 MiB
 *                  queued (a reset then fails the write); others echoed
 *   /gated         route-level middleware (tl_app_ws_route): ?token=ok or
 *                  401; the second sets a local the upgrade reads; open
 *                  sends "via:<local>"
 *   /cobl-after    max_backpressure 1 MiB, close_on_backpressure_limit:
 *                  "flood" sends until dropped and records what holds
 *                  after `close` ran inside tl_ws_send (/stats "after")
 * HTTP routes:
 *   GET /stats     JSON counters
 *   GET /stop      tl_app_stop()
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define TEST_SERVER_NAME "ws_test_server"
#include "test_server.h"
#include <uv.h>

#define MiB (1024u * 1024u)
#define FLOOD_MSG (64u * 1024u)
#define FLOOD_CAP 4096
#define NRUNS 32
#define NCLOSES 64

static tl_app *g_app;
static unsigned char g_flood_buf[FLOOD_MSG];

/* Run-length encoded send results. */
typedef struct {
  int n;
  struct {
    int value;
    long count;
  } run[NRUNS];
} runs;

static void runs_add(runs *r, int v) {
  if (r->n > 0 && r->run[r->n - 1].value == v) {
    r->run[r->n - 1].count++;
    return;
  }
  if (r->n == NRUNS)
    return;
  r->run[r->n].value = v;
  r->run[r->n].count = 1;
  r->n++;
}

static struct {
  long opens, closes, drains, dropped, dropped_bytes, pongs, pings, errors;
  long aborts, async_accepts, async_rejects, upgrades_rejected;
  int async_accept_rc, close_me_rc, close_me_again_rc, close_me_send_rc;
  int select_bad_rc, ping_rc, drained_send_rc, last_error;
  long flood_runs, flood_timer_runs, cobl_runs;
  runs flood, flood_timer, cobl;
  char last_pong[128];
  int pong_rc, pong_big_rc;
  long big_queued;
  /* /cobl-after: what holds after close ran inside tl_ws_send */
  int after_close_ran, after_state, after_send_rc, after_same_data,
      after_route_ok, after_close_seen_state, after_sends;
  long nclose_log;
  struct {
    char route[24];
    int code;
    char reason[64];
  } close_log[NCLOSES];
} g;

/* The per-connection context (tl_app_ws data_size). */
struct flood_timer;
typedef struct {
  char route[24];
  char user[64];
  char proto[32];
  struct flood_timer *ft;
} conn_ctx;

/* ---- JSON ---------------------------------------------------------------- */

/* A JSON string of printable ASCII (anything else becomes '?'). */
static void sb_jstr(sbuf *b, const char *s, size_t n) {
  sb_printf(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      sb_printf(b, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      sb_printf(b, "?");
    else
      sb_printf(b, "%c", c);
  }
  sb_printf(b, "\"");
}

static void sb_runs(sbuf *b, const char *name, const runs *r) {
  sb_printf(b, "\"%s\":[", name);
  for (int i = 0; i < r->n; i++)
    sb_printf(b, "%s[%d,%ld]", i ? "," : "", r->run[i].value, r->run[i].count);
  sb_printf(b, "],");
}

static void stats(tl_req *req, tl_res *res) {
  sbuf b = {0};
  sb_printf(&b, "{");
#define NUM(f) sb_printf(&b, "\"" #f "\":%ld,", (long)g.f)
  NUM(opens);
  NUM(closes);
  NUM(drains);
  NUM(dropped);
  NUM(dropped_bytes);
  NUM(pongs);
  NUM(pings);
  NUM(errors);
  NUM(last_error);
  NUM(aborts);
  NUM(async_accepts);
  NUM(async_rejects);
  NUM(async_accept_rc);
  NUM(upgrades_rejected);
  NUM(close_me_rc);
  NUM(close_me_again_rc);
  NUM(close_me_send_rc);
  NUM(select_bad_rc);
  NUM(ping_rc);
  NUM(drained_send_rc);
  NUM(flood_runs);
  NUM(flood_timer_runs);
  NUM(cobl_runs);
  NUM(pong_rc);
  NUM(pong_big_rc);
  NUM(big_queued);
  sb_printf(&b,
            "\"after\":{\"close_ran\":%d,\"state\":%d,\"send_rc\":%d,"
            "\"same_data\":%d,\"route_ok\":%d,\"state_in_close\":%d,"
            "\"sends\":%d},",
            g.after_close_ran, g.after_state, g.after_send_rc,
            g.after_same_data, g.after_route_ok, g.after_close_seen_state,
            g.after_sends);
  sb_printf(&b, "\"ws_count\":%zu,", tl_app_ws_count(g_app));
#undef NUM
  sb_runs(&b, "flood", &g.flood);
  sb_runs(&b, "flood_timer", &g.flood_timer);
  sb_runs(&b, "cobl", &g.cobl);
  sb_printf(&b, "\"last_pong\":");
  sb_jstr(&b, g.last_pong, strlen(g.last_pong));
  sb_printf(&b, ",\"nclose_log\":%ld,\"close_log\":[", g.nclose_log);
  long first = g.nclose_log > NCLOSES ? g.nclose_log - NCLOSES : 0;
  for (long i = first; i < g.nclose_log; i++) {
    const char *rt = g.close_log[i % NCLOSES].route;
    const char *rs = g.close_log[i % NCLOSES].reason;
    sb_printf(&b, "%s{\"route\":", i > first ? "," : "");
    sb_jstr(&b, rt, strlen(rt));
    sb_printf(&b, ",\"code\":%d,\"reason\":", g.close_log[i % NCLOSES].code);
    sb_jstr(&b, rs, strlen(rs));
    sb_printf(&b, "}");
  }
  sb_printf(&b, "]}");
  tl_res_header(res, "Cache-Control", "no-store");
  tl_res_json(res, b.p);
  free(b.p);
}

static void stop(tl_req *req, tl_res *res) {
  tl_res_text(res, "stopping\n");
  tl_app_stop(g_app);
}

static void both_http(tl_req *req, tl_res *res) {
  tl_res_text(res, "plain http on /both\n");
}

/* ---- middleware ------------------------------------------------------------
 */

static int user_mw(tl_req *req, tl_res *res, void *ctx) {
  const char *u = tl_req_header(req, "x-user");
  if (!u)
    u = tl_req_query(req, "user");
  if (u && *u) {
    char *copy = strdup(u);
    if (!copy)
      return TL_ENOMEM;
    if (tl_req_set(req, "user", copy, free) != 0) {
      free(copy);
      return TL_ENOMEM;
    }
  }
  return TL_NEXT;
}

/* ---- common handlers
 * --------------------------------------------------------- */

static void set_route(conn_ctx *c, tl_req *req) {
  snprintf(c->route, sizeof c->route, "%s", tl_req_path(req));
}

/* The default upgrade: remember the route name. */
static int up_named(tl_req *req, tl_res *res, void *data) {
  set_route(data, req);
  return TL_ACCEPT;
}

static void count_open(tl_ws *ws) {
  g.opens++;
}

static void echo_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  tl_ws_send(ws, p, n, op);
}

static void flood_timer_stop(conn_ctx *c);

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  conn_ctx *c = tl_ws_data(ws);
  g.closes++;
  long i = g.nclose_log++ % NCLOSES;
  snprintf(g.close_log[i].route, sizeof g.close_log[i].route, "%s",
           c ? c->route : "(none)");
  g.close_log[i].code = code;
  if (len >= sizeof g.close_log[i].reason)
    len = sizeof g.close_log[i].reason - 1;
  memcpy(g.close_log[i].reason, reason, len);
  g.close_log[i].reason[len] = '\0';
  if (c && c->ft)
    flood_timer_stop(c);
}

static void on_error(tl_ws *ws, int err) {
  g.errors++;
  g.last_error = err;
}

static void on_dropped(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  g.dropped++;
  g.dropped_bytes += (long)n;
}

static void on_ping(tl_ws *ws, const void *p, size_t n) {
  g.pings++;
}

/* The handlers every route shares, with its own upgrade/open/message. */
#define WS(up, op, msg)                                                        \
  .upgrade = up, .open = op, .message = msg, .close = on_close,                \
  .error = on_error, .ping = on_ping, .dropped = on_dropped
#define COMMON WS(up_named, count_open, echo_msg)

/* ---- /echo, /small, /idle, /idle-ping, /lifetime, /both ----------------- */

static const tl_ws_handlers echo_h = {COMMON, .max_payload = 64 * MiB,
                                      .max_backpressure = 64 * MiB};
static const tl_ws_handlers small_h = {COMMON, .max_payload = 1024};
static const tl_ws_handlers idle_h = {COMMON, .idle_timeout_s = 1};
static const tl_ws_handlers idle_ping_h = {COMMON, .idle_timeout_s = 1,
                                           .send_pings = 1};
static const tl_ws_handlers lifetime_h = {COMMON, .max_lifetime_s = 1};
static const tl_ws_handlers lifetime_noidle_h = {
    COMMON, .max_lifetime_s = 1, .idle_timeout_s = TL_WS_NO_TIMEOUT};
static const tl_ws_handlers both_h = {COMMON};

/* /wsonly: no upgrade handler, no context. */
static const tl_ws_handlers wsonly_h = {
    .open = count_open, .message = echo_msg, .close = on_close};

/* ---- /origin ----------------------------------------------------------------
 */

static const char *const good_origins[] = {"http://good.example", NULL};
static const tl_ws_handlers origin_h = {COMMON,
                                        .allowed_origins = good_origins};

/* ---- /auth
 * ------------------------------------------------------------------- */

static int auth_upgrade(tl_req *req, tl_res *res, void *data) {
  conn_ctx *c = data;
  set_route(c, req);
  const char *user = tl_req_get(req, "user");
  if (!user) {
    g.upgrades_rejected++;
    tl_res_status(res, 401);
    tl_res_header(res, "X-Auth-Error", "no user");
    if (tl_req_query(req, "body"))
      tl_res_text(res, "who are you?\n");
    return TL_REJECT;
  }
  snprintf(c->user, sizeof c->user, "%s", user);
  tl_res_headerf(res, "Set-Cookie", "session=%s; HttpOnly", c->user);
  return TL_ACCEPT;
}

static void auth_open(tl_ws *ws) {
  conn_ctx *c = tl_ws_data(ws);
  char msg[96];
  g.opens++;
  snprintf(msg, sizeof msg, "hello %s", c->user);
  tl_ws_send_text(ws, msg);
}

static void auth_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  conn_ctx *c = tl_ws_data(ws);
  if (op == TL_WS_TEXT && n == 6 && memcmp(p, "whoami", 6) == 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "user:%s", c->user);
    tl_ws_send_text(ws, msg);
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static const tl_ws_handlers auth_h = {WS(auth_upgrade, auth_open, auth_msg)};

/* ---- /async
 * ------------------------------------------------------------------ */

typedef struct {
  uv_timer_t timer;
  tl_res *res;
  int accept;
  int status;
} pending_up;

static void pending_free(uv_handle_t *h) {
  free(h->data);
}

static void async_abort(tl_res *res, void *arg) {
  pending_up *p = arg;
  g.aborts++;
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, pending_free);
}

static void async_fire(uv_timer_t *t) {
  pending_up *p = t->data;
  tl_res *res = p->res;
  uv_close((uv_handle_t *)&p->timer, pending_free);
  if (p->accept) {
    g.async_accepts++;
    g.async_accept_rc = tl_ws_upgrade_accept(res);
  } else {
    g.async_rejects++;
    tl_res_status(res, p->status);
    tl_res_header(res, "X-Async", "rejected");
    tl_res_text(res, "rejected later\n");
  }
}

static int async_upgrade(tl_req *req, tl_res *res, void *data) {
  set_route(data, req);
  const char *d = tl_req_query(req, "decision");
  const char *st = tl_req_query(req, "status");
  const char *dl = tl_req_query(req, "delay");
  pending_up *p = calloc(1, sizeof *p);
  if (!p) {
    tl_res_status(res, 503);
    return TL_REJECT;
  }
  p->res = res;
  p->accept = !d || strcmp(d, "reject") != 0;
  p->status = st ? atoi(st) : 409;
  uv_timer_init(tl_app_loop(tl_req_app(req)), &p->timer);
  p->timer.data = p;
  tl_res_defer(res, async_abort, p);
  uv_timer_start(&p->timer, async_fire, dl ? (uint64_t)atoi(dl) : 50, 0);
  return TL_PENDING;
}

static void async_open(tl_ws *ws) {
  g.opens++;
  tl_ws_send_text(ws, "async-open");
}

static const tl_ws_handlers async_h = {WS(async_upgrade, async_open, echo_msg)};

/* ---- /proto
 * --------------------------------------------------------------------- */

static int proto_upgrade(tl_req *req, tl_res *res, void *data) {
  conn_ctx *c = data;
  set_route(c, req);
  g.select_bad_rc = tl_ws_select_protocol(res, "never.offered");
  if (tl_ws_protocol_offered(req, "chat.v2") &&
      tl_ws_select_protocol(res, "chat.v2") == 0)
    snprintf(c->proto, sizeof c->proto, "chat.v2");
  return TL_ACCEPT;
}

static void proto_open(tl_ws *ws) {
  conn_ctx *c = tl_ws_data(ws);
  char msg[64];
  g.opens++;
  snprintf(msg, sizeof msg, "proto:%s", c->proto[0] ? c->proto : "none");
  tl_ws_send_text(ws, msg);
}

static const tl_ws_handlers proto_h = {WS(proto_upgrade, proto_open, echo_msg)};

/* ---- /close-me
 * ------------------------------------------------------------------ */

static void close_me_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  if (op == TL_WS_TEXT && n == 8 && memcmp(p, "close-me", 8) == 0) {
    g.close_me_rc = tl_ws_close(ws, 4000, "bye");
    g.close_me_again_rc = tl_ws_close(ws, 4001, "again");
    g.close_me_send_rc = tl_ws_send_text(ws, "after close");
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static const tl_ws_handlers close_me_h = {
    WS(up_named, count_open, close_me_msg)};

/* ---- /flood, /cobl
 * ------------------------------------------------------------- */

/* Sends 64 KiB messages until TL_WS_DROPPED (or an error, or the cap),
 * recording every result. */
static void flood_loop(tl_ws *ws, runs *r) {
  for (int i = 0; i < FLOOD_CAP; i++) {
    int rc = tl_ws_send(ws, g_flood_buf, FLOOD_MSG, TL_WS_BINARY);
    runs_add(r, rc);
    if (rc == TL_WS_DROPPED || rc < 0)
      break;
  }
}

struct flood_timer {
  uv_timer_t timer;
  tl_ws *ws;
};

static void ft_free(uv_handle_t *h) {
  free(h->data);
}

static void flood_timer_stop(conn_ctx *c) {
  struct flood_timer *ft = c->ft;
  c->ft = NULL;
  uv_timer_stop(&ft->timer);
  uv_close((uv_handle_t *)&ft->timer, ft_free);
}

static void flood_tick_corked(tl_ws *ws, void *arg) {
  int rc = tl_ws_send(ws, g_flood_buf, FLOOD_MSG, TL_WS_BINARY);
  runs_add(&g.flood_timer, rc);
  if (rc == TL_WS_DROPPED || rc < 0)
    flood_timer_stop(tl_ws_data(ws));
}

static void flood_tick(uv_timer_t *t) {
  struct flood_timer *ft = t->data;
  tl_ws_cork(ft->ws, flood_tick_corked, NULL);
}

static void flood_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  conn_ctx *c = tl_ws_data(ws);
  if (op == TL_WS_TEXT && n == 5 && memcmp(p, "flood", 5) == 0) {
    g.flood_runs++;
    g.flood.n = 0;
    flood_loop(ws, &g.flood);
    return;
  }
  if (op == TL_WS_TEXT && n == 11 && memcmp(p, "flood-timer", 11) == 0) {
    if (c->ft)
      return;
    g.flood_timer_runs++;
    g.flood_timer.n = 0;
    struct flood_timer *ft = calloc(1, sizeof *ft);
    if (!ft)
      return;
    ft->ws = ws;
    uv_timer_init(tl_app_loop(tl_ws_app(ws)), &ft->timer);
    ft->timer.data = ft;
    c->ft = ft;
    uv_timer_start(&ft->timer, flood_tick, 1, 1);
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static void flood_drain(tl_ws *ws) {
  g.drains++;
  g.drained_send_rc = tl_ws_send_text(ws, "drained");
}

static const tl_ws_handlers flood_h = {WS(up_named, count_open, flood_msg),
                                       .drain = flood_drain,
                                       .max_backpressure = 1 * MiB};

static void cobl_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  if (op == TL_WS_TEXT && n == 5 && memcmp(p, "flood", 5) == 0) {
    g.cobl_runs++;
    g.cobl.n = 0;
    flood_loop(ws, &g.cobl);
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static const tl_ws_handlers cobl_h = {
    WS(up_named, count_open, cobl_msg), .drain = flood_drain,
    .max_backpressure = 1 * MiB, .close_on_backpressure_limit = 1};

/* ---- /ping
 * ------------------------------------------------------------------------ */

static void ping_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  if (op == TL_WS_TEXT && n == 7 && memcmp(p, "ping-me", 7) == 0) {
    g.ping_rc = tl_ws_ping(ws, "srv-ping", 8);
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static void ping_pong(tl_ws *ws, const void *p, size_t n) {
  char msg[160];
  g.pongs++;
  if (n >= sizeof g.last_pong)
    n = sizeof g.last_pong - 1;
  memcpy(g.last_pong, p, n);
  g.last_pong[n] = '\0';
  snprintf(msg, sizeof msg, "got-pong:%s", g.last_pong);
  tl_ws_send_text(ws, msg);
}

static const tl_ws_handlers ping_h = {WS(up_named, count_open, ping_msg),
                                      .pong = ping_pong};

/* ---- /gaps, /gated, /cobl-after --------------------------------------- */

static bool is_cmd(const void *p, size_t n, const char *cmd) {
  size_t l = strlen(cmd);
  return n >= l && memcmp(p, cmd, l) == 0;
}

static void gaps_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  char arg[128], out[160];
  if (op == TL_WS_TEXT && is_cmd(p, n, "close:")) {
    snprintf(arg, sizeof arg, "%.*s", (int)(n - 6), (const char *)p + 6);
    int rc = tl_ws_close(ws, atoi(arg), "by app");
    if (rc != 0) {
      snprintf(out, sizeof out, "close-rc:%s", tl_err_name(rc));
      tl_ws_send_text(ws, out);
    }
    return;
  }
  if (op == TL_WS_TEXT && is_cmd(p, n, "pong:")) {
    char big[126] = {0};
    g.pong_big_rc = tl_ws_pong(ws, big, sizeof big);
    g.pong_rc = tl_ws_pong(ws, (const char *)p + 5, n - 5);
    return;
  }
  if (op == TL_WS_TEXT && is_cmd(p, n, "count")) {
    snprintf(out, sizeof out, "count:%zu", tl_app_ws_count(tl_ws_app(ws)));
    tl_ws_send_text(ws, out);
    return;
  }
  if (op == TL_WS_TEXT && is_cmd(p, n, "pause-big")) {
    /* Not reading: a reset reaches us through the write, not a read. */
    tl_ws_pause(ws);
    g.big_queued = 0;
    for (int i = 0; i < 256; i++)
      if (tl_ws_send(ws, g_flood_buf, FLOOD_MSG, TL_WS_BINARY) > 0)
        g.big_queued++;
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static const tl_ws_handlers gaps_h = {WS(up_named, count_open, gaps_msg),
                                      .max_backpressure = 64 * MiB};

static int gate_mw(tl_req *req, tl_res *res, void *ctx) {
  const char *t = tl_req_query(req, "token");
  if (!t || strcmp(t, "ok") != 0) {
    tl_res_status(res, 401);
    tl_res_text(res, "no token\n");
    return TL_DONE;
  }
  return TL_NEXT;
}

static int via_mw(tl_req *req, tl_res *res, void *ctx) {
  /* App middleware ran first: its local is there. */
  const char *user = tl_req_get(req, "user");
  char *v = malloc(96);
  if (!v)
    return TL_ENOMEM;
  snprintf(v, 96, "route-mw after user=%s", user ? user : "none");
  if (tl_req_set(req, "via", v, free) != 0) {
    free(v);
    return TL_ENOMEM;
  }
  return TL_NEXT;
}

static int gated_upgrade(tl_req *req, tl_res *res, void *data) {
  conn_ctx *c = data;
  set_route(c, req);
  const char *via = tl_req_get(req, "via");
  snprintf(c->user, sizeof c->user, "%s", via ? via : "(none)");
  return TL_ACCEPT;
}

static void gated_open(tl_ws *ws) {
  conn_ctx *c = tl_ws_data(ws);
  char out[96];
  g.opens++;
  snprintf(out, sizeof out, "via:%s", c->user);
  tl_ws_send_text(ws, out);
}

static const tl_ws_handlers gated_h = {WS(gated_upgrade, gated_open, echo_msg)};

static void after_close(tl_ws *ws, int code, const char *reason, size_t len) {
  conn_ctx *c = tl_ws_data(ws);
  c->proto[0] = 'C'; /* the close handler ran (read back after the send) */
  g.after_close_seen_state = (int)tl_ws_ready_state(ws);
  on_close(ws, code, reason, len);
}

static void after_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  if (!(op == TL_WS_TEXT && is_cmd(p, n, "flood"))) {
    tl_ws_send(ws, p, n, op);
    return;
  }
  conn_ctx *c = tl_ws_data(ws);
  int rc = 0, sends = 0;
  while (sends < FLOOD_CAP) {
    rc = tl_ws_send(ws, g_flood_buf, FLOOD_MSG, TL_WS_BINARY);
    sends++;
    if (rc == TL_WS_DROPPED)
      break;
  }
  /* `close` ran inside the last send: ws and its data still readable. */
  g.after_sends = sends;
  g.after_close_ran = c->proto[0] == 'C';
  g.after_state = (int)tl_ws_ready_state(ws);
  g.after_send_rc = tl_ws_send_text(ws, "after");
  g.after_same_data = tl_ws_data(ws) == c;
  g.after_route_ok = strcmp(c->route, "/cobl-after") == 0;
}

static const tl_ws_handlers after_h = {.upgrade = up_named,
                                       .open = count_open,
                                       .message = after_msg,
                                       .close = after_close,
                                       .error = on_error,
                                       .dropped = on_dropped,
                                       .max_backpressure = 1 * MiB,
                                       .close_on_backpressure_limit = 1};

/* ---- main
 * -------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  for (size_t i = 0; i < sizeof g_flood_buf; i++)
    g_flood_buf[i] = (unsigned char)(i % 251);
  tl_app *app = tl_app_new(
      &(tl_app_config){.on_listen = on_listen, .shutdown_timeout_ms = 2000});
  if (!app)
    return 1;
  g_app = app;
  const size_t ctx = sizeof(conn_ctx);
  CHECK(tl_app_use(app, (tl_middleware){.fn = user_mw, .name = "user"}));
  CHECK(tl_app_get(app, "/stats", stats));
  CHECK(tl_app_get(app, "/stop", stop));
  CHECK(tl_app_get(app, "/both", both_http));
  CHECK(tl_app_ws(app, "/echo", &echo_h, ctx));
  CHECK(tl_app_ws(app, "/auth", &auth_h, ctx));
  CHECK(tl_app_ws(app, "/async", &async_h, ctx));
  CHECK(tl_app_ws(app, "/proto", &proto_h, ctx));
  CHECK(tl_app_ws(app, "/origin", &origin_h, ctx));
  CHECK(tl_app_ws(app, "/small", &small_h, ctx));
  CHECK(tl_app_ws(app, "/idle", &idle_h, ctx));
  CHECK(tl_app_ws(app, "/idle-ping", &idle_ping_h, ctx));
  CHECK(tl_app_ws(app, "/lifetime", &lifetime_h, ctx));
  CHECK(tl_app_ws(app, "/lifetime-noidle", &lifetime_noidle_h, ctx));
  CHECK(tl_app_ws(app, "/close-me", &close_me_h, ctx));
  CHECK(tl_app_ws(app, "/flood", &flood_h, ctx));
  CHECK(tl_app_ws(app, "/cobl", &cobl_h, ctx));
  CHECK(tl_app_ws(app, "/ping", &ping_h, ctx));
  CHECK(tl_app_ws(app, "/both", &both_h, ctx));
  CHECK(tl_app_ws(app, "/wsonly", &wsonly_h, 0));
  CHECK(tl_app_ws(app, "/gaps", &gaps_h, ctx));
  const tl_middleware gate[] = {{.fn = gate_mw, .name = "gate"},
                                {.fn = via_mw, .name = "via"}};
  CHECK(tl_app_ws_route(app, "/gated", &gated_h, ctx, gate, 2));
  CHECK(tl_app_ws(app, "/cobl-after", &after_h, ctx));
  int err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "ws_test_server: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
