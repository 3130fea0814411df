/* hostile_server: the talon app the hostile-client suite (tests/hostile)
 * attacks. Small limits, so that every timeout and limit is reached in
 * well under a second or two.
 *
 * Usage: hostile_server [PORT]     (0, the default, picks a free port)
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
 *
 * App limits (conftest.py has the same numbers):
 *   max_header_bytes 4096, max_url_bytes 1024, max_body_bytes 65536,
 *   header_timeout_ms 1000, keepalive_timeout_ms 1000,
 *   write_high_water 65536, shutdown_timeout_ms 2000, send_timeout_ms 5000.
 *
 * HTTP routes:
 *   GET  /hello         "hello\n"
 *   GET  /seq/:n        the text "seq:<n>\n" (pipelining order checks)
 *   GET  /blob?n=N      N bytes (at most 1 MiB, default 4096) of the
 *                       pattern i % 251, sent with tl_res_send
 *   GET  /big           8 MiB of the pattern i % 251, with tl_res_send
 *                       (the body is copied into the connection's output)
 *   GET  /stream?n=N    N bytes (default 8 MiB) of the pattern, streamed
 *                       in 16 KiB writes with tl_res_write; stops at each
 *                       backpressure report and resumes on drain
 *   POST /body          "len:<n>\n" for the body it got
 *   GET  /publish?n=N&size=S&topic=T
 *                       tl_app_publish of N binary messages of S bytes
 *                       (default 1 and 65536) to T (default "feed"); each
 *                       starts with its 8-byte big-endian sequence number
 *                       (a counter per app), the rest is the pattern.
 *                       Answers JSON {"sent":[...results...]}
 *   GET  /stats         JSON counters (see stats())
 * WebSocket routes (1 MiB max_payload unless said otherwise):
 *   /echo        echo; max_backpressure 1 MiB; idle_timeout_s 30
 *   /idle        echo; idle_timeout_s 1, no pings
 *   /idle-ping   echo; idle_timeout_s 1, send_pings
 *   /slowmsg     echo; message_timeout_s 2 (a frame or fragmented message
 *                must be complete 2 s after its first byte), idle_timeout_s
 *                30
 *   /feed        subscribes to "feed" on open; max_backpressure 256 KiB
 *                (over it published messages are dropped for that socket)
 *   /feed-cobl   like /feed with close_on_backpressure_limit (1008)
 *   /wsstream    "stream N": N bytes in 64 KiB binary messages, sent as
 *                fast as the socket takes them (drain-driven);
 *                max_backpressure 256 KiB. Other messages echoed
 *   /pub         every message is published to "feed" (sender excluded)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include <string.h>

#include <talon.h>

#define TEST_SERVER_NAME "hostile_server"
#include "test_server.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define BIG_BYTES (8u * MiB)
#define STREAM_PIECE (16u * KiB)
#define WS_PIECE (64u * KiB)
#define NCODES 16

static tl_app *g_app;
/* The pattern i % 251, long enough for any body offset plus a piece. */
static unsigned char *g_pattern;
static uint64_t g_publish_seq;

static struct {
  long http_requests;
  long ws_opens, ws_closes, ws_dropped, ws_pings, ws_messages;
  long stream_started, stream_done, stream_aborts;
  long wsstream_started, wsstream_done;
  /* Close codes seen by close handlers: 1000..1015 and everything else. */
  long close_codes[NCODES], close_other;
} g;

/* ---- helpers ------------------------------------------------------------ */

static size_t query_size(tl_req *req, const char *name, size_t dflt,
                         size_t max) {
  const char *s = tl_req_query(req, name);
  if (!s || !*s)
    return dflt;
  unsigned long long v = strtoull(s, NULL, 10);
  return v > max ? max : (size_t)v;
}

static void count_mw_done(tl_res *res, void *arg) {
  g.http_requests++;
}

/* Counts every finished HTTP response (also errors and aborts). */
static int count_mw(tl_req *req, tl_res *res, void *ctx) {
  tl_res_on_finish(res, count_mw_done, NULL);
  return TL_NEXT;
}

/* ---- plain routes ------------------------------------------------------- */

static void h_hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello\n");
}

static void h_seq(tl_req *req, tl_res *res) {
  char buf[64];
  snprintf(buf, sizeof buf, "seq:%s\n", tl_req_param(req, "n"));
  tl_res_text(res, buf);
}

static void h_blob(tl_req *req, tl_res *res) {
  size_t n = query_size(req, "n", 4096, MiB);
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_send(res, g_pattern, n);
}

static void h_big(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_send(res, g_pattern, BIG_BYTES);
}

static void h_body(tl_req *req, tl_res *res) {
  char buf[64];
  snprintf(buf, sizeof buf, "len:%zu\n", tl_req_body(req).len);
  tl_res_text(res, buf);
}

/* ---- /stream ------------------------------------------------------------ */

typedef struct {
  size_t total, sent;
} stream_ctx;

static void stream_abort(tl_res *res, void *arg) {
  g.stream_aborts++;
  free(arg);
}

static void stream_pump(tl_res *res, void *arg) {
  stream_ctx *s = arg;
  while (s->sent < s->total) {
    size_t n = s->total - s->sent;
    if (n > STREAM_PIECE)
      n = STREAM_PIECE;
    int rc = tl_res_write(res, g_pattern + s->sent % 251, n);
    if (rc < 0) {
      /* The client is gone; the abort callback frees the context. */
      return;
    }
    s->sent += n;
    if (rc == TL_SEND_BACKPRESSURE && s->sent < s->total) {
      tl_res_on_drain(res, stream_pump, s);
      return;
    }
  }
  g.stream_done++;
  free(s);
  tl_res_end(res, NULL, 0);
}

static void h_stream(tl_req *req, tl_res *res) {
  stream_ctx *s = calloc(1, sizeof *s);
  if (!s) {
    tl_res_status(res, 503);
    tl_res_text(res, "out of memory\n");
    return;
  }
  s->total = query_size(req, "n", BIG_BYTES, (size_t)1 << 32);
  g.stream_started++;
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_defer(res, stream_abort, s);
  stream_pump(res, s);
}

/* ---- /publish ----------------------------------------------------------- */

static void h_publish(tl_req *req, tl_res *res) {
  size_t n = query_size(req, "n", 1, 4096);
  size_t size = query_size(req, "size", WS_PIECE, MiB);
  const char *topic = tl_req_query(req, "topic");
  if (!topic || !*topic)
    topic = "feed";
  if (size < 8)
    size = 8;
  unsigned char *msg = malloc(size);
  char *out = malloc(32 + n * 12);
  if (!msg || !out) {
    free(msg);
    free(out);
    tl_res_status(res, 503);
    tl_res_text(res, "out of memory\n");
    return;
  }
  memcpy(msg + 8, g_pattern, size - 8);
  size_t len = (size_t)sprintf(out, "{\"sent\":[");
  for (size_t i = 0; i < n; i++) {
    uint64_t seq = g_publish_seq++;
    for (int b = 0; b < 8; b++)
      msg[b] = (unsigned char)(seq >> (56 - 8 * b));
    int rc = tl_app_publish(g_app, topic, msg, size, TL_WS_BINARY);
    len += (size_t)sprintf(out + len, "%s%d", i ? "," : "", rc);
  }
  sprintf(out + len, "]}");
  tl_res_json(res, out);
  free(msg);
  free(out);
}

/* ---- /stats ------------------------------------------------------------- */

static void h_stats(tl_req *req, tl_res *res) {
  char buf[2048];
  int n = snprintf(
      buf, sizeof buf,
      "{\"http_requests\":%ld,\"ws_opens\":%ld,\"ws_closes\":%ld,"
      "\"ws_dropped\":%ld,\"ws_pings\":%ld,\"ws_messages\":%ld,"
      "\"stream_started\":%ld,\"stream_done\":%ld,\"stream_aborts\":%ld,"
      "\"wsstream_started\":%ld,\"wsstream_done\":%ld,"
      "\"publish_seq\":%llu,\"feed_subscribers\":%zu,\"close_other\":%ld,"
      "\"close_codes\":{",
      g.http_requests, g.ws_opens, g.ws_closes, g.ws_dropped, g.ws_pings,
      g.ws_messages, g.stream_started, g.stream_done, g.stream_aborts,
      g.wsstream_started, g.wsstream_done, (unsigned long long)g_publish_seq,
      tl_app_subscriber_count(g_app, "feed"), g.close_other);
  for (int i = 0; i < NCODES; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%s\"%d\":%ld", i ? "," : "",
                  1000 + i, g.close_codes[i]);
  snprintf(buf + n, sizeof buf - (size_t)n, "}}");
  tl_res_header(res, "Cache-Control", "no-store");
  tl_res_json(res, buf);
}

/* ---- WebSocket ---------------------------------------------------------- */

typedef struct {
  size_t stream_left; /* /wsstream bytes still to send */
  size_t stream_off;
} ws_ctx;

static void ws_open(tl_ws *ws) {
  g.ws_opens++;
}

static void ws_close(tl_ws *ws, int code, const char *reason, size_t len) {
  g.ws_closes++;
  if (code >= 1000 && code < 1000 + NCODES)
    g.close_codes[code - 1000]++;
  else
    g.close_other++;
}

static void ws_dropped(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  g.ws_dropped++;
}

static void ws_ping(tl_ws *ws, const void *p, size_t n) {
  g.ws_pings++;
}

static void ws_echo(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  g.ws_messages++;
  tl_ws_send(ws, p, n, op);
}

#define WS_COMMON                                                              \
  .close = ws_close, .dropped = ws_dropped, .ping = ws_ping,                   \
  .max_payload = 1 * MiB

static const tl_ws_handlers echo_h = {
    WS_COMMON, .open = ws_open, .message = ws_echo, .max_backpressure = 1 * MiB,
    .idle_timeout_s = 30};
static const tl_ws_handlers idle_h = {WS_COMMON, .open = ws_open,
                                      .message = ws_echo, .idle_timeout_s = 1};
static const tl_ws_handlers idle_ping_h = {
    WS_COMMON, .open = ws_open, .message = ws_echo, .idle_timeout_s = 1,
    .send_pings = 1};
static const tl_ws_handlers slowmsg_h = {
    WS_COMMON, .open = ws_open, .message = ws_echo, .idle_timeout_s = 30,
    .message_timeout_s = 2};

static void feed_open(tl_ws *ws) {
  g.ws_opens++;
  tl_ws_subscribe(ws, "feed");
}

static const tl_ws_handlers feed_h = {WS_COMMON, .open = feed_open,
                                      .message = ws_echo,
                                      .max_backpressure = 256 * KiB};
static const tl_ws_handlers feed_cobl_h = {
    WS_COMMON, .open = feed_open, .message = ws_echo,
    .max_backpressure = 256 * KiB, .close_on_backpressure_limit = 1};

/* /pub: every message is published to "feed" (the sender excluded). */
static void pub_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  g.ws_messages++;
  tl_ws_publish(ws, "feed", p, n, op);
}

static const tl_ws_handlers pub_h = {WS_COMMON, .open = ws_open,
                                     .message = pub_msg};

/* Sends /wsstream pieces until the socket reports backpressure (drain
 * resumes) or the requested bytes are out. */
static void wsstream_pump(tl_ws *ws) {
  ws_ctx *c = tl_ws_data(ws);
  while (c->stream_left > 0) {
    size_t n = c->stream_left < WS_PIECE ? c->stream_left : WS_PIECE;
    int rc = tl_ws_send(ws, g_pattern + c->stream_off % 251, n, TL_WS_BINARY);
    if (rc == TL_WS_DROPPED || rc < 0)
      return; /* closing, or over the limit: drain resumes */
    c->stream_left -= n;
    c->stream_off += n;
    if (rc == TL_WS_BACKPRESSURE)
      break;
  }
  if (c->stream_left == 0 && c->stream_off > 0) {
    c->stream_off = 0;
    g.wsstream_done++;
  }
}

static void wsstream_msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  ws_ctx *c = tl_ws_data(ws);
  g.ws_messages++;
  if (op == TL_WS_TEXT && n > 7 && memcmp(p, "stream ", 7) == 0) {
    char num[32];
    size_t k = n - 7 < sizeof num - 1 ? n - 7 : sizeof num - 1;
    memcpy(num, (const char *)p + 7, k);
    num[k] = '\0';
    c->stream_left = (size_t)strtoull(num, NULL, 10);
    c->stream_off = 0;
    g.wsstream_started++;
    wsstream_pump(ws);
    return;
  }
  tl_ws_send(ws, p, n, op);
}

static const tl_ws_handlers wsstream_h = {
    WS_COMMON, .open = ws_open, .message = wsstream_msg, .drain = wsstream_pump,
    .max_backpressure = 256 * KiB};

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
#ifdef M_MMAP_THRESHOLD
  /* The tests judge memory by VmRSS. glibc raises its mmap threshold
   * after a large block is freed, so later 8 MiB buffers would come from
   * the heap and stay resident after free: RSS would depend on the order
   * of allocations. A fixed threshold keeps large buffers mmapped, and
   * freeing them shows in RSS at once. */
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
  g_pattern = malloc(BIG_BYTES + 256);
  if (!g_pattern)
    return 1;
  for (size_t i = 0; i < BIG_BYTES + 256; i++)
    g_pattern[i] = (unsigned char)(i % 251);
  tl_app *app = tl_app_new(&(tl_app_config){
      .max_header_bytes = 4096,
      .max_url_bytes = 1024,
      .max_body_bytes = 64 * KiB,
      .header_timeout_ms = 1000,
      .keepalive_timeout_ms = 1000,
      .write_high_water = 64 * KiB,
      .shutdown_timeout_ms = 2000,
      .send_timeout_ms = 5000,
      .on_listen = on_listen,
  });
  if (!app)
    return 1;
  g_app = app;
  const size_t ctx = sizeof(ws_ctx);
  CHECK(tl_app_use(app, (tl_middleware){.fn = count_mw, .name = "count"}));
  CHECK(tl_app_get(app, "/hello", h_hello));
  CHECK(tl_app_get(app, "/seq/:n", h_seq));
  CHECK(tl_app_get(app, "/blob", h_blob));
  CHECK(tl_app_get(app, "/big", h_big));
  CHECK(tl_app_get(app, "/stream", h_stream));
  CHECK(tl_app_post(app, "/body", h_body));
  CHECK(tl_app_get(app, "/publish", h_publish));
  CHECK(tl_app_get(app, "/stats", h_stats));
  CHECK(tl_app_ws(app, "/echo", &echo_h, ctx));
  CHECK(tl_app_ws(app, "/idle", &idle_h, ctx));
  CHECK(tl_app_ws(app, "/idle-ping", &idle_ping_h, ctx));
  CHECK(tl_app_ws(app, "/slowmsg", &slowmsg_h, ctx));
  CHECK(tl_app_ws(app, "/feed", &feed_h, ctx));
  CHECK(tl_app_ws(app, "/feed-cobl", &feed_cobl_h, ctx));
  CHECK(tl_app_ws(app, "/wsstream", &wsstream_h, ctx));
  CHECK(tl_app_ws(app, "/pub", &pub_h, ctx));
  int err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "hostile_server: %s\n", tl_strerror(err));
  tl_app_free(app);
  free(g_pattern);
  return err ? 1 : 0;
}
