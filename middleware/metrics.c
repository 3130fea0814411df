/* The metrics endpoint; the contract is in include/talon/mw/metrics.h. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw/metrics.h>

typedef struct metrics {
  char *path;
  char *prefix;
} metrics;

static void metrics_free(void *p) {
  metrics *m = p;
  if (m) {
    free(m->path);
    free(m->prefix);
  }
  free(m);
}

typedef struct out {
  char *p;
  size_t len, cap;
  bool oom;
} out;

static void add(out *o, const char *fmt, ...) {
  if (o->oom)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p ? o->p + o->len : NULL, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      o->oom = true;
      return;
    }
    if ((size_t)n < o->cap - o->len) {
      o->len += (size_t)n;
      return;
    }
    size_t cap = o->cap ? o->cap * 2 : 2048;
    while (cap < o->len + (size_t)n + 1)
      cap *= 2;
    char *np = realloc(o->p, cap);
    if (!np) {
      o->oom = true;
      return;
    }
    o->p = np;
    o->cap = cap;
  }
}

/* One metric without labels: HELP, TYPE and the sample. */
static void one(out *o, const char *pre, const char *name, const char *type,
                const char *help, uint64_t v) {
  add(o, "# HELP %s%s %s\n# TYPE %s%s %s\n%s%s %" PRIu64 "\n", pre, name, help,
      pre, name, type, pre, name, v);
}

static bool path_is(tl_req *req, const char *path) {
  const char *t = tl_req_target(req);
  size_t n = strlen(path);
  return strncmp(t, path, n) == 0 && (t[n] == '\0' || t[n] == '?');
}

static int metrics_run(tl_req *req, tl_res *res, void *ctx) {
  metrics *m = ctx;
  const char *method = tl_req_method(req);
  if ((strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) ||
      !path_is(req, m->path))
    return TL_NEXT;
  tl_app_stats st;
  tl_app_get_stats(tl_req_app(req), &st);
  const char *p = m->prefix;
  out o = {0};
  one(&o, p, "connections", "gauge",
      "Open TCP connections (HTTP and WebSocket).", st.connections);
  one(&o, p, "websockets", "gauge", "Open WebSockets.", st.websockets);
  add(&o,
      "# HELP %shttp_responses_total HTTP responses finished, by status "
      "class.\n# TYPE %shttp_responses_total counter\n",
      p, p);
  static const char *const cls[6] = {"other", "1xx", "2xx",
                                     "3xx",   "4xx", "5xx"};
  for (int i = 1; i <= 6; i++)
    add(&o, "%shttp_responses_total{class=\"%s\"} %" PRIu64 "\n", p, cls[i % 6],
        st.responses[i % 6]);
  one(&o, p, "http_responses_aborted_total", "counter",
      "HTTP responses the client left before their end.", st.responses_aborted);
  one(&o, p, "bytes_received_total", "counter", "Bytes read from sockets.",
      st.bytes_in);
  one(&o, p, "bytes_sent_total", "counter", "Bytes handed to sockets.",
      st.bytes_out);
  one(&o, p, "ws_messages_received_total", "counter",
      "WebSocket messages received.", st.ws_messages_in);
  one(&o, p, "ws_messages_sent_total", "counter",
      "WebSocket messages queued to sockets.", st.ws_messages_out);
  one(&o, p, "ws_messages_dropped_total", "counter",
      "WebSocket messages dropped for backpressure.", st.ws_dropped);
  one(&o, p, "ws_upgrades_refused_total", "counter",
      "WebSocket upgrade requests answered without a 101.",
      st.ws_upgrades_refused);
  one(&o, p, "pubsub_publishes_total", "counter", "Publishes.", st.publishes);
  if (o.oom) {
    free(o.p);
    return TL_ENOMEM; /* 500 */
  }
  tl_res_set_header(res, "Content-Type",
                    "text/plain; version=0.0.4; charset=utf-8");
  tl_res_set_header(res, "Cache-Control", "no-store");
  tl_res_send(res, o.p, o.len);
  free(o.p);
  return TL_DONE;
}

static bool prefix_ok(const char *s) {
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return false;
  }
  return true;
}

tl_middleware tl_metrics(const tl_metrics_options *opts) {
  tl_middleware mw = {.name = "metrics", .error = TL_EINVAL};
  const char *path = opts && opts->path ? opts->path : "/metrics";
  const char *prefix = opts && opts->prefix ? opts->prefix : "talon_";
  if (path[0] != '/' || strpbrk(path, "?# ") || !prefix_ok(prefix))
    return mw;
  metrics *m = calloc(1, sizeof *m);
  if (!m || !(m->path = strdup(path)) || !(m->prefix = strdup(prefix))) {
    metrics_free(m);
    mw.error = TL_ENOMEM;
    return mw;
  }
  mw.fn = metrics_run;
  mw.ctx = m;
  mw.free = metrics_free;
  mw.error = 0;
  return mw;
}
