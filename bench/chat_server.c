/* chat_server: the talon side of bench/chat.sh, the chat room of Bun's
 * WebSocket benchmark (oven-sh/bun, bench/websocket-server), same protocol:
 *
 *   - Any path upgrades (the client connects to ws://HOST:PORT/?name=NAME);
 *     the client's name is the `name` query parameter, else "Client #N".
 *   - `open` subscribes the socket to "room". When CLIENTS_COUNT sockets
 *     are open, the server waits 100 ms and publishes the text "ready" to
 *     the room: the start signal.
 *   - Every message M from client NAME is published to the room as
 *     "NAME: M", sender included (the route sets publish_to_self, like
 *     Bun's publishToSelf: true), so each message reaches every client.
 *   - A close gives the socket's place back: the next CLIENTS_COUNT
 *     connections start a new run (another "ready").
 *
 * The backlog limit per socket is 64 MiB (bench/bunchat/chat-server.js sets
 * the same for Bun) so that no published message is dropped for
 * backpressure: the load generator counts every delivery. A drop is
 * reported on stderr.
 *
 * Usage: chat_server [PORT]   (or PORT=...; default 3000; HOST=... default
 * 127.0.0.1; CLIENTS_COUNT=... default 16; WORKERS=... default 1, 0: one
 * per CPU; REDIS_URL=redis://HOST:PORT shares the room with other
 * processes through Redis; DEFLATE=1 turns on permessage-deflate with the
 * shared compressor and decompressor, so that each published message of
 * at least compress_threshold (128) bytes is compressed once for all
 * subscribers). Prints
 * "chat: listening on http://HOST:PORT" once it accepts connections.
 *
 * Build: the CMake target `chat_server` (bench/CMakeLists.txt) gives
 * build/bench/chat_server; bench/chat.sh builds build-bench/bench/chat_server.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/timer.h>
#ifdef TALON_HAVE_REDIS
#include <talon/redis.h>
#endif

#define NAME_MAX_LEN 64

typedef struct {
  char name[NAME_MAX_LEN + 1];
  size_t name_len;
} client;

/* With WORKERS > 1 the handlers run on several threads at once: the
 * counts are atomic and the message scratch buffer is per thread. */
static const char room[] = "room";
static tl_app *app;
static int clients_count = 16;
static atomic_int remaining; /* sockets still awaited before "ready" */
static atomic_int joined;    /* sockets accepted so far, for default names */
static atomic_size_t n_dropped, n_failed;
/* "NAME: " + message; a larger one gets a block of its own. */
static _Thread_local char out_buf[NAME_MAX_LEN + 2 + 16384];

static int on_upgrade(tl_req *req, tl_res *res, void *data) {
  client *c = data;
  const char *n = tl_req_query(req, "name");
  int len;
  int j = atomic_fetch_add(&joined, 1);
  if (n && *n)
    len = snprintf(c->name, sizeof c->name, "%s", n);
  else
    len = snprintf(c->name, sizeof c->name, "Client #%d", j);
  c->name_len = len < 0                      ? 0
                : (size_t)len > NAME_MAX_LEN ? NAME_MAX_LEN
                                             : (size_t)len;
  return TL_ACCEPT;
}

static void publish_ready(tl_timer *t, void *arg) {
  (void)t;
  printf("chat: publishing \"ready\" to %zu subscriber(s)\n",
         tl_app_subscriber_count(app, room));
  fflush(stdout);
  tl_app_publish(app, room, "ready", 5, TL_WS_TEXT);
}

static void on_open(tl_ws *ws) {
  int r = tl_ws_subscribe(ws, room);
  if (r != 0) {
    fprintf(stderr, "chat: subscribe failed: %s\n", tl_strerror(r));
    tl_ws_close(ws, 1011, "subscribe failed");
    return;
  }
  if (atomic_fetch_sub(&remaining, 1) == 1) {
    printf("chat: all %d clients connected\n", clients_count);
    fflush(stdout);
    /* On this socket's worker; the publish reaches every worker. */
    if (!tl_timer_start(app, 100, 0, publish_ready, NULL))
      fprintf(stderr, "chat: cannot start the ready timer\n");
  }
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  client *c = tl_ws_data(ws);
  size_t need = c->name_len + 2 + len;
  char *out = need <= sizeof out_buf ? out_buf : malloc(need);
  if (!out) {
    atomic_fetch_add(&n_failed, 1);
    return;
  }
  memcpy(out, c->name, c->name_len);
  out[c->name_len] = ':';
  out[c->name_len + 1] = ' ';
  memcpy(out + c->name_len + 2, data, len);
  /* Bun publishes text ("publishText"); a binary message stays binary. */
  int r = tl_ws_publish(ws, room, out, need,
                        op == TL_WS_BINARY ? TL_WS_BINARY : TL_WS_TEXT);
  if (r <= 0) { /* dropped, or an error */
    if (atomic_fetch_add(&n_failed, 1) == 0)
      fprintf(stderr, "chat: warning: publish failed (%d)\n", r);
  }
  if (out != out_buf)
    free(out);
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  atomic_fetch_add(&remaining, 1);
}

static void on_dropped(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  if (atomic_fetch_add(&n_dropped, 1) == 0)
    fprintf(stderr,
            "chat: warning: a %zu-byte message was dropped for backpressure\n",
            len);
}

static const tl_ws_handlers chat = {
    .upgrade = on_upgrade,
    .open = on_open,
    .message = on_message,
    .close = on_close,
    .dropped = on_dropped,
    .publish_to_self = 1,
    .max_backpressure = 64u << 20,
};

static void on_listen(tl_app *a, const char *host, int port) {
  printf("chat: waiting for %d clients; listening on http://%s:%d\n",
         clients_count, host, port);
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
  const char *host = getenv("HOST");
  const char *count_s = getenv("CLIENTS_COUNT");
  int port = port_s ? atoi(port_s) : 3000;
  if (!host || !*host)
    host = "127.0.0.1";
  const char *workers_s = getenv("WORKERS");
  int workers = workers_s && *workers_s ? atoi(workers_s) : 1;
  if (count_s && atoi(count_s) > 0)
    clients_count = atoi(count_s);
  atomic_store(&remaining, clients_count);
  app = tl_app_new(&(tl_app_config){
      .on_listen = on_listen,
      .workers = workers == 0 ? TL_WORKERS_AUTO : workers,
  });
  if (!app)
    return 1;
  const char *redis_url = getenv("REDIS_URL");
  if (redis_url && *redis_url) {
#ifdef TALON_HAVE_REDIS
    int rerr = tl_redis_attach(app, &(tl_redis_options){.url = redis_url},
                               NULL);
    if (rerr) {
      fprintf(stderr, "chat: REDIS_URL: %s\n", tl_strerror(rerr));
      tl_app_free(app);
      return 1;
    }
#else
    fprintf(stderr, "chat: REDIS_URL set, but built without hiredis\n");
    tl_app_free(app);
    return 1;
#endif
  }
  tl_ws_handlers h = chat;
  const char *deflate = getenv("DEFLATE");
  if (deflate && strcmp(deflate, "1") == 0)
    h.compression = TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR;
  int err = tl_app_ws(app, "/*", &h, sizeof(client));
  if (err) {
    fprintf(stderr, "chat: tl_app_ws: %s\n", tl_strerror(err));
    tl_app_free(app);
    return 1;
  }
  /* TLS_CERT and TLS_KEY (PEM files): WSS on the port instead. */
  tl_tls *tls = NULL;
  if (getenv("TLS_CERT") && getenv("TLS_KEY")) {
    char e[256];
    tls = tl_tls_new(&(tl_tls_config){.cert = {.cert_file = getenv("TLS_CERT"),
                                               .key_file = getenv("TLS_KEY")}},
                     e, sizeof e);
    if (!tls) {
      fprintf(stderr, "chat: TLS: %s\n", e);
      tl_app_free(app);
      return 1;
    }
  }
  err = tls ? tl_app_listen_tls(app, host, port, tls)
            : tl_app_listen(app, host, port);
  tl_tls_free(tls);
  if (err)
    fprintf(stderr, "chat: %s\n", tl_strerror(err));
  if (n_dropped || n_failed)
    fprintf(stderr,
            "chat: %zu message(s) dropped for backpressure, %zu publish(es) "
            "failed\n",
            (size_t)n_dropped, (size_t)n_failed);
  tl_app_free(app);
  return err ? 1 : 0;
}
