/* talon — access log middleware (contract in include/talon/mw/logger.h).
 *
 * The file sink must never block a loop, and we may not make a shared
 * descriptor (stdout) non-blocking: its flags belong to the whole open file
 * description, other processes included. So lines are appended to an
 * in-memory queue and written by one job at a time on the libuv
 * threadpool (uv_queue_work). The job waits for POLLOUT with a short
 * timeout before each write of at most PIPE_BUF bytes of whole lines,
 * which a pipe or tty that polled writable takes without blocking; when
 * the sink makes no progress for that long the job returns and the queue
 * waits for the next line to try again. That keeps at most one threadpool
 * thread busy, and lets the loops end on shutdown (a job in flight lasts
 * ~100 ms at most; no handle is ever left open: the job is a request, not
 * a handle, and the middleware is freed after the loops are closed). The
 * threadpool is why this file includes <uv.h>: talon's public API has no
 * worker threads of its own.
 *
 * Workers. Requests of different connections run on different threads
 * at once, so the logger's state is split in two:
 *  - per worker, a "lane" (allocated by that worker at its first request,
 *    in an array sized with tl_app_workers()): the loop to queue writer
 *    jobs on, the scratch buffer a line is built in, the WebSocket
 *    observer (registered on that worker at its first request: after
 *    listen, observers are per worker) and its map of open sockets. Only
 *    that worker's thread touches its lane.
 *  - shared, under one mutex: the queue (pending lines and the writer's
 *    batch) and whether a writer job runs. A lane appends a whole line
 *    under the mutex (a memcpy) and, when no job runs, queues one on its
 *    own loop; the job's completion runs on that loop and queues the next
 *    one there while lines keep coming. So there is one writer at a time
 *    for the whole app: the descriptor gets whole lines in queue order,
 *    never two writers' pieces of one line, and max_queue_bytes bounds
 *    the app's queue, not each worker's.
 * The counters are atomics (tl_logger_get_stats may run anywhere), and
 * the custom `write` sink is called under a mutex of its own, so it sees
 * one line at a time.
 *
 * WebSocket sessions: middleware never sees a socket, so the logger
 * registers an observer (tl_app_ws_observe) the first time a worker sees
 * a request. The observer's open gets the upgrade request, whose strings
 * die with the call: what the close line needs (target, path, address,
 * an id that pairs the two lines) is copied into a record kept in the
 * lane's small hash table keyed by the socket pointer, and removed at
 * close (a socket opens and closes on one worker). Ids are app-wide. */
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/logger.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
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

typedef struct lane lane;

typedef struct logger {
  /* Read-only after tl_logger(). */
  tl_log_format format;
  int utc;
  tl_logger_write_fn write;
  void *write_arg;
  int fd;
  size_t max_queue; /* for the whole app */
  /* The queue and its writer (`lock`). */
  pthread_mutex_t lock;
  buf pending;         /* lines not yet handed to the writer */
  buf inflight;        /* the writer's batch; the job owns it while busy */
  size_t inflight_off; /* bytes of inflight already written (the job's
                          progress lands here when it completes) */
  bool busy;
  /* Written by the job only, read at its completion. */
  size_t job_off;      /* where the job got to in inflight */
  bool progress;       /* wrote something */
  int werr;            /* errno of a failed write, 0 if none */
  uint64_t unreported; /* dropped lines not yet announced in the sink */
  /* The `write` sink, one line at a time. */
  pthread_mutex_t sink_lock;
  /* Counters for tl_logger_get_stats, from any thread. */
  _Atomic uint64_t lines, dropped, write_errors;
  _Atomic uint64_t ws_ids; /* the last WebSocket session id given */
  /* Lanes, one per worker: the array is made once (lanes_lock), each
   * lane by its own worker. */
  pthread_mutex_t lanes_lock;
  _Atomic(lane **) lanes;
  unsigned nlanes;
  tl_app *app; /* set by attach: the app whose server lines it takes */
} logger;

/* What one worker keeps to itself. */
struct lane {
  logger *lg;
  uv_loop_t *loop;      /* this worker's, for writer jobs */
  uv_work_t work;       /* the writer job, when this lane queued it */
  buf line;             /* scratch for building one line */
  bool observing;       /* tried to register the observer */
  struct wsrec **wsmap; /* buckets, chained */
  size_t wsmap_size, nws;
};

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
  lane *ln;
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

static void count(_Atomic uint64_t *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Under the lock. While a job runs, what it wrote is not counted off
 * yet. */
static size_t queued_bytes(const logger *lg) {
  return lg->pending.len + lg->inflight.len - lg->inflight_off;
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
       * (another process) cannot land inside one of ours. */
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

/* On the threadpool. The job owns inflight and the fields it writes
 * while `busy`: nobody else touches them until its completion. */
static void work_cb(uv_work_t *w) {
  logger *lg = ((lane *)w->data)->lg;
  size_t off = lg->inflight_off; /* only the job's completion moves it */
  bool progress = false;
  lg->werr = write_some(lg->fd, &lg->inflight, &off, POLL_MS, &progress);
  lg->job_off = off;
  lg->progress = progress;
}

static void kick(lane *ln);

/* On the loop of the lane that queued the job. */
static void after_work_cb(uv_work_t *w, int status) {
  lane *ln = w->data;
  logger *lg = ln->lg;
  pthread_mutex_lock(&lg->lock);
  bool failed = lg->werr != 0;
  lg->busy = false;
  lg->inflight_off = lg->job_off;
  if (failed) {
    /* The sink failed (EPIPE: no reader...): what it did not take is
     * dropped and counted; later lines try again. */
    count(&lg->write_errors);
    size_t n = count_lines(lg->inflight.data + lg->inflight_off,
                           lg->inflight.len - lg->inflight_off);
    atomic_fetch_add_explicit(&lg->dropped, n, memory_order_relaxed);
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
    kick(ln);
  pthread_mutex_unlock(&lg->lock);
}

/* Hands queued bytes to a threadpool job on `ln`'s loop unless one runs
 * already (on any lane's loop). Under the lock, on `ln`'s thread. */
static void kick(lane *ln) {
  logger *lg = ln->lg;
  if (lg->busy || !ln->loop)
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
  ln->work.data = ln;
  if (uv_queue_work(ln->loop, &ln->work, work_cb, after_work_cb) == 0)
    lg->busy = true;
}

/* The notice of lines dropped, into `b`. Under the lock. */
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

/* A whole line (ending in '\n') from lane `ln`'s thread. */
static void emit(lane *ln, const char *line, size_t len) {
  logger *lg = ln->lg;
  if (lg->write) {
    count(&lg->lines);
    pthread_mutex_lock(&lg->sink_lock);
    lg->write(line, len, lg->write_arg);
    pthread_mutex_unlock(&lg->sink_lock);
    return;
  }
  pthread_mutex_lock(&lg->lock);
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
    count(&lg->dropped);
    lg->unreported++;
    kick(ln); /* a stalled writer retries on every line */
    pthread_mutex_unlock(&lg->lock);
    return;
  }
  count(&lg->lines);
  kick(ln);
  pthread_mutex_unlock(&lg->lock);
}

/* A line that could not be built (out of memory). */
static void lost(logger *lg) {
  count(&lg->dropped);
  if (!lg->write) {
    pthread_mutex_lock(&lg->lock);
    lg->unreported++;
    pthread_mutex_unlock(&lg->lock);
  }
}

/* ---- WebSocket sessions --------------------------------------------- */

static size_t ws_hash(const tl_ws *ws, size_t size) {
  uint64_t h = (uint64_t)(uintptr_t)ws * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 32) & (size - 1);
}

/* Adds `r`; false when the table cannot grow (the record is not kept). */
static bool ws_put(lane *lg, wsrec *r) {
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
static wsrec *ws_take(lane *lg, const tl_ws *ws) {
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
static void ws_line_start(const logger *lg, buf *b, const char *event,
                          const wsrec *r, const char *remote) {
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

static void ws_line_emit(lane *ln, buf *b) {
  /* A failed append leaves a line without its '\n'. */
  if (b->len && b->data[b->len - 1] == '\n') {
    emit(ln, b->data, b->len);
    return;
  }
  lost(ln->lg);
}

static void ws_open(tl_ws *ws, tl_req *req, void *arg) {
  lane *ln = arg;
  logger *lg = ln->lg;
  const char *target = tl_req_target(req);
  const char *path = tl_req_path(req);
  size_t tl = strlen(target), pl = strlen(path);
  wsrec *r = malloc(sizeof *r + tl + pl + 2);
  char remote[64];
  if (tl_req_remote_address(req, remote, sizeof remote))
    strcpy(remote, "-");
  if (r) {
    r->ws = ws;
    r->id = atomic_fetch_add_explicit(&lg->ws_ids, 1, memory_order_relaxed) + 1;
    memcpy(r->remote, remote, sizeof remote);
    memcpy(r->text, target, tl + 1);
    memcpy(r->text + tl + 1, path, pl + 1);
    r->path = r->text + tl + 1;
    if (!ws_put(ln, r)) {
      free(r);
      r = NULL;
    }
  }
  buf *b = &ln->line;
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
  ws_line_emit(ln, b);
}

static void ws_close(tl_ws *ws, int code, void *arg) {
  lane *ln = arg;
  logger *lg = ln->lg;
  wsrec *r = ws_take(ln, ws);
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
  buf *b = &ln->line;
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
  ws_line_emit(ln, b);
}

static void ws_free_all(lane *lg) {
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

/* ---- lanes ------------------------------------------------------------- */

/* The lane of the worker running on this thread, made at its first
 * request; NULL on out of memory (or, which cannot happen, off the app's
 * workers). */
static lane *lane_here(logger *lg, tl_app *app) {
  lane **lanes = atomic_load_explicit(&lg->lanes, memory_order_acquire);
  if (!lanes) {
    pthread_mutex_lock(&lg->lanes_lock);
    lanes = atomic_load_explicit(&lg->lanes, memory_order_relaxed);
    if (!lanes) {
      unsigned n = tl_app_workers(app);
      lanes = calloc(n ? n : 1, sizeof *lanes);
      if (lanes) {
        lg->nlanes = n;
        atomic_store_explicit(&lg->lanes, lanes, memory_order_release);
      }
    }
    pthread_mutex_unlock(&lg->lanes_lock);
    if (!lanes)
      return NULL;
  }
  int w = tl_app_worker(app);
  if (w < 0 || (unsigned)w >= lg->nlanes)
    return NULL;
  lane *ln = lanes[w];
  if (!ln) {
    if (!(ln = calloc(1, sizeof *ln)))
      return NULL;
    ln->lg = lg;
    lanes[w] = ln; /* only worker w reads or writes its slot */
  }
  /* A job queued on the loop of an earlier run has completed before that
   * run ended, so the current loop is always the right one. */
  ln->loop = tl_app_loop(app);
  if (!ln->observing) {
    /* Once per worker, at its first request: sockets it opens from now
     * on are seen, including the one this request may upgrade to. On
     * failure they are just not logged. */
    ln->observing = true;
    tl_ws_observer obs = {.open = ws_open, .close = ws_close, .arg = ln};
    (void)tl_app_ws_observe(app, &obs);
  }
  return ln;
}

/* ---- the middleware -------------------------------------------------- */

static void on_finish(tl_res *res, void *arg) {
  reqlog *rl = arg;
  lane *ln = rl->ln;
  logger *lg = ln->lg;
  tl_req *req = tl_res_req(res);
  buf *b = &ln->line;
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
    emit(ln, b->data, b->len);
    return;
  }
fail:
  lost(lg);
}

/* A line of the server's own (tl_app_on_log), on the worker's thread:
 *   text  [10/Oct/2024:13:55:36 +0000] talon tls: 127.0.0.1:5000: WHAT
 *   JSON  {"time":...,"type":"server","message":"tls: 127.0.0.1:5000: WHAT"} */
static void server_line(void *arg, const char *line) {
  logger *lg = arg;
  lane *ln = lane_here(lg, lg->app);
  if (!ln) {
    lost(lg);
    return;
  }
  buf *b = &ln->line;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  b->len = 0;
  if (buf_reserve(b, 128 + strlen(line))) {
    lost(lg);
    return;
  }
  if (lg->format == TL_LOG_JSON) {
    buf_str(b, "{\"time\":");
    iso_time(b, lg, &now);
    buf_str(b, ",\"type\":\"server\",\"message\":");
    esc_json(b, line);
    buf_str(b, "}\n");
  } else {
    clf_time(b, lg, &now);
    buf_str(b, " talon ");
    esc_text(b, line);
    buf_str(b, "\n");
  }
  if (b->len && b->data[b->len - 1] == '\n')
    emit(ln, b->data, b->len);
  else
    lost(lg);
}

static int logger_attach(void *ctx, tl_app *app) {
  logger *lg = ctx;
  lg->app = app;
  return tl_app_on_log(app, server_line, lg);
}

static int logger_fn(tl_req *req, tl_res *res, void *ctx) {
  logger *lg = ctx;
  lane *ln = lane_here(lg, tl_req_app(req));
  reqlog *rl = ln ? tl_req_alloc(req, sizeof *rl) : NULL;
  if (!rl) {
    count(&lg->dropped);
    return TL_NEXT; /* logging must not fail the request */
  }
  rl->ln = ln;
  rl->start_ns = tl_hrtime();
  clock_gettime(CLOCK_REALTIME, &rl->wall);
  if (tl_req_remote_address(req, rl->remote, sizeof rl->remote))
    strcpy(rl->remote, "-");
  if (tl_res_on_finish(res, on_finish, rl))
    count(&lg->dropped);
  return TL_NEXT;
}

/* After the loops are gone: every worker has stopped, so no lane is in
 * use and no job can be queued any more. */
static void logger_free(void *ctx) {
  logger *lg = ctx;
  if (!lg)
    return;
  lane **lanes = atomic_load_explicit(&lg->lanes, memory_order_acquire);
  for (unsigned i = 0; lanes && i < lg->nlanes; i++) {
    if (!lanes[i])
      continue;
    ws_free_all(lanes[i]);
    free(lanes[i]->line.data);
    free(lanes[i]);
  }
  free(lanes);
  if (!lg->busy) { /* else a job still owns the buffers: leak, not race */
    /* The loops are gone: a last, bounded, synchronous attempt. */
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
    free(lg->pending.data);
    free(lg->inflight.data);
  }
  pthread_mutex_destroy(&lg->lock);
  pthread_mutex_destroy(&lg->sink_lock);
  pthread_mutex_destroy(&lg->lanes_lock);
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
  /* With default attributes glibc's pthread_mutex_init cannot fail. */
  pthread_mutex_init(&lg->lock, NULL);
  pthread_mutex_init(&lg->sink_lock, NULL);
  pthread_mutex_init(&lg->lanes_lock, NULL);
  lg->format = o.format <= TL_LOG_JSON ? o.format : TL_LOG_COMBINED;
  lg->utc = o.utc;
  lg->write = o.write;
  lg->write_arg = o.write_arg;
  lg->fd = fileno(o.file ? o.file : stdout);
  lg->max_queue = o.max_queue_bytes ? o.max_queue_bytes : DEFAULT_MAX_QUEUE;
  mw.fn = logger_fn;
  mw.ctx = lg;
  mw.free = logger_free;
  mw.attach = logger_attach;
  return mw;
}

int tl_logger_get_stats(const tl_middleware *mw, tl_logger_stats *out) {
  if (!mw || !out || mw->fn != logger_fn || !mw->ctx)
    return TL_EINVAL;
  logger *lg = mw->ctx;
  out->lines = atomic_load_explicit(&lg->lines, memory_order_relaxed);
  out->dropped = atomic_load_explicit(&lg->dropped, memory_order_relaxed);
  out->write_errors =
      atomic_load_explicit(&lg->write_errors, memory_order_relaxed);
  out->queued_bytes = 0;
  if (!lg->write) {
    pthread_mutex_lock(&lg->lock);
    out->queued_bytes = queued_bytes(lg);
    pthread_mutex_unlock(&lg->lock);
  }
  return 0;
}
