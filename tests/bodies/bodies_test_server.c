/* The test server of tests/bodies: streamed request bodies and caller-owned
 * response buffers, over real sockets.
 *
 *   bodies_test_server PORT UPLOAD_DIR
 *
 * Routes (app-wide max_body_bytes is 1 MiB):
 *   POST /upload         streamed, up to 1 GiB: written to a file in
 *                        UPLOAD_DIR with write(2) as it arrives; answers
 *                        {"bytes":N,"hash":"<crc32, hex>","chunks":C}; the
 *                        file is removed after the answer, and at once when
 *                        the body does not end well.
 *   POST /upload-async   the same, but every chunk is copied and written
 *                        from a timer 1 ms later, the body paused meanwhile
 *                        (backpressure); answers also "pauses".
 *   POST /hold           like /upload, but pauses on its first chunk until
 *                        GET /release, which answers {"bytes":N}: what the
 *                        reader had got by then. GET /held: true while one
 *                        waits.
 *   POST /limited        streamed, max_body_bytes 1000.
 *   POST /early          streamed; answers 401 at once, reads nothing.
 *   POST /gate           streamed, behind a middleware that decides after
 *                        50 ms (TL_PENDING): no body byte may be lost.
 *   POST /small          buffered, max_body_bytes 100: echoes the length.
 *   POST /big            buffered, max_body_bytes 4 MiB (over the app's).
 *   POST /replay         buffered; reads its body with tl_req_body_stream.
 *   POST /mp             streamed, tl_body_multipart into UPLOAD_DIR; lists
 *                        the files with sizes and hashes of their contents.
 *   GET  /buf?size=N     N bytes (byte i is 'a' + i % 26) with
 *                        tl_res_send_buffer; HEAD too.
 *   GET  /bufgz?size=N   the same behind tl_compress (a filter copies).
 *   GET  /bufstats       {"given":G,"freed":F,"outstanding":O}
 *   GET  /streams        {"open":O,"ended":{...}}: streamed uploads whose
 *                        end has not run, and how many ended with which
 *                        error name.
 */
#define TEST_SERVER_NAME "bodies_test_server"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/body.h>
#include <talon/mw/compress.h>
#include <talon/timer.h>

#include "test_server.h"

static const char *upload_dir;
static tl_app *the_app;

/* zlib's CRC-32, which Python's zlib.crc32 computes as fast. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  while (n) {
    uInt k = n > (1u << 30) ? 1u << 30 : (uInt)n;
    h = crc32((uLong)h, p, k);
    p = (const char *)p + k;
    n -= k;
  }
  return h;
}
#define FNV0 0

/* ---- streamed uploads ------------------------------------------------- */

static unsigned streams_open;
static unsigned ended_ok, ended_toobig, ended_closed, ended_inval,
    ended_again;

typedef struct upload {
  int fd;
  char path[512];
  uint64_t bytes, hash;
  unsigned chunks, pauses;
  bool async;
  bool hold; /* pause on the first chunk until GET /release */
  /* async: one chunk waits for its timer */
  char *pending;
  size_t pending_len;
  tl_timer *timer;
  tl_req *req;
  bool gone;
} upload;

static void upload_free(upload *u) {
  if (u->fd >= 0)
    close(u->fd);
  if (u->path[0])
    unlink(u->path);
  if (u->timer)
    tl_timer_stop(u->timer);
  free(u->pending);
  free(u);
}

static void write_all(upload *u, const char *p, size_t n) {
  u->bytes += n;
  u->hash = fnv(u->hash, p, n);
  while (n) {
    ssize_t w = write(u->fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      abort();
    p += w;
    n -= (size_t)w;
  }
}

static void async_write(tl_timer *t, void *arg) {
  upload *u = arg;
  u->timer = NULL;
  write_all(u, u->pending, u->pending_len);
  free(u->pending);
  u->pending = NULL;
  tl_req_body_resume(u->req);
}

static upload *held; /* the /hold upload waiting for /release */

static int up_data(tl_req *req, tl_res *res, const void *p, size_t n,
                   void *arg) {
  upload *u = arg;
  u->chunks++;
  if (u->hold && u->chunks == 1) {
    write_all(u, p, n);
    u->pauses++;
    held = u;
    return TL_BODY_PAUSE;
  }
  if (!u->async) {
    write_all(u, p, n);
    return TL_BODY_NEXT;
  }
  /* Keep the chunk (valid only during this call) and write it later. */
  u->pending = malloc(n);
  if (!u->pending)
    abort();
  memcpy(u->pending, p, n);
  u->pending_len = n;
  u->pauses++;
  u->timer = tl_timer_start(tl_req_app(req), 1, 0, async_write, u);
  return TL_BODY_PAUSE;
}

static void up_end(tl_req *req, tl_res *res, int err, void *arg) {
  upload *u = arg;
  if (held == u)
    held = NULL;
  streams_open--;
  switch (err) {
  case 0: ended_ok++; break;
  case TL_ETOOBIG: ended_toobig++; break;
  case TL_ECLOSED: ended_closed++; break;
  case TL_EINVAL: ended_inval++; break;
  case TL_EAGAIN: ended_again++; break;
  }
  if (err == 0) {
    char out[160];
    snprintf(out, sizeof out,
             "{\"bytes\":%llu,\"hash\":\"%08llx\",\"chunks\":%u,"
             "\"pauses\":%u}",
             (unsigned long long)u->bytes, (unsigned long long)u->hash,
             u->chunks, u->pauses);
    tl_res_json(res, out);
  }
  /* On an error talon answers (413, 400, 408) or the client is gone. */
  upload_free(u);
}

static void start_upload(tl_req *req, tl_res *res, bool async) {
  upload *u = calloc(1, sizeof *u);
  if (!u)
    abort();
  u->hash = FNV0;
  u->async = async;
  u->hold = strcmp(tl_req_path(req), "/hold") == 0;
  u->req = req;
  snprintf(u->path, sizeof u->path, "%s/stream-XXXXXX", upload_dir);
  u->fd = mkstemp(u->path);
  if (u->fd < 0) {
    free(u);
    tl_res_status(res, 500);
    tl_res_text(res, "cannot open\n");
    return;
  }
  int err = tl_req_body_stream(req, up_data, up_end, u);
  if (err) {
    upload_free(u);
    tl_res_status(res, 500);
    tl_res_text(res, tl_strerror(err));
    return;
  }
  streams_open++;
}

static void upload_h(tl_req *req, tl_res *res) {
  start_upload(req, res, false);
}

static void upload_async_h(tl_req *req, tl_res *res) {
  start_upload(req, res, true);
}

/* Resumes the held upload; answers how many bytes it had got by then. */
static void release_h(tl_req *req, tl_res *res) {
  if (!held) {
    tl_res_status(res, 409);
    tl_res_text(res, "nothing held\n");
    return;
  }
  char out[64];
  snprintf(out, sizeof out, "{\"bytes\":%llu}",
           (unsigned long long)held->bytes);
  upload *u = held;
  held = NULL;
  tl_req_body_resume(u->req);
  tl_res_json(res, out);
}

static void held_h(tl_req *req, tl_res *res) {
  tl_res_json(res, held ? "true" : "false");
}

static void early_h(tl_req *req, tl_res *res) {
  tl_res_status(res, 401);
  tl_res_text(res, "no\n");
}

/* ---- a middleware that decides later ---------------------------------- */

typedef struct gate {
  tl_req *req;
  tl_res *res;
} gate;

static void gate_open(tl_timer *t, void *arg) {
  gate *g = arg;
  tl_next(g->req, g->res);
  free(g);
}

static int gate_mw(tl_req *req, tl_res *res, void *ctx) {
  gate *g = malloc(sizeof *g);
  if (!g)
    return TL_ENOMEM;
  g->req = req;
  g->res = res;
  tl_res_defer(res, NULL, NULL);
  tl_timer_start(tl_req_app(req), 50, 0, gate_open, g);
  return TL_PENDING;
}

/* ---- buffered routes -------------------------------------------------- */

static void length_h(tl_req *req, tl_res *res) {
  tl_slice b = tl_req_body(req);
  char out[96];
  snprintf(out, sizeof out, "{\"bytes\":%zu,\"hash\":\"%08llx\"}", b.len,
           (unsigned long long)fnv(FNV0, b.ptr, b.len));
  tl_res_json(res, out);
}

typedef struct replay {
  uint64_t bytes, hash;
  unsigned chunks;
} replay;

static int replay_data(tl_req *req, tl_res *res, const void *p, size_t n,
                       void *arg) {
  replay *r = arg;
  r->bytes += n;
  r->hash = fnv(r->hash, p, n);
  r->chunks++;
  return TL_BODY_NEXT;
}

static void replay_end(tl_req *req, tl_res *res, int err, void *arg) {
  replay *r = arg;
  if (err == 0) {
    char out[128];
    snprintf(out, sizeof out,
             "{\"bytes\":%llu,\"hash\":\"%08llx\",\"chunks\":%u}",
             (unsigned long long)r->bytes, (unsigned long long)r->hash,
             r->chunks);
    tl_res_json(res, out);
  }
  free(r);
}

static void replay_h(tl_req *req, tl_res *res) {
  replay *r = calloc(1, sizeof *r);
  if (!r)
    abort();
  r->hash = FNV0;
  int err = tl_req_body_stream(req, replay_data, replay_end, r);
  if (err) {
    free(r);
    tl_res_status(res, 500);
    tl_res_text(res, tl_strerror(err));
  }
}

/* ---- multipart, streamed ---------------------------------------------- */

static void mp_h(tl_req *req, tl_res *res) {
  sbuf b = {0};
  sb_printf(&b, "{\"files\":[");
  for (size_t i = 0; i < tl_req_file_count(req); i++) {
    const tl_upload *u = tl_req_file_at(req, i);
    uint64_t h = FNV0, n = 0;
    int fd = open(u->path, O_RDONLY);
    char chunk[65536];
    ssize_t r;
    while (fd >= 0 && (r = read(fd, chunk, sizeof chunk)) > 0) {
      h = fnv(h, chunk, (size_t)r);
      n += (uint64_t)r;
    }
    if (fd >= 0)
      close(fd);
    sb_printf(&b, "%s{\"field\":\"%s\",\"size\":%llu,\"read\":%llu,"
                  "\"hash\":\"%08llx\"}",
              i ? "," : "", u->field, (unsigned long long)u->size,
              (unsigned long long)n, (unsigned long long)h);
  }
  sb_printf(&b, "],\"fields\":%zu}", tl_req_form_count(req, NULL));
  tl_res_json(res, b.p);
  free(b.p);
}

/* ---- caller-owned response buffers ------------------------------------ */

static unsigned long long given, freed;

static void buf_free(void *body, void *arg) {
  if (arg != &given)
    abort(); /* the arg must come back as given */
  freed++;
  free(body);
}

static void send_buf(tl_req *req, tl_res *res) {
  const char *q = tl_req_query(req, "size");
  size_t n = q ? strtoull(q, NULL, 10) : 0;
  char *p = malloc(n ? n : 1);
  if (!p)
    abort();
  for (size_t i = 0; i < n; i++)
    p[i] = (char)('a' + i % 26);
  given++;
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_send_buffer(res, p, n, buf_free, &given);
}

static void bufstats_h(tl_req *req, tl_res *res) {
  char out[128];
  snprintf(out, sizeof out,
           "{\"given\":%llu,\"freed\":%llu,\"outstanding\":%llu}", given,
           freed, given - freed);
  tl_res_json(res, out);
}

static void streams_h(tl_req *req, tl_res *res) {
  char out[256];
  snprintf(out, sizeof out,
           "{\"open\":%u,\"ended\":{\"ok\":%u,\"TL_ETOOBIG\":%u,"
           "\"TL_ECLOSED\":%u,\"TL_EINVAL\":%u,\"TL_EAGAIN\":%u}}",
           streams_open, ended_ok, ended_toobig, ended_closed, ended_inval,
           ended_again);
  tl_res_json(res, out);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  upload_dir = argc > 2 ? argv[2] : "/tmp";
  tl_app_config cfg = {.on_listen = on_listen,
                       .header_timeout_ms = 3000,
                       .max_body_bytes = 1 << 20};
  tl_app *app = tl_app_new(&cfg);
  if (!app)
    return 1;
  the_app = app;
  tl_route_options big_stream = {.stream_body = 1,
                                 .max_body_bytes = 1ULL << 30};
  CHECK(tl_app_route_opts(app, "POST", "/upload", upload_h, NULL, 0,
                          &big_stream));
  CHECK(tl_app_route_opts(app, "POST", "/upload-async", upload_async_h, NULL,
                          0, &big_stream));
  CHECK(tl_app_route_opts(app, "POST", "/hold", upload_h, NULL, 0,
                          &big_stream));
  CHECK(tl_app_get(app, "/release", release_h));
  CHECK(tl_app_get(app, "/held", held_h));
  tl_route_options limited = {.stream_body = 1, .max_body_bytes = 1000};
  CHECK(tl_app_route_opts(app, "POST", "/limited", upload_h, NULL, 0,
                          &limited));
  CHECK(tl_app_route_opts(app, "POST", "/early", early_h, NULL, 0,
                          &big_stream));
  tl_middleware gate_chain[] = {{.fn = gate_mw, .name = "gate"}};
  CHECK(tl_app_route_opts(app, "POST", "/gate", upload_h, gate_chain, 1,
                          &big_stream));
  tl_route_options small = {.max_body_bytes = 100};
  CHECK(tl_app_route_opts(app, "POST", "/small", length_h, NULL, 0, &small));
  tl_route_options big = {.max_body_bytes = 4 << 20};
  CHECK(tl_app_route_opts(app, "POST", "/big", length_h, NULL, 0, &big));
  CHECK(tl_app_post(app, "/replay", replay_h));
  tl_body_multipart_options mo = {.dir = upload_dir,
                                  .max_file_bytes = 1ULL << 30,
                                  .max_total_bytes = 1ULL << 30};
  tl_middleware mp_chain[] = {tl_body_multipart(&mo)};
  CHECK(tl_app_route_opts(app, "POST", "/mp", mp_h, mp_chain, 1,
                          &big_stream));
  CHECK(tl_app_get(app, "/buf", send_buf));
  tl_middleware gz[] = {tl_compress(NULL)};
  CHECK(tl_app_route(app, "GET", "/bufgz", send_buf, gz, 1));
  CHECK(tl_app_get(app, "/bufstats", bufstats_h));
  CHECK(tl_app_get(app, "/streams", streams_h));
  int rc = tl_app_listen(app, "127.0.0.1", port);
  tl_app_free(app);
  if (given != freed) {
    fprintf(stderr, "%s: %llu buffers given, %llu freed\n", TEST_SERVER_NAME,
            given, freed);
    return 3;
  }
  return rc ? 2 : 0;
}
