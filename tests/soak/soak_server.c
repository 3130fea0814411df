/* soak_server: the talon app the WebSocket pub/sub soak test drives
 * (tests/soak/run.sh, client tests/soak/soak_client.c). Public API only.
 *
 * Usage: soak_server [PORT [TOPICS]]   (PORT 0, the default, picks a free
 * port; TOPICS [1000] bounds the topic numbers a client may use).
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
 *
 * WebSocket route /ws (max_backpressure 64 MiB, no idle timeout). Every
 * socket gets an id. Topics are "t<k>" for k in [0, TOPICS). Commands, one
 * text message each, and their replies (D is tl_ws_dropped_count() of the
 * socket at the time of the reply):
 *   sub K            "ack sub K SEQ D"     SEQ: topic K's last sequence
 *   unsub K          "ack unsub K SEQ D"   number when the command ran
 *   pub K M PAYLOAD  stamps the next sequence number SEQ of topic K and
 *                    publishes "msg K SEQ ID PAYLOAD" with tl_ws_publish
 *                    (M = 'w': everyone but the sender) or tl_app_publish
 *                    (M = 'a': the sender too), then replies
 *                    "sent K SEQ M D"
 * The ack and the published messages leave through each socket's ordered
 * output, so a subscriber must see SEQ+1, SEQ+2, ... from its sub ack on,
 * except the sequence numbers it published itself with 'w' (their "sent"
 * reply takes their place), until its unsub ack. Any other command, or a
 * failing talon call, is counted as an error (the soak fails on any).
 *
 * HTTP: GET /stats -> JSON {"open":, "opened":, "closed":, "published":,
 * "deliveries":, "drops":, "errors":, "heap":, "rss_kb":}. "heap" is the
 * bytes in use on the heap: ASan's allocator counter under ASan, else
 * mallinfo2() (uordblks + hblkhd). "deliveries" is the sum of the
 * subscriber counts of every publish (minus the sender for 'w').
 * "drops" counts the `dropped` handler's calls.
 *
 * At exit (SIGTERM) a summary line goes to stderr; the exit status is 0
 * after a clean stop.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define TEST_SERVER_NAME "soak_server"
#include "test_server.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#endif
#ifdef SOAK_ASAN
/* The ASan runtime's allocator counter; GCC ships no
 * <sanitizer/allocator_interface.h>, so it is declared here when missing. */
#if defined(__has_include) && __has_include(<sanitizer/allocator_interface.h>)
#include <sanitizer/allocator_interface.h>
#else
size_t __sanitizer_get_current_allocated_bytes(void);
#endif
#endif

#define MAX_TOPICS 100000
#define MSG_MAX 4096

typedef struct {
  long id;
} conn;

static tl_app *g_app;
static long g_ntopics = 1000;
static unsigned long long *g_seq; /* last sequence number per topic */

static struct {
  long next_id, open, opened, closed;
  unsigned long long published, deliveries, drops, errors;
} g;

static size_t heap_in_use(void) {
#ifdef SOAK_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#endif
}

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static void error(tl_ws *ws, const char *what, int rc) {
  g.errors++;
  conn *c = ws ? tl_ws_data(ws) : NULL;
  fprintf(stderr, "soak_server: conn %ld: %s: %d (%s)\n", c ? c->id : -1L, what,
          rc, rc < 0 ? tl_strerror(rc) : "");
}

/* Reply on `ws`; a dropped reply is counted by the `dropped` handler. */
static void reply(tl_ws *ws, const char *text, int len) {
  int rc = tl_ws_send(ws, text, (size_t)len, TL_WS_TEXT);
  if (rc < 0)
    error(ws, "tl_ws_send", rc);
}

/* Parses "K" at *p (advancing past it and one space); -1 if invalid. */
static long parse_topic(const char **p, const char *end) {
  long k = 0;
  const char *s = *p;
  if (s == end || *s < '0' || *s > '9')
    return -1;
  while (s < end && *s >= '0' && *s <= '9') {
    k = k * 10 + (*s++ - '0');
    if (k >= g_ntopics)
      return -1;
  }
  if (s < end) {
    if (*s != ' ')
      return -1;
    s++;
  }
  *p = s;
  return k;
}

static void on_open(tl_ws *ws) {
  conn *c = tl_ws_data(ws);
  c->id = ++g.next_id;
  g.open++;
  g.opened++;
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  g.open--;
  g.closed++;
}

static void on_dropped(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  g.drops++;
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  const char *p = data, *end = p + len;
  conn *c = tl_ws_data(ws);
  char topic[24], out[MSG_MAX + 64];
  size_t drops = tl_ws_dropped_count(ws);
  int n;

  if (op != TL_WS_TEXT)
    goto bad;
  if (len > 4 && memcmp(p, "sub ", 4) == 0) {
    p += 4;
    long k = parse_topic(&p, end);
    if (k < 0 || p != end)
      goto bad;
    snprintf(topic, sizeof topic, "t%ld", k);
    int rc = tl_ws_subscribe(ws, topic);
    if (rc)
      error(ws, "tl_ws_subscribe", rc);
    n = snprintf(out, sizeof out, "ack sub %ld %llu %zu", k, g_seq[k], drops);
    reply(ws, out, n);
  } else if (len > 6 && memcmp(p, "unsub ", 6) == 0) {
    p += 6;
    long k = parse_topic(&p, end);
    if (k < 0 || p != end)
      goto bad;
    snprintf(topic, sizeof topic, "t%ld", k);
    int rc = tl_ws_unsubscribe(ws, topic);
    if (rc)
      error(ws, "tl_ws_unsubscribe", rc);
    n = snprintf(out, sizeof out, "ack unsub %ld %llu %zu", k, g_seq[k], drops);
    reply(ws, out, n);
  } else if (len > 4 && memcmp(p, "pub ", 4) == 0) {
    p += 4;
    long k = parse_topic(&p, end);
    if (k < 0 || end - p < 2 || (p[0] != 'w' && p[0] != 'a') || p[1] != ' ')
      goto bad;
    char mode = p[0];
    p += 2;
    size_t plen = (size_t)(end - p);
    if (plen > MSG_MAX)
      goto bad;
    snprintf(topic, sizeof topic, "t%ld", k);
    unsigned long long seq = ++g_seq[k];
    n = snprintf(out, sizeof out, "msg %ld %llu %ld ", k, seq, c->id);
    memcpy(out + n, p, plen);
    size_t subs = tl_app_subscriber_count(g_app, topic);
    int rc;
    if (mode == 'w') {
      if (subs && tl_ws_is_subscribed(ws, topic))
        subs--;
      rc = tl_ws_publish(ws, topic, out, (size_t)n + plen, TL_WS_TEXT);
    } else {
      rc = tl_app_publish(g_app, topic, out, (size_t)n + plen, TL_WS_TEXT);
    }
    /* 0 is "nobody else subscribed" or "every copy dropped" (counted by
     * the dropped handler); only negative codes other than backpressure
     * are failures. */
    if (rc < 0)
      error(ws, mode == 'w' ? "tl_ws_publish" : "tl_app_publish", rc);
    if (rc > 0 && subs == 0)
      error(ws, "publish reached someone with no subscriber", rc);
    g.published++;
    g.deliveries += subs;
    n = snprintf(out, sizeof out, "sent %ld %llu %c %zu", k, seq, mode,
                 tl_ws_dropped_count(ws));
    reply(ws, out, n);
  } else {
    goto bad;
  }
  return;
bad:
  g.errors++;
  fprintf(stderr, "soak_server: conn %ld: bad command '%.*s'\n", c->id,
          (int)(len > 80 ? 80 : len), (const char *)data);
}

static const tl_ws_handlers ws_h = {
    .open = on_open,
    .message = on_message,
    .close = on_close,
    .dropped = on_dropped,
    .idle_timeout_s = TL_WS_NO_TIMEOUT,
    .max_backpressure = 64u * 1024 * 1024,
};

static void h_stats(tl_req *req, tl_res *res) {
  char body[512];
  snprintf(body, sizeof body,
           "{\"open\":%ld,\"opened\":%ld,\"closed\":%ld,\"published\":%llu,"
           "\"deliveries\":%llu,\"drops\":%llu,\"errors\":%llu,"
           "\"heap\":%zu,\"rss_kb\":%ld}\n",
           g.open, g.opened, g.closed, g.published, g.deliveries, g.drops,
           g.errors, heap_in_use(), rss_kb());
  tl_res_json(res, body);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  if (argc > 2)
    g_ntopics = atol(argv[2]);
  if (g_ntopics < 1 || g_ntopics > MAX_TOPICS) {
    fprintf(stderr, "soak_server: TOPICS must be in [1, %d]\n", MAX_TOPICS);
    return 2;
  }
  g_seq = calloc((size_t)g_ntopics, sizeof *g_seq);
  if (!g_seq)
    return 1;
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen,
                                            .shutdown_timeout_ms = 2000,
                                            .max_connections = 60000,
                                            .backlog = 4096});
  if (!app)
    return 1;
  g_app = app;
  int err = tl_app_get(app, "/stats", h_stats);
  if (!err)
    err = tl_app_ws(app, "/ws", &ws_h, sizeof(conn));
  if (!err)
    err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "soak_server: %s\n", tl_strerror(err));
  fprintf(stderr,
          "soak_server: stopped: opened %ld, closed %ld, published %llu, "
          "deliveries %llu, drops %llu, errors %llu\n",
          g.opened, g.closed, g.published, g.deliveries, g.drops, g.errors);
  tl_app_free(app);
  free(g_seq);
  return err ? 1 : 0;
}
