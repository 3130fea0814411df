/* talon's Redis bridge (contract in include/talon/redis.h), written only
 * against the public headers and talon/cluster.h's seam, as a third party
 * would write another backend.
 *
 * Everything that touches hiredis runs on worker 0's thread and loop:
 * publishes and interest changes from other threads come over with
 * tl_app_call(). The counters are atomics so that tl_redis_get_stats()
 * works from any thread.
 *
 * A message on a channel is "TL" 0x01, the opcode (1 byte), the 16-byte
 * node id, then the payload. */
#include <talon.h>
#include <talon/redis.h>
#include <talon/timer.h>

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#define HDR_LEN 20 /* "TL", version, opcode, node id */
#define DEFAULT_PREFIX "talon:"
#define DEFAULT_BUFFER (8u << 20)

/* A publish waiting for Redis (or on its way to worker 0). */
typedef struct pending {
  struct pending *next;
  size_t clen, mlen; /* channel, message bytes */
  char data[];       /* channel, then message */
} pending;

/* A tl_redis_await_subscription() waiting on worker 0. */
typedef struct waiter {
  struct waiter *next;
  tl_redis *r;
  unsigned worker; /* where the callback runs */
  tl_redis_done_cb cb;
  void *arg;
  int status;
  size_t len;
  char topic[];
} waiter;

/* A channel this node subscribes to. */
typedef struct chan {
  struct chan *next;
  bool active;     /* Redis confirmed the SUBSCRIBE on this connection */
  waiter *waiters; /* until it does */
  size_t len;
  char name[]; /* the topic, NUL-terminated */
} chan;

/* A worker's command connection (tl_redis_command), used on that worker's
 * thread only. */
typedef struct wconn wconn;

struct tl_redis {
  tl_app *app;
  char *host, *password, *prefix;
  int port, db;
  size_t plen, max_buffer;
  unsigned backoff_min, backoff_max, backoff, connect_timeout;
  unsigned command_timeout;
  unsigned count_ms;     /* cluster_count_ms */
  tl_timer *count_timer; /* worker 0: count_refresh */
  unsigned nworkers;
  wconn *w; /* one per worker */
  int start_without;
  uint8_t node[16];
  /* worker 0's thread only */
  redisAsyncContext *pub, *sub;
  bool pub_ready, sub_ready, stopping, listening;
  tl_timer *retry;
  tl_timer *setup_timer; /* bounds the wait for the setup answers */
  tl_timer *stop_timer;  /* bounds a stop's wait for pending replies */
  pending *queue, **queue_tail; /* publishes waiting for the connection */
  size_t queued;                 /* their bytes */
  size_t inflight;               /* bytes sent, not yet acknowledged */
  chan *chans;                   /* subscribed (or to subscribe) */
  bool ever_up;
  /* any thread */
  _Atomic uint64_t forwarded, received, own, dropped, malformed, reconnects;
  _Atomic uint64_t commands, command_errors;
  _Atomic size_t buffered, nchans;
  _Atomic int state;
};

/* ---- small things ------------------------------------------------------ */

static char *dupn(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

/* redis://[:PASSWORD@]HOST[:PORT][/DB]; [v6] in brackets. */
static int parse_url(tl_redis *r, const char *url) {
  const char *p = url;
  if (strncmp(p, "redis://", 8) != 0)
    return TL_EINVAL;
  p += 8;
  const char *at = strchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    if (!(r->password = dupn(pw, (size_t)(at - pw))))
      return TL_ENOMEM;
    p = at + 1;
  }
  const char *hend;
  if (*p == '[') {
    hend = strchr(p, ']');
    if (!hend)
      return TL_EINVAL;
    r->host = dupn(p + 1, (size_t)(hend - p - 1));
    hend++;
  } else {
    hend = p + strcspn(p, ":/");
    r->host = dupn(p, (size_t)(hend - p));
  }
  if (!r->host)
    return TL_ENOMEM;
  if (!*r->host)
    return TL_EINVAL;
  r->port = 6379;
  if (*hend == ':') {
    char *end;
    long v = strtol(hend + 1, &end, 10);
    if (end == hend + 1 || v < 1 || v > 65535)
      return TL_EINVAL;
    r->port = (int)v;
    hend = end;
  }
  if (*hend == '/' && hend[1]) {
    char *end;
    long v = strtol(hend + 1, &end, 10);
    if (end == hend + 1 || *end || v < 0 || v > 1000000)
      return TL_EINVAL;
    r->db = (int)v;
  } else if (*hend && strcmp(hend, "/") != 0) {
    return TL_EINVAL;
  }
  return 0;
}

static bool on_worker0(const tl_redis *r) {
  return tl_app_worker(r->app) == 0;
}

static void set_buffered(tl_redis *r) {
  atomic_store_explicit(&r->buffered, r->queued + r->inflight,
                        memory_order_relaxed);
}

/* ---- publishing -------------------------------------------------------- */

static void on_published(redisAsyncContext *c, void *reply, void *arg) {
  tl_redis *r = c->data;
  pending *m = arg;
  r->inflight -= m->mlen;
  set_buffered(r);
  redisReply *rep = reply;
  if (rep && rep->type == REDIS_REPLY_INTEGER)
    atomic_fetch_add_explicit(&r->forwarded, 1, memory_order_relaxed);
  else /* the connection went with it, or Redis refused */
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
  free(m);
}

/* Hands `m` to Redis (taking it) or queues it; drops it over the bound. */
static void send_or_queue(tl_redis *r, pending *m) {
  if (r->stopping || r->queued + r->inflight + m->mlen > r->max_buffer) {
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
    free(m);
    return;
  }
  if (r->pub && r->pub_ready && !r->queue) {
    const char *argv[3] = {"PUBLISH", m->data, m->data + m->clen};
    size_t lens[3] = {7, m->clen, m->mlen};
    if (redisAsyncCommandArgv(r->pub, on_published, m, 3, argv, lens) ==
        REDIS_OK) {
      r->inflight += m->mlen;
      set_buffered(r);
      return;
    }
  }
  m->next = NULL;
  *r->queue_tail = m;
  r->queue_tail = &m->next;
  r->queued += m->mlen;
  set_buffered(r);
}

static void flush_queue(tl_redis *r) {
  pending *q = r->queue;
  r->queue = NULL;
  r->queue_tail = &r->queue;
  r->queued = 0;
  while (q) {
    pending *next = q->next;
    send_or_queue(r, q);
    q = next;
  }
}

static void publish_on_worker0(tl_app *app, void *arg) {
  pending *m = arg;
  tl_redis *r = *(tl_redis **)(void *)m->data; /* see bridge_publish */
  memmove(m->data, m->data + sizeof r, m->clen + m->mlen);
  send_or_queue(r, m);
}

/* The seam's publish: any thread. The message is built here (channel and
 * tagged payload in one block) and sent from worker 0. */
static void bridge_publish(void *ctx, const char *topic, const void *data,
                           size_t len, tl_opcode op) {
  tl_redis *r = ctx;
  size_t tlen = strlen(topic);
  size_t clen = r->plen + tlen, mlen = HDR_LEN + len;
  bool here = on_worker0(r);
  size_t lead = here ? 0 : sizeof r;
  pending *m = malloc(sizeof *m + lead + clen + mlen);
  if (!m) {
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
    return;
  }
  m->clen = clen;
  m->mlen = mlen;
  char *p = m->data + lead;
  memcpy(p, r->prefix, r->plen);
  memcpy(p + r->plen, topic, tlen);
  p += clen;
  p[0] = 'T', p[1] = 'L', p[2] = 1, p[3] = (char)op;
  memcpy(p + 4, r->node, 16);
  if (len)
    memcpy(p + HDR_LEN, data, len);
  if (here) {
    send_or_queue(r, m);
    return;
  }
  memcpy(m->data, &r, sizeof r);
  if (tl_app_call(r->app, 0, publish_on_worker0, m) != 0) {
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
    free(m);
  }
}

/* ---- subscribing ------------------------------------------------------- */

static chan *chan_find(tl_redis *r, const char *topic, size_t n) {
  for (chan *c = r->chans; c; c = c->next)
    if (c->len == n && memcmp(c->name, topic, n) == 0)
      return c;
  return NULL;
}

static void on_channel_message(redisAsyncContext *c, void *reply, void *arg);
static int count_report(tl_redis *r, const char *topic, size_t tlen,
                        long long count, tl_redis_reply_cb cb, void *arg);

static void channel_command(tl_redis *r, const char *cmd, const char *topic,
                            size_t tlen) {
  if (!r->sub || !r->sub_ready)
    return; /* done for all channels when the connection is back */
  char *ch = malloc(r->plen + tlen);
  if (!ch)
    return;
  memcpy(ch, r->prefix, r->plen);
  memcpy(ch + r->plen, topic, tlen);
  const char *argv[2] = {cmd, ch};
  size_t lens[2] = {strlen(cmd), r->plen + tlen};
  redisAsyncCommandArgv(r->sub, on_channel_message, NULL, 2, argv, lens);
  free(ch);
}

typedef struct interest_call {
  tl_redis *r;
  size_t len;
  char topic[];
} interest_call;

/* On worker 0: subscribe or unsubscribe to match the app's subscribers of
 * the topic now (interest calls from several workers may come in any
 * order; the count is the truth). */
/* ---- waiting for a subscription ---------------------------------------- */

static void waiter_fire(tl_app *app, void *arg) {
  waiter *w = arg;
  w->cb(w->r, w->status, w->arg);
  free(w);
}

/* Sends `w`'s answer to its worker. */
static void waiter_done(waiter *w, int status) {
  w->status = status;
  if (tl_app_call(w->r->app, w->worker, waiter_fire, w) != 0)
    free(w); /* out of memory: the one case without an answer */
}

static void waiters_done(chan *c, int status) {
  while (c->waiters) {
    waiter *w = c->waiters;
    c->waiters = w->next;
    waiter_done(w, status);
  }
}

/* The subscribed connection is gone: no channel is active any more. */
static void chans_lost(tl_redis *r, int status) {
  for (chan *c = r->chans; c; c = c->next) {
    c->active = false;
    waiters_done(c, status);
  }
}

/* Subscribes or unsubscribes to match the app's subscribers of the topic
 * now (interest calls from several workers may come in any order; the
 * count is the truth). Returns the channel if subscribed. */
static chan *chan_sync(tl_redis *r, const char *topic, size_t len) {
  bool want = !r->stopping && tl_app_subscriber_count(r->app, topic) > 0;
  chan *c = chan_find(r, topic, len);
  if (want && !c) {
    c = calloc(1, sizeof *c + len + 1);
    if (c) {
      c->len = len;
      memcpy(c->name, topic, len + 1);
      c->next = r->chans;
      r->chans = c;
      atomic_fetch_add_explicit(&r->nchans, 1, memory_order_relaxed);
      channel_command(r, "SUBSCRIBE", c->name, c->len);
    }
  } else if (!want && c) {
    chan **pp = &r->chans;
    while (*pp != c)
      pp = &(*pp)->next;
    *pp = c->next;
    atomic_fetch_sub_explicit(&r->nchans, 1, memory_order_relaxed);
    channel_command(r, "UNSUBSCRIBE", c->name, c->len);
    if (r->count_ms) /* this node has none now */
      count_report(r, c->name, c->len, 0, NULL, NULL);
    waiters_done(c, TL_ENOENT);
    free(c);
    c = NULL;
  }
  return c;
}

static void interest_on_worker0(tl_app *app, void *arg) {
  interest_call *ic = arg;
  chan_sync(ic->r, ic->topic, ic->len);
  free(ic);
}

static void await_on_worker0(tl_app *app, void *arg) {
  waiter *w = arg;
  tl_redis *r = w->r;
  /* The interest call of the caller's subscription came first (calls from
   * one thread to one worker keep their order); one of another worker's
   * may still be on its way, so the count decides. */
  chan *c = chan_sync(r, w->topic, w->len);
  if (!c)
    waiter_done(w, r->stopping ? TL_ECLOSED : TL_ENOENT);
  else if (c->active)
    waiter_done(w, 0);
  else if (!r->sub || !r->sub_ready)
    waiter_done(w, TL_EIO);
  else {
    w->next = c->waiters;
    c->waiters = w;
  }
}

int tl_redis_await_subscription(tl_redis *r, const char *topic,
                                tl_redis_done_cb cb, void *arg) {
  if (!r || !topic || !*topic || !cb)
    return TL_EINVAL;
  int worker = tl_app_worker(r->app);
  if (worker < 0)
    return TL_ESTATE;
  size_t n = strlen(topic);
  waiter *w = malloc(sizeof *w + n + 1);
  if (!w)
    return TL_ENOMEM;
  *w = (waiter){.r = r, .worker = (unsigned)worker, .cb = cb, .arg = arg,
                .len = n};
  memcpy(w->topic, topic, n + 1);
  if (tl_app_call(r->app, 0, await_on_worker0, w) != 0) {
    free(w);
    return TL_ENOMEM;
  }
  return 0;
}

static void bridge_interest(void *ctx, const char *topic, bool on) {
  tl_redis *r = ctx;
  size_t n = strlen(topic);
  interest_call *ic = malloc(sizeof *ic + n + 1);
  if (!ic)
    return;
  ic->r = r;
  ic->len = n;
  memcpy(ic->topic, topic, n + 1);
  /* Always later, also on worker 0: the count settles first. */
  if (tl_app_call(r->app, 0, interest_on_worker0, ic) != 0)
    free(ic);
}

static void on_channel_message(redisAsyncContext *c, void *reply, void *arg) {
  tl_redis *r = c->data;
  redisReply *rep = reply;
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3)
    return;
  redisReply *kind = rep->element[0], *ch = rep->element[1],
             *msg = rep->element[2];
  if (kind->type == REDIS_REPLY_STRING && strcmp(kind->str, "subscribe") == 0 &&
      ch->type == REDIS_REPLY_STRING && ch->len > r->plen &&
      memcmp(ch->str, r->prefix, r->plen) == 0) {
    chan *cn = chan_find(r, ch->str + r->plen, ch->len - r->plen);
    if (cn) { /* Redis has it: a publish from now on comes here */
      cn->active = true;
      waiters_done(cn, 0);
    }
    return;
  }
  if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0)
    return; /* an unsubscribe confirmation */
  if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING ||
      ch->len <= r->plen || memcmp(ch->str, r->prefix, r->plen) != 0)
    return;
  const unsigned char *m = (const unsigned char *)msg->str;
  if (msg->len < HDR_LEN || m[0] != 'T' || m[1] != 'L' || m[2] != 1 ||
      (m[3] != TL_WS_TEXT && m[3] != TL_WS_BINARY)) {
    atomic_fetch_add_explicit(&r->malformed, 1, memory_order_relaxed);
    return;
  }
  if (memcmp(m + 4, r->node, 16) == 0) {
    atomic_fetch_add_explicit(&r->own, 1, memory_order_relaxed);
    return;
  }
  char topic[TL_TOPIC_MAX + 1];
  size_t tlen = ch->len - r->plen;
  if (tlen > TL_TOPIC_MAX || memchr(ch->str + r->plen, '\0', tlen)) {
    atomic_fetch_add_explicit(&r->malformed, 1, memory_order_relaxed);
    return;
  }
  memcpy(topic, ch->str + r->plen, tlen);
  topic[tlen] = '\0';
  tl_app_deliver(r->app, topic, m + HDR_LEN, msg->len - HDR_LEN,
                 (tl_opcode)m[3]);
  atomic_fetch_add_explicit(&r->received, 1, memory_order_relaxed);
}

/* ---- hiredis on libuv ------------------------------------------------------

   Our own glue rather than hiredis's adapters/libuv.h: when a connect
   fails, libuv reports the poll's error in `status` and stops watching,
   and that adapter then returns without telling hiredis, so a refused
   connection would never be noticed. Here an error hands the event that
   was awaited to hiredis, which reads the socket's error and reports it. */

typedef struct uvev {
  uv_poll_t poll;
  redisAsyncContext *ac; /* NULL once hiredis cleaned up */
  int events;
} uvev;

static void ev_poll(uv_poll_t *h, int status, int events) {
  uvev *e = h->data;
  if (status != 0) {
    events = e->events; /* libuv stopped the poll: let hiredis look */
    e->events = 0;
  }
  if (e->ac && (events & UV_WRITABLE))
    redisAsyncHandleWrite(e->ac);
  if (e->ac && (events & UV_READABLE))
    redisAsyncHandleRead(e->ac);
}

static void ev_set(uvev *e, int events) {
  e->events = events;
  if (events)
    uv_poll_start(&e->poll, events, ev_poll);
  else
    uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p) { ev_set(p, ((uvev *)p)->events | UV_READABLE); }
static void ev_del_read(void *p) { ev_set(p, ((uvev *)p)->events & ~UV_READABLE); }
static void ev_add_write(void *p) { ev_set(p, ((uvev *)p)->events | UV_WRITABLE); }
static void ev_del_write(void *p) { ev_set(p, ((uvev *)p)->events & ~UV_WRITABLE); }

static void ev_closed(uv_handle_t *h) {
  free(h->data);
}

static void ev_cleanup(void *p) {
  uvev *e = p;
  e->ac = NULL;
  uv_close((uv_handle_t *)&e->poll, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  uvev *e = calloc(1, sizeof *e);
  if (!e)
    return REDIS_ERR;
  if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
    free(e);
    return REDIS_ERR;
  }
  e->poll.data = e;
  e->ac = ac;
  ac->ev.data = e;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return REDIS_OK;
}

/* A connection to Redis on the calling thread's loop, `data` in its
 * context, AUTH queued first (answered to `setup`, may be NULL). NULL and
 * *err (TL_ENOMEM, UV_ECONNREFUSED) on failure. */
static redisAsyncContext *open_conn(tl_redis *r, void *data,
                                    redisConnectCallback *on_conn,
                                    redisDisconnectCallback *on_disc,
                                    redisCallbackFn *setup, int *err) {
  redisAsyncContext *c = redisAsyncConnect(r->host, r->port);
  *err = TL_ENOMEM;
  if (!c)
    return NULL;
  if (c->err) {
    redisAsyncFree(c);
    *err = UV_ECONNREFUSED;
    return NULL;
  }
  c->data = data;
  if (ev_attach(c, tl_app_loop(r->app)) != REDIS_OK) {
    redisAsyncFree(c);
    return NULL;
  }
  redisAsyncSetConnectCallback(c, on_conn);
  redisAsyncSetDisconnectCallback(c, on_disc);
  if (r->password) {
    const char *argv[2] = {"AUTH", r->password};
    size_t lens[2] = {4, strlen(r->password)};
    redisAsyncCommandArgv(c, setup, NULL, 2, argv, lens);
  }
  *err = 0;
  return c;
}

/* ---- commands: one connection per worker ---------------------------------

   Each worker sends its commands on its own connection, on its own loop,
   so a round trip never blocks a loop and no command crosses threads.
   A command that fails (connection lost, refused, timed out) is answered
   from the connection's timer, never from inside tl_redis_command(): a
   failing write inside hiredis may free the context and run every
   callback at once. */

typedef struct wcmd {
  struct wcmd *next; /* in `failed` */
  wconn *w;
  tl_redis_reply_cb cb;
  void *arg;
  int status;
} wcmd;

struct wconn {
  tl_redis *r;
  redisAsyncContext *ac;
  uv_timer_t timer; /* timeouts and failed answers */
  bool timer_open, stopped;
  unsigned pending;     /* commands sent, not answered */
  uint64_t progress;    /* loop time of the last answer (or first send) */
  uint64_t retry_at;    /* after a failed connect: fail fast until then */
  int fail;             /* the status of callbacks run by a free */
  wcmd *failed, **failed_tail; /* to answer from the timer */
};

static void w_tick(uv_timer_t *t);

/* Converts hiredis's reply (borrowing its strings). */
static int conv_reply(const redisReply *in, tl_redis_reply *out) {
  static const int types[] = {
      [REDIS_REPLY_STRING] = TL_REDIS_STRING,
      [REDIS_REPLY_ARRAY] = TL_REDIS_ARRAY,
      [REDIS_REPLY_INTEGER] = TL_REDIS_INTEGER,
      [REDIS_REPLY_NIL] = TL_REDIS_NIL,
      [REDIS_REPLY_STATUS] = TL_REDIS_STATUS,
      [REDIS_REPLY_ERROR] = TL_REDIS_ERROR,
  };
  *out = (tl_redis_reply){.integer = in->integer, .str = in->str,
                          .len = in->str ? in->len : 0};
  out->type = in->type >= 0 && in->type <= REDIS_REPLY_ERROR ? types[in->type]
                                                             : TL_REDIS_NIL;
  if (in->type != REDIS_REPLY_ARRAY || in->elements == 0)
    return 0;
  tl_redis_reply *a = calloc(in->elements, sizeof *a);
  if (!a)
    return TL_ENOMEM;
  out->element = a;
  out->elements = in->elements;
  for (size_t i = 0; i < in->elements; i++)
    if (conv_reply(in->element[i], &a[i]) != 0)
      return TL_ENOMEM;
  return 0;
}

static void conv_free(const tl_redis_reply *r) {
  for (size_t i = 0; i < r->elements; i++)
    conv_free(&r->element[i]);
  free((void *)r->element);
}

static void w_arm(wconn *w, uint64_t timeout) {
  uint64_t period = w->r->command_timeout / 4 ? w->r->command_timeout / 4 : 1;
  uv_timer_start(&w->timer, w_tick, timeout, period);
}

static void w_answer(wcmd *k, int status, const redisReply *rep) {
  wconn *w = k->w;
  atomic_fetch_add_explicit(status < 0 ? &w->r->command_errors
                                       : &w->r->commands,
                            1, memory_order_relaxed);
  if (k->cb) {
    tl_redis_reply conv = {0};
    if (rep && conv_reply(rep, &conv) != 0)
      status = TL_ENOMEM;
    k->cb(w->r, status, status == 0 ? &conv : NULL, k->arg);
    conv_free(&conv);
  }
  free(k);
}

static void w_on_reply(redisAsyncContext *c, void *reply, void *arg) {
  wcmd *k = arg;
  wconn *w = k->w;
  w->pending--;
  w->progress = uv_now(tl_app_loop(w->r->app));
  if (reply) {
    w_answer(k, 0, reply);
    return;
  }
  /* Later, from the timer (see above). */
  k->status = w->fail ? w->fail : TL_EIO;
  k->next = NULL;
  *w->failed_tail = k;
  w->failed_tail = &k->next;
  if (w->timer_open)
    w_arm(w, 0);
}

static void w_drain_failed(wconn *w) {
  wcmd *k = w->failed;
  w->failed = NULL;
  w->failed_tail = &w->failed;
  while (k) {
    wcmd *next = k->next;
    w_answer(k, k->status, NULL);
    k = next;
  }
}

/* Drops the connection, failing its pending commands with `why`. Never
 * from a hiredis callback. */
static void w_drop(wconn *w, int why) {
  redisAsyncContext *ac = w->ac;
  if (!ac)
    return;
  w->ac = NULL;
  w->fail = why;
  redisAsyncFree(ac); /* runs w_on_reply(NULL) for each pending one */
  w->fail = 0;
  w->pending = 0;
}

static void w_tick(uv_timer_t *t) {
  wconn *w = t->data;
  tl_redis *r = w->r;
  w_drain_failed(w);
  uint64_t now = uv_now(t->loop);
  if (w->ac && w->pending && now - w->progress >= r->command_timeout) {
    w_drop(w, UV_ETIMEDOUT); /* the next command opens another */
    w_drain_failed(w);
  }
  if (!w->pending && !w->failed)
    uv_timer_stop(t);
}

static void w_on_connect(const redisAsyncContext *c, int status) {
  wconn *w = c->data;
  if (status == REDIS_OK)
    return;
  /* hiredis frees the context after this and fails its commands. */
  if (w->ac == c) {
    w->ac = NULL;
    w->retry_at = uv_now(tl_app_loop(w->r->app)) + w->r->backoff_min;
  }
}

static void w_on_disconnect(const redisAsyncContext *c, int status) {
  wconn *w = c->data;
  if (w->ac == c)
    w->ac = NULL;
}

static int w_connect(wconn *w) {
  tl_redis *r = w->r;
  uv_loop_t *loop = tl_app_loop(r->app);
  if (!w->timer_open) {
    if (uv_timer_init(loop, &w->timer) != 0)
      return TL_ENOMEM;
    w->timer.data = w;
    w->timer_open = true;
  }
  /* The setup goes first; its answers need no callback: a wrong password
   * shows in the answers to the commands that follow (NOAUTH errors). */
  int err = 0;
  redisAsyncContext *c =
      open_conn(r, w, w_on_connect, w_on_disconnect, NULL, &err);
  if (!c) {
    if (err == UV_ECONNREFUSED)
      w->retry_at = uv_now(loop) + r->backoff_min;
    return err;
  }
  if (r->db)
    redisAsyncCommand(c, NULL, NULL, "SELECT %d", r->db);
  w->ac = c;
  return 0;
}

static wconn *my_wconn(tl_redis *r) {
  int i = tl_app_worker(r->app);
  return i < 0 || (unsigned)i >= r->nworkers ? NULL : &r->w[i];
}

int tl_redis_command(tl_redis *r, int argc, const char *const *argv,
                     const size_t *lens, tl_redis_reply_cb cb, void *arg) {
  if (!r || argc < 1 || !argv)
    return TL_EINVAL;
  wconn *w = my_wconn(r);
  if (!w || w->stopped || !atomic_load_explicit(&r->state,
                                                memory_order_relaxed))
    return TL_ESTATE;
  uv_loop_t *loop = tl_app_loop(r->app);
  if (!w->ac) {
    if (uv_now(loop) < w->retry_at)
      return UV_ECONNREFUSED;
    int err = w_connect(w);
    if (err)
      return err;
  }
  size_t small[8], *big = NULL;
  const size_t *l = lens;
  if (!l) {
    big = argc <= 8 ? NULL : malloc((size_t)argc * sizeof *big);
    size_t *ls = big ? big : small;
    if (argc > 8 && !big)
      return TL_ENOMEM;
    for (int i = 0; i < argc; i++) {
      if (!argv[i])
        return free(big), TL_EINVAL;
      ls[i] = strlen(argv[i]);
    }
    l = ls;
  }
  wcmd *k = calloc(1, sizeof *k);
  if (!k) {
    free(big);
    return TL_ENOMEM;
  }
  *k = (wcmd){.w = w, .cb = cb, .arg = arg};
  int rc = redisAsyncCommandArgv(w->ac, w_on_reply, k, argc,
                                 (const char **)argv, l);
  free(big);
  if (rc != REDIS_OK) {
    free(k);
    return TL_EIO;
  }
  if (w->pending++ == 0) {
    w->progress = uv_now(loop);
    w_arm(w, r->command_timeout);
  }
  /* Out now, not at the next poll: a session written by this request
   * reaches Redis before the response that tells the client. The plain
   * buffer write frees nothing, so it is safe inside reply callbacks
   * too; an error stays in the context for the poll's write handler,
   * which drops the connection from outside any callback. */
  if (w->ac->c.flags & REDIS_CONNECTED) {
    int done = 0;
    redisBufferWrite(&w->ac->c, &done);
  }
  return 0;
}

/* On every worker at start: commands allowed again, connection opened. */
static void w_start(tl_app *app, void *arg) {
  tl_redis *r = arg;
  wconn *w = my_wconn(r);
  if (!w)
    return;
  w->stopped = false;
  w->retry_at = 0;
  if (!w->ac)
    w_connect(w);
}

/* A stop hook, on every worker: pending commands fail with TL_ECLOSED,
 * the connection and timer close (the loop can end). */
static void w_stop(tl_app *app, void *arg) {
  tl_redis *r = arg;
  wconn *w = my_wconn(r);
  if (!w)
    return;
  w->stopped = true;
  w_drop(w, TL_ECLOSED);
  w_drain_failed(w);
  if (w->timer_open) {
    uv_close((uv_handle_t *)&w->timer, NULL);
    w->timer_open = false;
  }
}

/* ---- subscriber counts over every node --------------------------------- */

/* KEYS[1] the topic's count hash; ARGV: node id, its count, the age in ms
 * past which a node's count is dropped. Writes this node's count, bumps
 * the version, sums the fresh counts; returns {sum, version}. */
static const char COUNT_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[3])\n"
    "if tonumber(ARGV[2]) > 0 then\n"
    "  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. now)\n"
    "else\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "end\n"
    "local v = redis.call('HINCRBY', KEYS[1], '~v', 1)\n"
    "local sum = 0\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  if all[i] ~= '~v' then\n"
    "    local c, ts = string.match(all[i + 1], '^(%d+):(%d+)$')\n"
    "    if c and now - tonumber(ts) <= ttl then\n"
    "      sum = sum + tonumber(c)\n"
    "    else\n"
    "      redis.call('HDEL', KEYS[1], all[i])\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return {sum, v}\n";

/* Reports this node's `count` of `topic` and asks for the sum. */
static int count_report(tl_redis *r, const char *topic, size_t tlen,
                        long long count, tl_redis_reply_cb cb, void *arg) {
  char *key = malloc(r->plen + 6 + tlen);
  if (!key)
    return TL_ENOMEM;
  memcpy(key, r->prefix, r->plen);
  memcpy(key + r->plen, "count:", 6);
  memcpy(key + r->plen + 6, topic, tlen);
  char node[33], cnt[24], ttl[24];
  tl_redis_node_id(r, node);
  snprintf(cnt, sizeof cnt, "%lld", count < 0 ? 0 : count);
  snprintf(ttl, sizeof ttl, "%llu", 3ull * r->count_ms);
  const char *argv[7] = {"EVAL", COUNT_LUA, "1", key, node, cnt, ttl};
  size_t lens[7] = {4,  sizeof COUNT_LUA - 1, 1,          r->plen + 6 + tlen,
                    32, strlen(cnt),          strlen(ttl)};
  int rc = tl_redis_command(r, 7, argv, lens, cb, arg);
  free(key);
  return rc;
}

typedef struct count_call {
  tl_redis_count_cb cb;
  void *arg;
} count_call;

static void count_answer(tl_redis *r, int status, const tl_redis_reply *rep,
                         void *arg) {
  count_call cc = *(count_call *)arg;
  free(arg);
  if (status == 0 &&
      (rep->type != TL_REDIS_ARRAY || rep->elements != 2 ||
       rep->element[0].type != TL_REDIS_INTEGER ||
       rep->element[1].type != TL_REDIS_INTEGER))
    status = TL_EIO;
  if (status < 0)
    cc.cb(r, status, 0, 0, cc.arg);
  else
    cc.cb(r, 0, rep->element[0].integer, rep->element[1].integer, cc.arg);
}

int tl_redis_cluster_count(tl_redis *r, const char *topic,
                           tl_redis_count_cb cb, void *arg) {
  if (!r || !topic || !cb)
    return TL_EINVAL;
  if (!r->count_ms)
    return TL_ESTATE;
  count_call *cc = malloc(sizeof *cc);
  if (!cc)
    return TL_ENOMEM;
  *cc = (count_call){cb, arg};
  int rc = count_report(r, topic, strlen(topic),
                        tl_app_subscriber_count(r->app, topic), count_answer,
                        cc);
  if (rc < 0)
    free(cc);
  return rc;
}

/* Worker 0, every count_ms: this node's counts of its topics, fresh. */
static void count_refresh(tl_timer *t, void *arg) {
  tl_redis *r = arg;
  for (chan *c = r->chans; c; c = c->next)
    count_report(r, c->name, c->len, tl_app_subscriber_count(r->app, c->name),
                 NULL, NULL);
}

/* ---- connections ------------------------------------------------------- */

static void connect_both(tl_redis *r);

static void update_state(tl_redis *r) {
  int st;
  if (!r->listening)
    st = TL_REDIS_IDLE;
  else if (r->pub_ready && r->sub_ready)
    st = TL_REDIS_UP;
  else
    st = r->ever_up ? TL_REDIS_DOWN : TL_REDIS_CONNECTING;
  atomic_store_explicit(&r->state, st, memory_order_relaxed);
}

static void on_retry(tl_timer *t, void *arg) {
  tl_redis *r = arg;
  r->retry = NULL;
  if (!r->stopping)
    connect_both(r);
}

/* Closes a connection that is established; one still connecting is left
 * to finish (its callbacks say how), as hiredis cannot cancel it. */
static void drop_conn(redisAsyncContext *c) {
  if (c && (c->c.flags & REDIS_CONNECTED))
    redisAsyncDisconnect(c);
}

/* A connection was lost (or never made): the other goes too, and what is
 * missing is made again after the backoff. */
static void schedule_retry(tl_redis *r) {
  chans_lost(r, TL_EIO);
  if (r->stopping || r->retry)
    return;
  drop_conn(r->pub);
  drop_conn(r->sub);
  r->retry = tl_timer_start(r->app, r->backoff, 0, on_retry, r);
  r->backoff = r->backoff * 2 > r->backoff_max ? r->backoff_max
                                               : r->backoff * 2;
}

static void became_ready(tl_redis *r) {
  update_state(r);
  if (!(r->pub_ready && r->sub_ready))
    return;
  if (r->setup_timer) {
    tl_timer_stop(r->setup_timer);
    r->setup_timer = NULL;
  }
  if (r->ever_up)
    atomic_fetch_add_explicit(&r->reconnects, 1, memory_order_relaxed);
  r->ever_up = true;
  r->backoff = r->backoff_min;
  for (chan *c = r->chans; c; c = c->next)
    channel_command(r, "SUBSCRIBE", c->name, c->len);
  flush_queue(r);
}

/* The reply to the setup commands (AUTH, SELECT, PING): the connection is
 * usable when the last one is answered without an error. */
static void on_setup(redisAsyncContext *c, void *reply, void *arg) {
  tl_redis *r = c->data;
  redisReply *rep = reply;
  bool last = arg != NULL;
  if (!rep || rep->type == REDIS_REPLY_ERROR) {
    schedule_retry(r);
    return;
  }
  if (!last)
    return;
  if (c == r->pub)
    r->pub_ready = true;
  else if (c == r->sub)
    r->sub_ready = true;
  became_ready(r);
}

static void on_connect(const redisAsyncContext *c, int status) {
  tl_redis *r = c->data;
  if (status == REDIS_OK)
    return;
  /* hiredis frees the context after this; no disconnect callback. */
  if (c == r->pub) {
    r->pub = NULL;
    r->pub_ready = false;
  } else if (c == r->sub) {
    r->sub = NULL;
    r->sub_ready = false;
  }
  update_state(r);
  schedule_retry(r);
}

static void on_disconnect(const redisAsyncContext *c, int status) {
  tl_redis *r = c->data;
  if (r->stopping && r->stop_timer &&
      !((c == r->pub ? NULL : r->pub) || (c == r->sub ? NULL : r->sub))) {
    tl_timer_stop(r->stop_timer); /* the last one ended in time */
    r->stop_timer = NULL;
  }
  if (c == r->pub) {
    r->pub = NULL;
    r->pub_ready = false;
    r->inflight = 0; /* their callbacks ran (with no reply) */
  } else if (c == r->sub) {
    r->sub = NULL;
    r->sub_ready = false;
  }
  update_state(r);
  if (!r->stopping)
    schedule_retry(r);
}

static redisAsyncContext *open_one(tl_redis *r) {
  int err;
  redisAsyncContext *c =
      open_conn(r, r, on_connect, on_disconnect, on_setup, &err);
  if (c)
    redisAsyncCommand(c, on_setup, (void *)1, "PING");
  return c;
}

/* connect_timeout_ms after a connect: a connection that is not ready (a
 * Redis that accepted and never answered the setup, or a connect that
 * hangs) is freed, and the retry follows. */
static void on_setup_timeout(tl_timer *t, void *arg) {
  tl_redis *r = arg;
  r->setup_timer = NULL;
  if (r->stopping)
    return;
  redisAsyncContext *cs[2] = {r->pub_ready ? NULL : r->pub,
                              r->sub_ready ? NULL : r->sub};
  if (cs[0])
    r->pub = NULL;
  if (cs[1])
    r->sub = NULL;
  for (int i = 0; i < 2; i++)
    if (cs[i])
      redisAsyncFree(cs[i]); /* on_setup(NULL) schedules the retry */
  update_state(r);
  schedule_retry(r);
}

static void connect_both(tl_redis *r) {
  if (!r->setup_timer && !r->stopping)
    r->setup_timer =
        tl_timer_start(r->app, r->connect_timeout, 0, on_setup_timeout, r);
  if (!r->pub && !(r->pub = open_one(r))) {
    schedule_retry(r);
    return;
  }
  if (!r->sub && !(r->sub = open_one(r)))
    schedule_retry(r);
  update_state(r);
}

/* Whether the blocking context's last read ran out of time. */
static bool timed_out(const redisContext *c) {
  return c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* At start: is Redis there? A short blocking connect and PING, each
 * bounded by connect_timeout_ms. */
static int probe(tl_redis *r) {
  struct timeval tv = {r->connect_timeout / 1000,
                       (r->connect_timeout % 1000) * 1000};
  redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
  if (!c)
    return TL_ENOMEM;
  int err = 0;
  if (c->err) {
    err = c->err == REDIS_ERR_IO && errno ? uv_translate_sys_error(errno)
                                          : UV_ECONNREFUSED;
  } else if (redisSetTimeout(c, tv) != REDIS_OK) {
    err = UV_EIO;
  } else {
    redisReply *rep = NULL;
    if (r->password)
      rep = redisCommand(c, "AUTH %s", r->password);
    if (r->password && !rep)
      err = timed_out(c) ? UV_ETIMEDOUT : UV_EPROTO;
    else if (r->password && rep->type == REDIS_REPLY_ERROR)
      err = UV_EACCES;
    if (rep)
      freeReplyObject(rep);
    rep = err ? NULL : redisCommand(c, "PING");
    if (!err && !rep)
      err = timed_out(c) ? UV_ETIMEDOUT : UV_EPROTO;
    else if (!err && rep->type == REDIS_REPLY_ERROR)
      err = UV_EPROTO;
    if (rep)
      freeReplyObject(rep);
  }
  redisFree(c);
  return err;
}

static int bridge_start(void *ctx, tl_app *app) {
  tl_redis *r = ctx;
  r->stopping = false;
  r->listening = true;
  r->stop_timer = NULL; /* the app freed the last run's timers */
  r->backoff = r->backoff_min;
  int err = probe(r);
  if (err && !r->start_without) {
    r->listening = false;
    return err;
  }
  connect_both(r);
  tl_app_call_all(app, w_start, NULL, r);
  if (r->count_ms)
    r->count_timer =
        tl_timer_start(app, r->count_ms, r->count_ms, count_refresh, r);
  return 0;
}

/* command_timeout_ms into a stop: connections still waiting for replies
 * are freed (what they carried counts as dropped). */
static void on_stop_timeout(tl_timer *t, void *arg) {
  tl_redis *r = arg;
  r->stop_timer = NULL;
  redisAsyncContext *cs[2] = {r->pub, r->sub};
  r->pub = r->sub = NULL;
  r->pub_ready = r->sub_ready = false;
  for (int i = 0; i < 2; i++)
    if (cs[i])
      redisAsyncFree(cs[i]);
}

static void bridge_stop(void *ctx) {
  tl_redis *r = ctx;
  /* This node's counts go now, not three periods later. The command
   * connection of worker 0 is still open (the stop hooks run after this)
   * and hands the scripts to the kernel at once. */
  if (r->count_ms)
    for (chan *c = r->chans; c; c = c->next)
      count_report(r, c->name, c->len, 0, NULL, NULL);
  chans_lost(r, TL_ECLOSED);
  r->stopping = true;
  r->listening = false;
  if (r->retry) {
    tl_timer_stop(r->retry);
    r->retry = NULL;
  }
  if (r->setup_timer) {
    tl_timer_stop(r->setup_timer);
    r->setup_timer = NULL;
  }
  if (r->count_timer) {
    tl_timer_stop(r->count_timer);
    r->count_timer = NULL;
  }
  /* Ready connections end after their pending replies; one still
   * connecting or waiting for its setup answers is freed now, so that a
   * Redis that never answers cannot hold the stop (its poll handle keeps
   * the loop). */
  redisAsyncContext *cs[2] = {r->pub, r->sub};
  bool ready[2] = {r->pub_ready, r->sub_ready};
  for (int i = 0; i < 2; i++) {
    if (!cs[i])
      continue;
    if (ready[i] && (cs[i]->c.flags & REDIS_CONNECTED)) {
      redisAsyncDisconnect(cs[i]);
    } else {
      if (cs[i] == r->pub)
        r->pub = NULL, r->pub_ready = false;
      else
        r->sub = NULL, r->sub_ready = false;
      redisAsyncFree(cs[i]);
    }
  }
  /* A Redis that stopped answering would hold the stop forever. */
  if ((r->pub || r->sub) && !r->stop_timer)
    r->stop_timer =
        tl_timer_start(r->app, r->command_timeout, 0, on_stop_timeout, r);
  /* What waits is lost with the stop. */
  while (r->queue) {
    pending *m = r->queue;
    r->queue = m->next;
    atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
    free(m);
  }
  r->queue_tail = &r->queue;
  r->queued = 0;
  set_buffered(r);
  update_state(r);
}

static void bridge_free(void *ctx) {
  tl_redis *r = ctx;
  while (r->chans) {
    chan *c = r->chans;
    r->chans = c->next;
    free(c);
  }
  while (r->queue) {
    pending *m = r->queue;
    r->queue = m->next;
    free(m);
  }
  free(r->w);
  free(r->host);
  free(r->password);
  free(r->prefix);
  free(r);
}

/* ---- the public side ----------------------------------------------------- */

int tl_redis_attach(tl_app *app, const tl_redis_options *o, tl_redis **out) {
  if (!app || !o || !o->url || !*o->url)
    return TL_EINVAL;
  tl_redis *r = calloc(1, sizeof *r);
  if (!r)
    return TL_ENOMEM;
  r->app = app;
  r->queue_tail = &r->queue;
  const char *prefix = o->prefix ? o->prefix : DEFAULT_PREFIX;
  int err = parse_url(r, o->url);
  if (!err && o->password) {
    free(r->password);
    r->password = dupn(o->password, strlen(o->password));
    if (!r->password)
      err = TL_ENOMEM;
  }
  if (!err && !(r->prefix = dupn(prefix, strlen(prefix))))
    err = TL_ENOMEM;
  if (!err && uv_random(NULL, NULL, r->node, sizeof r->node, 0, NULL) != 0)
    err = TL_EIO;
  if (err) {
    bridge_free(r);
    return err;
  }
  r->plen = strlen(r->prefix);
  r->max_buffer = o->max_buffer_bytes ? o->max_buffer_bytes : DEFAULT_BUFFER;
  r->backoff_min = o->reconnect_min_ms ? o->reconnect_min_ms : 100;
  r->backoff_max = o->reconnect_max_ms ? o->reconnect_max_ms : 5000;
  if (r->backoff_max < r->backoff_min)
    r->backoff_max = r->backoff_min;
  r->connect_timeout = o->connect_timeout_ms ? o->connect_timeout_ms : 2000;
  r->command_timeout = o->command_timeout_ms ? o->command_timeout_ms : 2000;
  r->count_ms = o->cluster_count_ms;
  r->nworkers = tl_app_workers(app);
  if (!(r->w = calloc(r->nworkers, sizeof *r->w))) {
    bridge_free(r);
    return TL_ENOMEM;
  }
  for (unsigned i = 0; i < r->nworkers; i++) {
    r->w[i].r = r;
    r->w[i].failed_tail = &r->w[i].failed;
  }
  r->start_without = o->start_without_redis;
  tl_pubsub_backend b = {
      .publish = bridge_publish,
      .interest = bridge_interest,
      .start = bridge_start,
      .stop = bridge_stop,
      .free = bridge_free,
      .ctx = r,
  };
  err = tl_app_set_pubsub_backend(app, &b);
  if (err) {
    bridge_free(r);
    return err;
  }
  /* Once installed, `r` is the app's (freed by tl_app_free). */
  err = tl_app_on_stop(app, w_stop, r);
  if (err)
    return err;
  if (out)
    *out = r;
  return 0;
}

int tl_redis_get_stats(const tl_redis *r, tl_redis_stats *s) {
  if (!r || !s)
    return TL_EINVAL;
  tl_redis *m = (tl_redis *)r;
  s->forwarded = atomic_load_explicit(&m->forwarded, memory_order_relaxed);
  s->received = atomic_load_explicit(&m->received, memory_order_relaxed);
  s->own = atomic_load_explicit(&m->own, memory_order_relaxed);
  s->dropped = atomic_load_explicit(&m->dropped, memory_order_relaxed);
  s->malformed = atomic_load_explicit(&m->malformed, memory_order_relaxed);
  s->reconnects = atomic_load_explicit(&m->reconnects, memory_order_relaxed);
  s->commands = atomic_load_explicit(&m->commands, memory_order_relaxed);
  s->command_errors =
      atomic_load_explicit(&m->command_errors, memory_order_relaxed);
  s->buffered = atomic_load_explicit(&m->buffered, memory_order_relaxed);
  s->channels = atomic_load_explicit(&m->nchans, memory_order_relaxed);
  s->state = atomic_load_explicit(&m->state, memory_order_relaxed);
  return 0;
}

void tl_redis_node_id(const tl_redis *r, char buf[33]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    buf[2 * i] = hex[r->node[i] >> 4];
    buf[2 * i + 1] = hex[r->node[i] & 15];
  }
  buf[32] = '\0';
}
