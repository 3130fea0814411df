/* The test server of tests/sse: event streams (talon/mw/sse.h) with the
 * knobs the pytest suite needs, and counters at /stats.
 *
 *   sse_test_server PORT
 *
 *   GET  /stream?ka=MS&retry=MS   a stream kept in a list; its first event
 *                                 ("start") carries the Last-Event-ID or
 *                                 "none", and the results of invalid sends
 *   POST /broadcast?event=E&id=I  the body as data to every stream (no
 *                                 event/id when the parameter is absent)
 *   GET  /flood?n=N&size=S        N events of S bytes as fast as the
 *                                 client takes them: sends until
 *                                 backpressure, goes on from on_drain
 *   GET  /drop?n=N&size=S&max=B   N events of S bytes at once with
 *                                 max_buffered B: the excess is dropped
 *   GET  /end?n=N                 N events, then tl_sse_end
 *   GET  /stats                   counters (JSON)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon/mw/sse.h>

#define TEST_SERVER_NAME "sse_test_server"
#include "test_server.h"

#define MAX_STREAMS 64

static tl_sse *streams[MAX_STREAMS];
static int nstreams;
static struct {
  long opened, closed, ended, flood_sent, flood_backpressure, flood_drains,
      drop_accepted, drop_dropped;
} st;

static long qlong(tl_req *req, const char *name, long def) {
  const char *v = tl_req_query(req, name);
  return v && *v ? strtol(v, NULL, 10) : def;
}

static void forget(tl_sse *sse) {
  for (int i = 0; i < nstreams; i++)
    if (streams[i] == sse) {
      streams[i] = streams[--nstreams];
      return;
    }
}

static void stream_closed(tl_sse *sse, void *arg) {
  forget(sse);
  st.closed++;
  printf("stream closed%s\n", tl_app_stopping(arg) ? " by stop" : "");
  fflush(stdout);
}

static void stream(tl_req *req, tl_res *res) {
  if (nstreams == MAX_STREAMS) {
    tl_res_fail(res, 503, 0);
    return;
  }
  tl_res_header(res, "X-Kept", "yes"); /* headers set before are kept */
  tl_sse_options opt = {
      .keepalive_ms = (unsigned)qlong(req, "ka", 0),
      .retry_ms = (unsigned)qlong(req, "retry", 0),
      .on_close = stream_closed,
      .arg = tl_req_app(req),
  };
  tl_sse *sse = tl_sse_start(req, res, &opt);
  if (!sse)
    return;
  streams[nstreams++] = sse;
  st.opened++;
  const char *last = tl_sse_last_event_id(sse);
  char data[256];
  snprintf(data, sizeof data, "%s|%s|%s|%s", last ? last : "none",
           tl_err_name(tl_sse_send(sse, "bad\nname", "x", NULL)),
           tl_err_name(tl_sse_send(sse, NULL, "x", "bad\rid")),
           tl_err_name(tl_sse_comment(sse, "two\nlines")));
  tl_sse_send(sse, "start", data, NULL);
}

static void broadcast(tl_req *req, tl_res *res) {
  tl_slice body = tl_req_body(req);
  const char *event = tl_req_query(req, "event");
  const char *id = tl_req_query(req, "id");
  sbuf out = {0};
  sb_printf(&out, "[");
  for (int i = 0; i < nstreams; i++)
    sb_printf(&out, "%s%d", i ? "," : "",
              tl_sse_send_data(streams[i], event, body.ptr, body.len, id));
  sb_printf(&out, "]");
  tl_res_json(res, out.p);
  free(out.p);
}

/* ---- flood: sends as fast as the client takes them ---------------------- */

typedef struct {
  tl_sse *sse;
  long n, next, size;
  char *payload;
} flood_state;

static void flood_free(flood_state *f) {
  free(f->payload);
  free(f);
}

static void flood_more(tl_sse *sse, void *arg) {
  flood_state *f = arg;
  if (sse != NULL && f->next > 0)
    st.flood_drains++;
  while (f->next < f->n) {
    char id[24];
    snprintf(id, sizeof id, "%ld", f->next);
    int rc = tl_sse_send(f->sse, "flood", f->payload, id);
    if (rc == TL_SEND_DROPPED || rc < 0)
      return; /* not queued: sent again after the drain */
    f->next++;
    st.flood_sent++;
    if (rc == TL_SEND_BACKPRESSURE) {
      st.flood_backpressure++;
      return; /* on_drain goes on */
    }
  }
  tl_sse_end(f->sse);
  flood_free(f);
}

static void flood_closed(tl_sse *sse, void *arg) {
  flood_free(arg);
  st.closed++;
}

static void flood(tl_req *req, tl_res *res) {
  flood_state *f = calloc(1, sizeof *f);
  f->n = qlong(req, "n", 100);
  f->size = qlong(req, "size", 1000);
  f->payload = malloc((size_t)f->size + 1);
  memset(f->payload, 'f', (size_t)f->size);
  f->payload[f->size] = '\0';
  tl_sse_options opt = {
      .on_drain = flood_more,
      .on_close = flood_closed,
      .arg = f,
      .keepalive_ms = TL_SSE_NO_KEEPALIVE,
      .max_buffered = (size_t)64 << 20,
  };
  f->sse = tl_sse_start(req, res, &opt);
  if (!f->sse) {
    flood_free(f);
    return;
  }
  flood_more(NULL, f);
}

static void drop(tl_req *req, tl_res *res) {
  long n = qlong(req, "n", 100), size = qlong(req, "size", 16000);
  tl_sse_options opt = {.max_buffered = (size_t)qlong(req, "max", 256000)};
  tl_sse *sse = tl_sse_start(req, res, &opt);
  if (!sse)
    return;
  char *payload = malloc((size_t)size + 1);
  memset(payload, 'd', (size_t)size);
  payload[size] = '\0';
  for (long i = 0; i < n; i++) {
    char id[24];
    snprintf(id, sizeof id, "%ld", i);
    int rc = tl_sse_send(sse, NULL, payload, id);
    if (rc == TL_SEND_DROPPED)
      st.drop_dropped++;
    else if (rc > 0)
      st.drop_accepted++;
  }
  free(payload);
  tl_sse_end(sse);
}

static void end(tl_req *req, tl_res *res) {
  tl_sse *sse = tl_sse_start(req, res, NULL);
  if (!sse)
    return;
  long n = qlong(req, "n", 3);
  for (long i = 0; i < n; i++) {
    char data[32];
    snprintf(data, sizeof data, "event %ld", i);
    tl_sse_send(sse, NULL, data, NULL);
  }
  tl_sse_end(sse);
  st.ended++;
}

static void stats(tl_req *req, tl_res *res) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"open\":%d,\"opened\":%ld,\"closed\":%ld,\"ended\":%ld,"
           "\"flood_sent\":%ld,\"flood_backpressure\":%ld,"
           "\"flood_drains\":%ld,\"drop_accepted\":%ld,\"drop_dropped\":%ld}",
           nstreams, st.opened, st.closed, st.ended, st.flood_sent,
           st.flood_backpressure, st.flood_drains, st.drop_accepted,
           st.drop_dropped);
  tl_res_json(res, body);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen});
  if (!app)
    return 1;
  CHECK(tl_app_get(app, "/stream", stream));
  CHECK(tl_app_post(app, "/broadcast", broadcast));
  CHECK(tl_app_get(app, "/flood", flood));
  CHECK(tl_app_get(app, "/drop", drop));
  CHECK(tl_app_get(app, "/end", end));
  CHECK(tl_app_get(app, "/stats", stats));
  int err = tl_app_listen(app, "127.0.0.1", port);
  tl_app_free(app);
  return err ? 1 : 0;
}
