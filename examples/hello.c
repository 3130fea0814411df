/* hello: HTTP basics with talon.
 *
 *   GET /               "Hello World"
 *   GET /users/:id      {"id":"..."} (JSON, the route parameter)
 *   GET /api/health     a sub-router mounted at /api
 *   GET /api/time       the server time, from the same sub-router
 *   GET /events         server-sent events: a "tick" event every `ms`
 *                       (query, default 1000), numbered from the
 *                       reconnecting browser's Last-Event-ID; with
 *                       `limit` the stream ends after that many and the
 *                       browser reconnects (after `retry` ms) to go on
 *
 * Usage: hello [PORT]   (or PORT=..., HOST=... in the environment;
 * examples/common.h reads them)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <talon.h>
#include <talon/mw/sse.h>

#include "common.h"

static void hello(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_send(res, "Hello World", 11);
}

/* Writes `s` as a JSON string body (quotes and escapes). */
static void json_escape(char *out, size_t size, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

static void user(tl_req *req, tl_res *res) {
  char id[256], body[320];
  json_escape(id, sizeof id, tl_req_param(req, "id"));
  snprintf(body, sizeof body, "{\"id\":\"%s\"}", id);
  tl_res_json(res, body);
}

static void health(tl_req *req, tl_res *res) {
  tl_res_json(res, "{\"ok\":true}");
}

static void now(tl_req *req, tl_res *res) {
  char body[64];
  snprintf(body, sizeof body, "{\"time\":%lld}", (long long)time(NULL));
  tl_res_json(res, body);
}

/* One event stream: its own timer, freed when the stream ends. */
typedef struct ticker {
  tl_sse *sse;
  tl_timer *timer;
  long next, left; /* the next event id; events until the end (-1: none) */
} ticker;

static void ticker_free(ticker *t) {
  tl_timer_stop(t->timer);
  free(t);
}

static void tick(tl_timer *timer, void *arg) {
  ticker *t = arg;
  char id[24], data[96];
  snprintf(id, sizeof id, "%ld", t->next);
  /* Two lines: the browser's event.data is "tick N\nat T". */
  snprintf(data, sizeof data, "tick %ld\nat %lld", t->next,
           (long long)time(NULL));
  t->next++;
  /* A dropped event (the client is far behind) is simply skipped. */
  tl_sse_send(t->sse, "tick", data, id);
  if (t->left > 0 && --t->left == 0) {
    tl_sse_end(t->sse); /* the browser reconnects with Last-Event-ID */
    ticker_free(t);
  }
}

static void ticker_closed(tl_sse *sse, void *arg) {
  ticker_free(arg); /* the client left, or the app is stopping */
}

static long query_long(tl_req *req, const char *name, long def, long lo,
                       long hi) {
  const char *v = tl_req_query(req, name);
  long n = v && *v ? strtol(v, NULL, 10) : def;
  return n < lo ? lo : n > hi ? hi : n;
}

static void events(tl_req *req, tl_res *res) {
  ticker *t = calloc(1, sizeof *t);
  if (!t) {
    tl_res_fail(res, 503, TL_ENOMEM);
    return;
  }
  long ms = query_long(req, "ms", 1000, 20, 60000);
  t->left = query_long(req, "limit", -1, -1, 1000000);
  tl_sse_options opt = {
      .retry_ms = (unsigned)query_long(req, "retry", 0, 0, 60000),
      .on_close = ticker_closed,
      .arg = t,
  };
  t->sse = tl_sse_start(req, res, &opt);
  if (!t->sse) {
    free(t);
    return;
  }
  const char *last = tl_sse_last_event_id(t->sse);
  t->next = last ? strtol(last, NULL, 10) + 1 : 1;
  t->timer =
      tl_timer_start(tl_req_app(req), (uint64_t)ms, (uint64_t)ms, tick, t);
  if (!t->timer) {
    tl_sse_end(t->sse);
    free(t);
  }
}


/* The app, without listening: main() runs it; its tests
 * (tests/testkit/test_example_hello.c) run it with talon's test client. */
static tl_app *hello_app(const tl_app_config *cfg) {
  tl_app *app = tl_app_new(cfg);
  if (!app)
    return NULL;
  tl_router *api = tl_router_new();
  if (!api || tl_app_get(app, "/", hello) ||
      tl_app_get(app, "/users/:id", user) ||
      tl_app_get(app, "/events", events) ||
      tl_router_get(api, "/health", health) ||
      tl_router_get(api, "/time", now) || tl_app_mount(app, "/api", api)) {
    tl_router_free(api); /* a no-op once mounted */
    tl_app_free(app);
    return NULL;
  }
  return app;
}

#ifndef EXAMPLE_NO_MAIN
static void on_listen(tl_app *app, const char *host, int port) {
  example_print_listening("hello", host, port);
}

int main(int argc, char **argv) {
  example_opts o;
  int rc = example_args(argc, argv, "hello", NULL, &o);
  if (rc >= 0)
    return rc;

  tl_app *app =
      hello_app(&(tl_app_config){.on_listen = on_listen, .workers = o.workers});
  if (!app)
    return 1;
  int redis_rc = example_redis(app, "hello");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }
  int err = tl_app_listen(app, o.host, o.port);
  if (err)
    fprintf(stderr, "hello: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
#endif
