/* Server-sent events; the contract is in include/talon/mw/sse.h.
 *
 * A stream is a deferred response written with tl_res_write. Each event
 * is built whole in the stream's buffer and written with one call, so it
 * is one chunk and is either queued whole or dropped. One timer per
 * stream ticks at most once a second: it sends the keep-alive comment
 * and notices that the app is stopping (a deferred response would
 * otherwise hold the stop for shutdown_timeout_ms). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw/sse.h>

#define DEFAULT_KEEPALIVE_MS 15000
#define DEFAULT_MAX_BUFFERED (1024 * 1024)
#define TICK_MAX_MS 1000

struct tl_sse {
  tl_res *res;
  tl_app *app;
  tl_timer *timer;
  tl_sse_options opt;
  const char *last_id; /* request memory */
  char *buf;           /* the event being built */
  size_t len, cap;
  uint64_t last_out; /* loop time of the last output */
  bool over;         /* ended or closed: nothing more is sent */
  bool want_drain;
};

static void release(tl_sse *s) {
  s->over = true;
  if (s->timer)
    tl_timer_stop(s->timer);
  s->timer = NULL;
  free(s->buf);
  s->buf = NULL;
  s->len = s->cap = 0;
}

static void on_abort(tl_res *res, void *arg) {
  tl_sse *s = arg;
  if (s->over)
    return;
  release(s);
  if (s->opt.on_close)
    s->opt.on_close(s, s->opt.arg);
}

static void on_drain(tl_res *res, void *arg) {
  tl_sse *s = arg;
  if (s->over || !s->want_drain)
    return;
  s->want_drain = false;
  if (s->opt.on_drain)
    s->opt.on_drain(s, s->opt.arg);
}

static int reserve(tl_sse *s, size_t more) {
  if (s->len + more <= s->cap)
    return 0;
  size_t cap = s->cap ? s->cap : 256;
  while (cap < s->len + more)
    cap *= 2;
  char *p = realloc(s->buf, cap);
  if (!p)
    return TL_ENOMEM;
  s->buf = p;
  s->cap = cap;
  return 0;
}

static int put(tl_sse *s, const void *p, size_t n) {
  int err = reserve(s, n);
  if (!err) {
    if (n)
      memcpy(s->buf + s->len, p, n);
    s->len += n;
  }
  return err;
}

static int put_field(tl_sse *s, const char *name, const char *v, size_t n) {
  int err = put(s, name, strlen(name));
  if (!err)
    err = put(s, v, n);
  if (!err)
    err = put(s, "\n", 1);
  return err;
}

static bool one_line(const char *s) {
  return !s || !strpbrk(s, "\r\n");
}

/* Writes what was built as one piece, or drops it. */
static int emit(tl_sse *s) {
  size_t n = s->len;
  s->len = 0;
  if (s->over)
    return TL_ECLOSED;
  if (tl_res_buffered_amount(s->res) + n > s->opt.max_buffered) {
    s->want_drain = true;
    return TL_SEND_DROPPED;
  }
  int rc = tl_res_write(s->res, s->buf, n);
  if (rc == TL_SEND_BACKPRESSURE)
    s->want_drain = true;
  if (rc >= 0)
    s->last_out = tl_app_now(s->app);
  if (s->cap > 64 * 1024) { /* one large event must not pin its memory */
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
  }
  return rc;
}

int tl_sse_send_data(tl_sse *s, const char *event, const void *data, size_t len,
                     const char *id) {
  if (!s)
    return TL_EINVAL;
  if (s->over)
    return TL_ECLOSED;
  if (!one_line(event) || !one_line(id))
    return TL_EINVAL;
  s->len = 0;
  int err = 0;
  if (event)
    err = put_field(s, "event: ", event, strlen(event));
  /* A line ends at CRLF, CR or LF (the event stream grammar): each line
   * of the data becomes a data field, so the client joins them with LF. */
  const char *p = data, *end = p ? p + len : NULL;
  while (!err && p) {
    const char *q = p;
    while (q < end && *q != '\r' && *q != '\n')
      q++;
    err = put_field(s, "data: ", p, (size_t)(q - p));
    if (q == end)
      break;
    p = q + ((*q == '\r' && q + 1 < end && q[1] == '\n') ? 2 : 1);
  }
  if (!err && id)
    err = put_field(s, "id: ", id, strlen(id));
  if (!err)
    err = put(s, "\n", 1);
  if (err) {
    s->len = 0;
    return err;
  }
  return emit(s);
}

int tl_sse_send(tl_sse *s, const char *event, const char *data,
                const char *id) {
  return tl_sse_send_data(s, event, data, data ? strlen(data) : 0, id);
}

int tl_sse_comment(tl_sse *s, const char *text) {
  if (!s)
    return TL_EINVAL;
  if (s->over)
    return TL_ECLOSED;
  if (!one_line(text))
    return TL_EINVAL;
  s->len = 0;
  int err = put_field(s, ": ", text ? text : "", text ? strlen(text) : 0);
  return err ? err : emit(s);
}

int tl_sse_retry(tl_sse *s, unsigned ms) {
  if (!s)
    return TL_EINVAL;
  if (s->over)
    return TL_ECLOSED;
  char line[32];
  int n = snprintf(line, sizeof line, "retry: %u\n\n", ms);
  s->len = 0;
  int err = put(s, line, (size_t)n);
  return err ? err : emit(s);
}

const char *tl_sse_last_event_id(const tl_sse *s) {
  return s ? s->last_id : NULL;
}

tl_res *tl_sse_res(const tl_sse *s) {
  return s ? s->res : NULL;
}

void tl_sse_end(tl_sse *s) {
  if (!s || s->over)
    return;
  release(s);
  tl_res_end(s->res, NULL, 0);
}

static void tick(tl_timer *t, void *arg) {
  tl_sse *s = arg;
  if (s->over)
    return;
  if (tl_app_stopping(s->app)) {
    release(s);
    if (s->opt.on_close)
      s->opt.on_close(s, s->opt.arg);
    tl_res_end(s->res, NULL, 0);
    return;
  }
  unsigned ka = s->opt.keepalive_ms;
  if (ka == TL_SSE_NO_KEEPALIVE || tl_res_buffered_amount(s->res) > 0)
    return;
  if (tl_app_now(s->app) - s->last_out >= ka)
    tl_sse_comment(s, "keep-alive");
}

tl_sse *tl_sse_start(tl_req *req, tl_res *res, const tl_sse_options *options) {
  if (!req || !res || tl_res_finished(res))
    return NULL;
  if (tl_res_head_sent(res))
    return NULL; /* TL_ESTATE: the response stays the caller's */
  tl_sse *s = tl_req_alloc(req, sizeof *s);
  if (!s) {
    tl_res_fail(res, 500, TL_ENOMEM);
    return NULL;
  }
  memset(s, 0, sizeof *s);
  if (options)
    s->opt = *options;
  if (!s->opt.keepalive_ms)
    s->opt.keepalive_ms = DEFAULT_KEEPALIVE_MS;
  if (!s->opt.max_buffered)
    s->opt.max_buffered = DEFAULT_MAX_BUFFERED;
  s->res = res;
  s->app = tl_req_app(req);
  s->last_out = tl_app_now(s->app);
  const char *last = tl_req_header(req, "last-event-id");
  if (last) {
    size_t n = strlen(last) + 1;
    char *copy = tl_req_alloc(req, n);
    if (copy)
      memcpy(copy, last, n);
    s->last_id = copy;
  }
  int st = tl_res_get_status(res);
  if (st < 200 || st > 299)
    tl_res_status(res, 200);
  unsigned period =
      s->opt.keepalive_ms < TICK_MAX_MS ? s->opt.keepalive_ms : TICK_MAX_MS;
  if (tl_res_set_header(res, "Content-Type", "text/event-stream") ||
      tl_res_set_header(res, "Cache-Control", "no-cache") ||
      tl_res_set_header(res, "X-Accel-Buffering", "no") ||
      !(s->timer = tl_timer_start(s->app, period, period, tick, s))) {
    tl_res_fail(res, 500, TL_ENOMEM);
    return NULL;
  }
  tl_res_defer(res, on_abort, s);
  tl_res_on_drain(res, on_drain, s);
  int rc = s->opt.retry_ms ? tl_sse_retry(s, s->opt.retry_ms)
                           : tl_res_write(res, NULL, 0); /* the head */
  if (rc < 0) {
    if (!s->over)
      release(s);
    return NULL;
  }
  return s;
}
