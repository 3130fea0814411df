/* test_server: a talon app with a route for every behaviour the Python
 * integration suite (tests/integration/test_*.py) checks.
 *
 * Usage: test_server [PORT] [FILES_DIR]
 *   PORT       port to listen on (0, the default, picks a free one)
 *   FILES_DIR  directory holding small.bin / large.bin for /file/... routes
 *              (or TALON_TEST_FILES in the environment)
 * Environment: TALON_TEST_MAX_CONN (max_connections, default talon's).
 *
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
 *
 * Routes (see each handler for details):
 *   *    /echo                 JSON: method, path, target, query string,
 *                              version, headers, body, queried values
 *   POST /body, PUT /body      the request body back (octet-stream)
 *   GET  /hello                "hello, world\n"
 *   GET  /p/...                precedence: /p/me, /p/:id, /p/:id/posts,
 *                              /p/ + wildcard
 *   GET  /api, /api/info       sub-router with router middleware
 *   GET  /api/guarded          + route middleware
 *   GET  /api/v2/deep          nested sub-router with its own middleware
 *   GET  /trace                the middleware trace (app middleware only)
 *   GET  /async?ms=N           deferred response after N ms (default 50)
 *   GET  /stats                counters: aborts, async_done, drains, ...
 *   GET  /stream               chunked response written in 5 pieces
 *   GET  /stream-cl            streamed with a user Content-Length
 *   GET  /big?bytes=N          N bytes (default 8 MiB) streamed with
 *                              backpressure; byte i is (i % 251)
 *   GET  /file/:name           tl_res_send_file(FILES_DIR/name)
 *   GET  /redirect             301 to /hello
 *   GET  /status/:code         empty response with that status
 *   GET  /noanswer             handler sets 201 + header, returns
 *   GET  /mwdone               route middleware returns TL_DONE, 202
 *   GET  /inject               tries header injection, reports the codes
 *   GET  /close                tl_res_close_after
 *   POST /only-post            (GET gives 405 Allow: POST)
 *   GET,PUT /getput
 *   GET  /stop                 tl_app_stop()
 *   GET  /timer/ticks?n=N&ms=M a repeating timer writes "tick-i" N times
 *                              (default 5, every 10 ms), stops itself
 *                              inside its callback, and ends with the
 *                              elapsed tl_app_now() milliseconds
 *   GET  /timer/cancel         a timer stopped before it fires never runs:
 *                              answers "fired=0" from a second timer
 *   GET  /timer/forever        starts a 5 ms repeating timer that nothing
 *                              stops (the stop must still end the server)
 *   not found: custom handler, 404 "nf:<path>" with X-Not-Found: custom
 * App middleware: "trace" local (malloc'd, freed by free_fn);
 *   ?early=1 or X-Early: answer 403 "early" from middleware;
 *   X-Async-MW: 1 continues from a one-shot timer after 20 ms (TL_PENDING);
 *   X-MW-Error: 1 returns TL_EINVAL (-> 500).
 * Timers: a 10 ms heartbeat, started before tl_app_listen and never
 * stopped, counts in /stats; a tl_app_on_stop hook prints
 * "on_stop: heartbeats=N" (once per stop).
 */
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define TEST_SERVER_NAME "test_server"
#include "test_server.h"

static tl_app *g_app;
static const char *g_files_dir = ".";
static struct {
  long aborts, async_done, drains, big_done, big_aborts, mw_async_aborts,
      trace_frees, requests, heartbeats, cancelled_fired;
} g_stats;

/* ---- small helpers ------------------------------------------------------ */

static void sb_putn(sbuf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (b->len + n + 1 > cap)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np)
      abort();
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}
static void sb_puts(sbuf *b, const char *s) {
  sb_putn(b, s, strlen(s));
}
/* A JSON string (with quotes) of `n` bytes; NULL gives null. Bytes >= 0x80
 * are escaped as \u00XX so the output is valid JSON whatever the input. */
static void sb_json_n(sbuf *b, const char *s, size_t n) {
  if (!s) {
    sb_puts(b, "null");
    return;
  }
  sb_puts(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_putn(b, e, 2);
    } else if (c < 0x20 || c >= 0x7f) {
      sb_printf(b, "\\u%04x", c);
    } else {
      sb_putn(b, (const char *)&c, 1);
    }
  }
  sb_puts(b, "\"");
}
static void sb_json(sbuf *b, const char *s) {
  sb_json_n(b, s, s ? strlen(s) : 0);
}

static void send_json(tl_res *res, sbuf *b) {
  tl_res_json(res, b->p ? b->p : "{}");
  free(b->p);
}

/* ---- app middleware ----------------------------------------------------- */

typedef struct {
  char s[256];
} trace_t;

static void trace_free(void *p) {
  g_stats.trace_frees++;
  free(p);
}

static void trace_add(tl_req *req, const char *what) {
  trace_t *t = tl_req_get(req, "trace");
  if (!t)
    return;
  size_t l = strlen(t->s);
  snprintf(t->s + l, sizeof t->s - l, "%s%s", l ? "," : "", what);
}

static int mw_trace(tl_req *req, tl_res *res, void *ctx) {
  g_stats.requests++;
  trace_t *t = calloc(1, sizeof *t);
  if (!t)
    return TL_ENOMEM;
  if (tl_req_set(req, "trace", t, trace_free)) {
    free(t);
    return TL_ENOMEM;
  }
  trace_add(req, (const char *)ctx);
  return TL_NEXT;
}

static int mw_early(tl_req *req, tl_res *res, void *ctx) {
  if (tl_req_query(req, "early") || tl_req_header(req, "x-early")) {
    tl_res_status(res, 403);
    tl_res_header(res, "X-Early", "yes");
    tl_res_text(res, "early");
    return TL_DONE;
  }
  if (tl_req_header(req, "x-mw-error"))
    return TL_EINVAL;
  trace_add(req, "app2");
  return TL_NEXT;
}

/* A deferred request finished by a one-shot timer. talon frees the timer
 * after its callback; the abort callback stops it if the client leaves
 * first. Either way the context goes with it. */
typedef struct {
  tl_timer *timer;
  tl_req *req;
  tl_res *res;
} async_ctx;

/* Defers `res` and starts a one-shot timer of `ms` with `fire`; `abort`
 * runs instead if the client leaves. Returns TL_ENOMEM if either
 * allocation failed (then nothing was deferred). */
static int async_start(tl_req *req, tl_res *res, uint64_t ms, tl_timer_cb fire,
                       tl_res_abort_cb abort_cb) {
  async_ctx *a = calloc(1, sizeof *a);
  if (!a)
    return TL_ENOMEM;
  a->req = req;
  a->res = res;
  a->timer = tl_timer_start(tl_req_app(req), ms, 0, fire, a);
  if (!a->timer) {
    free(a);
    return TL_ENOMEM;
  }
  tl_res_defer(res, abort_cb, a);
  return 0;
}

/* The client left: the timer must not fire any more. */
static void async_stop(async_ctx *a) {
  tl_timer_stop(a->timer);
  free(a);
}

static void mw_async_abort(tl_res *res, void *arg) {
  g_stats.mw_async_aborts++;
  async_stop(arg);
}

static void mw_async_fire(tl_timer *t, void *arg) {
  async_ctx *a = arg;
  tl_req *req = a->req;
  tl_res *res = a->res;
  free(a);
  trace_add(req, "async");
  tl_next(req, res);
}

static int mw_async(tl_req *req, tl_res *res, void *ctx) {
  if (!tl_req_header(req, "x-async-mw"))
    return TL_NEXT;
  int err = async_start(req, res, 20, mw_async_fire, mw_async_abort);
  return err ? err : TL_PENDING;
}

/* ---- router / route middleware ------------------------------------------ */

static int mw_router_api(tl_req *req, tl_res *res, void *ctx) {
  tl_res_header(res, "X-Router", "api");
  trace_add(req, "router");
  return TL_NEXT;
}

static int mw_router_v2(tl_req *req, tl_res *res, void *ctx) {
  tl_res_header(res, "X-Router-V2", "v2");
  trace_add(req, "v2");
  return TL_NEXT;
}

static int mw_route(tl_req *req, tl_res *res, void *ctx) {
  tl_res_header(res, "X-Route", (const char *)ctx);
  trace_add(req, "route");
  if (tl_req_query(req, "deny")) {
    tl_res_status(res, 401);
    tl_res_text(res, "denied");
    return TL_DONE;
  }
  return TL_NEXT;
}

static int mw_done_empty(tl_req *req, tl_res *res, void *ctx) {
  tl_res_status(res, 202);
  tl_res_header(res, "X-Mw-Done", "1");
  return TL_DONE;
}

/* ---- handlers ----------------------------------------------------------- */

static void h_trace(tl_req *req, tl_res *res) {
  trace_add(req, "handler");
  trace_t *t = tl_req_get(req, "trace");
  tl_res_text(res, t ? t->s : "(no trace)");
}

/* /echo: everything about the request as JSON. ?h=NAME adds "want": all
 * values of header NAME (tl_req_header_at) and "first": tl_req_header.
 * X-Query-Keys: k1,k2 adds "q": {k: tl_req_query(k)}. */
static void h_echo(tl_req *req, tl_res *res) {
  sbuf b = {0};
  char addr[64] = "";
  tl_req_remote_address(req, addr, sizeof addr);
  sb_puts(&b, "{\"method\":");
  sb_json(&b, tl_req_method(req));
  sb_puts(&b, ",\"path\":");
  sb_json(&b, tl_req_path(req));
  sb_puts(&b, ",\"target\":");
  sb_json(&b, tl_req_target(req));
  sb_puts(&b, ",\"qs\":");
  sb_json(&b, tl_req_query_string(req));
  sb_printf(&b, ",\"version\":%d", tl_req_version(req));
  sb_puts(&b, ",\"remote\":");
  sb_json(&b, addr);
  sb_printf(&b, ",\"nheaders\":%zu,\"headers\":[", tl_req_header_count(req));
  for (size_t i = 0;; i++) {
    tl_slice n, v;
    if (tl_req_header_get(req, i, &n, &v))
      break;
    sb_puts(&b, i ? ",[" : "[");
    sb_json_n(&b, n.ptr, n.len);
    sb_puts(&b, ",");
    sb_json_n(&b, v.ptr, v.len);
    sb_puts(&b, "]");
  }
  sb_puts(&b, "]");
  const char *hn = tl_req_query(req, "h");
  if (hn) {
    sb_puts(&b, ",\"first\":");
    sb_json(&b, tl_req_header(req, hn));
    sb_puts(&b, ",\"want\":[");
    for (size_t i = 0;; i++) {
      const char *v = tl_req_header_at(req, hn, i);
      if (!v)
        break;
      if (i)
        sb_puts(&b, ",");
      sb_json(&b, v);
    }
    sb_puts(&b, "]");
  }
  const char *keys = tl_req_header(req, "x-query-keys");
  if (keys) {
    sb_puts(&b, ",\"q\":{");
    char kbuf[512];
    snprintf(kbuf, sizeof kbuf, "%s", keys);
    int first = 1;
    for (char *save = NULL, *k = strtok_r(kbuf, ",", &save); k;
         k = strtok_r(NULL, ",", &save)) {
      if (!first)
        sb_puts(&b, ",");
      first = 0;
      sb_json(&b, k);
      sb_puts(&b, ":");
      sb_json(&b, tl_req_query(req, k));
    }
    sb_puts(&b, "}");
  }
  tl_slice body = tl_req_body(req);
  sb_printf(&b, ",\"body_len\":%zu,\"body_ptr_null\":%s,\"body\":", body.len,
            body.ptr ? "false" : "true");
  sb_json_n(&b, body.ptr ? body.ptr : "", body.len);
  trace_t *t = tl_req_get(req, "trace");
  sb_puts(&b, ",\"trace\":");
  sb_json(&b, t ? t->s : NULL);
  sb_puts(&b, "}");
  send_json(res, &b);
}

static void h_body(tl_req *req, tl_res *res) {
  tl_slice body = tl_req_body(req);
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_headerf(res, "X-Body-Len", "%zu", body.len);
  tl_res_send(res, body.ptr, body.len);
}

static void h_hello(tl_req *req, tl_res *res) {
  tl_res_header(res, "X-Hello", "1");
  tl_res_text(res, "hello, world\n");
}

static void h_only_post(tl_req *req, tl_res *res) {
  tl_res_text(res, "posted");
}
static void h_getput(tl_req *req, tl_res *res) {
  tl_res_text(res, tl_req_method(req));
}

static void reply_fmt(tl_res *res, const char *kind, const char *v) {
  sbuf b = {0};
  sb_puts(&b, kind);
  sb_puts(&b, ":");
  sb_puts(&b, v ? v : "(null)");
  tl_res_text(res, b.p);
  free(b.p);
}
static void h_p_static(tl_req *req, tl_res *res) {
  reply_fmt(res, "static", tl_req_path(req));
}
static void h_p_param(tl_req *req, tl_res *res) {
  reply_fmt(res, "param", tl_req_param(req, "id"));
}
static void h_p_posts(tl_req *req, tl_res *res) {
  reply_fmt(res, "posts", tl_req_param(req, "id"));
}
static void h_p_wild(tl_req *req, tl_res *res) {
  reply_fmt(res, "wild", tl_req_param(req, "*"));
}
static void h_p_two(tl_req *req, tl_res *res) {
  char out[600];
  snprintf(out, sizeof out, "two:%s|%s", tl_req_param(req, "a"),
           tl_req_param(req, "b"));
  tl_res_text(res, out);
}

static void h_api_info(tl_req *req, tl_res *res) {
  trace_add(req, "handler");
  trace_t *t = tl_req_get(req, "trace");
  sbuf b = {0};
  sb_puts(&b, "{\"where\":\"api\",\"path\":");
  sb_json(&b, tl_req_path(req));
  sb_puts(&b, ",\"trace\":");
  sb_json(&b, t ? t->s : NULL);
  sb_puts(&b, "}");
  send_json(res, &b);
}

/* /async?ms=N */
static void async_abort(tl_res *res, void *arg) {
  g_stats.aborts++;
  async_stop(arg);
}

static void async_fire(tl_timer *t, void *arg) {
  async_ctx *a = arg;
  tl_res *res = a->res;
  tl_req *req = a->req;
  free(a);
  g_stats.async_done++;
  char out[128];
  const char *id = tl_req_query(req, "id");
  snprintf(out, sizeof out, "async:%s", id ? id : "-");
  tl_res_header(res, "X-Async", "1");
  tl_res_text(res, out);
}

static void h_async(tl_req *req, tl_res *res) {
  const char *ms_s = tl_req_query(req, "ms");
  long ms = ms_s ? atol(ms_s) : 50;
  if (async_start(req, res, (uint64_t)ms, async_fire, async_abort)) {
    tl_res_status(res, 500);
    tl_res_text(res, "oom");
  }
}

static void h_stats(tl_req *req, tl_res *res) {
  char out[512];
  snprintf(out, sizeof out,
           "{\"aborts\":%ld,\"async_done\":%ld,\"drains\":%ld,"
           "\"big_done\":%ld,\"big_aborts\":%ld,\"mw_async_aborts\":%ld,"
           "\"trace_frees\":%ld,\"requests\":%ld,\"heartbeats\":%ld,"
           "\"cancelled_fired\":%ld}",
           g_stats.aborts, g_stats.async_done, g_stats.drains, g_stats.big_done,
           g_stats.big_aborts, g_stats.mw_async_aborts, g_stats.trace_frees,
           g_stats.requests, g_stats.heartbeats, g_stats.cancelled_fired);
  tl_res_json(res, out);
}

/* /stream: five pieces, chunked; ?delay=1 spaces them 10 ms apart. */
static void h_stream(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  for (int i = 0; i < 5; i++) {
    char piece[32];
    int n = snprintf(piece, sizeof piece, "piece-%d\n", i);
    int rc = tl_res_write(res, piece, (size_t)n);
    if (rc < 0) {
      fprintf(stderr, "test_server: tl_res_write: %s\n", tl_strerror(rc));
      return;
    }
  }
  tl_res_end(res, "end\n", 4);
}

static void h_stream_cl(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Length", "10");
  tl_res_write(res, "01234", 5);
  tl_res_write(res, "56789", 5);
  tl_res_end(res, NULL, 0);
}

/* /big: streamed with backpressure. */
typedef struct {
  size_t total, sent;
  int aborted;
} big_ctx;

static void big_abort(tl_res *res, void *arg) {
  g_stats.big_aborts++;
  free(arg);
}

static void big_drained(tl_res *res, void *arg);

static void big_pump(tl_res *res, void *arg) {
  big_ctx *b = arg;
  static unsigned char block[251 * 256];
  static int init;
  if (!init) {
    for (size_t i = 0; i < sizeof block; i++)
      block[i] = (unsigned char)(i % 251);
    init = 1;
  }
  for (;;) {
    if (b->sent == b->total) {
      g_stats.big_done++;
      free(b);
      tl_res_end(res, NULL, 0);
      return;
    }
    size_t off = b->sent % 251;
    size_t n = sizeof block - 251;
    if (n > b->total - b->sent)
      n = b->total - b->sent;
    int rc = tl_res_write(res, block + off, n);
    if (rc < 0) {
      fprintf(stderr, "test_server: big write: %s\n", tl_strerror(rc));
      free(b);
      return;
    }
    b->sent += n;
    if (rc == TL_SEND_BACKPRESSURE && b->sent < b->total) {
      tl_res_on_drain(res, big_drained, b);
      return;
    }
  }
}

static void big_drained(tl_res *res, void *arg) {
  g_stats.drains++;
  big_pump(res, arg);
}

static void h_big(tl_req *req, tl_res *res) {
  const char *n_s = tl_req_query(req, "bytes");
  big_ctx *b = calloc(1, sizeof *b);
  if (!b)
    return;
  b->total = n_s ? (size_t)atoll(n_s) : (size_t)8 << 20;
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_defer(res, big_abort, b);
  big_pump(res, b);
}

static void h_file(tl_req *req, tl_res *res) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", g_files_dir, tl_req_param(req, "name"));
  tl_res_header(res, "Content-Type", "application/octet-stream");
  int rc = tl_res_send_file(res, path);
  if (rc == TL_ENOENT) {
    tl_res_status(res, 404);
    tl_res_text(res, "no such file");
  } else if (rc < 0 && !tl_res_finished(res)) {
    tl_res_status(res, 500);
    tl_res_text(res, tl_err_name(rc));
  }
}

static void h_redirect(tl_req *req, tl_res *res) {
  tl_res_redirect(res, 301, "/hello");
}

static void h_status(tl_req *req, tl_res *res) {
  int code = atoi(tl_req_param(req, "code"));
  int rc = tl_res_status(res, code);
  if (rc) {
    tl_res_status(res, 400);
    tl_res_text(res, "bad status");
    return;
  }
  tl_res_text(res, "status body");
}

static void h_noanswer(tl_req *req, tl_res *res) {
  tl_res_status(res, 201);
  tl_res_header(res, "X-No-Answer", "1");
}

static void h_inject(tl_req *req, tl_res *res) {
  char out[128];
  int a = tl_res_header(res, "X-Bad", "a\r\nX-Injected: 1");
  int b = tl_res_header(res, "X-Bad\r\nX-Injected", "1");
  int c = tl_res_header(res, "X-Good", "fine");
  snprintf(out, sizeof out, "%s %s %d", tl_err_name(a), tl_err_name(b), c);
  tl_res_text(res, out);
}

static void h_close(tl_req *req, tl_res *res) {
  tl_res_close_after(res);
  tl_res_text(res, "closing");
}

static void h_stop(tl_req *req, tl_res *res) {
  tl_res_text(res, "stopping");
  tl_app_stop(g_app);
}

/* ---- timers ------------------------------------------------------------- */

/* /timer/ticks: a repeating timer streams its ticks. */
typedef struct {
  tl_timer *timer;
  tl_app *app;
  tl_res *res;
  long left, n;
  uint64_t started;
} ticks_ctx;

static void ticks_abort(tl_res *res, void *arg) {
  ticks_ctx *k = arg;
  g_stats.aborts++;
  tl_timer_stop(k->timer);
  free(k);
}

static void ticks_fire(tl_timer *t, void *arg) {
  ticks_ctx *k = arg;
  char line[64];
  snprintf(line, sizeof line, "tick-%ld\n", k->n - k->left);
  tl_res_write(k->res, line, strlen(line));
  if (--k->left > 0)
    return;
  /* Stopped inside its own callback: it does not fire again, and talon
   * frees it when this returns. Stopping it twice is harmless. */
  tl_timer_stop(t);
  tl_timer_stop(t);
  snprintf(line, sizeof line, "elapsed=%llu\n",
           (unsigned long long)(tl_app_now(k->app) - k->started));
  tl_res *res = k->res;
  free(k);
  tl_res_end(res, line, strlen(line));
}

static void h_timer_ticks(tl_req *req, tl_res *res) {
  const char *n_s = tl_req_query(req, "n"), *ms_s = tl_req_query(req, "ms");
  long n = n_s ? atol(n_s) : 5, ms = ms_s ? atol(ms_s) : 10;
  ticks_ctx *k = calloc(1, sizeof *k);
  if (!k || n < 1 || ms < 1) {
    free(k);
    tl_res_status(res, 400);
    tl_res_text(res, "bad n or ms");
    return;
  }
  k->app = tl_req_app(req);
  k->res = res;
  k->left = k->n = n;
  k->started = tl_app_now(k->app);
  /* First tick after `ms`, then every `ms`. */
  k->timer = tl_timer_start(k->app, (uint64_t)ms, (uint64_t)ms, ticks_fire, k);
  if (!k->timer) {
    free(k);
    tl_res_status(res, 500);
    tl_res_text(res, "oom");
    return;
  }
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_defer(res, ticks_abort, k);
}

/* /timer/cancel: a timer stopped before its time never runs. */
static void cancelled_fire(tl_timer *t, void *arg) {
  g_stats.cancelled_fired++;
}

static void cancel_check(tl_timer *t, void *arg) {
  async_ctx *a = arg;
  tl_res *res = a->res;
  free(a);
  char out[64];
  snprintf(out, sizeof out, "fired=%ld", g_stats.cancelled_fired);
  tl_res_text(res, out);
}

static void h_timer_cancel(tl_req *req, tl_res *res) {
  tl_app *app = tl_req_app(req);
  tl_timer_stop(tl_timer_start(app, 20, 0, cancelled_fire, NULL));
  tl_timer_stop(tl_timer_start(app, 0, 5, cancelled_fire, NULL));
  if (async_start(req, res, 60, cancel_check, async_abort)) {
    tl_res_status(res, 500);
    tl_res_text(res, "oom");
  }
}

/* /timer/forever: nothing stops this one but the app's end. */
static void forever_fire(tl_timer *t, void *arg) {}

static void h_timer_forever(tl_req *req, tl_res *res) {
  tl_timer *t = tl_timer_start(tl_req_app(req), 5, 5, forever_fire, NULL);
  tl_res_text(res, t ? "started" : "oom");
}

static void heartbeat(tl_timer *t, void *arg) {
  g_stats.heartbeats++;
}

static void on_stop(tl_app *app, void *arg) {
  printf("on_stop: heartbeats=%ld\n", g_stats.heartbeats);
  fflush(stdout);
}

static void not_found(tl_req *req, tl_res *res) {
  tl_res_status(res, 404);
  tl_res_header(res, "X-Not-Found", "custom");
  reply_fmt(res, "nf", tl_req_path(req));
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  if (argc > 2)
    g_files_dir = argv[2];
  else if (getenv("TALON_TEST_FILES"))
    g_files_dir = getenv("TALON_TEST_FILES");
  unsigned max_conn = 0;
  if (getenv("TALON_TEST_MAX_CONN"))
    max_conn = (unsigned)atoi(getenv("TALON_TEST_MAX_CONN"));

  tl_app_config cfg = {
      .max_header_bytes = 4096,
      .max_url_bytes = 1024,
      .max_body_bytes = 65536,
      .max_headers = 64, /* past the 32 a connection holds inline */
      .header_timeout_ms = 500,
      .keepalive_timeout_ms = 700,
      .shutdown_timeout_ms = 1000,
      .max_connections = max_conn,
      .on_listen = on_listen,
  };
  tl_app *app = tl_app_new(&cfg);
  if (!app)
    return 1;
  g_app = app;

  /* App middleware, in order: trace (sets the local), early/error, async. */
  CHECK(tl_app_use(
      app, (tl_middleware){.fn = mw_trace, .ctx = "app1", .name = "trace"}));
  /* A constructor that failed for memory is reported as such, not as a
   * bad argument; a middleware with no function is a bad argument. */
  CHECK(tl_app_use(app, (tl_middleware){.error = TL_ENOMEM}) != TL_ENOMEM);
  CHECK(tl_app_use(app, (tl_middleware){0}) != TL_EINVAL);
  CHECK(tl_app_use(app, (tl_middleware){.fn = mw_early, .name = "early"}));
  CHECK(tl_app_use(app, (tl_middleware){.fn = mw_async, .name = "async"}));

  CHECK(tl_app_all(app, "/echo", h_echo));
  CHECK(tl_app_all(app, "/echo/*", h_echo));
  CHECK(tl_app_post(app, "/body", h_body));
  CHECK(tl_app_put(app, "/body", h_body));
  CHECK(tl_app_get(app, "/hello", h_hello));
  CHECK(tl_app_get(app, "/trace", h_trace));

  /* Precedence routes, registered in "wrong" order on purpose. */
  CHECK(tl_app_get(app, "/p/*", h_p_wild));
  CHECK(tl_app_get(app, "/p/:id/posts", h_p_posts));
  CHECK(tl_app_get(app, "/p/:id", h_p_param));
  CHECK(tl_app_get(app, "/p/me", h_p_static));
  CHECK(tl_app_get(app, "/two/:a/x/:b", h_p_two));

  tl_router *api = tl_router_new();
  tl_router *v2 = tl_router_new();
  if (!api || !v2)
    return 1;
  CHECK(tl_router_use(api, (tl_middleware){.fn = mw_router_api}));
  CHECK(tl_router_get(api, "/", h_api_info));
  CHECK(tl_router_get(api, "/info", h_api_info));
  tl_middleware guard = {.fn = mw_route, .ctx = "guarded"};
  CHECK(tl_router_route(api, "GET", "/guarded", h_api_info, &guard, 1));
  CHECK(tl_router_use(v2, (tl_middleware){.fn = mw_router_v2}));
  tl_middleware deep = {.fn = mw_route, .ctx = "deep"};
  CHECK(tl_router_route(v2, "GET", "/deep", h_api_info, &deep, 1));
  CHECK(tl_router_mount(api, "/v2", v2));
  CHECK(tl_app_mount(app, "/api", api));

  CHECK(tl_app_get(app, "/async", h_async));
  CHECK(tl_app_get(app, "/stats", h_stats));
  CHECK(tl_app_get(app, "/stream", h_stream));
  CHECK(tl_app_get(app, "/stream-cl", h_stream_cl));
  CHECK(tl_app_get(app, "/big", h_big));
  CHECK(tl_app_get(app, "/file/:name", h_file));
  CHECK(tl_app_get(app, "/redirect", h_redirect));
  CHECK(tl_app_get(app, "/status/:code", h_status));
  CHECK(tl_app_get(app, "/noanswer", h_noanswer));
  tl_middleware done = {.fn = mw_done_empty};
  CHECK(tl_app_route(app, "GET", "/mwdone", h_hello, &done, 1));
  CHECK(tl_app_get(app, "/inject", h_inject));
  CHECK(tl_app_get(app, "/close", h_close));
  CHECK(tl_app_post(app, "/only-post", h_only_post));
  CHECK(tl_app_get(app, "/getput", h_getput));
  CHECK(tl_app_put(app, "/getput", h_getput));
  CHECK(tl_app_get(app, "/stop", h_stop));
  CHECK(tl_app_get(app, "/timer/ticks", h_timer_ticks));
  CHECK(tl_app_get(app, "/timer/cancel", h_timer_cancel));
  CHECK(tl_app_get(app, "/timer/forever", h_timer_forever));
  tl_app_not_found(app, not_found);

  /* Started before the loop runs, and never stopped: it must neither keep
   * the server alive after a stop nor leak. */
  if (!tl_timer_start(app, 10, 10, heartbeat, NULL))
    return 1;
  CHECK(tl_app_on_stop(app, on_stop, NULL));

  int err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "test_server: listen: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
