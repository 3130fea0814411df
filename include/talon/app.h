/* talon — the app: one listener, one loop, routes and middleware.
 *
 *   tl_app *app = tl_app_new(NULL);
 *   tl_app_get(app, "/", hello);
 *   return tl_app_listen(app, "0.0.0.0", 3000) ? 1 : 0;
 *
 * An app runs on one libuv loop on the thread that calls tl_app_listen().
 * Every talon function must be called on that thread, except
 * tl_app_stop(), which is safe from any thread.
 */
#ifndef TALON_APP_H
#define TALON_APP_H

#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

struct uv_loop_s;

/* Options for tl_app_new(). A zero field means "the default", given in
 * brackets. Limits protect the server from clients; see README's table. */
typedef struct tl_app_config {
  /* Bytes of a request head (request line + headers) [16384]. Over: 431. */
  size_t max_header_bytes;
  /* Bytes of the request target [8192]. Over: 414. */
  size_t max_url_bytes;
  /* Bytes of a request body, declared or chunked [1048576]. Over: 413. */
  size_t max_body_bytes;
  /* Header lines per request [100, at most 256]. Over: 431. */
  unsigned max_headers;
  /* Time from a request's first byte to its complete head, and from the
   * head to the complete body [10000 ms]. Over: 408 and close. */
  unsigned header_timeout_ms;
  /* An idle keep-alive connection is closed after this long [5000 ms].
   * While the client is still taking its last response the connection is
   * not idle (send_timeout_ms closes a client that takes none of it), and
   * it is idle from the moment the client took the last byte. */
  unsigned keepalive_timeout_ms;
  /* On shutdown, in-flight requests get this long to finish [5000 ms]. */
  unsigned shutdown_timeout_ms;
  /* Open connections at most [10000]; further ones are accepted and
   * closed at once. */
  unsigned max_connections;
  /* listen(2) backlog [511]. */
  int backlog;
  /* tl_res_write() reports backpressure past this many queued bytes
   * [65536]. While more than this waits unwritten on a connection, its
   * further pipelined requests are not read or parsed. */
  size_t write_high_water;
  /* A connection (HTTP or WebSocket) whose queued output the client has
   * not taken a byte of for this long is closed: a peer that stopped
   * reading cannot hold a streamed or deferred response, or its socket,
   * forever [30000 ms; (unsigned)-1: never]. Slow readers that make any
   * progress are not affected. */
  unsigned send_timeout_ms;
  /* Do not install SIGINT/SIGTERM handlers (they call tl_app_stop). */
  int no_signal_handlers;
  /* Called once the listener accepts connections, with the bound port
   * (useful with port 0). May be NULL. `host` is the listen host. */
  void (*on_listen)(tl_app *app, const char *host, int port);
} tl_app_config;

/* A new app with `options` copied (NULL: all defaults). Returns NULL on
 * out of memory or if the loop cannot be created. Free with tl_app_free(). */
TL_EXTERN tl_app *tl_app_new(const tl_app_config *options);

/* Free the app, its routers, middleware contexts (their free functions
 * run) and loop. Must not be called while tl_app_listen() runs. NULL is a
 * no-op. */
TL_EXTERN void tl_app_free(tl_app *app);

/* Bind `host`:`port` (IPv4 or IPv6 literal; port 0 picks a free port),
 * compile the routes, and run the loop until the app stops (tl_app_stop,
 * SIGINT or SIGTERM). Shutdown is graceful: stop accepting, close idle
 * connections, let in-flight requests finish within shutdown_timeout_ms,
 * then close the rest. SIGPIPE is ignored from here on (a peer resetting
 * a connection must not kill the process). Returns 0 after a clean stop;
 * TL_EINVAL for a bad host or port; TL_ESTATE if already listening; a libuv
 * error if bind or listen failed (e.g. UV_EADDRINUSE); TL_ENOMEM. */
TL_EXTERN int tl_app_listen(tl_app *app, const char *host, int port);

/* Ask a running app to shut down gracefully; tl_app_listen() then returns.
 * Safe from any thread and from signal handlers' deferred contexts; a
 * no-op if the app is not listening. */
TL_EXTERN void tl_app_stop(tl_app *app);

/* Whether the app has begun to stop (tl_app_stop, SIGINT or SIGTERM)
 * and tl_app_listen() has not returned yet: long-lived responses (event
 * streams) end themselves when they see it. */
TL_EXTERN bool tl_app_stopping(const tl_app *app);

/* The bound port while listening, else 0. */
TL_EXTERN int tl_app_port(const tl_app *app);

/* Called once each time the app begins to stop (tl_app_stop, SIGINT or
 * SIGTERM), on the app's thread, before connections are asked to finish:
 * the place to stop timers you keep pointers to, and to close what your
 * code opened on the loop. WebSockets are still open inside it (a last
 * message can be sent or published); the listener is already closed. */
typedef void (*tl_app_stop_cb)(tl_app *app, void *arg);

/* Register `cb` with `arg` (borrowed: keep it valid while the app lives)
 * to run when the app begins to stop, after the ones registered before
 * it. Call on the app's thread: before tl_app_listen() or from any of the
 * app's callbacks (one registered inside a stop callback runs at the next
 * stop). Returns 0, TL_EINVAL if `app` or `cb` is NULL, or TL_ENOMEM. */
TL_EXTERN int tl_app_on_stop(tl_app *app, tl_app_stop_cb cb, void *arg);

/* The app's libuv loop (valid from tl_app_new to tl_app_free), for work
 * the timer API (talon/timer.h) does not cover. A handle you open on it
 * keeps tl_app_listen() from returning after a stop until it is closed:
 * close it in a tl_app_on_stop() callback. */
TL_EXTERN struct uv_loop_s *tl_app_loop(tl_app *app);

/* An opaque pointer for the user, read back with tl_app_data(). */
TL_EXTERN void tl_app_set_data(tl_app *app, void *data);
TL_EXTERN void *tl_app_data(const tl_app *app);

/* The app's root router: everything registered on the app lands there.
 * Owned by the app. */
TL_EXTERN tl_router *tl_app_router(tl_app *app);

/* App-level middleware: runs for every request, matched or not. See
 * tl_router_use() for ownership and errors. */
TL_EXTERN int tl_app_use(tl_app *app, tl_middleware mw);

/* Mount a sub-router; see tl_router_mount(). */
TL_EXTERN int tl_app_mount(tl_app *app, const char *prefix, tl_router *child);

/* Route shorthands on the root router; see tl_router_route(). */
TL_EXTERN int tl_app_route(tl_app *app, const char *method, const char *pattern,
                           tl_handler handler, const tl_middleware *mw,
                           size_t nmw);
TL_EXTERN int tl_app_get(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_post(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_put(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_patch(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_delete(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_options(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_head(tl_app *app, const char *pattern, tl_handler h);
TL_EXTERN int tl_app_all(tl_app *app, const char *pattern, tl_handler h);

/* The handler for requests that match no route (after app middleware).
 * NULL restores the default: a 404 answered by the error middleware
 * (talon/error.h), else a short text body. */
TL_EXTERN void tl_app_not_found(tl_app *app, tl_handler handler);

#ifdef __cplusplus
}
#endif
#endif /* TALON_APP_H */
