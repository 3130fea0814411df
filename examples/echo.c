/* echo: a WebSocket echo server.
 *
 *   GET /      a small page that talks to /ws
 *   /ws        every message is sent back as it came (text as text,
 *              binary as binary)
 *
 * Limits are large (64 MiB) so that conformance suites can send their
 * 16 MiB messages. permessage-deflate is on for clients that offer it. Usage:
 * echo [PORT]   (or PORT=..., HOST=...)
 */
#include <stdio.h>

#include <talon.h>

#include "common.h"

static const char page[] =
    "<!doctype html><meta charset=utf-8><title>talon echo</title>\n"
    "<style>body{font:16px system-ui;margin:2em auto;max-width:40em}"
    "#log{white-space:pre-wrap;border:1px solid #ccc;padding:.5em;"
    "min-height:8em}</style>\n"
    "<h1>talon echo</h1>\n"
    "<form id=f><input id=m autofocus placeholder='say something'> "
    "<button>send</button></form><div id=log></div>\n"
    "<script>\n"
    "const log = document.getElementById('log');\n"
    "const ws = new WebSocket(`ws://${location.host}/ws`);\n"
    "const say = t => { log.textContent += t + '\\n'; };\n"
    "ws.onopen = () => say('connected');\n"
    "ws.onmessage = e => say('echo: ' + e.data);\n"
    "ws.onclose = e => say('closed ' + e.code);\n"
    "document.getElementById('f').onsubmit = e => { e.preventDefault();\n"
    "  const m = document.getElementById('m'); ws.send(m.value); m.value = ''; "
    "};\n"
    "</script>\n";

static void index_page(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/html; charset=utf-8");
  tl_res_send(res, page, sizeof page - 1);
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_send(ws, data, len, op);
}

static const tl_ws_handlers echo = {
    .message = on_message,
    .max_payload = 64u << 20,
    .max_backpressure = 64u << 20,
    /* permessage-deflate for every client that offers it: a compressor and
     * a decompressor per connection, keeping context (best ratio). */
    .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR,
};

/* The app, without listening: main() runs it; its tests
 * (tests/testkit/test_example_echo.c) run it with talon's test client. */
static tl_app *echo_app(const tl_app_config *cfg) {
  tl_app *app = tl_app_new(cfg);
  if (!app)
    return NULL;
  if (tl_app_get(app, "/", index_page) || tl_app_ws(app, "/ws", &echo, 0)) {
    tl_app_free(app);
    return NULL;
  }
  return app;
}

#ifndef EXAMPLE_NO_MAIN
static void on_listen(tl_app *app, const char *host, int port) {
  example_print_listening("echo", host, port);
}

int main(int argc, char **argv) {
  example_opts o;
  int rc = example_args(argc, argv, "echo", NULL, &o);
  if (rc >= 0)
    return rc;
  tl_app *app =
      echo_app(&(tl_app_config){.on_listen = on_listen, .workers = o.workers});
  if (!app)
    return 1;
  int redis_rc = example_redis(app, "echo");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }
  int err = tl_app_listen(app, o.host, o.port);
  if (err)
    fprintf(stderr, "echo: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
#endif
