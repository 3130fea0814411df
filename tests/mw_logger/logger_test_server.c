/* Test server for the logger middleware (tests/mw_logger).
 *
 *   logger_test_server PORT FORMAT SINK [MAX_QUEUE]
 *
 * FORMAT: common | combined | json. SINK: "-" (stdout), "fd:N" (an
 * inherited descriptor, e.g. a pipe nobody reads) or a file path. Two
 * loggers run: one to SINK (UTC timestamps, queue of MAX_QUEUE bytes), one
 * to a callback that keeps the lines in memory (local time), served by
 * GET /_lines. GET /_stats gives the SINK logger's counters. /ws is a
 * WebSocket echo route; the text message "close:N" makes the server close
 * with code N instead. */
#define _GNU_SOURCE /* fdopen, and the pthread types uv.h needs under -std=c11 \
                     */
#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "logger_test_server"
#include "test_server.h"
#include <talon/mw/logger.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tl_middleware file_logger;
static char *mem;
static size_t mem_len, mem_cap;

static void mem_write(const char *line, size_t len, void *arg) {
  (void)arg;
  if (line[len] != '\0' || len == 0 || line[len - 1] != '\n')
    abort(); /* the documented contract */
  if (mem_len + len + 1 > mem_cap) {
    size_t cap = mem_cap ? mem_cap * 2 : 4096;
    while (cap < mem_len + len + 1)
      cap *= 2;
    char *m = realloc(mem, cap);
    if (!m)
      abort();
    mem = m;
    mem_cap = cap;
  }
  memcpy(mem + mem_len, line, len);
  mem_len += len;
}

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello world");
}

static void echo(tl_req *req, tl_res *res) {
  tl_slice b = tl_req_body(req);
  /* A header first: the core's write_head memcpy's a NULL header buffer
   * when none was set (UBSan report, core bug noted for the lead). */
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_send(res, b.ptr, b.len);
}

static void status(tl_req *req, tl_res *res) {
  tl_res_status(res, atoi(tl_req_param(req, "code")));
  tl_res_text(res, "status");
}

static void lines(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_send(res, mem ? mem : "", mem_len);
}

static void stats(tl_req *req, tl_res *res) {
  tl_logger_stats st;
  char buf[256];
  if (tl_logger_get_stats(&file_logger, &st)) {
    tl_res_status(res, 500);
    tl_res_text(res, "no stats");
    return;
  }
  tl_middleware bogus = {.fn = NULL};
  snprintf(buf, sizeof buf,
           "{\"lines\":%llu,\"dropped\":%llu,\"write_errors\":%llu,"
           "\"queued_bytes\":%zu,\"bogus_rc\":%d}",
           (unsigned long long)st.lines, (unsigned long long)st.dropped,
           (unsigned long long)st.write_errors, st.queued_bytes,
           tl_logger_get_stats(&bogus, &st));
  tl_res_json(res, buf);
}

/* A response finished 300 ms later, so a client can leave before it. */
typedef struct slow {
  uv_timer_t timer;
  tl_res *res;
} slow;

static void slow_closed(uv_handle_t *h) {
  free(h->data);
}

static void slow_fire(uv_timer_t *t) {
  slow *s = t->data;
  if (s->res)
    tl_res_text(s->res, "slow done");
  uv_close((uv_handle_t *)&s->timer, slow_closed);
}

static void slow_abort(tl_res *res, void *arg) {
  ((slow *)arg)->res = NULL;
}

static void slow_route(tl_req *req, tl_res *res) {
  slow *s = malloc(sizeof *s);
  if (!s) {
    tl_res_status(res, 500);
    return;
  }
  s->res = res;
  uv_timer_init(tl_app_loop(tl_req_app(req)), &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, slow_fire, 300, 0);
  tl_res_defer(res, slow_abort, s);
}

static void ws_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  if (op == TL_WS_TEXT && len > 6 && memcmp(data, "close:", 6) == 0) {
    char code[16] = {0};
    memcpy(code, (const char *)data + 6, len - 6 < 15 ? len - 6 : 15);
    tl_ws_close(ws, atoi(code), "server says bye");
    return;
  }
  tl_ws_send(ws, data, len, op);
}

static const tl_ws_handlers ws_echo = {.message = ws_message};

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT FORMAT SINK [MAX_QUEUE]\n", argv[0]);
    return 2;
  }
  tl_log_format fmt = TL_LOG_COMBINED;
  if (strcmp(argv[2], "common") == 0)
    fmt = TL_LOG_COMMON;
  else if (strcmp(argv[2], "json") == 0)
    fmt = TL_LOG_JSON;
  FILE *sink = stdout;
  if (strncmp(argv[3], "fd:", 3) == 0)
    sink = fdopen(atoi(argv[3] + 3), "w");
  else if (strcmp(argv[3], "-") != 0)
    sink = fopen(argv[3], "a");
  if (!sink) {
    perror("sink");
    return 2;
  }
  tl_app_config cfg = {.max_body_bytes = 4096,
                       .shutdown_timeout_ms = 1000,
                       .on_listen = on_listen};
  tl_app *app = tl_app_new(&cfg);
  tl_logger_options fo = {.format = fmt, .file = sink, .utc = 1};
  if (argc > 4)
    fo.max_queue_bytes = strtoull(argv[4], NULL, 10);
  file_logger = tl_logger(&fo);
  tl_logger_options mo = {.format = fmt, .write = mem_write};
  if (tl_app_use(app, file_logger) || tl_app_use(app, tl_logger(&mo)))
    return 3;
  tl_app_get(app, "/hello", hello);
  tl_app_post(app, "/echo", echo);
  tl_app_get(app, "/status/:code", status);
  tl_app_get(app, "/slow", slow_route);
  tl_app_get(app, "/_lines", lines);
  tl_app_get(app, "/_stats", stats);
  tl_app_ws(app, "/ws", &ws_echo, 0);
  int rc = tl_app_listen(app, "127.0.0.1", atoi(argv[1]));
  tl_app_free(app);
  free(mem);
  if (sink != stdout)
    fclose(sink);
  return rc ? 1 : 0;
}
