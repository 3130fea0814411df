/* deflate_server: a talon WebSocket echo on /ws with permessage-deflate in
 * one of talon's compression modes; the talon side of bench/deflate.sh.
 *
 *   deflate_server [PORT [MODE]]     (or PORT=..., MODE=..., HOST=...)
 *
 * MODE:
 *   off              TL_NO_COMPRESSION (the extension is declined)
 *   shared           TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR
 *   dedicated        TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR
 *                    (window bits 15, mem level 8: the defaults)
 *   dedicated-small  the same with compress_window_bits 9 and
 *                    compress_mem_level 1
 *
 * Every message is echoed with tl_ws_send(): compressed when the extension
 * was negotiated and the message is at least compress_threshold (128)
 * bytes. Limits are 64 MiB like examples/echo. CTX_BYTES=N gives each
 * socket an N-byte context (tl_app_ws's data_size; default 0), for the
 * memory figure with a user context. Prints
 * "deflate_server (MODE): listening on http://HOST:PORT" once listening.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_send(ws, data, len, op);
}

static tl_ws_handlers echo = {
    .message = on_message,
    .max_payload = 64u << 20,
    .max_backpressure = 64u << 20,
};

static const char *mode = "dedicated";

static void on_listen(tl_app *app, const char *host, int port) {
  (void)app;
  printf("deflate_server (%s): listening on http://%s:%d\n", mode, host, port);
  fflush(stdout);
}

int main(int argc, char **argv) {
  const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
  const char *m = argc > 2 ? argv[2] : getenv("MODE");
  const char *host = getenv("HOST");
  int port = port_s ? atoi(port_s) : 3000;
  if (!host || !*host)
    host = "127.0.0.1";
  if (m && *m)
    mode = m;
  if (strcmp(mode, "off") == 0) {
    echo.compression = TL_NO_COMPRESSION;
  } else if (strcmp(mode, "shared") == 0) {
    echo.compression = TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR;
  } else if (strcmp(mode, "dedicated") == 0) {
    echo.compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR;
  } else if (strcmp(mode, "dedicated-small") == 0) {
    echo.compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR;
    echo.compress_window_bits = 9;
    echo.compress_mem_level = 1;
  } else {
    fprintf(stderr,
            "deflate_server: unknown mode '%s' (off, shared, dedicated, "
            "dedicated-small)\n",
            mode);
    return 2;
  }
  const char *level_s = getenv("COMPRESS_LEVEL");
  if (level_s && *level_s)
    echo.compress_level = atoi(level_s);
  /* Room for the memory run's connections beside the warm-up's. */
  tl_app *app = tl_app_new(
      &(tl_app_config){.on_listen = on_listen, .max_connections = 100000});
  if (!app)
    return 1;
  const char *ctx_s = getenv("CTX_BYTES");
  tl_app_ws(app, "/ws", &echo, ctx_s ? (size_t)atoi(ctx_s) : 0);
  int err = tl_app_listen(app, host, port);
  if (err)
    fprintf(stderr, "deflate_server: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
