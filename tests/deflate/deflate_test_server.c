/* deflate_test_server: a talon app with a WebSocket route for every
 * permessage-deflate (RFC 7692) mode, for the suite in tests/deflate.
 *
 * Usage: deflate_test_server [PORT]   (0, the default, picks a free port)
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections.
 *
 * WebSocket routes. Every one echoes messages (same opcode) unless the
 * message is a command below; every one counts opens and closes and logs
 * close codes in /stats.
 *   /plain         no compression
 *   /shared        TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR
 *   /dedicated     TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR
 *   /small-window  dedicated, compress_window_bits 9, compress_mem_level 1
 *   /level9        dedicated, compress_level 9 (/dedicated has the default,
 *                  1)
 *   /comp-only     TL_DEDICATED_COMPRESSOR alone (implies a shared
 *                  decompressor)
 *   /shared-comp   TL_SHARED_COMPRESSOR alone
 *   /limited       shared, max_payload 64 KiB
 *   /threshold0    dedicated, compress_threshold 1 (everything but empty
 *                  messages is compressed)
 *   /pub-shared    shared; subscribes to "t" on open
 *   /pub-dedicated dedicated; subscribes to "t" on open
 *   /pub-plain     no compression; subscribes to "t" on open
 *   /sink          dedicated, max_payload 64 MiB; answers every message
 *                  with the text "len=<n> crc=<crc32, 8 hex digits>"
 *                  instead of an echo (an echo of 64 MiB would cost more
 *                  than the inflating the fairness tests look at)
 *   /sink-shared   the same with a shared compressor and decompressor
 *   /sendex        shared; commands
 *   /sendex-ded    dedicated; commands
 * Commands (text messages, on every route):
 *   "pub <msg>"    tl_app_publish(app, "t", <msg>, TEXT) (reaches the
 *                  sender too when it is subscribed); replies nothing
 *   "pubb <msg>"   same, binary (also as a binary message)
 *   "p1 <msg>"     tl_app_publish_ex(app, "t", <msg>, TEXT, 1)
 *   "p0 <msg>"     tl_app_publish_ex(app, "t", <msg>, TEXT, 0)
 *   "c1 <msg>"     tl_ws_send_ex(<msg>, TEXT, 1)
 *   "c0 <msg>"     tl_ws_send_ex(<msg>, TEXT, 0)
 *   "cd <msg>"     tl_ws_send_ex(<msg>, TEXT, -1)
 *   "big <n>"      sends n bytes of compressible text (tl_ws_send)
 *   "rnd <n>"      sends n pseudo-random bytes, binary (tl_ws_send)
 * Anything else is echoed with tl_ws_send (except on /sink*).
 * HTTP routes:
 *   GET /stats     JSON: {"opens":N,"closes":N,"subs":N,
 *                  "close_log":[{"route":..,"code":..},...]} (last 256)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <zlib.h>

#define TEST_SERVER_NAME "deflate_test_server"
#include "test_server.h"

#define KiB 1024u
#define NLOG 256

static tl_app *g_app;
static struct {
  long opens, closes;
  long nlog;
  struct {
    char route[24];
    int code;
  } log[NLOG];
} g;

typedef struct {
  char route[24];
} ctx;

static int up(tl_req *req, tl_res *res, void *data) {
  ctx *c = data;
  snprintf(c->route, sizeof c->route, "%s", tl_req_path(req));
  return TL_ACCEPT;
}

static void on_open(tl_ws *ws) {
  g.opens++;
}

static void on_open_sub(tl_ws *ws) {
  g.opens++;
  tl_ws_subscribe(ws, "t");
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  ctx *c = tl_ws_data(ws);
  g.closes++;
  long i = g.nlog++ % NLOG;
  snprintf(g.log[i].route, sizeof g.log[i].route, "%s", c->route);
  g.log[i].code = code;
}

static bool cmd(const char *p, size_t n, const char *name, const char **arg,
                size_t *alen) {
  size_t k = strlen(name);
  if (n < k + 1 || memcmp(p, name, k) != 0 || p[k] != ' ')
    return false;
  *arg = p + k + 1;
  *alen = n - k - 1;
  return true;
}

static size_t num(const char *p, size_t n) {
  char b[24];
  if (n >= sizeof b)
    n = sizeof b - 1;
  memcpy(b, p, n);
  b[n] = 0;
  return (size_t)strtoull(b, NULL, 10);
}

static void fill_text(char *p, size_t n) {
  static const char *words[] = {"talon ",   "deflate ",  "window ", "bits ",
                                "context ", "takeover ", "frame "};
  uint32_t s = 1;
  size_t i = 0;
  while (i < n) {
    s = s * 1103515245u + 12345u;
    const char *w = words[(s >> 16) % 7];
    for (; *w && i < n; w++)
      p[i++] = *w;
  }
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  const char *p = data, *a;
  size_t an;
  if (op == TL_WS_BINARY && cmd(p, len, "pubb", &a, &an)) {
    tl_app_publish(g_app, "t", a, an, TL_WS_BINARY);
    return;
  }
  if (op == TL_WS_TEXT) {
    if (cmd(p, len, "pub", &a, &an)) {
      tl_app_publish(g_app, "t", a, an, TL_WS_TEXT);
      return;
    }
    if (cmd(p, len, "pubb", &a, &an)) {
      tl_app_publish(g_app, "t", a, an, TL_WS_BINARY);
      return;
    }
    if (cmd(p, len, "p1", &a, &an)) {
      tl_app_publish_ex(g_app, "t", a, an, TL_WS_TEXT, 1);
      return;
    }
    if (cmd(p, len, "p0", &a, &an)) {
      tl_app_publish_ex(g_app, "t", a, an, TL_WS_TEXT, 0);
      return;
    }
    if (cmd(p, len, "c1", &a, &an)) {
      tl_ws_send_ex(ws, a, an, TL_WS_TEXT, 1);
      return;
    }
    if (cmd(p, len, "c0", &a, &an)) {
      tl_ws_send_ex(ws, a, an, TL_WS_TEXT, 0);
      return;
    }
    if (cmd(p, len, "cd", &a, &an)) {
      tl_ws_send_ex(ws, a, an, TL_WS_TEXT, -1);
      return;
    }
    if (cmd(p, len, "big", &a, &an) || cmd(p, len, "rnd", &a, &an)) {
      size_t n = num(a, an);
      char *b = malloc(n ? n : 1);
      if (!b)
        abort();
      if (p[0] == 'b') {
        fill_text(b, n);
        tl_ws_send(ws, b, n, TL_WS_TEXT);
      } else {
        uint64_t s = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < n; i++) {
          s ^= s << 13;
          s ^= s >> 7;
          s ^= s << 17;
          b[i] = (char)(s >> 24);
        }
        tl_ws_send(ws, b, n, TL_WS_BINARY);
      }
      free(b);
      return;
    }
  }
  tl_ws_send(ws, data, len, op);
}

#define BASE                                                                   \
  .upgrade = up, .open = on_open, .message = on_message, .close = on_close,    \
  .max_payload = 64u << 20, .max_backpressure = 256u << 20,                    \
  .idle_timeout_s = 600

static const tl_ws_handlers plain_h = {BASE};
static const tl_ws_handlers shared_h = {
    BASE, .compression = TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR};
static const tl_ws_handlers dedicated_h = {
    BASE, .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR};
static const tl_ws_handlers small_window_h = {
    BASE, .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR,
    .compress_window_bits = 9, .compress_mem_level = 1};
static const tl_ws_handlers level9_h = {
    BASE, .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR,
    .compress_level = 9};
static const tl_ws_handlers comp_only_h = {BASE, .compression =
                                                     TL_DEDICATED_COMPRESSOR};
static const tl_ws_handlers shared_comp_h = {BASE, .compression =
                                                       TL_SHARED_COMPRESSOR};
static const tl_ws_handlers limited_h = {.upgrade = up,
                                         .open = on_open,
                                         .message = on_message,
                                         .close = on_close,
                                         .max_payload = 64 * KiB,
                                         .idle_timeout_s = 600,
                                         .compression = TL_SHARED_COMPRESSOR |
                                                        TL_SHARED_DECOMPRESSOR};
static const tl_ws_handlers threshold0_h = {
    BASE, .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR,
    .compress_threshold = 1};
static const tl_ws_handlers pub_shared_h = {
    .upgrade = up,
    .open = on_open_sub,
    .message = on_message,
    .close = on_close,
    .max_payload = 64u << 20,
    .max_backpressure = 256u << 20,
    .idle_timeout_s = 600,
    .compression = TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR};
static const tl_ws_handlers pub_dedicated_h = {
    .upgrade = up,
    .open = on_open_sub,
    .message = on_message,
    .close = on_close,
    .max_payload = 64u << 20,
    .max_backpressure = 256u << 20,
    .idle_timeout_s = 600,
    .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR};
static const tl_ws_handlers pub_plain_h = {.upgrade = up,
                                           .open = on_open_sub,
                                           .message = on_message,
                                           .close = on_close,
                                           .max_payload = 64u << 20,
                                           .max_backpressure = 256u << 20,
                                           .idle_timeout_s = 600};

static void on_sink(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  char b[64];
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < len;) {
    uInt n = len - off > (1u << 30) ? (1u << 30) : (uInt)(len - off);
    crc = crc32(crc, (const Bytef *)data + off, n);
    off += n;
  }
  snprintf(b, sizeof b, "len=%zu crc=%08lx", len, crc);
  tl_ws_send_text(ws, b);
}

#define SINK                                                                   \
  .upgrade = up, .open = on_open, .message = on_sink, .close = on_close,       \
  .max_payload = 64u << 20, .idle_timeout_s = 600

static const tl_ws_handlers sink_h = {
    SINK, .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR};
static const tl_ws_handlers sink_shared_h = {
    SINK, .compression = TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR};

static void stats(tl_req *req, tl_res *res) {
  size_t cap = 64 + NLOG * 64;
  char *b = malloc(cap);
  if (!b)
    abort();
  size_t n = (size_t)snprintf(
      b, cap, "{\"opens\":%ld,\"closes\":%ld,\"subs\":%zu,\"close_log\":[",
      g.opens, g.closes, tl_app_subscriber_count(g_app, "t"));
  long first = g.nlog > NLOG ? g.nlog - NLOG : 0;
  for (long i = first; i < g.nlog; i++)
    n += (size_t)snprintf(b + n, cap - n, "%s{\"route\":\"%s\",\"code\":%d}",
                          i > first ? "," : "", g.log[i % NLOG].route,
                          g.log[i % NLOG].code);
  snprintf(b + n, cap - n, "]}");
  tl_res_header(res, "Cache-Control", "no-store");
  tl_res_json(res, b);
  free(b);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen,
                                            .shutdown_timeout_ms = 2000,
                                            .max_connections = 20000});
  if (!app)
    return 1;
  g_app = app;
  const size_t cs = sizeof(ctx);
  CHECK(tl_app_get(app, "/stats", stats));
  CHECK(tl_app_ws(app, "/plain", &plain_h, cs));
  CHECK(tl_app_ws(app, "/shared", &shared_h, cs));
  CHECK(tl_app_ws(app, "/dedicated", &dedicated_h, cs));
  CHECK(tl_app_ws(app, "/small-window", &small_window_h, cs));
  CHECK(tl_app_ws(app, "/level9", &level9_h, cs));
  CHECK(tl_app_ws(app, "/comp-only", &comp_only_h, cs));
  CHECK(tl_app_ws(app, "/shared-comp", &shared_comp_h, cs));
  CHECK(tl_app_ws(app, "/limited", &limited_h, cs));
  CHECK(tl_app_ws(app, "/threshold0", &threshold0_h, cs));
  CHECK(tl_app_ws(app, "/pub-shared", &pub_shared_h, cs));
  CHECK(tl_app_ws(app, "/pub-dedicated", &pub_dedicated_h, cs));
  CHECK(tl_app_ws(app, "/pub-plain", &pub_plain_h, cs));
  CHECK(tl_app_ws(app, "/sendex", &shared_h, cs));
  CHECK(tl_app_ws(app, "/sendex-ded", &dedicated_h, cs));
  CHECK(tl_app_ws(app, "/sink", &sink_h, cs));
  CHECK(tl_app_ws(app, "/sink-shared", &sink_shared_h, cs));
  int err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "deflate_test_server: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
