/* chat_server: the talon side of bench/chat.sh, a chat room on pub/sub.
 *
 *   /chat   WebSocket route: `open` subscribes the socket to "room";
 *           every message is published to "room", so every other member
 *           receives it (tl_ws_publish skips the sender), as it came
 *           (text as text, binary as binary).
 *
 * The same program as bench/bun/chat.js (Bun's ws.subscribe/ws.publish).
 * Limits are large (64 MiB backlog per socket) so that no published
 * message is ever dropped for backpressure: the load generator counts
 * every delivery and a drop would show up as a lost message.
 *
 * Usage: chat_server [PORT]   (or PORT=..., HOST=...; default 3000 on
 * 127.0.0.1). Prints "chat: listening on http://HOST:PORT" once it accepts
 * connections.
 *
 * Build (bench/chat.sh does this against build-bench/):
 *   gcc -O2 bench/chat_server.c -Iinclude -Lbuild-bench -ltalon \
 *       -Wl,-rpath,$PWD/build-bench -o build-bench/chat_server
 */
#include <stdio.h>
#include <stdlib.h>

#include <talon.h>

static const char room[] = "room";
static size_t n_dropped; /* should stay 0 */

static void on_open(tl_ws *ws) {
  int r = tl_ws_subscribe(ws, room);
  if (r != 0) {
    fprintf(stderr, "chat: subscribe failed: %s\n", tl_strerror(r));
    tl_ws_close(ws, 1011, "subscribe failed");
  }
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_publish(ws, room, data, len, op);
}

static void on_dropped(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  (void)ws, (void)data, (void)op;
  if (n_dropped++ == 0)
    fprintf(stderr, "chat: warning: a %zu-byte message was dropped for "
            "backpressure\n", len);
}

static const tl_ws_handlers chat = {
    .open = on_open,
    .message = on_message,
    .dropped = on_dropped,
    .max_payload = 64u << 20,
    .max_backpressure = 64u << 20,
};

static void on_listen(tl_app *app, const char *host, int port) {
  (void)app;
  printf("chat: listening on http://%s:%d\n", host, port);
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
  const char *host = getenv("HOST");
  int port = port_s ? atoi(port_s) : 3000;
  if (!host || !*host)
    host = "127.0.0.1";
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen});
  if (!app)
    return 1;
  int err = tl_app_ws(app, "/chat", &chat, 0);
  if (err) {
    fprintf(stderr, "chat: tl_app_ws: %s\n", tl_strerror(err));
    tl_app_free(app);
    return 1;
  }
  err = tl_app_listen(app, host, port);
  if (err)
    fprintf(stderr, "chat: %s\n", tl_strerror(err));
  if (n_dropped)
    fprintf(stderr, "chat: %zu message(s) dropped for backpressure\n", n_dropped);
  tl_app_free(app);
  return err ? 1 : 0;
}
