/* talon — the app: routes and middleware served by one or more workers.
 *
 *   tl_app *app = tl_app_new(&(tl_app_config){.workers = TL_WORKERS_AUTO});
 *   tl_app_get(app, "/", hello);
 *   return tl_app_listen(app, "0.0.0.0", 3000) ? 1 : 0;
 *
 * Threads. An app runs on `workers` libuv loops, each on its own thread:
 * worker 0 on the thread that calls tl_app_listen(), the others on threads
 * the app starts. Every worker listens on the same address (SO_REUSEPORT:
 * the kernel spreads new connections over them) and owns the connections
 * it accepted: a connection never moves, and every handler, middleware
 * and callback of a connection (HTTP or WebSocket) runs on its worker's
 * thread. Handlers of different connections may therefore run at the same
 * time on different workers: state you share between requests (globals,
 * tl_app_data) needs a lock or atomics once workers > 1. The built-in
 * middleware is safe with any worker count.
 *
 * What may be called from where:
 *  - Setting up (tl_app_new, routes, middleware, tl_app_ws, observers,
 *    tl_app_on_stop, tl_app_on_log, tl_app_not_found): one thread, before tl_app_listen.
 *  - tl_req_*, tl_res_*, tl_ws_* (including subscribe and publish), the
 *    timer API, tl_app_loop, tl_app_now: on the worker thread that runs
 *    the handler, i.e. inside the app's callbacks. Functions that take the
 *    app and act on a loop (tl_timer_start, tl_app_loop, tl_app_now) use
 *    the calling worker's loop, or worker 0's outside any worker.
 *  - Any thread: tl_app_stop, tl_app_call, tl_app_call_all,
 *    tl_app_publish, tl_app_workers, tl_app_worker, tl_app_port,
 *    tl_app_stopping, tl_app_get_stats, tl_app_ws_count, and
 *    tl_app_subscriber_count when workers > 1.
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
  /* Open connections at most [10000]; one accepted over the limit is
   * closed at once. What counts: every connection from its accept until
   * libuv has closed its handle (at the end of the loop turn in which it
   * is closed, after any last output was flushed), so a WebSocket upgrade
   * counts twice for that turn (its HTTP connection closes as the
   * WebSocket one opens) and a burst of concurrent upgrades near the
   * limit may have a few refused; the app's own outgoing connections
   * (tl_ws_connect) count, though the limit never refuses them; listeners
   * do not count. With workers, each worker holds at most its share,
   * rounded up: a client is refused when its worker is full even if
   * another has room. */
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
  /* Worker threads, each running the app on its own loop with its own
   * listener on the same port [1]; TL_WORKERS_AUTO: one per CPU the
   * process may use; at most TL_WORKERS_MAX. With more than one,
   * max_connections is shared out evenly (each worker takes its part). */
  int workers;
  /* The permissions of a unix socket file the app makes ("unix:/path"
   * listeners), e.g. 0660 for a group's clients to connect; set before
   * the socket accepts [0: what the process's umask leaves of 0777]. */
  unsigned unix_mode;
  /* Called once the listeners accept connections, with the listen call's
   * host as given and its bound port (useful with port 0; 0 for a unix
   * socket or a descriptor not on TCP). May be NULL. */
  void (*on_listen)(tl_app *app, const char *host, int port);
} tl_app_config;

/* tl_app_config.workers: one worker per CPU. */
#define TL_WORKERS_AUTO (-1)
#define TL_WORKERS_MAX 256

/* A new app with `options` copied (NULL: all defaults). Returns NULL on
 * out of memory or if the loop cannot be created. Free with tl_app_free(). */
TL_EXTERN tl_app *tl_app_new(const tl_app_config *options);

/* Run the app's loops without listening: for a program that only makes
 * outgoing connections (tl_ws_connect, timers, tl_app_call), like a
 * WebSocket client. Client sockets made before this call start when the
 * loops run. Runs until tl_app_stop() (or SIGINT/SIGTERM), which closes
 * the open sockets (WebSockets with 1001) as for tl_app_listen; the loop
 * does not end by itself when nothing is left to do. With workers > 1
 * every worker runs its loop. on_listen is not called. Returns 0 after the
 * stop; TL_EINVAL if listeners were added (tl_app_add_listener: use
 * tl_app_listen), TL_ESTATE if already running, TL_ENOMEM. Called on the
 * thread that set the app up, like tl_app_listen. */
TL_EXTERN int tl_app_run(tl_app *app);

/* Free the app, its routers, middleware contexts (their free functions
 * run) and loop. Must not be called while tl_app_listen() runs. NULL is a
 * no-op. */
TL_EXTERN void tl_app_free(tl_app *app);

/* Listen on `host`:`port`, compile the routes, start the workers and run
 * worker 0 on this thread until the app stops (tl_app_stop, SIGINT or
 * SIGTERM, which only worker 0 handles). `host` (borrowed for the call;
 * NULL or "" is 0.0.0.0) is one of:
 *  - an IPv4 or IPv6 address: "127.0.0.1", "0.0.0.0" (IPv4 only), "::"
 *    (dual stack: IPV6_V6ONLY off, so IPv4 clients connect too), "::1",
 *    "fe80::1%eth0";
 *  - a name, resolved with getaddrinfo(3) synchronously here, before any
 *    loop runs (listening comes before serving: nothing else waits):
 *    every address it resolves to gets a socket on the same port (for
 *    "localhost", 127.0.0.1 and ::1 when the hosts file gives both; the
 *    IPv6 ones IPv6-only then); an address this machine does not have
 *    (UV_EADDRNOTAVAIL, UV_EAFNOSUPPORT) is skipped if another binds;
 *  - "unix:/path": a unix domain socket (`port` ignored; the path is
 *    shorter than 108 bytes, relative paths from the working directory).
 *    A file at the path that is a socket nobody accepts on (left by a
 *    server that was killed) is removed first; a socket something accepts
 *    on is UV_EADDRINUSE, any other file UV_EEXIST. The file gets
 *    tl_app_config.unix_mode (else the umask decides) and is removed when
 *    the listener closes (at stop), if it is still the one made. All
 *    workers accept on one socket. A request on it has remote address
 *    "unix:" (tl_req_remote_address);
 *  - "fd:N": the listening (or bound) stream socket at descriptor N,
 *    TCP or unix, e.g. inherited from a parent. The app listens on
 *    copies (every worker one); N stays the caller's and open;
 *  - "systemd": every socket systemd passed by socket activation
 *    (LISTEN_FDS descriptors from 3, when LISTEN_PID is this process), or
 *    "systemd:NAME" those whose LISTEN_FDNAMES entry (FileDescriptorName=)
 *    is NAME; `port` ignored. At the first such listen of an app the
 *    three variables are read and unset (as sd_listen_fds(1) does: a
 *    child started later must not take the sockets), and the descriptors
 *    get FD_CLOEXEC; they stay open, so a later listen of the same app
 *    takes them again. Another app in the process sees none: give it
 *    "fd:N". Call from one thread while no other reads the environment.
 * With several workers each binds the same TCP port (SO_REUSEPORT: the
 * kernel spreads connections over them); unix and inherited sockets are
 * one socket all workers accept on. If any worker fails to listen, the
 * others are stopped and its error returned. Shutdown is graceful: stop
 * accepting, close idle connections, let in-flight requests finish
 * within shutdown_timeout_ms, then close the rest. SIGPIPE is ignored
 * from here on (a peer resetting a connection must not kill the process).
 * Returns 0 after a clean stop; TL_EINVAL for a bad host or port (or
 * "fd:N" that is no TCP or unix stream socket); UV_ENAMETOOLONG for a
 * unix path of 108 bytes or more; a libuv getaddrinfo error for a name
 * that does not resolve (UV_EAI_NONAME, UV_EAI_AGAIN); TL_ENOENT for
 * "systemd" with no socket passed (or none of that name); TL_ESTATE if
 * already listening; a libuv error if a socket could not be opened
 * (UV_EADDRINUSE, UV_EACCES, UV_EEXIST, UV_EBADF, UV_ENOTSOCK, ...);
 * TL_ENOMEM. */
TL_EXTERN int tl_app_listen(tl_app *app, const char *host, int port);

/* Ask a running app to shut down gracefully: every worker stops (in-flight
 * requests finish, WebSockets get 1001), and tl_app_listen() returns once
 * all are down. Safe from any thread. Asked before tl_app_listen(), the
 * next listen stops as soon as it started. */
TL_EXTERN void tl_app_stop(tl_app *app);

/* Whether the app has begun to stop (tl_app_stop, SIGINT or SIGTERM)
 * and tl_app_listen() has not returned yet: long-lived responses (event
 * streams) end themselves when they see it. Any thread. */
TL_EXTERN bool tl_app_stopping(const tl_app *app);

/* The bound port of the listen call's own listener while listening,
 * else 0 (also for a unix socket). Any thread. */
TL_EXTERN int tl_app_port(const tl_app *app);

/* How many workers the app runs (TL_WORKERS_AUTO resolved). Any thread. */
TL_EXTERN unsigned tl_app_workers(const tl_app *app);

/* The index (0 .. tl_app_workers()-1) of the worker running on the calling
 * thread, or -1 on a thread that runs none of this app's workers. Inside
 * a handler: the worker that owns the connection. */
TL_EXTERN int tl_app_worker(const tl_app *app);

/* A function to run on a worker's thread (tl_app_call). */
typedef void (*tl_app_call_cb)(tl_app *app, void *arg);

/* Run `fn(app, arg)` on worker `worker`'s thread, in a coming loop turn
 * (never inside this call, even on that worker). Safe from any thread:
 * the way for a thread of yours (a database pool, a blocking library on
 * uv_queue_work) to hand a result to the app. Calls from one thread to one
 * worker run in the order they were made. `arg` is the caller's; `fn`
 * runs exactly once when this returns 0 (if the worker is stopping, after
 * its connections are closed; if the app is not listening, at the next
 * listen, or from tl_app_free). Returns 0, TL_EINVAL (NULL app or fn, no
 * such worker) or TL_ENOMEM. */
TL_EXTERN int tl_app_call(tl_app *app, unsigned worker, tl_app_call_cb fn,
                          void *arg);

/* Run `fn(app, arg)` once on every worker (as tl_app_call), then
 * `done(app, arg)` (may be NULL) once, on the worker that ran `fn` last:
 * the place to free `arg`. Returns 0, TL_EINVAL or TL_ENOMEM (then
 * nothing runs). */
TL_EXTERN int tl_app_call_all(tl_app *app, tl_app_call_cb fn,
                              tl_app_call_cb done, void *arg);

/* Called each time the app begins to stop (tl_app_stop, SIGINT or
 * SIGTERM), once on every worker's thread (as that worker begins to
 * stop), before its connections are asked to finish:
 * the place to stop timers you keep pointers to, and to close what your
 * code opened on the loop. WebSockets are still open inside it (a last
 * message can be sent or published); the listener is already closed. */
typedef void (*tl_app_stop_cb)(tl_app *app, void *arg);

/* Register `cb` with `arg` (borrowed: keep it valid while the app lives)
 * to run when the app begins to stop, after the ones registered before
 * it. Call before tl_app_listen(); with one worker also from any of the
 * app's callbacks (one registered inside a stop callback runs at the next
 * stop). Returns 0, TL_EINVAL if `app` or `cb` is NULL, TL_ESTATE while
 * several workers run, or TL_ENOMEM. */
TL_EXTERN int tl_app_on_stop(tl_app *app, tl_app_stop_cb cb, void *arg);

/* The server's own messages: what goes wrong below the request level,
 * where no handler or middleware sees it (today: a TLS handshake that
 * failed and why, a handshake that timed out, plain HTTP sent to a TLS
 * port). `line` is one line without a newline, "tls: PEER: WHAT" (the
 * source, the peer's address, what happened); valid only during the
 * call. Called on the worker thread of the connection concerned, so with
 * several workers from several threads at once. At most about 10 lines a
 * second per TLS context reach the hooks; the rest are counted and
 * reported as "tls: N more lines suppressed". */
typedef void (*tl_app_log_fn)(void *arg, const char *line);

/* Send the server's own messages (above) to `fn` with `arg` (borrowed:
 * keep it valid while the app lives). Every hook gets every line; adding
 * the same fn and arg twice adds it once. Without any hook nothing is
 * printed: the library itself never writes to stdout or stderr. The
 * logger middleware (talon/mw/logger.h) adds itself, so an app that uses
 * it gets these lines in its log. A TLS context with its own `log`
 * (talon/tls.h) reports there instead. Call before tl_app_listen(), or
 * from a middleware's `attach` (talon/middleware.h) during it. Returns 0,
 * TL_EINVAL if `app` or `fn` is NULL, TL_ESTATE once the workers run, or
 * TL_ENOMEM. */
TL_EXTERN int tl_app_on_log(tl_app *app, tl_app_log_fn fn, void *arg);

/* The calling worker's libuv loop (worker 0's outside any worker; valid
 * from tl_app_new to tl_app_free), for work the timer API (talon/timer.h)
 * does not cover; use it only on that worker's thread. A handle you open on it
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
/* tl_router_route_opts() on the root router: per-route body limit and
 * streamed bodies. */
TL_EXTERN int tl_app_route_opts(tl_app *app, const char *method,
                                const char *pattern, tl_handler handler,
                                const tl_middleware *mw, size_t nmw,
                                const tl_route_options *opts);
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
