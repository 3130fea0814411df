/* faults_server: a talon app that exercises most allocating paths, for the
 * allocation-failure test (test_faults.py). Built only with
 * -DTALON_FAULT_INJECTION=ON.
 *
 * Usage: faults_server [PORT]   (0: a free port)
 *
 * App middleware: request id, cookies (signed), JSON body parser,
 * multipart parser (uploads under $TMPDIR or /tmp), gzip compression, then:
 *   GET  /hello            "hello"
 *   GET  /users/:id?x=..   "user <id> <x> <cookie a>"; sets a cookie
 *   POST /echo             the JSON body re-serialised
 *   GET  /stream           64 chunks of 1 KiB (tl_res_write)
 *   POST /upload           "<field>=<value> files=<n> bytes=<total>"
 *   GET  /stop             stops the app
 *   WS   /ws               dedicated compressor/decompressor; messages:
 *                          "sub T" / "unsub T" subscribe, "pub T text"
 *                          publishes to T (all but the sender) and answers
 *                          "ok", anything else is echoed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <talon.h>
#include <talon/mw.h>

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello");
}

static void user(tl_req *req, tl_res *res) {
  const char *id = tl_req_param(req, "id");
  const char *x = tl_req_query(req, "x");
  const char *a = tl_req_cookie(req, "a");
  char buf[256];
  snprintf(buf, sizeof buf, "user %s %s %s", id ? id : "-", x ? x : "-",
           a ? a : "-");
  tl_res_cookie(res, "seen", id ? id : "-", NULL);
  tl_res_text(res, buf);
}

static void echo_json(tl_req *req, tl_res *res) {
  json_t *j = tl_req_json(req);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  if (!s) {
    tl_res_status(res, 400);
    tl_res_text(res, "no json");
    return;
  }
  tl_res_json(res, s);
  free(s);
}

static void stream(tl_req *req, tl_res *res) {
  static char chunk[1024];
  memset(chunk, 'x', sizeof chunk);
  for (int i = 0; i < 64; i++)
    if (tl_res_write(res, chunk, sizeof chunk) < 0)
      break;
  tl_res_end(res, NULL, 0);
}

static void upload(tl_req *req, tl_res *res) {
  uint64_t bytes = 0;
  size_t n = tl_req_file_count(req);
  for (size_t i = 0; i < n; i++)
    bytes += tl_req_file_at(req, i)->size;
  const char *v = tl_req_form(req, "note");
  char buf[128];
  snprintf(buf, sizeof buf, "note=%s files=%zu bytes=%llu", v ? v : "-", n,
           (unsigned long long)bytes);
  tl_res_text(res, buf);
}

static void buf_free(void *body, void *arg) {
  free(body);
}

/* A caller-owned body: freed exactly once, whatever fails. */
static void buf(tl_req *req, tl_res *res) {
  size_t n = 200000;
  char *p = malloc(n);
  if (!p) {
    tl_res_status(res, 500);
    tl_res_end(res, NULL, 0);
    return;
  }
  memset(p, 'b', n);
  tl_res_send_buffer(res, p, n, buf_free, NULL);
}

static void stop(tl_req *req, tl_res *res) {
  tl_res_text(res, "stopping");
  tl_app_stop(tl_req_app(req));
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  char topic[64];
  if (op == TL_WS_TEXT && len > 4 && len < 200) {
    const char *s = data;
    if (!strncmp(s, "sub ", 4) || !strncmp(s, "unsub ", 6)) {
      int sub = s[0] == 's';
      size_t off = sub ? 4 : 6, n = len - off;
      if (n >= sizeof topic)
        n = sizeof topic - 1;
      memcpy(topic, s + off, n);
      topic[n] = 0;
      if (sub)
        tl_ws_subscribe(ws, topic);
      else
        tl_ws_unsubscribe(ws, topic);
      tl_ws_send_text(ws, "ok");
      return;
    }
    if (!strncmp(s, "pub ", 4)) {
      const char *sp = memchr(s + 4, ' ', len - 4);
      if (sp && (size_t)(sp - s - 4) < sizeof topic) {
        size_t n = (size_t)(sp - s - 4);
        memcpy(topic, s + 4, n);
        topic[n] = 0;
        tl_ws_publish(ws, topic, sp + 1, len - (size_t)(sp + 1 - s),
                      TL_WS_TEXT);
        tl_ws_send_text(ws, "ok");
        return;
      }
    }
  }
  tl_ws_send(ws, data, len, op);
}

static const tl_ws_handlers ws_routes = {
    .message = on_message,
    .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR,
    .compress_threshold = 1,
};

static void on_listen(tl_app *app, const char *host, int port) {
  printf("faults_server: listening on http://%s:%d\n", host, port);
  fflush(stdout);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  static const char *secrets[] = {"0123456789abcdef0123456789abcdef", NULL};
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen});
  if (!app)
    return 1;
  int err =
      tl_app_use(app, tl_request_id(NULL)) ||
      tl_app_use(app, tl_cookies(&(tl_cookies_options){.secrets = secrets})) ||
      tl_app_use(app, tl_body_json(NULL)) ||
      tl_app_use(app, tl_body_multipart(&(tl_body_multipart_options){
                          .dir = getenv("TMPDIR")})) ||
      tl_app_use(app, tl_compress(NULL)) ||
      tl_app_post(app, "/upload", upload) ||
      tl_app_route_opts(app, "POST", "/upload-stream", upload, NULL, 0,
                        &(tl_route_options){.stream_body = 1}) ||
      tl_app_get(app, "/buf", buf) || tl_app_get(app, "/hello", hello) ||
      tl_app_get(app, "/users/:id", user) ||
      tl_app_post(app, "/echo", echo_json) ||
      tl_app_get(app, "/stream", stream) || tl_app_get(app, "/stop", stop) ||
      tl_app_ws(app, "/ws", &ws_routes, 0);
  if (err) {
    fprintf(stderr, "faults_server: set-up failed\n");
    tl_app_free(app);
    return 1;
  }
  err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "faults_server: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
