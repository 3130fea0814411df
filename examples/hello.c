/* hello: HTTP basics with talon.
 *
 *   GET /               "Hello World"
 *   GET /users/:id      {"id":"..."} (JSON, the route parameter)
 *   GET /api/health     a sub-router mounted at /api
 *   GET /api/time       the server time, from the same sub-router
 *
 * Usage: hello [PORT]   (or PORT=..., HOST=... in the environment;
 * examples/common.h reads them)
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <talon.h>

#include "common.h"

static void hello(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_send(res, "Hello World", 11);
}

/* Writes `s` as a JSON string body (quotes and escapes). */
static void json_escape(char *out, size_t size, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

static void user(tl_req *req, tl_res *res) {
  char id[256], body[320];
  json_escape(id, sizeof id, tl_req_param(req, "id"));
  snprintf(body, sizeof body, "{\"id\":\"%s\"}", id);
  tl_res_json(res, body);
}

static void health(tl_req *req, tl_res *res) {
  tl_res_json(res, "{\"ok\":true}");
}

static void now(tl_req *req, tl_res *res) {
  char body[64];
  snprintf(body, sizeof body, "{\"time\":%lld}", (long long)time(NULL));
  tl_res_json(res, body);
}

/* The app, without listening: main() runs it; its tests
 * (tests/testkit/test_example_hello.c) run it with talon's test client. */
static tl_app *hello_app(const tl_app_config *cfg) {
  tl_app *app = tl_app_new(cfg);
  if (!app)
    return NULL;
  tl_router *api = tl_router_new();
  if (!api || tl_app_get(app, "/", hello) ||
      tl_app_get(app, "/users/:id", user) ||
      tl_router_get(api, "/health", health) ||
      tl_router_get(api, "/time", now) || tl_app_mount(app, "/api", api)) {
    tl_router_free(api); /* a no-op once mounted */
    tl_app_free(app);
    return NULL;
  }
  return app;
}

#ifndef EXAMPLE_NO_MAIN
static void on_listen(tl_app *app, const char *host, int port) {
  example_print_listening("hello", host, port);
}

int main(int argc, char **argv) {
  example_opts o;
  int rc = example_args(argc, argv, "hello", NULL, &o);
  if (rc >= 0)
    return rc;

  tl_app *app =
      hello_app(&(tl_app_config){.on_listen = on_listen, .workers = o.workers});
  if (!app)
    return 1;
  int redis_rc = example_redis(app, "hello");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }
  int err = tl_app_listen(app, o.host, o.port);
  if (err)
    fprintf(stderr, "hello: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
#endif
