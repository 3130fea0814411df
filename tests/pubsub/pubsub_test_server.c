/* pubsub_test_server: a talon app whose WebSocket routes are driven by text
 * commands, for the pytest suite in tests/pubsub (topic pub/sub, see
 * include/talon/pubsub.h).
 *
 * Usage: pubsub_test_server [PORT]   (0, the default, picks a free port)
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
 *
 * WebSocket routes (same handlers, different options):
 *   /ws     defaults
 *   /self   publish_to_self
 *   /slow   max_backpressure 64 KiB
 *   /cobl   max_backpressure 64 KiB, close_on_backpressure_limit
 *   /big    max_backpressure 64 MiB (readers that must never drop)
 *
 * Every socket gets an id (1, 2, ...) and is greeted with "r:hello <id>".
 * Replies start with "r:<command> ". Commands (one text message each):
 *   sub T / unsub T / is T / count T    tl_ws_subscribe / tl_ws_unsubscribe /
 *                                       tl_ws_is_subscribed /
 *                                       tl_app_subscriber_count
 *   subm T1 T2 ... / unsubm T1 ...      many at once: "r:subm <ok> <rc...>"
 *                                       (rc list only for failures)
 *   unsuball                            leave every topic (via topic_at(0))
 *   countm T1 T2 ...                    "r:countm <n1> <n2> ..."
 *   pubm PAYLOAD T1 T2 ...              tl_ws_publish to each:
 *                                       "r:pubm <pos> <bp> <zero> <err>"
 *   topics                              "r:topics <n> <t0> <t1> ..."
 *   pub T PAYLOAD / pubb T PAYLOAD      tl_ws_publish, text / binary
 *   pubop OP T PAYLOAD                  tl_ws_publish with opcode OP
 *   apub T PAYLOAD                      tl_app_publish from the callback
 *   send PAYLOAD                        tl_ws_send to itself
 *   sendto ID PAYLOAD                   tl_ws_send to socket ID
 *   mixed ID N T TAG SIZE               N times: direct send "TAG d<i>" to
 *                                       socket ID (ID 0: itself), then
 *                                       tl_ws_publish(T, "TAG p<i>");
 *                                       messages padded to SIZE bytes
 *   flood T N SIZE                      N publishes of "T:<seq>:" padded to
 *                                       SIZE bytes, in this callback:
 *                                       "r:flood ok bp drop err posdrop"
 *                                       (posdrop: results > 0 although a
 *                                       subscriber dropped that message)
 *   timer T N SIZE PER MS               app-level uv_timer: PER
 *                                       tl_app_publish of "T:<seq>:" per
 *                                       tick every MS ms, N in all
 *   pubclose T PAYLOAD                  publish, then tl_ws_terminate(self)
 *   closepub T PAYLOAD                  tl_ws_close(self), then publish
 *   unsubpub T PAYLOAD                  unsubscribe T, then publish to T
 *   close [CODE] / terminate            tl_ws_close / tl_ws_terminate
 *   kill ID                             tl_ws_terminate(socket ID)
 *   ondrop ACTION [ARG]                 what the `dropped` handler does
 *                                       (each time): none | unsub T |
 *                                       unsuball | close | terminate |
 *                                       resub T | kill ID | pub T
 *   nobody T N                          N publishes (tl_ws_publish and
 *                                       tl_app_publish) to T, which must
 *                                       have no subscribers; replies
 *                                       "r:nobody <rc_ws> <rc_app>
 *                                       <heap_delta> <count>"
 *   info                                "r:info <dropped_count> <ntopics>
 *                                       <buffered>"
 * Handlers: `subscription` logs (id, topic, new, old, state) and checks
 * tl_app_subscriber_count / tl_ws_is_subscribed against it; `close` logs
 * the socket's topics and publishes "bye <id>" to each (results logged);
 * `dropped` counts and runs the socket's ondrop action; `drain` counts.
 *
 * HTTP routes:
 *   GET  /stats[?since=SEQ]   JSON: counters, timer, the event log
 *   GET  /sock?id=N           JSON: one socket
 *   GET|POST /publish?topic=T[&msg=M]   tl_app_publish (POST: body if no
 *                             msg); {"rc":N}
 *   GET  /count?topic=T       {"count":N}
 *   GET  /timer?topic=T&n=N&size=S&per=P&ms=M   starts a timer publisher
 *   GET  /stop                tl_app_stop()
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define TEST_SERVER_NAME "pubsub_test_server"
#include "test_server.h"
#include <uv.h>

#define KiB 1024u
#define MiB (1024u * 1024u)
#define NLOG 4096
#define LOG_TOPIC 80

enum { R_WS, R_SELF, R_SLOW, R_COBL, R_BIG, NROUTES };
static const char *const route_names[NROUTES] = {"/ws", "/self", "/slow",
                                                 "/cobl", "/big"};

enum {
  DA_NONE,
  DA_UNSUB,
  DA_UNSUBALL,
  DA_CLOSE,
  DA_TERMINATE,
  DA_RESUB,
  DA_KILL,
  DA_PUB
};

/* The per-connection context. */
typedef struct {
  long id;
  int route;
  int drop_action;
  char drop_arg[LOG_TOPIC + 48];
} conn;

/* What the app remembers of every socket, by id (kept after close). */
typedef struct {
  tl_ws *ws; /* NULL once closed */
  int route;
  int closed;
  int close_code;
  long dropped_calls;
  long drains;
  long drop_action_runs;
  int last_drop_action_rc;
  size_t dropped_count; /* tl_ws_dropped_count, at close */
  size_t ntopics_at_close;
  long buffered_at_first_drop; /* tl_ws_buffered_amount, -1: no drop */
} sockinfo;

typedef struct {
  long seq;
  int kind; /* 0 sub event, 1 close */
  long id;
  char topic[LOG_TOPIC + 1]; /* kind 0; kind 1: topics joined with ',' */
  int a, b, c;               /* sub: new, old, state; close: code, ntopics, -
                              */
  int bye[8];                /* close: bye publish results */
} logent;

static tl_app *g_app;

static struct {
  long next_id;
  long opens, closes, live;
  long sub_events, joins, leaves, count_mismatch, is_mismatch;
  long sub_events_closed; /* subscription events while the socket closes */
  long dropped_calls, drains;
  long http_publishes, http_last_rc;
  long nlog;
  logent log[NLOG];
  sockinfo *info;
  long ninfo, capinfo;
  /* The timer publisher. */
  struct {
    int running;
    long runs, sent, ok, bp, drop, err, posdrop;
    long n, size, per;
    char topic[LOG_TOPIC + 1];
    char *buf;
    uv_timer_t *t;
  } tm;
  long drops_now; /* dropped handler calls, for posdrop */
} g;

/* ---- small helpers --------------------------------------------------- */

static void sb_jstr(sbuf *b, const char *s) {
  sb_printf(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      sb_printf(b, "\\%c", c);
    else if (c >= 0x20 && c < 0x7f)
      sb_printf(b, "%c", c);
    else
      sb_printf(b, "?");
  }
  sb_printf(b, "\"");
}

static void copy_topic(char *dst, const char *src) {
  snprintf(dst, LOG_TOPIC + 1, "%s", src ? src : "(null)");
}

static sockinfo *info_of(long id) {
  return id > 0 && id <= g.ninfo ? &g.info[id - 1] : NULL;
}

static tl_ws *ws_of(long id) {
  sockinfo *si = info_of(id);
  return si ? si->ws : NULL;
}

static logent *log_add(int kind, long id) {
  logent *e = &g.log[g.nlog % NLOG];
  memset(e, 0, sizeof *e);
  e->seq = g.nlog++;
  e->kind = kind;
  e->id = id;
  return e;
}

static void reply(tl_ws *ws, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reply(tl_ws *ws, const char *fmt, ...) {
  sbuf b = {0};
  va_list ap;
  va_start(ap, fmt);
  char tmp[512];
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0)
    abort();
  if ((size_t)n < sizeof tmp) {
    tl_ws_send_text(ws, tmp);
    return;
  }
  b.p = malloc((size_t)n + 1);
  if (!b.p)
    abort();
  va_start(ap, fmt);
  vsnprintf(b.p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  tl_ws_send_text(ws, b.p);
  free(b.p);
}

/* Splits off the next space-separated word of *s ("" at the end). */
static char *word(char **s) {
  char *w = *s;
  char *sp = strchr(w, ' ');
  if (sp) {
    *sp = '\0';
    *s = sp + 1;
  } else {
    *s = w + strlen(w);
  }
  return w;
}

/* "PREFIX" padded with 'x' to `size` bytes (at least the prefix). */
static char *padded(const char *prefix, size_t size, size_t *len) {
  size_t pl = strlen(prefix);
  size_t n = size > pl ? size : pl;
  char *p = malloc(n + 1);
  if (!p)
    abort();
  memcpy(p, prefix, pl);
  memset(p + pl, 'x', n - pl);
  p[n] = '\0';
  *len = n;
  return p;
}

static size_t heap_in_use(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* ---- the timer publisher ---------------------------------------------- */

static void timer_closed(uv_handle_t *h) {
  free(h);
}

static void timer_tick(uv_timer_t *t) {
  for (long i = 0; i < g.tm.per && g.tm.sent < g.tm.n; i++) {
    int pl = snprintf(g.tm.buf, (size_t)g.tm.size + 1, "%s:%ld:", g.tm.topic,
                      g.tm.sent);
    if (pl < g.tm.size)
      g.tm.buf[pl] = 'x';
    long before = g.drops_now;
    int rc = tl_app_publish(g_app, g.tm.topic, g.tm.buf, (size_t)g.tm.size,
                            TL_WS_TEXT);
    g.tm.sent++;
    if (rc == TL_WS_BACKPRESSURE) {
      g.tm.bp++;
    } else if (rc > 0) {
      g.tm.ok++;
      if (g.drops_now != before)
        g.tm.posdrop++;
    } else if (rc == 0)
      g.tm.drop++;
    else
      g.tm.err++;
  }
  if (g.tm.sent >= g.tm.n) {
    g.tm.running = 0;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, timer_closed);
    g.tm.t = NULL;
    free(g.tm.buf);
    g.tm.buf = NULL;
  }
}

static int timer_start(const char *topic, long n, long size, long per,
                       long ms) {
  if (g.tm.running || n <= 0 || per <= 0 || size < 1 || ms < 0)
    return -1;
  uv_timer_t *t = malloc(sizeof *t);
  char *buf = malloc((size_t)size + 64);
  if (!t || !buf) {
    free(t);
    free(buf);
    return -1;
  }
  memset(buf, 'x', (size_t)size + 64);
  g.tm.running = 1;
  g.tm.runs++;
  g.tm.sent = g.tm.ok = g.tm.bp = g.tm.drop = g.tm.err = g.tm.posdrop = 0;
  g.tm.n = n;
  g.tm.size = size;
  g.tm.per = per;
  copy_topic(g.tm.topic, topic);
  g.tm.buf = buf;
  g.tm.t = t;
  uv_timer_init(tl_app_loop(g_app), t);
  uv_timer_start(t, timer_tick, (uint64_t)ms, ms ? (uint64_t)ms : 1);
  return 0;
}

/* ---- ws handlers ------------------------------------------------------ */

static int route_of(const char *path) {
  for (int i = 0; i < NROUTES; i++)
    if (strcmp(path, route_names[i]) == 0)
      return i;
  return R_WS;
}

static int on_upgrade(tl_req *req, tl_res *res, void *data) {
  conn *c = data;
  c->route = route_of(tl_req_path(req));
  return TL_ACCEPT;
}

static void on_open(tl_ws *ws) {
  conn *c = tl_ws_data(ws);
  if (g.ninfo == g.capinfo) {
    long cap = g.capinfo ? g.capinfo * 2 : 256;
    sockinfo *n = realloc(g.info, (size_t)cap * sizeof *n);
    if (!n)
      abort();
    g.info = n;
    g.capinfo = cap;
  }
  c->id = ++g.next_id;
  g.ninfo = c->id;
  sockinfo *si = &g.info[c->id - 1];
  memset(si, 0, sizeof *si);
  si->ws = ws;
  si->route = c->route;
  si->buffered_at_first_drop = -1;
  g.opens++;
  g.live++;
  reply(ws, "r:hello %ld", c->id);
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  conn *c = tl_ws_data(ws);
  sockinfo *si = info_of(c->id);
  g.closes++;
  g.live--;
  logent *e = log_add(1, c->id);
  size_t nt = tl_ws_topic_count(ws);
  e->a = code;
  e->b = (int)nt;
  e->c = (int)tl_ws_ready_state(ws);
  size_t off = 0;
  for (size_t i = 0; i < nt; i++) {
    const char *t = tl_ws_topic_at(ws, i);
    int n = snprintf(e->topic + off, sizeof e->topic - off, "%s%s",
                     i ? "," : "", t ? t : "(null)");
    if (n < 0 || (size_t)n >= sizeof e->topic - off) {
      off = sizeof e->topic - 1;
      break;
    }
    off += (size_t)n;
  }
  /* A goodbye to everyone still on this socket's topics. Copy the names
   * first: publishing may run handlers that change the topic list. */
  char bye[64];
  int bl = snprintf(bye, sizeof bye, "bye %ld", c->id);
  for (size_t i = 0; i < nt; i++) {
    const char *t = tl_ws_topic_at(ws, i);
    if (!t)
      break;
    int rc = tl_ws_publish(ws, t, bye, (size_t)bl, TL_WS_TEXT);
    if (i < 8)
      e->bye[i] = rc;
  }
  if (si) {
    si->ws = NULL;
    si->closed = 1;
    si->close_code = code;
    si->dropped_count = tl_ws_dropped_count(ws);
    si->ntopics_at_close = nt;
  }
}

static void on_subscription(tl_ws *ws, const char *topic, int new_count,
                            int old_count) {
  conn *c = tl_ws_data(ws);
  logent *e = log_add(0, c->id);
  copy_topic(e->topic, topic);
  e->a = new_count;
  e->b = old_count;
  e->c = (int)tl_ws_ready_state(ws);
  g.sub_events++;
  if (new_count > old_count)
    g.joins++;
  else
    g.leaves++;
  if (e->c == TL_WS_CLOSED)
    g.sub_events_closed++;
  if ((long)tl_app_subscriber_count(tl_ws_app(ws), topic) != new_count)
    g.count_mismatch++;
  if (tl_ws_is_subscribed(ws, topic) != (new_count > old_count))
    g.is_mismatch++;
}

static void on_dropped(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
  conn *c = tl_ws_data(ws);
  sockinfo *si = info_of(c->id);
  g.dropped_calls++;
  g.drops_now++;
  if (si) {
    si->dropped_calls++;
    if (si->buffered_at_first_drop < 0)
      si->buffered_at_first_drop = (long)tl_ws_buffered_amount(ws);
  }
  int rc = 0;
  switch (c->drop_action) {
  case DA_NONE: return;
  case DA_UNSUB: rc = tl_ws_unsubscribe(ws, c->drop_arg); break;
  case DA_UNSUBALL:
    while (tl_ws_topic_count(ws) > 0)
      tl_ws_unsubscribe(ws, tl_ws_topic_at(ws, 0));
    break;
  case DA_CLOSE: rc = tl_ws_close(ws, 4001, "dropped"); break;
  case DA_TERMINATE:
    if (si) {
      si->drop_action_runs++;
      si->last_drop_action_rc = 0;
    }
    tl_ws_terminate(ws); /* ws is gone now */
    return;
  case DA_RESUB:
    rc = tl_ws_unsubscribe(ws, c->drop_arg);
    if (rc == 0)
      rc = tl_ws_subscribe(ws, c->drop_arg);
    break;
  case DA_KILL: {
    tl_ws *o = ws_of(atol(c->drop_arg));
    if (o && o != ws)
      tl_ws_terminate(o);
    else
      rc = -1;
    break;
  }
  case DA_PUB: {
    char msg[64];
    int ml = snprintf(msg, sizeof msg, "droppub %ld", c->id);
    rc = tl_ws_publish(ws, c->drop_arg, msg, (size_t)ml, TL_WS_TEXT);
    break;
  }
  }
  if (si) {
    si->drop_action_runs++;
    si->last_drop_action_rc = rc;
  }
}

static void on_drain(tl_ws *ws) {
  conn *c = tl_ws_data(ws);
  sockinfo *si = info_of(c->id);
  g.drains++;
  if (si)
    si->drains++;
}

static int do_publish(tl_ws *ws, const char *topic, const char *payload,
                      tl_opcode op) {
  return tl_ws_publish(ws, topic, payload, strlen(payload), op);
}

static void cmd_flood(tl_ws *ws, char *args) {
  const char *topic = word(&args);
  long n = atol(word(&args));
  long size = atol(word(&args));
  if (size < 1)
    size = 1;
  char *buf = malloc((size_t)size + 64);
  if (!buf)
    abort();
  memset(buf, 'x', (size_t)size + 64);
  long ok = 0, bp = 0, drop = 0, err = 0, posdrop = 0;
  char t[LOG_TOPIC + 1];
  copy_topic(t, topic);
  for (long i = 0; i < n; i++) {
    int pl = snprintf(buf, (size_t)size + 1, "%s:%ld:", t, i);
    if (pl < size)
      buf[pl] = 'x';
    long before = g.drops_now;
    int rc = tl_ws_publish(ws, topic, buf, (size_t)size, TL_WS_BINARY);
    if (rc == TL_WS_BACKPRESSURE) {
      bp++;
    } else if (rc > 0) {
      ok++;
      if (g.drops_now != before)
        posdrop++;
    } else if (rc == 0)
      drop++;
    else
      err++;
  }
  free(buf);
  reply(ws, "r:flood %ld %ld %ld %ld %ld", ok, bp, drop, err, posdrop);
}

static void cmd_mixed(tl_ws *ws, char *args) {
  long id = atol(word(&args));
  long n = atol(word(&args));
  const char *topic = word(&args);
  const char *tag = word(&args);
  long size = atol(word(&args));
  tl_ws *to = id == 0 ? ws : ws_of(id);
  if (!to) {
    reply(ws, "r:mixed nosuch");
    return;
  }
  long sent_ok = 0, pub_ok = 0;
  for (long i = 0; i < n; i++) {
    char pre[96];
    size_t len;
    snprintf(pre, sizeof pre, "%s d%ld ", tag, i);
    char *d = padded(pre, (size_t)size, &len);
    if (tl_ws_send(to, d, len, TL_WS_TEXT) != 0)
      sent_ok++;
    free(d);
    snprintf(pre, sizeof pre, "%s p%ld ", tag, i);
    char *p = padded(pre, (size_t)size, &len);
    if (tl_ws_publish(ws, topic, p, len, TL_WS_TEXT) != 0)
      pub_ok++;
    free(p);
  }
  reply(ws, "r:mixed %ld %ld", sent_ok, pub_ok);
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  conn *c = tl_ws_data(ws);
  if (op != TL_WS_TEXT) {
    reply(ws, "r:error binary");
    return;
  }
  char *msg = malloc(len + 1);
  if (!msg)
    abort();
  memcpy(msg, data, len);
  msg[len] = '\0';
  char *args = msg;
  const char *cmd = word(&args);

  if (strcmp(cmd, "sub") == 0) {
    reply(ws, "r:sub %d", tl_ws_subscribe(ws, args));
  } else if (strcmp(cmd, "unsub") == 0) {
    reply(ws, "r:unsub %d", tl_ws_unsubscribe(ws, args));
  } else if (strcmp(cmd, "subm") == 0 || strcmp(cmd, "unsubm") == 0) {
    int sub = cmd[0] == 's';
    long ok = 0;
    sbuf b = {0};
    sb_printf(&b, "r:%s", cmd);
    sbuf fails = {0};
    sb_printf(&fails, "%s", "");
    while (*args) {
      const char *t = word(&args);
      int rc = sub ? tl_ws_subscribe(ws, t) : tl_ws_unsubscribe(ws, t);
      if (rc == 0)
        ok++;
      else
        sb_printf(&fails, " %d", rc);
    }
    sb_printf(&b, " %ld%s", ok, fails.p);
    tl_ws_send_text(ws, b.p);
    free(b.p);
    free(fails.p);
  } else if (strcmp(cmd, "countm") == 0) {
    sbuf b = {0};
    sb_printf(&b, "r:countm");
    while (*args)
      sb_printf(&b, " %zu",
                tl_app_subscriber_count(tl_ws_app(ws), word(&args)));
    tl_ws_send_text(ws, b.p);
    free(b.p);
  } else if (strcmp(cmd, "pubm") == 0) {
    /* pubm PAYLOAD T1 T2 ...: publish PAYLOAD to each; count by result */
    const char *payload = word(&args);
    long pos = 0, bp = 0, zero = 0, err = 0;
    while (*args) {
      int rc = do_publish(ws, word(&args), payload, TL_WS_TEXT);
      if (rc == TL_WS_BACKPRESSURE)
        bp++;
      else if (rc > 0)
        pos++;
      else if (rc == 0)
        zero++;
      else
        err++;
    }
    reply(ws, "r:pubm %ld %ld %ld %ld", pos, bp, zero, err);
  } else if (strcmp(cmd, "unsuball") == 0) {
    long n = 0;
    while (tl_ws_topic_count(ws) > 0) {
      if (tl_ws_unsubscribe(ws, tl_ws_topic_at(ws, 0)) != 0)
        break;
      n++;
    }
    reply(ws, "r:unsuball %ld %zu", n, tl_ws_topic_count(ws));
  } else if (strcmp(cmd, "is") == 0) {
    reply(ws, "r:is %d", tl_ws_is_subscribed(ws, args) ? 1 : 0);
  } else if (strcmp(cmd, "count") == 0) {
    reply(ws, "r:count %zu", tl_app_subscriber_count(tl_ws_app(ws), args));
  } else if (strcmp(cmd, "topics") == 0) {
    sbuf b = {0};
    size_t n = tl_ws_topic_count(ws);
    sb_printf(&b, "r:topics %zu", n);
    for (size_t i = 0; i < n; i++) {
      const char *t = tl_ws_topic_at(ws, i);
      sb_printf(&b, " %s", t ? t : "(null)");
    }
    if (tl_ws_topic_at(ws, n) != NULL)
      sb_printf(&b, " (past-end-not-null)");
    tl_ws_send_text(ws, b.p);
    free(b.p);
  } else if (strcmp(cmd, "pub") == 0 || strcmp(cmd, "pubb") == 0) {
    const char *topic = word(&args);
    int rc =
        do_publish(ws, topic, args, cmd[3] == 'b' ? TL_WS_BINARY : TL_WS_TEXT);
    reply(ws, "r:%s %d", cmd, rc);
  } else if (strcmp(cmd, "pubop") == 0) {
    int opc = atoi(word(&args));
    const char *topic = word(&args);
    reply(ws, "r:pubop %d", do_publish(ws, topic, args, (tl_opcode)opc));
  } else if (strcmp(cmd, "apub") == 0) {
    const char *topic = word(&args);
    reply(ws, "r:apub %d",
          tl_app_publish(tl_ws_app(ws), topic, args, strlen(args), TL_WS_TEXT));
  } else if (strcmp(cmd, "send") == 0) {
    reply(ws, "r:send %d", tl_ws_send_text(ws, args));
  } else if (strcmp(cmd, "sendto") == 0) {
    tl_ws *to = ws_of(atol(word(&args)));
    reply(ws, "r:sendto %d", to ? tl_ws_send_text(to, args) : -99);
  } else if (strcmp(cmd, "mixed") == 0) {
    cmd_mixed(ws, args);
  } else if (strcmp(cmd, "flood") == 0) {
    cmd_flood(ws, args);
  } else if (strcmp(cmd, "timer") == 0) {
    const char *topic = word(&args);
    long n = atol(word(&args));
    long size = atol(word(&args));
    long per = atol(word(&args));
    long ms = atol(word(&args));
    reply(ws, "r:timer %d", timer_start(topic, n, size, per, ms));
  } else if (strcmp(cmd, "pubclose") == 0) {
    const char *topic = word(&args);
    do_publish(ws, topic, args, TL_WS_TEXT);
    tl_ws_terminate(ws); /* ws is gone now */
  } else if (strcmp(cmd, "closepub") == 0) {
    const char *topic = word(&args);
    int crc = tl_ws_close(ws, 4002, "closepub");
    int prc = do_publish(ws, topic, args, TL_WS_TEXT);
    /* Sends after the close started are dropped: this reply must not
     * arrive. */
    reply(ws, "r:closepub %d %d", crc, prc);
  } else if (strcmp(cmd, "unsubpub") == 0) {
    const char *topic = word(&args);
    int urc = tl_ws_unsubscribe(ws, topic);
    int prc = do_publish(ws, topic, args, TL_WS_TEXT);
    reply(ws, "r:unsubpub %d %d", urc, prc);
  } else if (strcmp(cmd, "close") == 0) {
    int code = *args ? atoi(args) : 1000;
    int rc = tl_ws_close(ws, code, "bye");
    if (rc != 0)
      reply(ws, "r:close %d", rc);
  } else if (strcmp(cmd, "terminate") == 0) {
    tl_ws_terminate(ws);
  } else if (strcmp(cmd, "kill") == 0) {
    tl_ws *o = ws_of(atol(args));
    if (o && o != ws)
      tl_ws_terminate(o);
    reply(ws, "r:kill %d", o && o != ws ? 0 : -1);
  } else if (strcmp(cmd, "ondrop") == 0) {
    const char *a = word(&args);
    int da = strcmp(a, "unsub") == 0       ? DA_UNSUB
             : strcmp(a, "unsuball") == 0  ? DA_UNSUBALL
             : strcmp(a, "close") == 0     ? DA_CLOSE
             : strcmp(a, "terminate") == 0 ? DA_TERMINATE
             : strcmp(a, "resub") == 0     ? DA_RESUB
             : strcmp(a, "kill") == 0      ? DA_KILL
             : strcmp(a, "pub") == 0       ? DA_PUB
                                           : DA_NONE;
    c->drop_action = da;
    snprintf(c->drop_arg, sizeof c->drop_arg, "%s", args);
    reply(ws, "r:ondrop %d", da);
  } else if (strcmp(cmd, "nobody") == 0) {
    const char *topic = word(&args);
    long n = atol(word(&args));
    int rws = 1, rapp = 1;
    size_t before = heap_in_use();
    for (long i = 0; i < n; i++) {
      rws = tl_ws_publish(ws, topic, "nobody", 6, TL_WS_TEXT);
      rapp = tl_app_publish(tl_ws_app(ws), topic, "nobody", 6, TL_WS_TEXT);
      if (rws != 0 || rapp != 0)
        break;
    }
    size_t after = heap_in_use();
    reply(ws, "r:nobody %d %d %ld %zu", rws, rapp, (long)after - (long)before,
          tl_app_subscriber_count(tl_ws_app(ws), topic));
  } else if (strcmp(cmd, "info") == 0) {
    reply(ws, "r:info %zu %zu %zu", tl_ws_dropped_count(ws),
          tl_ws_topic_count(ws), tl_ws_buffered_amount(ws));
  } else {
    reply(ws, "r:error unknown %s", cmd);
  }
  free(msg);
}

#define HANDLERS                                                               \
  .upgrade = on_upgrade, .open = on_open, .message = on_message,               \
  .close = on_close, .dropped = on_dropped, .drain = on_drain,                 \
  .subscription = on_subscription, .idle_timeout_s = TL_WS_NO_TIMEOUT

static const tl_ws_handlers ws_h = {HANDLERS};
static const tl_ws_handlers self_h = {HANDLERS, .publish_to_self = 1};
static const tl_ws_handlers slow_h = {HANDLERS, .max_backpressure = 64 * KiB};
static const tl_ws_handlers cobl_h = {HANDLERS, .max_backpressure = 64 * KiB,
                                      .close_on_backpressure_limit = 1};
static const tl_ws_handlers big_h = {HANDLERS, .max_backpressure = 64 * MiB};

/* ---- HTTP ------------------------------------------------------------- */

static void h_stats(tl_req *req, tl_res *res) {
  const char *since_s = tl_req_query(req, "since");
  long since = since_s ? atol(since_s) : 0;
  sbuf b = {0};
  sb_printf(&b, "{");
#define NUM(f) sb_printf(&b, "\"" #f "\":%ld,", (long)g.f)
  NUM(opens);
  NUM(closes);
  NUM(live);
  NUM(sub_events);
  NUM(joins);
  NUM(leaves);
  NUM(count_mismatch);
  NUM(is_mismatch);
  NUM(sub_events_closed);
  NUM(dropped_calls);
  NUM(drains);
  NUM(http_publishes);
  NUM(http_last_rc);
  NUM(nlog);
#undef NUM
  sb_printf(&b,
            "\"heap\":%zu,\"own_bytes\":%zu,\"timer\":{\"running\":%d,\"runs\":"
            "%ld,\"sent\":%ld,"
            "\"ok\":%ld,\"bp\":%ld,\"drop\":%ld,\"err\":%ld,\"posdrop\":%ld},",
            heap_in_use(), (size_t)g.capinfo * sizeof(sockinfo), g.tm.running,
            g.tm.runs, g.tm.sent, g.tm.ok, g.tm.bp, g.tm.drop, g.tm.err,
            g.tm.posdrop);
  sb_printf(&b, "\"log\":[");
  long first = g.nlog > NLOG ? g.nlog - NLOG : 0;
  if (since > first)
    first = since;
  for (long i = first; i < g.nlog; i++) {
    const logent *e = &g.log[i % NLOG];
    sb_printf(&b, "%s{\"seq\":%ld,\"id\":%ld,", i > first ? "," : "", e->seq,
              e->id);
    if (e->kind == 0) {
      sb_printf(&b, "\"ev\":\"sub\",\"topic\":");
      sb_jstr(&b, e->topic);
      sb_printf(&b, ",\"new\":%d,\"old\":%d,\"state\":%d}", e->a, e->b, e->c);
    } else {
      sb_printf(&b,
                "\"ev\":\"close\",\"code\":%d,\"ntopics\":%d,"
                "\"state\":%d,\"topics\":",
                e->a, e->b, e->c);
      sb_jstr(&b, e->topic);
      sb_printf(&b, ",\"bye\":[");
      for (int k = 0; k < e->b && k < 8; k++)
        sb_printf(&b, "%s%d", k ? "," : "", e->bye[k]);
      sb_printf(&b, "]}");
    }
  }
  sb_printf(&b, "]}");
  tl_res_header(res, "Cache-Control", "no-store");
  tl_res_json(res, b.p);
  free(b.p);
}

static void h_sock(tl_req *req, tl_res *res) {
  const char *id_s = tl_req_query(req, "id");
  long id = id_s ? atol(id_s) : 0;
  sockinfo *si = info_of(id);
  if (!si) {
    tl_res_status(res, 404);
    tl_res_json(res, "{\"error\":\"no such socket\"}");
    return;
  }
  size_t dropped = si->ws ? tl_ws_dropped_count(si->ws) : si->dropped_count;
  size_t ntopics = si->ws ? tl_ws_topic_count(si->ws) : si->ntopics_at_close;
  char out[512];
  snprintf(out, sizeof out,
           "{\"id\":%ld,\"route\":\"%s\",\"live\":%d,\"closed\":%d,"
           "\"close_code\":%d,\"dropped_count\":%zu,\"dropped_calls\":%ld,"
           "\"drains\":%ld,\"ntopics\":%zu,\"buffered\":%zu,"
           "\"drop_action_runs\":%ld,\"last_drop_action_rc\":%d,"
           "\"buffered_at_first_drop\":%ld}",
           id, route_names[si->route], si->ws != NULL, si->closed,
           si->close_code, dropped, si->dropped_calls, si->drains, ntopics,
           si->ws ? tl_ws_buffered_amount(si->ws) : (size_t)0,
           si->drop_action_runs, si->last_drop_action_rc,
           si->buffered_at_first_drop);
  tl_res_json(res, out);
}

static void h_publish(tl_req *req, tl_res *res) {
  const char *topic = tl_req_query(req, "topic");
  const char *msg = tl_req_query(req, "msg");
  const char *p = msg;
  size_t n = msg ? strlen(msg) : 0;
  if (!msg) {
    tl_slice body = tl_req_body(req);
    p = body.ptr;
    n = body.len;
  }
  int rc =
      tl_app_publish(tl_req_app(req), topic ? topic : "", p, n, TL_WS_TEXT);
  g.http_publishes++;
  g.http_last_rc = rc;
  char out[64];
  snprintf(out, sizeof out, "{\"rc\":%d}", rc);
  tl_res_json(res, out);
}

static void h_count(tl_req *req, tl_res *res) {
  const char *topic = tl_req_query(req, "topic");
  char out[64];
  snprintf(out, sizeof out, "{\"count\":%zu}",
           tl_app_subscriber_count(tl_req_app(req), topic ? topic : ""));
  tl_res_json(res, out);
}

static void h_timer(tl_req *req, tl_res *res) {
  const char *t = tl_req_query(req, "topic");
  const char *n = tl_req_query(req, "n");
  const char *s = tl_req_query(req, "size");
  const char *p = tl_req_query(req, "per");
  const char *m = tl_req_query(req, "ms");
  int rc = timer_start(t ? t : "", n ? atol(n) : 1, s ? atol(s) : 16,
                       p ? atol(p) : 1, m ? atol(m) : 1);
  char out[64];
  snprintf(out, sizeof out, "{\"rc\":%d}", rc);
  tl_res_json(res, out);
}

static void h_stop(tl_req *req, tl_res *res) {
  tl_res_text(res, "stopping\n");
  tl_app_stop(g_app);
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen,
                                            .shutdown_timeout_ms = 2000,
                                            .max_connections = 12000});
  if (!app)
    return 1;
  g_app = app;
  CHECK(tl_app_get(app, "/stats", h_stats));
  CHECK(tl_app_get(app, "/sock", h_sock));
  CHECK(tl_app_get(app, "/publish", h_publish));
  CHECK(tl_app_post(app, "/publish", h_publish));
  CHECK(tl_app_get(app, "/count", h_count));
  CHECK(tl_app_get(app, "/timer", h_timer));
  CHECK(tl_app_get(app, "/stop", h_stop));
  CHECK(tl_app_ws(app, "/ws", &ws_h, sizeof(conn)));
  CHECK(tl_app_ws(app, "/self", &self_h, sizeof(conn)));
  CHECK(tl_app_ws(app, "/slow", &slow_h, sizeof(conn)));
  CHECK(tl_app_ws(app, "/cobl", &cobl_h, sizeof(conn)));
  CHECK(tl_app_ws(app, "/big", &big_h, sizeof(conn)));
  int err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "pubsub_test_server: %s\n", tl_strerror(err));
  tl_app_free(app);
  free(g.info);
  free(g.tm.buf);
  return err ? 1 : 0;
}
