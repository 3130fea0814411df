/* talon — access log middleware (contract in include/talon/mw/logger.h).
 *
 * The file sink must never block the loop, and we may not make a shared
 * descriptor (stdout) non-blocking: its flags belong to the whole open file
 * description, other processes included. So lines are appended to an
 * in-memory queue on the loop thread and written by one job at a time on
 * the libuv threadpool (uv_queue_work). The job waits for POLLOUT with a
 * short timeout before each write of at most PIPE_BUF bytes, which a pipe
 * or tty that polled writable takes without blocking; when the sink makes
 * no progress for that long the job returns and the queue waits for the
 * next line to try again. That keeps at most one threadpool thread busy,
 * and lets the loop end on shutdown (a job in flight lasts ~100 ms at
 * most; no handle is ever left open: the job is a request, not a handle,
 * and the middleware is freed after the loop is closed). The threadpool
 * is why this file includes <uv.h>: talon's public API has no worker
 * threads of its own.
 *
 * WebSocket sessions: middleware never sees a socket, so the logger
 * registers an observer on the app (tl_app_ws_observe) the first time it
 * sees a request. The observer's open gets the upgrade request, whose
 * strings die with the call: what the close line needs (target, path,
 * address, an id that pairs the two lines) is copied into a record kept
 * in a small hash table keyed by the socket pointer, and removed at
 * close. */
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/logger.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define DEFAULT_MAX_QUEUE (1024 * 1024)
#define POLL_MS 100
#define FINAL_FLUSH_MS 500
#define WRITE_CHUNK 4096 /* PIPE_BUF on Linux */

typedef struct buf {
  char *data;
  size_t len, cap;
} buf;

typedef struct logger {
  tl_log_format format;
  int utc;
  tl_logger_write_fn write;
  void *write_arg;
  int fd;
  size_t max_queue;
  uv_loop_t *loop;
  buf line;            /* scratch for building one line (loop thread) */
  buf pending;         /* lines not yet handed to the writer (loop thread) */
  buf inflight;        /* the writer's batch; the worker owns it while busy */
  size_t inflight_off; /* bytes of inflight already written */
  size_t busy_off;     /* inflight_off when the job started */
  bool busy;
  bool progress; /* worker: wrote something */
  int werr;      /* worker: errno of a failed write, 0 if none */
  uv_work_t work;
  uint64_t lines, dropped, unreported, write_errors;
  /* WebSocket sessions (loop thread). */
  bool observing;         /* tried to register the observer */
  struct wsrec **wsmap;   /* buckets, chained */
  size_t wsmap_size, nws; /* buckets (a power of two), records */
  uint64_t ws_ids;        /* the last session id given */
} logger;

/* One open WebSocket: what its close line needs. */
typedef struct wsrec {
  struct wsrec *next;
  const tl_ws *ws;
  uint64_t id;
  char remote[64];
  const char *path; /* into text, after the target */
  char text[];      /* target NUL path NUL */
} wsrec;

typedef struct reqlog {
  logger *lg;
  uint64_t start_ns;
  struct timespec wall;
  char remote[64];
} reqlog;

/* ---- buffers --------------------------------------------------------- */

static int buf_reserve(buf *b, size_t extra) {
  if (b->len + extra <= b->cap)
    return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d)
    return TL_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

static int buf_add(buf *b, const void *p, size_t n) {
  if (buf_reserve(b, n + 1))
    return TL_ENOMEM;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static int buf_str(buf *b, const char *s) {
  return buf_add(b, s, strlen(s));
}

static int buf_printf(buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int buf_printf(buf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    return TL_EINVAL;
  return buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static size_t count_lines(const char *p, size_t n) {
  size_t c = 0;
  for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++)
    c++;
  return c;
}

/* ---- escaping -------------------------------------------------------- */

/* Text formats: like Apache's log escaping, so a header cannot forge a
 * line or a field. */
static void esc_text(buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  if (!s || !*s) {
    buf_str(b, "-");
    return;
  }
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      char e[2] = {'\\', (char)*p};
      buf_add(b, e, 2);
    } else if (*p < 0x20 || *p >= 0x7f) {
      char e[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
      buf_add(b, e, 4);
    } else {
      buf_add(b, p, 1);
    }
  }
}

/* Length of the valid UTF-8 sequence at p (n bytes left), 0 if invalid
 * (overlongs, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  size_t len;
  unsigned cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

/* A JSON string value (with quotes), or null for NULL. */
static void esc_json(buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  if (!s) {
    buf_str(b, "null");
    return;
  }
  buf_add(b, "\"", 1);
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  while (n) {
    unsigned c = *p;
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      buf_add(b, e, 2);
    } else if (c == '\n') {
      buf_str(b, "\\n");
    } else if (c == '\r') {
      buf_str(b, "\\r");
    } else if (c == '\t') {
      buf_str(b, "\\t");
    } else if (c < 0x20 || c == 0x7f) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      buf_add(b, e, 6);
    } else if (c >= 0x80) {
      size_t l = utf8_len(p, n);
      if (l) {
        buf_add(b, p, l);
        p += l;
        n -= l;
        continue;
      }
      buf_str(b, "\\ufffd");
    } else {
      buf_add(b, p, 1);
    }
    p++;
    n--;
  }
  buf_add(b, "\"", 1);
}

/* ---- time ------------------------------------------------------------ */

static const char *const MONTHS[12] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};

/* Broken-down time and UTC offset in seconds. */
static void split_time(const logger *lg, time_t t, struct tm *tm, long *off) {
  if (lg->utc || !localtime_r(&t, tm)) {
    gmtime_r(&t, tm);
    *off = 0;
    return;
  }
  *off = tm->tm_gmtoff;
}

/* [10/Oct/2000:13:55:36 -0700] */
static void clf_time(buf *b, const logger *lg, const struct timespec *ts) {
  struct tm tm;
  long off;
  split_time(lg, ts->tv_sec, &tm, &off);
  char sign = off < 0 ? '-' : '+';
  long a = off < 0 ? -off : off;
  buf_printf(b, "[%02d/%s/%04d:%02d:%02d:%02d %c%02ld%02ld]", tm.tm_mday,
             MONTHS[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec, sign, a / 3600, (a / 60) % 60);
}

/* 2000-10-10T13:55:36.123-07:00 */
static void iso_time(buf *b, const logger *lg, const struct timespec *ts) {
  struct tm tm;
  long off;
  split_time(lg, ts->tv_sec, &tm, &off);
  char sign = off < 0 ? '-' : '+';
  long a = off < 0 ? -off : off;
  buf_printf(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03ld%c%02ld:%02ld\"",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ts->tv_nsec / 1000000, sign, a / 3600,
             (a / 60) % 60);
}

/* ---- the file writer ------------------------------------------------- */

/* While a job runs, the worker moves inflight_off: count from where it
 * started instead of reading it. */
static size_t queued_bytes(const logger *lg) {
  size_t off = lg->busy ? lg->busy_off : lg->inflight_off;
  return lg->pending.len + lg->inflight.len - off;
}

/* Writes from `b` at *off to fd until done, an error, or no progress for
 * `poll_ms`. Returns 0 or an errno. Sets *progress when bytes went out. */
static int write_some(int fd, const buf *b, size_t *off, int poll_ms,
                      bool *progress) {
  while (*off < b->len) {
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r = poll(&pfd, 1, poll_ms);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return errno;
    if (r == 0)
      return 0; /* stalled: try again later */
    if (pfd.revents & POLLNVAL)
      return EBADF;
    size_t n = b->len - *off;
    if (n > WRITE_CHUNK) {
      /* Whole lines where possible, so another writer to the same sink
       * cannot land inside one of ours. */
      n = WRITE_CHUNK;
      const char *nl = memrchr(b->data + *off, '\n', n);
      if (nl)
        n = (size_t)(nl - (b->data + *off)) + 1;
    }
    ssize_t w = write(fd, b->data + *off, n);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return errno;
    }
    *off += (size_t)w;
    *progress = true;
  }
  return 0;
}

static void work_cb(uv_work_t *w) {
  logger *lg = w->data;
  lg->progress = false;
  lg->werr = write_some(lg->fd, &lg->inflight, &lg->inflight_off, POLL_MS,
                        &lg->progress);
}

static void kick(logger *lg);

static void after_work_cb(uv_work_t *w, int status) {
  logger *lg = w->data;
  bool failed = lg->werr != 0;
  lg->busy = false;
  if (failed) {
    /* The sink failed (EPIPE: no reader...): what it did not take is
     * dropped and counted; later lines try again. */
    lg->write_errors++;
    size_t n = count_lines(lg->inflight.data + lg->inflight_off,
                           lg->inflight.len - lg->inflight_off);
    lg->dropped += n;
    lg->unreported += n;
    lg->inflight.len = lg->inflight_off = 0;
    lg->werr = 0;
  }
  if (lg->inflight_off == lg->inflight.len)
    lg->inflight.len = lg->inflight_off = 0;
  /* No progress: the sink is stuck; the next line retries. Otherwise
   * (progress, or a failure that emptied the batch) go on while anything
   * is queued. */
  if (lg->progress || failed)
    kick(lg);
}

/* Hands queued bytes to the threadpool writer unless it is busy. */
static void kick(logger *lg) {
  if (lg->busy || !lg->loop)
    return;
  if (lg->pending.len) {
    if (lg->inflight_off == lg->inflight.len) {
      buf t = lg->inflight;
      lg->inflight = lg->pending;
      lg->pending = t;
      lg->pending.len = 0;
      lg->inflight_off = 0;
    } else {
      size_t rest = lg->inflight.len - lg->inflight_off;
      memmove(lg->inflight.data, lg->inflight.data + lg->inflight_off, rest);
      lg->inflight.len = rest;
      lg->inflight_off = 0;
      if (buf_add(&lg->inflight, lg->pending.data, lg->pending.len) == 0)
        lg->pending.len = 0;
    }
  }
  if (lg->inflight_off == lg->inflight.len)
    return;
  lg->work.data = lg;
  lg->busy_off = lg->inflight_off;
  if (uv_queue_work(lg->loop, &lg->work, work_cb, after_work_cb) == 0)
    lg->busy = true;
}

static void dropped_notice(logger *lg, buf *b) {
  b->len = 0;
  if (lg->format == TL_LOG_JSON) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    buf_str(b, "{\"time\":");
    iso_time(b, lg, &ts);
    buf_printf(b,
               ",\"event\":\"lines_dropped\",\"dropped\":%llu,"
               "\"message\":\"talon logger: %llu lines dropped\"}\n",
               (unsigned long long)lg->unreported,
               (unsigned long long)lg->unreported);
  } else {
    buf_printf(b, "talon logger: %llu lines dropped\n",
               (unsigned long long)lg->unreported);
  }
}

static void emit(logger *lg, const char *line, size_t len) {
  if (lg->write) {
    lg->lines++;
    lg->write(line, len, lg->write_arg);
    return;
  }
  size_t q = queued_bytes(lg);
  if (lg->unreported) {
    buf notice = {0};
    dropped_notice(lg, &notice);
    if (notice.data && q + notice.len + len <= lg->max_queue &&
        buf_add(&lg->pending, notice.data, notice.len) == 0) {
      q += notice.len;
      lg->unreported = 0;
    }
    free(notice.data);
  }
  if (lg->unreported || q + len > lg->max_queue ||
      buf_add(&lg->pending, line, len)) {
    lg->dropped++;
    lg->unreported++;
    kick(lg); /* a stalled writer retries on every line */
    return;
  }
  lg->lines++;
  kick(lg);
}

/* ---- WebSocket sessions --------------------------------------------- */

static size_t ws_hash(const tl_ws *ws, size_t size) {
  uint64_t h = (uint64_t)(uintptr_t)ws * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 32) & (size - 1);
}

/* Adds `r`; false when the table cannot grow (the record is not kept). */
static bool ws_put(logger *lg, wsrec *r) {
  if (lg->nws + 1 > lg->wsmap_size / 4 * 3) {
    size_t size = lg->wsmap_size ? lg->wsmap_size * 2 : 64;
    wsrec **m = calloc(size, sizeof *m);
    if (!m)
      return false;
    for (size_t i = 0; i < lg->wsmap_size; i++) {
      wsrec *e = lg->wsmap[i];
      while (e) {
        wsrec *next = e->next;
        size_t h = ws_hash(e->ws, size);
        e->next = m[h];
        m[h] = e;
        e = next;
      }
    }
    free(lg->wsmap);
    lg->wsmap = m;
    lg->wsmap_size = size;
  }
  size_t h = ws_hash(r->ws, lg->wsmap_size);
  r->next = lg->wsmap[h];
  lg->wsmap[h] = r;
  lg->nws++;
  return true;
}

/* Removes and returns the record of `ws`, or NULL. */
static wsrec *ws_take(logger *lg, const tl_ws *ws) {
  if (!lg->wsmap_size)
    return NULL;
  for (wsrec **pp = &lg->wsmap[ws_hash(ws, lg->wsmap_size)]; *pp;
       pp = &(*pp)->next) {
    wsrec *r = *pp;
    if (r->ws == ws) {
      *pp = r->next;
      lg->nws--;
      return r;
    }
  }
  return NULL;
}

/* The part both ws lines start with. Text:
 *   127.0.0.1 - - [time] "WS /chat?x=1" EVENT id=N
 * JSON: {"time":...,"type":"ws","event":"EVENT","id":N,"remote_addr":...,
 *        "target":...,"path":... */
static void ws_line_start(logger *lg, buf *b, const char *event, const wsrec *r,
                          const char *remote) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  if (lg->format == TL_LOG_JSON) {
    buf_str(b, "{\"time\":");
    iso_time(b, lg, &now);
    buf_printf(b, ",\"type\":\"ws\",\"event\":\"%s\",\"id\":", event);
    if (r)
      buf_printf(b, "%llu", (unsigned long long)r->id);
    else
      buf_str(b, "null");
    buf_str(b, ",\"remote_addr\":");
    esc_json(b, remote);
    buf_str(b, ",\"target\":");
    esc_json(b, r ? r->text : NULL);
    buf_str(b, ",\"path\":");
    esc_json(b, r ? r->path : NULL);
    return;
  }
  esc_text(b, remote);
  buf_str(b, " - - ");
  clf_time(b, lg, &now);
  buf_str(b, " \"WS ");
  esc_text(b, r ? r->text : NULL);
  buf_printf(b, "\" %s id=", event);
  if (r)
    buf_printf(b, "%llu", (unsigned long long)r->id);
  else
    buf_str(b, "-");
}

static void ws_line_emit(logger *lg, buf *b) {
  /* A failed append leaves a line without its '\n'. */
  if (b->len && b->data[b->len - 1] == '\n') {
    emit(lg, b->data, b->len);
    return;
  }
  lg->dropped++;
  if (!lg->write)
    lg->unreported++;
}

static void ws_open(tl_ws *ws, tl_req *req, void *arg) {
  logger *lg = arg;
  const char *target = tl_req_target(req);
  const char *path = tl_req_path(req);
  size_t tl = strlen(target), pl = strlen(path);
  wsrec *r = malloc(sizeof *r + tl + pl + 2);
  char remote[64];
  if (tl_req_remote_address(req, remote, sizeof remote))
    strcpy(remote, "-");
  if (r) {
    r->ws = ws;
    r->id = ++lg->ws_ids;
    memcpy(r->remote, remote, sizeof remote);
    memcpy(r->text, target, tl + 1);
    memcpy(r->text + tl + 1, path, pl + 1);
    r->path = r->text + tl + 1;
    if (!ws_put(lg, r)) {
      free(r);
      r = NULL;
    }
  }
  buf *b = &lg->line;
  b->len = 0;
  if (buf_reserve(b, 512) == 0) {
    ws_line_start(lg, b, "open", r, remote);
    const char *origin = tl_req_header(req, "Origin");
    const char *ua = tl_req_header(req, "User-Agent");
    if (lg->format == TL_LOG_JSON) {
      buf_str(b, ",\"origin\":");
      esc_json(b, origin);
      buf_str(b, ",\"user_agent\":");
      esc_json(b, ua);
      buf_str(b, "}\n");
    } else {
      if (lg->format == TL_LOG_COMBINED) {
        buf_str(b, " \"");
        esc_text(b, origin);
        buf_str(b, "\" \"");
        esc_text(b, ua);
        buf_str(b, "\"");
      }
      buf_str(b, "\n");
    }
  }
  ws_line_emit(lg, b);
}

static void ws_close(tl_ws *ws, int code, void *arg) {
  logger *lg = arg;
  wsrec *r = ws_take(lg, ws);
  char remote[64];
  if (r)
    memcpy(remote, r->remote, sizeof remote);
  else if (tl_ws_remote_address(ws, remote, sizeof remote))
    strcpy(remote, "-");
  tl_ws_stats st;
  tl_ws_get_stats(ws, &st);
  uint64_t now = tl_app_now(tl_ws_app(ws));
  unsigned long long ms =
      now > st.opened_ms ? (unsigned long long)(now - st.opened_ms) : 0;
  buf *b = &lg->line;
  b->len = 0;
  if (buf_reserve(b, 512) == 0) {
    ws_line_start(lg, b, "close", r, remote);
    if (lg->format == TL_LOG_JSON)
      buf_printf(b,
                 ",\"code\":%d,\"duration_ms\":%llu,\"messages_in\":%llu,"
                 "\"messages_out\":%llu,\"bytes_in\":%llu,"
                 "\"bytes_out\":%llu}\n",
                 code, ms, (unsigned long long)st.messages_in,
                 (unsigned long long)st.messages_out,
                 (unsigned long long)st.bytes_in,
                 (unsigned long long)st.bytes_out);
    else
      buf_printf(b,
                 " code=%d messages_in=%llu messages_out=%llu bytes_in=%llu"
                 " bytes_out=%llu duration_ms=%llu\n",
                 code, (unsigned long long)st.messages_in,
                 (unsigned long long)st.messages_out,
                 (unsigned long long)st.bytes_in,
                 (unsigned long long)st.bytes_out, ms);
  }
  free(r);
  ws_line_emit(lg, b);
}

static void ws_free_all(logger *lg) {
  for (size_t i = 0; i < lg->wsmap_size; i++) {
    wsrec *e = lg->wsmap[i];
    while (e) {
      wsrec *next = e->next;
      free(e);
      e = next;
    }
  }
  free(lg->wsmap);
  lg->wsmap = NULL;
  lg->wsmap_size = lg->nws = 0;
}

/* ---- the middleware -------------------------------------------------- */

static void on_finish(tl_res *res, void *arg) {
  reqlog *rl = arg;
  logger *lg = rl->lg;
  tl_req *req = tl_res_req(res);
  buf *b = &lg->line;
  double ms = (double)(tl_hrtime() - rl->start_ns) / 1e6;
  uint64_t bytes = tl_res_body_bytes(res);
  int status = tl_res_get_status(res);
  bool aborted = tl_res_aborted(res);
  const char *proto = tl_req_version(req) == 10 ? "HTTP/1.0" : "HTTP/1.1";
  const char *referer = tl_req_header(req, "Referer");
  const char *ua = tl_req_header(req, "User-Agent");
  b->len = 0;
  if (buf_reserve(b, 512))
    goto fail;
  if (lg->format == TL_LOG_JSON) {
    buf_str(b, "{\"time\":");
    iso_time(b, lg, &rl->wall);
    buf_str(b, ",\"remote_addr\":");
    esc_json(b, rl->remote);
    buf_str(b, ",\"method\":");
    esc_json(b, tl_req_method(req));
    buf_str(b, ",\"target\":");
    esc_json(b, tl_req_target(req));
    buf_str(b, ",\"path\":");
    esc_json(b, tl_req_path(req));
    buf_printf(b,
               ",\"protocol\":\"%s\",\"status\":%d,\"bytes\":%llu,"
               "\"duration_ms\":%.3f,\"referer\":",
               proto, status, (unsigned long long)bytes, ms);
    esc_json(b, referer);
    buf_str(b, ",\"user_agent\":");
    esc_json(b, ua);
    buf_str(b, aborted ? ",\"aborted\":true}\n" : ",\"aborted\":false}\n");
  } else {
    esc_text(b, rl->remote);
    buf_str(b, " - - ");
    clf_time(b, lg, &rl->wall);
    buf_str(b, " \"");
    esc_text(b, tl_req_method(req));
    buf_str(b, " ");
    esc_text(b, tl_req_target(req));
    buf_printf(b, " %s\" %d ", proto, status);
    if (bytes)
      buf_printf(b, "%llu", (unsigned long long)bytes);
    else
      buf_str(b, "-");
    if (lg->format == TL_LOG_COMBINED) {
      buf_str(b, " \"");
      esc_text(b, referer);
      buf_str(b, "\" \"");
      esc_text(b, ua);
      buf_str(b, "\"");
    }
    buf_printf(b, " %.3f%s\n", ms, aborted ? " aborted" : "");
  }
  /* A failed append above leaves a line without its '\n'. */
  if (b->len && b->data[b->len - 1] == '\n') {
    emit(lg, b->data, b->len);
    return;
  }
fail:
  lg->dropped++;
  if (!lg->write)
    lg->unreported++;
}

static int logger_fn(tl_req *req, tl_res *res, void *ctx) {
  logger *lg = ctx;
  if (!lg->loop)
    lg->loop = tl_app_loop(tl_req_app(req));
  if (!lg->observing) {
    /* Once: on failure (8 observers already) sockets are just not
     * logged. Sockets opened from now on are seen, including the one
     * this request may be upgrading to. */
    lg->observing = true;
    tl_ws_observer obs = {.open = ws_open, .close = ws_close, .arg = lg};
    (void)tl_app_ws_observe(tl_req_app(req), &obs);
  }
  reqlog *rl = tl_req_alloc(req, sizeof *rl);
  if (!rl) {
    lg->dropped++;
    return TL_NEXT; /* logging must not fail the request */
  }
  rl->lg = lg;
  rl->start_ns = tl_hrtime();
  clock_gettime(CLOCK_REALTIME, &rl->wall);
  if (tl_req_remote_address(req, rl->remote, sizeof rl->remote))
    strcpy(rl->remote, "-");
  if (tl_res_on_finish(res, on_finish, rl))
    lg->dropped++;
  return TL_NEXT;
}

static void logger_free(void *ctx) {
  logger *lg = ctx;
  if (!lg)
    return;
  ws_free_all(lg);
  if (lg->busy)
    return; /* a job still owns the buffers: leak rather than race */
  /* The loop is gone: a last, bounded, synchronous attempt. */
  if (lg->pending.len) {
    size_t rest = lg->inflight.len - lg->inflight_off;
    memmove(lg->inflight.data, lg->inflight.data + lg->inflight_off, rest);
    lg->inflight.len = rest;
    lg->inflight_off = 0;
    buf_add(&lg->inflight, lg->pending.data, lg->pending.len);
  }
  if (!lg->write && lg->inflight_off < lg->inflight.len) {
    bool progress = false;
    write_some(lg->fd, &lg->inflight, &lg->inflight_off, FINAL_FLUSH_MS,
               &progress);
  }
  free(lg->line.data);
  free(lg->pending.data);
  free(lg->inflight.data);
  free(lg);
}

tl_middleware tl_logger(const tl_logger_options *opts) {
  tl_middleware mw = {.fn = NULL, .ctx = NULL, .free = NULL, .name = "logger"};
  tl_logger_options o = {0};
  if (opts)
    o = *opts;
  logger *lg = calloc(1, sizeof *lg);
  if (!lg) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  lg->format = o.format <= TL_LOG_JSON ? o.format : TL_LOG_COMBINED;
  lg->utc = o.utc;
  lg->write = o.write;
  lg->write_arg = o.write_arg;
  lg->fd = fileno(o.file ? o.file : stdout);
  lg->max_queue = o.max_queue_bytes ? o.max_queue_bytes : DEFAULT_MAX_QUEUE;
  mw.fn = logger_fn;
  mw.ctx = lg;
  mw.free = logger_free;
  return mw;
}

int tl_logger_get_stats(const tl_middleware *mw, tl_logger_stats *out) {
  if (!mw || !out || mw->fn != logger_fn || !mw->ctx)
    return TL_EINVAL;
  const logger *lg = mw->ctx;
  out->lines = lg->lines;
  out->dropped = lg->dropped;
  out->write_errors = lg->write_errors;
  out->queued_bytes = lg->write ? 0 : queued_bytes(lg);
  return 0;
}
