/* Test server for the compression middleware (tests/mw_compress).
 *
 *   compress_test_server PORT MODE [FILE]
 *
 * MODE "default": tl_compress(NULL). MODE "custom": threshold 10, level 1,
 * gzip only, a predicate that adds application/x-custom and removes
 * text/csv. FILE is served by GET /file (tl_res_send_file). */
#define _GNU_SOURCE /* the pthread types uv.h needs under -std=c11 */
#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "compress_test_server"
#include "test_server.h"
#include <talon/mw/compress.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *file_path;

static size_t qnum(tl_req *req, const char *name, size_t dflt) {
  const char *v = tl_req_query(req, name);
  return v && *v ? strtoull(v, NULL, 10) : dflt;
}

/* `n` bytes of body: "text" is readable, compressible lines; "rand" is
 * pseudo-random bytes (incompressible). Both are a function of the byte
 * offset only, so a test can rebuild them. */
static void fill(char *p, size_t n, size_t off, const char *kind) {
  if (kind && strcmp(kind, "rand") == 0) {
    for (size_t i = 0; i < n; i++) {
      uint32_t x = (uint32_t)(off + i) * 2654435761u;
      x ^= x >> 15;
      x *= 2246822519u;
      x ^= x >> 13;
      p[i] = (char)(x & 0xff);
    }
    return;
  }
  /* 64-byte lines: "line 00000012: the quick brown fox ... 000084....\n" */
  char tmp[128];
  size_t cur = (size_t)-1;
  for (size_t i = 0; i < n; i++) {
    size_t k = off + i, line = k / 64;
    if (line != cur) {
      int len = snprintf(tmp, sizeof tmp,
                         "line %08zu: the quick brown fox jumps over %06zu",
                         line % 100000000, (line * 7) % 1000000);
      memset(tmp + len, '.', 63 - (size_t)len);
      tmp[63] = '\n';
      cur = line;
    }
    p[i] = tmp[k % 64];
  }
}

static void set_type(tl_req *req, tl_res *res, const char *dflt) {
  const char *t = tl_req_query(req, "type");
  if (!t)
    t = dflt;
  if (strcmp(t, "none") != 0)
    tl_res_header(res, "Content-Type", t);
}

static void send_body(tl_req *req, tl_res *res, size_t n) {
  char *b = malloc(n ? n : 1);
  if (!b) {
    tl_res_status(res, 500);
    return;
  }
  fill(b, n, 0, tl_req_query(req, "kind"));
  tl_res_send(res, b, n);
  free(b);
}

/* GET /body?n=N&type=T&kind=text|rand */
static void body(tl_req *req, tl_res *res) {
  set_type(req, res, "text/plain; charset=utf-8");
  send_body(req, res, qnum(req, "n", 5000));
}

static void range(tl_req *req, tl_res *res) {
  tl_res_status(res, 206);
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_header(res, "Content-Range", "bytes 0-4999/10000");
  send_body(req, res, 5000);
}

static void encoded(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_header(res, "Content-Encoding", "br");
  send_body(req, res, 5000);
}

static void notransform(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_header(res, "Cache-Control", "public, No-Transform");
  send_body(req, res, 5000);
}

static void vary(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  const char *v = tl_req_query(req, "v");
  tl_res_header(res, "Vary", v ? v : "Origin");
  send_body(req, res, 5000);
}

static void status(tl_req *req, tl_res *res) {
  tl_res_status(res, atoi(tl_req_param(req, "code")));
  tl_res_header(res, "Content-Type", "text/plain");
  send_body(req, res, 5000);
}

/* GET /stream?chunks=K&size=S&clen=1: K writes of S bytes, then end. */
static void stream(tl_req *req, tl_res *res) {
  size_t k = qnum(req, "chunks", 10), s = qnum(req, "size", 1000);
  const char *kind = tl_req_query(req, "kind");
  set_type(req, res, "text/plain");
  if (qnum(req, "clen", 0))
    tl_res_headerf(res, "Content-Length", "%zu", k * s);
  char *b = malloc(s ? s : 1);
  if (!b) {
    tl_res_status(res, 500);
    return;
  }
  for (size_t i = 0; i < k; i++) {
    fill(b, s, i * s, kind);
    if (tl_res_write(res, b, s) < 0)
      break;
  }
  free(b);
  tl_res_end(res, NULL, 0);
}

/* GET /tick: "tick N\n" lines, one write every 200 ms, 4 in all; a test
 * reads the first ones before the response ends. */
typedef struct tick {
  uv_timer_t timer;
  tl_res *res;
  int n;
} tick;

static void tick_closed(uv_handle_t *h) {
  free(h->data);
}

static void tick_fire(uv_timer_t *t) {
  tick *k = t->data;
  if (k->res) {
    char line[32];
    int len = snprintf(line, sizeof line, "tick %d\n", k->n);
    if (++k->n < 4) {
      tl_res_write(k->res, line, (size_t)len);
      return;
    }
    tl_res_end(k->res, line, (size_t)len);
  }
  uv_timer_stop(&k->timer);
  uv_close((uv_handle_t *)&k->timer, tick_closed);
}

static void tick_abort(tl_res *res, void *arg) {
  ((tick *)arg)->res = NULL;
}

static void tick_route(tl_req *req, tl_res *res) {
  tick *k = calloc(1, sizeof *k);
  if (!k) {
    tl_res_status(res, 500);
    return;
  }
  k->res = res;
  tl_res_header(res, "Content-Type", "text/event-stream");
  uv_timer_init(tl_app_loop(tl_req_app(req)), &k->timer);
  k->timer.data = k;
  uv_timer_start(&k->timer, tick_fire, 0, 200);
  tl_res_defer(res, tick_abort, k);
}

static void file(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  if (!file_path || tl_res_send_file(res, file_path) != 0) {
    tl_res_status(res, 404);
    tl_res_text(res, "no file");
  }
}

static void echo(tl_req *req, tl_res *res) {
  tl_slice b = tl_req_body(req);
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_send(res, b.ptr, b.len);
}

static bool custom_type(const char *ct, void *arg) {
  if (strcmp((const char *)arg, "magic") != 0)
    abort(); /* compressible_arg must be passed back */
  if (ct && strncasecmp(ct, "application/x-custom", 20) == 0)
    return true;
  if (ct && strncasecmp(ct, "text/csv", 8) == 0)
    return false;
  return tl_compress_type_default(ct);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORT MODE [FILE]\n", argv[0]);
    return 2;
  }
  if (argc > 3)
    file_path = argv[3];
  tl_app_config cfg = {.shutdown_timeout_ms = 1000,
                       .max_body_bytes = 8 << 20,
                       .on_listen = on_listen};
  tl_app *app = tl_app_new(&cfg);
  if (!app)
    return 3;
  static char magic[] = "magic";
  tl_compress_options co = {.threshold = 10,
                            .level = 1,
                            .no_deflate = 1,
                            .compressible = custom_type,
                            .compressible_arg = magic};
  tl_middleware mw = tl_compress(strcmp(argv[2], "custom") == 0 ? &co : NULL);
  if (tl_app_use(app, mw))
    return 3;
  tl_app_get(app, "/body", body);
  tl_app_get(app, "/range", range);
  tl_app_get(app, "/encoded", encoded);
  tl_app_get(app, "/notransform", notransform);
  tl_app_get(app, "/vary", vary);
  tl_app_get(app, "/status/:code", status);
  tl_app_get(app, "/stream", stream);
  tl_app_get(app, "/tick", tick_route);
  tl_app_get(app, "/file", file);
  tl_app_post(app, "/echo", echo);
  int rc = tl_app_listen(app, "127.0.0.1", atoi(argv[1]));
  tl_app_free(app);
  return rc ? 1 : 0;
}
