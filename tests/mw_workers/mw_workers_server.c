/* Test server for the middleware with shared state under several workers
 * (tests/mw_workers).
 *
 *   mw_workers_server PORT LOGFILE STATICDIR [WORKERS]
 *
 * WORKERS defaults to 4. Every response carries X-Worker: the index of the
 * worker that ran it (tl_app_worker), so a test can show that its
 * connections landed on different workers.
 *
 * App middleware, in order: X-Worker; a logger writing JSON lines to
 * LOGFILE (the file sink, its threadpool writer); a logger with a
 * callback sink that checks it is never entered twice at once; request
 * ids; security headers; metrics (/metrics); CORS (any origin);
 * compression; static files from STATICDIR under /s; cookies; sessions
 * (the built-in memory store). The stateless ones are here so that
 * ThreadSanitizer sees them run on all workers at once.
 *
 *   POST /login?user=U   creates a session with user=U, n=0
 *   GET  /whoami         200 "U n" from the session, 401 without one
 *   POST /bump           n += 1 in the session (read, then written)
 *   GET  /logout         destroys the session
 *   GET  /limited        rate limited per X-Client header: burst 40, and
 *                        a rate so low no token comes back during a test
 *   GET  /load/...       200 "ok" (the logger load test's requests)
 *   GET  /big            a text body of 4000 lines "line I of a text file"
 *                        (compressed when the client accepts it)
 *   GET  /events         server-sent events: 5 events "n" with data 1..5,
 *                        then the end
 *   GET  /metrics        the metrics middleware (counters of all workers)
 *   GET  /csrf           (CSRF) 200 with a token, creating the session
 *   POST /csrf           (CSRF) 200 "ok" with the right X-CSRF-Token
 *   GET  /_stats         {"log":{lines,dropped,write_errors,queued_bytes},
 *                         "sink":{lines,overlaps},"rl":{allowed,limited,
 *                         keys}}
 *   ws   /ws             echo
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "mw_workers_server"
#include "test_server.h"

static tl_middleware file_logger, sink_logger, limiter;

/* The callback sink: counts lines and calls that overlapped another
 * (the logger promises none). The pause widens the window an unserialised
 * sink would be caught in. */
static _Atomic unsigned inside;
static _Atomic unsigned long long sink_lines, sink_overlaps;

static void sink_write(const char *line, size_t len, void *arg) {
  (void)arg;
  if (atomic_fetch_add(&inside, 1) != 0)
    atomic_fetch_add(&sink_overlaps, 1);
  if (len == 0 || line[len - 1] != '\n' || line[len] != '\0' ||
      memchr(line, '\n', len - 1))
    abort(); /* one whole line per call: the documented contract */
  atomic_fetch_add(&sink_lines, 1);
  usleep(20);
  atomic_fetch_sub(&inside, 1);
}

static int worker_header(tl_req *req, tl_res *res, void *ctx) {
  (void)ctx;
  int rc =
      tl_res_headerf(res, "X-Worker", "%d", tl_app_worker(tl_req_app(req)));
  return rc < 0 ? rc : TL_NEXT;
}

static void text(tl_res *res, int status, const char *body) {
  tl_res_status(res, status);
  tl_res_text(res, body);
}

__attribute__((format(printf, 2, 3))) static void textf(tl_res *res,
                                                        const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  tl_res_text(res, buf);
}

static void login(tl_req *req, tl_res *res) {
  const char *user = tl_req_query(req, "user");
  struct tl_session *s = tl_req_session(req);
  if (!user || !s || tl_session_set(s, "user", user) != 0 ||
      tl_session_set(s, "n", "0") != 0) {
    text(res, 500, "no session");
    return;
  }
  text(res, 200, tl_session_id(s));
}

static void whoami(tl_req *req, tl_res *res) {
  struct tl_session *s = tl_req_session(req);
  const char *user = s ? tl_session_get(s, "user") : NULL;
  const char *n = s ? tl_session_get(s, "n") : NULL;
  if (!user || !n) {
    text(res, 401, "nobody");
    return;
  }
  textf(res, "%s %s", user, n);
}

static void bump(tl_req *req, tl_res *res) {
  struct tl_session *s = tl_req_session(req);
  const char *n = s ? tl_session_get(s, "n") : NULL;
  if (!n) {
    text(res, 401, "nobody");
    return;
  }
  char next[32];
  snprintf(next, sizeof next, "%ld", strtol(n, NULL, 10) + 1);
  if (tl_session_set(s, "n", next) != 0) {
    text(res, 500, "set failed");
    return;
  }
  text(res, 200, next);
}

static void logout(tl_req *req, tl_res *res) {
  if (tl_session_destroy(req, res) != 0) {
    text(res, 500, "destroy failed");
    return;
  }
  text(res, 200, "bye");
}

static void ok(tl_req *req, tl_res *res) {
  text(res, 200, "ok");
}

static char *big; /* the body of /big, made before listen */

static void big_text(tl_req *req, tl_res *res) {
  tl_res_text(res, big);
}

static void events(tl_req *req, tl_res *res) {
  tl_sse *sse = tl_sse_start(req, res, NULL);
  if (!sse)
    return;
  for (int i = 1; i <= 5; i++) {
    char data[16];
    snprintf(data, sizeof data, "%d", i);
    if (tl_sse_send(sse, "n", data, data) < 0)
      return;
  }
  tl_sse_end(sse);
}

static void csrf_token(tl_req *req, tl_res *res) {
  const char *t = tl_csrf_token(req);
  text(res, t ? 200 : 500, t ? t : "no token");
}

static void stats(tl_req *req, tl_res *res) {
  tl_logger_stats ls;
  tl_rate_limit_stats rs;
  if (tl_logger_get_stats(&file_logger, &ls) != 0 ||
      tl_rate_limit_stats_get(&limiter, &rs) != 0) {
    text(res, 500, "no stats");
    return;
  }
  tl_res_header(res, "Content-Type", "application/json");
  textf(res,
        "{\"log\":{\"lines\":%llu,\"dropped\":%llu,"
        "\"write_errors\":%llu,\"queued_bytes\":%zu},"
        "\"sink\":{\"lines\":%llu,\"overlaps\":%llu},"
        "\"rl\":{\"allowed\":%llu,\"limited\":%llu,\"keys\":%zu}}",
        (unsigned long long)ls.lines, (unsigned long long)ls.dropped,
        (unsigned long long)ls.write_errors, ls.queued_bytes,
        atomic_load(&sink_lines), atomic_load(&sink_overlaps),
        (unsigned long long)rs.allowed, (unsigned long long)rs.limited,
        rs.keys);
}

static int client_key(tl_req *req, char *buf, size_t size, void *arg) {
  (void)arg;
  const char *c = tl_req_header(req, "X-Client");
  snprintf(buf, size, "%s", c ? c : "anonymous");
  return 0;
}

static void ws_echo(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_send(ws, data, len, op);
}

static const tl_ws_handlers echo_route = {.message = ws_echo};

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT LOGFILE STATICDIR [WORKERS]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  int workers = argc > 4 ? atoi(argv[4]) : 4;
  FILE *log = fopen(argv[2], "w");
  if (!log) {
    perror(argv[2]);
    return 1;
  }
  static const char *const secrets[] = {"mw-workers-test-secret-0123456789",
                                        NULL};
  tl_app *app =
      tl_app_new(&(tl_app_config){.on_listen = on_listen, .workers = workers});
  if (!app)
    return 1;
  file_logger = tl_logger(
      &(tl_logger_options){.format = TL_LOG_JSON, .file = log, .utc = 1});
  sink_logger = tl_logger(
      &(tl_logger_options){.format = TL_LOG_COMMON, .write = sink_write});
  limiter = tl_rate_limit(
      &(tl_rate_limit_options){.rate = 0.001, .burst = 40, .key = client_key});
  CHECK(tl_app_use(app,
                   (tl_middleware){.fn = worker_header, .name = "x-worker"}));
  CHECK(tl_app_use(app, file_logger));
  CHECK(tl_app_use(app, sink_logger));
  CHECK(tl_app_use(app, tl_request_id(NULL)));
  CHECK(tl_app_use(app, tl_security_headers(NULL)));
  CHECK(tl_app_use(app, tl_metrics(NULL)));
  CHECK(tl_app_use(app, tl_cors(NULL)));
  CHECK(tl_app_use(app, tl_compress(NULL)));
  CHECK(tl_app_use(app, tl_static(argv[3], &(tl_static_options){.prefix = "/s",
                                                                .etag = 1})));
  CHECK(tl_app_use(app, tl_cookies(&(tl_cookies_options){.secrets = secrets})));
  CHECK(tl_app_use(app, tl_session(NULL)));
  CHECK(tl_app_post(app, "/login", login));
  CHECK(tl_app_get(app, "/whoami", whoami));
  CHECK(tl_app_post(app, "/bump", bump));
  CHECK(tl_app_get(app, "/logout", logout));
  CHECK(tl_app_route(app, "GET", "/limited", ok, &limiter, 1));
  CHECK(tl_app_get(app, "/load/*", ok));
  sbuf b = {0};
  for (int i = 0; i < 4000; i++)
    sb_printf(&b, "line %d of a text file\n", i);
  big = b.p;
  CHECK(tl_app_get(app, "/big", big_text));
  CHECK(tl_app_get(app, "/events", events));
  tl_middleware csrf[] = {tl_csrf(NULL)};
  CHECK(tl_app_route(app, "GET", "/csrf", csrf_token, csrf, 1));
  csrf[0] = tl_csrf(NULL);
  CHECK(tl_app_route(app, "POST", "/csrf", ok, csrf, 1));
  CHECK(tl_app_get(app, "/_stats", stats));
  CHECK(tl_app_ws(app, "/ws", &echo_route, 0));
  int rc = tl_app_listen(app, "127.0.0.1", port);
  if (rc)
    fprintf(stderr, "%s: listen: %s\n", TEST_SERVER_NAME, tl_strerror(rc));
  tl_app_free(app);
  free(big);
  fclose(log);
  return rc ? 1 : 0;
}
