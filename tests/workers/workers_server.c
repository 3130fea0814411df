/* workers_server: a talon app run by several workers, for the worker tests
 * (tests/workers). Public API only; everything it shares between requests
 * is atomic or under a mutex, as an app with workers must be.
 *
 * Usage: workers_server [PORT [WORKERS]]   (PORT 0: a free port; WORKERS
 * [4], 0: one per CPU). Prints "listening on http://HOST:PORT".
 *
 * HTTP:
 *   GET  /worker              the handling worker's index, as text
 *   GET  /users/:id           "user <id> on <worker>"
 *   GET  /api/ping            from a mounted router whose middleware sets
 *                             X-Router: api
 *   GET  /count?topic=T       tl_app_subscriber_count, as text
 *   POST /publish?topic=T     tl_app_publish of the body; the result as text
 *   GET  /foreign?topic=T&n=N&msg=M
 *                             a thread of the test's (no worker) publishes
 *                             "M <i>" for i in 1..N with tl_app_publish,
 *                             then hands the response back to this
 *                             worker with tl_app_call: "<sum of results>"
 *   GET  /callall             tl_app_call_all: each worker notes its index;
 *                             `done` answers (via tl_app_call to the
 *                             request's worker) with the sorted indices
 *   GET  /slow?ms=N           answers "slow" after N ms (a timer)
 *   GET  /stats               {"heap": bytes in use, "workers": n}
 * WebSocket /ws?name=NAME (upgrade fills the typed context; no name: 400;
 * permessage-deflate with the shared compressor):
 *   on open it sends "hello NAME <worker>". Text commands:
 *     sub T | unsub T          "ok sub T" / "ok unsub T"
 *     pub T PAYLOAD            tl_ws_publish (others), reply none
 *     apub T PAYLOAD           tl_app_publish (everyone), reply none
 *     xpub T HEX               tl_ws_publish of the bytes HEX spells, as a
 *                              binary message (any byte, NUL included)
 *     count T                  "count T <tl_app_subscriber_count>"
 *     worker                   "worker <index>"
 *     stats                    "stats <messages_out> <bytes_out> <dropped>"
 *                              (tl_ws_get_stats, tl_ws_dropped_count; the
 *                              reply itself not counted)
 * WebSocket /lean?name=NAME: the same without compression, with a
 * max_backpressure of 64 KiB (a subscriber that stops reading has
 * publishes dropped).
 *   The subscription handler sends "subs T <new> <old>" to the socket that
 *   subscribed or left, so the test sees the app-wide counts it was told.
 *
 * REDIS_URL=redis://...: the app shares its topics through Redis
 * (talon/redis.h; REDIS_PREFIX sets the channel prefix, REDIS_BUFFER the
 * buffer bytes, REDIS_BACKOFF_MS a fixed reconnect delay [50 doubling to
 * 500], REDIS_LOCAL_ONLY=1 starts without Redis); GET /redis
 * answers the bridge's counters as JSON, and GET /node its node id.
 * REDIS_TIMEOUT_MS sets the connect and command timeouts; REDIS_COUNT_MS
 * turns on cluster-wide counts: GET /ccount?topic=T answers
 * tl_redis_cluster_count as "<count> <version>"; GET /await?topic=T
 * answers "0" once tl_redis_await_subscription says the topic's channel
 * is subscribed at Redis (or 503 and the error). Sessions in
 * Redis (tl_redis_session_store; SESSION_IDLE_S its TTL) under /sess:
 * GET /sess/login?name=N signs in ("ok <worker>"), /sess/me answers the
 * name or "nobody", /sess/logout ends the session ("bye").
 *
 * ONE_MORE_FD=1: before listening, the descriptor limit is lowered so that
 * only worker 0 can open its listener (and libuv's reserve descriptor):
 * worker 1's socket() fails (EMFILE), so tl_app_listen must fail cleanly
 * with the workers it started stopped.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/timer.h>
#ifdef TALON_HAVE_REDIS
#include <talon/mw.h>
#include <talon/redis.h>
#endif

#define TEST_SERVER_NAME "workers_server"
#include "test_server.h"

#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_bytes(void) {
  return __sanitizer_get_current_allocated_bytes();
}
#elif defined(__SANITIZE_THREAD__)
static size_t heap_bytes(void) {
  return 0; /* TSan's allocator keeps no counter we may read */
}
#else
static size_t heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}
#endif

static void text(tl_res *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void text(tl_res *res, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  tl_res_text(res, buf);
}

static void worker(tl_req *req, tl_res *res) {
  text(res, "%d", tl_app_worker(tl_req_app(req)));
}

static void user(tl_req *req, tl_res *res) {
  text(res, "user %s on %d", tl_req_param(req, "id"),
       tl_app_worker(tl_req_app(req)));
}

static int api_mw(tl_req *req, tl_res *res, void *ctx) {
  tl_res_header(res, "X-Router", "api");
  return TL_NEXT;
}

static void ping(tl_req *req, tl_res *res) {
  tl_res_text(res, "pong");
}

static void count(tl_req *req, tl_res *res) {
  const char *t = tl_req_query(req, "topic");
  text(res, "%zu", tl_app_subscriber_count(tl_req_app(req), t ? t : ""));
}

static void publish(tl_req *req, tl_res *res) {
  const char *t = tl_req_query(req, "topic");
  tl_slice b = tl_req_body(req);
  text(res, "%d",
       tl_app_publish(tl_req_app(req), t ? t : "", b.ptr, b.len, TL_WS_TEXT));
}

/* ---- a thread that is no worker ------------------------------------------ */

typedef struct foreign {
  tl_app *app;
  tl_res *res;
  int worker; /* the request's */
  char topic[128], msg[128];
  long n, sum;
  pthread_t thread;
} foreign;

static void foreign_answer(tl_app *app, void *arg) {
  foreign *f = arg;
  pthread_join(f->thread, NULL);
  text(f->res, "%ld", f->sum);
  free(f);
}

static void *foreign_main(void *arg) {
  foreign *f = arg;
  for (long i = 1; i <= f->n; i++) {
    char m[160];
    int len = snprintf(m, sizeof m, "%s %ld", f->msg, i);
    int r = tl_app_publish(f->app, f->topic, m, (size_t)len, TL_WS_TEXT);
    f->sum += r > 0 ? 1 : 0;
  }
  if (tl_app_call(f->app, (unsigned)f->worker, foreign_answer, f) != 0)
    abort();
  return NULL;
}

static void foreign_publish(tl_req *req, tl_res *res) {
  foreign *f = calloc(1, sizeof *f);
  const char *t = tl_req_query(req, "topic"), *n = tl_req_query(req, "n"),
             *m = tl_req_query(req, "msg");
  if (!f || !t || !n || !m) {
    free(f);
    tl_res_status(res, 400);
    tl_res_text(res, "topic, n and msg");
    return;
  }
  f->app = tl_req_app(req);
  f->res = res;
  f->worker = tl_app_worker(f->app);
  snprintf(f->topic, sizeof f->topic, "%s", t);
  snprintf(f->msg, sizeof f->msg, "%s", m);
  f->n = atol(n);
  tl_res_defer(res, NULL, NULL);
  if (pthread_create(&f->thread, NULL, foreign_main, f) != 0)
    abort();
}

/* ---- tl_app_call_all ------------------------------------------------------ */

typedef struct callall {
  tl_res *res;
  int worker;
  pthread_mutex_t lock;
  int seen[TL_WORKERS_MAX];
  int nseen;
} callall;

static void callall_answer(tl_app *app, void *arg) {
  callall *c = arg;
  char buf[2048];
  size_t o = 0;
  for (int i = 0; i < TL_WORKERS_MAX; i++)
    for (int k = 0; k < c->seen[i]; k++)
      o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d", o ? " " : "", i);
  buf[o] = '\0';
  tl_res_text(c->res, buf);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static void callall_each(tl_app *app, void *arg) {
  callall *c = arg;
  pthread_mutex_lock(&c->lock);
  c->seen[tl_app_worker(app)]++;
  c->nseen++;
  pthread_mutex_unlock(&c->lock);
}

static void callall_done(tl_app *app, void *arg) {
  callall *c = arg;
  /* On the worker that ran last: the response belongs to another. */
  if (tl_app_call(app, (unsigned)c->worker, callall_answer, c) != 0)
    abort();
}

static void call_all(tl_req *req, tl_res *res) {
  callall *c = calloc(1, sizeof *c);
  if (!c)
    abort();
  c->res = res;
  c->worker = tl_app_worker(tl_req_app(req));
  pthread_mutex_init(&c->lock, NULL);
  tl_res_defer(res, NULL, NULL);
  if (tl_app_call_all(tl_req_app(req), callall_each, callall_done, c) != 0)
    abort();
}

/* ---- slow ---------------------------------------------------------------- */

static void slow_fire(tl_timer *t, void *arg) {
  tl_res_text(arg, "slow");
}

static void slow(tl_req *req, tl_res *res) {
  const char *ms = tl_req_query(req, "ms");
  tl_res_defer(res, NULL, NULL);
  if (!tl_timer_start(tl_req_app(req), ms ? (uint64_t)atol(ms) : 100, 0,
                      slow_fire, res))
    abort();
}

#ifdef TALON_HAVE_REDIS
static tl_redis *g_redis;

/* $NAME as a number, else `dflt`. */
static unsigned env_uint(const char *name, unsigned dflt) {
  const char *v = getenv(name);
  return v ? (unsigned)atoi(v) : dflt;
}

static void redis_stats(tl_req *req, tl_res *res) {
  tl_redis_stats s;
  if (!g_redis || tl_redis_get_stats(g_redis, &s) != 0) {
    tl_res_status(res, 404);
    tl_res_text(res, "no redis");
    return;
  }
  char buf[512];
  snprintf(buf, sizeof buf,
           "{\"forwarded\":%llu,\"received\":%llu,\"own\":%llu,"
           "\"dropped\":%llu,\"malformed\":%llu,\"reconnects\":%llu,"
           "\"buffered\":%zu,\"channels\":%zu,\"state\":%d,"
           "\"commands\":%llu,\"command_errors\":%llu}",
           (unsigned long long)s.forwarded, (unsigned long long)s.received,
           (unsigned long long)s.own, (unsigned long long)s.dropped,
           (unsigned long long)s.malformed, (unsigned long long)s.reconnects,
           s.buffered, s.channels, s.state, (unsigned long long)s.commands,
           (unsigned long long)s.command_errors);
  tl_res_json(res, buf);
}

/* Sessions in Redis (tl_redis_session_store), under /sess. */
static void sess_login(tl_req *req, tl_res *res) {
  const char *name = tl_req_query(req, "name");
  struct tl_session *s = tl_req_session(req);
  if (!name || !s || tl_session_regenerate(req, res) != 0 ||
      tl_session_set(s, "name", name) != 0) {
    tl_res_status(res, 500);
    tl_res_text(res, "no session");
    return;
  }
  char buf[96];
  snprintf(buf, sizeof buf, "ok %d", tl_app_worker(tl_req_app(req)));
  tl_res_text(res, buf);
}

static void sess_me(tl_req *req, tl_res *res) {
  struct tl_session *s = tl_req_session(req);
  const char *name = s ? tl_session_get(s, "name") : NULL;
  tl_res_text(res, name ? name : "nobody");
}

static void sess_logout(tl_req *req, tl_res *res) {
  tl_res_text(res, tl_session_destroy(req, res) == 0 ? "bye" : "failed");
}

/* GET /ccount?topic=T and /await?topic=T: a Redis call whose answer
 * finishes a deferred response (the client may leave first). */
typedef struct topic_op {
  tl_res *res; /* NULL once the client left */
} topic_op;

static void topic_op_gone(tl_res *res, void *arg) {
  ((topic_op *)arg)->res = NULL;
}

/* The response of `op` (NULL if the client left), and `op` freed; for a
 * negative status it is answered 503 and the error's name here. */
static tl_res *topic_op_end(topic_op *op, int status) {
  tl_res *res = op->res;
  free(op);
  if (res && status < 0) {
    tl_res_status(res, 503);
    tl_res_text(res, tl_strerror(status));
    return NULL;
  }
  return res;
}

/* Starts `start(topic, op)` and defers the response, or answers 400/503. */
static void topic_call(tl_req *req, tl_res *res,
                       int (*start)(const char *topic, topic_op *op)) {
  const char *t = tl_req_query(req, "topic");
  topic_op *op = malloc(sizeof *op);
  if (!t || !op) {
    free(op);
    tl_res_status(res, 400);
    return;
  }
  op->res = res;
  int rc = g_redis ? start(t, op) : TL_ESTATE;
  if (rc < 0) {
    topic_op_end(op, rc);
    return;
  }
  tl_res_defer(res, topic_op_gone, op);
}

/* /ccount: tl_redis_cluster_count, "<count> <version>". */
static void ccount_done(tl_redis *r, int status, long long count,
                        long long version, void *arg) {
  tl_res *res = topic_op_end(arg, status);
  char buf[64];
  snprintf(buf, sizeof buf, "%lld %lld", count, version);
  if (res)
    tl_res_text(res, buf);
}

static int ccount_start(const char *topic, topic_op *op) {
  return tl_redis_cluster_count(g_redis, topic, ccount_done, op);
}

static void ccount(tl_req *req, tl_res *res) {
  topic_call(req, res, ccount_start);
}

/* /await: tl_redis_await_subscription, "0". */
static void await_done(tl_redis *r, int status, void *arg) {
  tl_res *res = topic_op_end(arg, status);
  if (res)
    tl_res_text(res, "0");
}

static int await_start(const char *topic, topic_op *op) {
  return tl_redis_await_subscription(g_redis, topic, await_done, op);
}

static void await_sub(tl_req *req, tl_res *res) {
  topic_call(req, res, await_start);
}

static int sess_routes(tl_app *app, tl_redis *r) {
  static const char *const secrets[] = {"workers-server-session-secret-42",
                                        NULL};
  const char *idle = getenv("SESSION_IDLE_S");
  tl_session_store store;
  int err = tl_redis_session_store(
      r,
      &(tl_redis_session_options){.idle_timeout_s =
                                      idle ? (unsigned)atoi(idle) : 0},
      &store);
  if (err)
    return err;
  tl_router *sr = tl_router_new();
  if (!sr)
    return TL_ENOMEM;
  err |= tl_router_use(sr, tl_cookies(&(tl_cookies_options){.secrets = secrets}));
  err |= tl_router_use(sr, tl_session(&(tl_session_options){.store = &store}));
  err |= tl_router_get(sr, "/login", sess_login);
  err |= tl_router_get(sr, "/me", sess_me);
  err |= tl_router_get(sr, "/logout", sess_logout);
  err |= tl_app_mount(app, "/sess", sr);
  return err;
}
#endif

static void stats(tl_req *req, tl_res *res) {
  char buf[128];
  snprintf(buf, sizeof buf, "{\"heap\":%zu,\"workers\":%u}", heap_bytes(),
           tl_app_workers(tl_req_app(req)));
  tl_res_json(res, buf);
}

/* ---- WebSocket ------------------------------------------------------------ */

typedef struct member {
  char name[64];
} member;

static int on_upgrade(tl_req *req, tl_res *res, void *data) {
  member *m = data;
  const char *n = tl_req_query(req, "name");
  if (!n || !*n) {
    tl_res_status(res, 400);
    tl_res_text(res, "name?");
    return TL_REJECT;
  }
  snprintf(m->name, sizeof m->name, "%s", n);
  return TL_OK;
}

static void sendf(tl_ws *ws, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sendf(tl_ws *ws, const char *fmt, ...) {
  char buf[1200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  tl_ws_send_text(ws, buf);
}

static void on_open(tl_ws *ws) {
  member *m = tl_ws_data(ws);
  sendf(ws, "hello %s %d", m->name, tl_app_worker(tl_ws_app(ws)));
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  char cmd[8192];
  if (len >= sizeof cmd) {
    tl_ws_close(ws, 1009, "long");
    return;
  }
  memcpy(cmd, data, len);
  cmd[len] = '\0';
  char *arg = strchr(cmd, ' ');
  if (arg)
    *arg++ = '\0';
  if (strcmp(cmd, "worker") == 0) {
    sendf(ws, "worker %d", tl_app_worker(tl_ws_app(ws)));
    return;
  }
  if (strcmp(cmd, "stats") == 0) {
    tl_ws_stats st;
    tl_ws_get_stats(ws, &st);
    sendf(ws, "stats %llu %llu %zu", (unsigned long long)st.messages_out,
          (unsigned long long)st.bytes_out, tl_ws_dropped_count(ws));
    return;
  }
  if (!arg) {
    tl_ws_close(ws, 1008, "bad command");
    return;
  }
  char *rest = strchr(arg, ' ');
  if (rest)
    *rest++ = '\0';
  if (strcmp(cmd, "sub") == 0) {
    if (tl_ws_subscribe(ws, arg) == 0)
      sendf(ws, "ok sub %s", arg);
  } else if (strcmp(cmd, "unsub") == 0) {
    if (tl_ws_unsubscribe(ws, arg) == 0)
      sendf(ws, "ok unsub %s", arg);
  } else if (strcmp(cmd, "pub") == 0 && rest) {
    tl_ws_publish(ws, arg, rest, strlen(rest), TL_WS_TEXT);
  } else if (strcmp(cmd, "xpub") == 0 && rest) {
    size_t n = strlen(rest) / 2;
    unsigned char *bytes = malloc(n + 1);
    if (!bytes)
      abort();
    for (size_t i = 0; i < n; i++) {
      unsigned v;
      if (sscanf(rest + 2 * i, "%2x", &v) != 1)
        v = 0;
      bytes[i] = (unsigned char)v;
    }
    tl_ws_publish(ws, arg, bytes, n, TL_WS_BINARY);
    free(bytes);
  } else if (strcmp(cmd, "apub") == 0 && rest) {
    tl_app_publish(tl_ws_app(ws), arg, rest, strlen(rest), TL_WS_TEXT);
  } else if (strcmp(cmd, "count") == 0) {
    sendf(ws, "count %s %zu", arg,
          tl_app_subscriber_count(tl_ws_app(ws), arg));
  } else {
    tl_ws_close(ws, 1008, "bad command");
  }
}

static void on_subscription(tl_ws *ws, const char *topic, int now, int old) {
  sendf(ws, "subs %s %d %d", topic, now, old);
}

static const tl_ws_handlers ws_route = {
    .upgrade = on_upgrade,
    .open = on_open,
    .message = on_message,
    .subscription = on_subscription,
    .max_backpressure = 64 << 20,
    .idle_timeout_s = TL_WS_NO_TIMEOUT,
    /* Clients that offer permessage-deflate get compressed publishes:
     * the compressed form crosses workers too. */
    .compression = TL_SHARED_COMPRESSOR,
};

static const tl_ws_handlers lean_route = {
    .upgrade = on_upgrade,
    .open = on_open,
    .message = on_message,
    .subscription = on_subscription,
    .max_backpressure = 64 << 10,
    .idle_timeout_s = TL_WS_NO_TIMEOUT,
};

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int workers = argc > 2 ? atoi(argv[2]) : 4;
  tl_app *app = tl_app_new(&(tl_app_config){
      .on_listen = on_listen,
      .workers = workers == 0 ? TL_WORKERS_AUTO : workers,
      .max_connections = 20000,
  });
  if (!app)
    return 1;
  CHECK(tl_app_get(app, "/worker", worker));
  CHECK(tl_app_get(app, "/users/:id", user));
  CHECK(tl_app_get(app, "/count", count));
  CHECK(tl_app_post(app, "/publish", publish));
  CHECK(tl_app_get(app, "/foreign", foreign_publish));
  CHECK(tl_app_get(app, "/callall", call_all));
  CHECK(tl_app_get(app, "/slow", slow));
  CHECK(tl_app_get(app, "/stats", stats));
  tl_router *api = tl_router_new();
  if (!api)
    return 1;
  CHECK(tl_router_use(api, (tl_middleware){.fn = api_mw, .name = "api"}));
  CHECK(tl_router_get(api, "/ping", ping));
  CHECK(tl_app_mount(app, "/api", api));
  CHECK(tl_app_ws(app, "/ws", &ws_route, sizeof(member)));
  CHECK(tl_app_ws(app, "/lean", &lean_route, sizeof(member)));
#ifdef TALON_HAVE_REDIS
  CHECK(tl_app_get(app, "/redis", redis_stats));
  CHECK(tl_app_get(app, "/ccount", ccount));
  CHECK(tl_app_get(app, "/await", await_sub));
  const char *url = getenv("REDIS_URL");
  if (url && *url) {
    const char *buffer = getenv("REDIS_BUFFER");
    CHECK(tl_redis_attach(
        app,
        &(tl_redis_options){
            .url = url,
            .prefix = getenv("REDIS_PREFIX"),
            .max_buffer_bytes = buffer ? (size_t)atol(buffer) : 0,
            .reconnect_min_ms = env_uint("REDIS_BACKOFF_MS", 50),
            .reconnect_max_ms = env_uint("REDIS_BACKOFF_MS", 500),
            .start_without_redis = getenv("REDIS_LOCAL_ONLY") != NULL,
            .connect_timeout_ms = env_uint("REDIS_TIMEOUT_MS", 0),
            .command_timeout_ms = env_uint("REDIS_TIMEOUT_MS", 0),
            .cluster_count_ms = env_uint("REDIS_COUNT_MS", 0),
        },
        &g_redis));
    CHECK(sess_routes(app, g_redis));
  }
#endif
  if (getenv("ONE_MORE_FD")) {
    /* Fill the holes below the highest descriptor, then lower the limit. */
    int top = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
      if (atoi(e->d_name) > top)
        top = atoi(e->d_name);
    if (d)
      closedir(d);
    int fd;
    while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0 && fd < top)
      ;
    if (fd > top)
      top = fd;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    /* Two more: libuv reserves one per loop (/dev/null, opened by its
     * first stream, for EMFILE handling), worker 0's listener the other. */
    rl.rlim_cur = (rlim_t)top + 3;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      return 1;
  }
  int err = tl_app_listen(app, "127.0.0.1", port);
  tl_app_free(app);
  if (err) {
    fprintf(stderr, "workers_server: %s\n", tl_strerror(err));
    return 1;
  }
  return 0;
}
