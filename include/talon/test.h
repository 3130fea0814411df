/* talon — a test client for your app, from any C test framework.
 *
 *   #include <talon.h>
 *   #include <talon/test.h>
 *
 *   tl_app *app = make_my_app();          // routes, middleware, ws routes
 *   tl_test *t;
 *   assert(tl_test_start(&t, app, NULL) == 0);   // 127.0.0.1, a free port
 *
 *   tl_test_response r;
 *   assert(tl_test_get(t, "/hello", &r) == 0);
 *   assert(r.status == 200 && strcmp(r.body, "hello\n") == 0);
 *   tl_test_response_free(&r);
 *
 *   tl_test_ws *ws;
 *   assert(tl_test_ws_open(t, "/chat?room=a", NULL, &ws, NULL) == 0);
 *   tl_test_ws_send_text(ws, "hi");
 *   tl_test_msg m;
 *   assert(tl_test_ws_recv(ws, &m, 1000) == 0);   // or UV_ETIMEDOUT
 *   tl_test_msg_free(&m);
 *   tl_test_ws_free(ws);
 *
 *   assert(tl_test_stop(t) == 0);          // graceful; tl_app_listen's result
 *   tl_app_free(app);
 *
 * How it runs: tl_test_start() calls tl_app_listen() on a thread of its
 * own (worker 0's thread from then on; an app with several workers starts
 * the others itself) and returns once the app accepts connections; requests are made over real sockets from the calling
 * thread, with blocking I/O and a timeout; tl_test_stop() calls
 * tl_app_stop() and joins the thread. It uses the public API only, so it
 * runs the app exactly as production does, and works under ASan and
 * valgrind, and from cmocka, Unity, Check or a plain main().
 *
 * Threads: while a test runs, the app belongs to its workers: from the
 * calling thread use only these functions and what talon/app.h allows
 * from any thread (tl_app_stop, tl_app_call, tl_app_publish...). Register
 * routes before tl_test_start(); read state your handlers keep after
 * tl_test_stop(), or guard it yourself. Every function of a tl_test, and
 * of its WebSockets, must be called from one thread at a time.
 *
 * Errors: functions return 0 or a negative code that tl_strerror() names:
 * TL_EINVAL, TL_ENOMEM, TL_ECLOSED (the server closed the connection
 * before a whole answer), TL_EIO (a malformed answer), or a libuv/errno
 * code such as UV_ETIMEDOUT (nothing within the timeout) or
 * UV_ECONNREFUSED.
 */
#ifndef TALON_TEST_H
#define TALON_TEST_H

#include <stdbool.h>

#include "app.h"
#include "ws.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_test tl_test;
typedef struct tl_test_ws tl_test_ws;

/* Options for tl_test_start(); zero fields mean the default. */
typedef struct tl_test_options {
  /* The address to listen on and connect to ["127.0.0.1"], an IPv4 or
   * IPv6 address (no name, no unix socket: TL_EINVAL); copied. */
  const char *host;
  /* How long a request, a WebSocket handshake or a close waits for the
   * server [5000 ms]. */
  unsigned timeout_ms;
  /* How long tl_test_start() waits for the app to listen [10000 ms]. */
  unsigned start_timeout_ms;
} tl_test_options;

/* Start `app` (routes registered, not listening yet) on host and a free
 * port, on a new thread, and wait until it accepts connections. The app
 * stays the caller's: free it with tl_app_free() after tl_test_stop().
 * On success *t is set. Returns 0; TL_EINVAL; TL_ENOMEM; what
 * tl_app_listen() returned if it failed (e.g. TL_EINVAL for a bad host,
 * UV_EADDRINUSE); UV_ETIMEDOUT if it did not listen within
 * start_timeout_ms (the app is then stopped). */
TL_EXTERN int tl_test_start(tl_test **t, tl_app *app,
                            const tl_test_options *opts);

/* Stop the app gracefully (tl_app_stop: in-flight requests finish within
 * its shutdown_timeout_ms), wait for its thread, and free `t`. WebSockets
 * still open are closed by the server; free them after or before. Returns
 * what tl_app_listen() returned: 0 after a clean stop. NULL: 0. */
TL_EXTERN int tl_test_stop(tl_test *t);

/* The port the app listens on. */
TL_EXTERN int tl_test_port(const tl_test *t);

/* The app under test. */
TL_EXTERN tl_app *tl_test_app(const tl_test *t);

/* ---- HTTP --------------------------------------------------------------- */

/* One header of an answer: NUL-terminated, owned by the response. */
typedef struct tl_test_header {
  const char *name;
  const char *value;
} tl_test_header;

/* An answer, filled by the request functions; free it with
 * tl_test_response_free(). */
typedef struct tl_test_response {
  int status;                /* 200, 404, ... */
  tl_test_header *headers;   /* in arrival order */
  size_t nheaders;
  char *body;                /* de-chunked; NUL-terminated for text use */
  size_t body_len;           /* bytes in body, without that NUL */
} tl_test_response;

/* Send one request on a new connection and read the whole answer
 * (Content-Length, chunked, or until the server closes). `method` is
 * "GET", "POST", ...; `target` the path with any query ("/a?b=c").
 * `headers` is a NULL-terminated array of "Name: value" lines (may be
 * NULL), copied as they are; Host, "Connection: close" and, for a body
 * (or a POST, PUT or PATCH), Content-Length are added unless given.
 * A server that answers before taking the whole body (413) is read as
 * usual. `body` (may be NULL
 * when `len` is 0) is sent after the head. `res` is filled on success
 * (zeroed on failure; freeing it is then harmless). Returns 0 or an error
 * (see the top). */
TL_EXTERN int tl_test_request(tl_test *t, const char *method,
                              const char *target, const char *const *headers,
                              const void *body, size_t len,
                              tl_test_response *res);

/* tl_test_request() shorthands. */
TL_EXTERN int tl_test_get(tl_test *t, const char *target,
                          tl_test_response *res);
/* POST `body` (a NUL-terminated string) with Content-Type `type` (NULL:
 * none). */
TL_EXTERN int tl_test_post(tl_test *t, const char *target, const char *type,
                           const char *body, tl_test_response *res);

/* The first header `name` of `res` (case-insensitive), or NULL. Borrowed
 * from `res`. */
TL_EXTERN const char *tl_test_header_get(const tl_test_response *res,
                                         const char *name);

/* Free what `res` holds (and zero it). NULL is a no-op. */
TL_EXTERN void tl_test_response_free(tl_test_response *res);

/* ---- WebSocket ---------------------------------------------------------- */

/* A message received: `data` is NUL-terminated (for text use), owned by
 * the message; free it with tl_test_msg_free(). */
typedef struct tl_test_msg {
  tl_opcode op; /* TL_WS_TEXT or TL_WS_BINARY */
  char *data;
  size_t len;
} tl_test_msg;

/* Open a WebSocket to `target` (a ws route's path and query), with the
 * extra `headers` ("Name: value", NULL-terminated; may be NULL; e.g.
 * "Cookie: name=ann" or "Sec-WebSocket-Protocol: chat"). No extension is
 * offered (messages are not compressed). On success *ws is set; its
 * Sec-WebSocket-Accept has been checked. If the server answers anything
 * but 101, the call returns TL_ESTATE and, when `refused` is not NULL,
 * fills it with that answer (free it). Returns 0 or an error. */
TL_EXTERN int tl_test_ws_open(tl_test *t, const char *target,
                              const char *const *headers, tl_test_ws **ws,
                              tl_test_response *refused);

/* Send one message of `len` bytes (masked, unfragmented) with `op`
 * TL_WS_TEXT, TL_WS_BINARY, TL_WS_PING or TL_WS_PONG. Returns 0,
 * TL_ECLOSED once the socket closed, or an error. */
TL_EXTERN int tl_test_ws_send(tl_test_ws *ws, tl_opcode op, const void *data,
                              size_t len);
TL_EXTERN int tl_test_ws_send_text(tl_test_ws *ws, const char *text);

/* Wait up to `timeout_ms` for the next text or binary message (fragments
 * are joined; pings are answered with pongs; pongs are counted, see
 * tl_test_ws_pongs). Returns 0 with *msg filled; UV_ETIMEDOUT if none came
 * (the socket stays usable); TL_ECLOSED when the server closed (the close
 * code is then tl_test_ws_close_code; a close frame is answered); or an
 * error (TL_EIO for a frame a server must not send, e.g. masked). */
TL_EXTERN int tl_test_ws_recv(tl_test_ws *ws, tl_test_msg *msg,
                              unsigned timeout_ms);

/* Free what `msg` holds (and zero it). NULL is a no-op. */
TL_EXTERN void tl_test_msg_free(tl_test_msg *msg);

/* Send a close frame with `code` (0: none) and `reason` (may be NULL),
 * then wait for the server's close (messages before it are dropped).
 * Returns 0 once the server's close frame or end arrived, UV_ETIMEDOUT,
 * or an error. */
TL_EXTERN int tl_test_ws_close(tl_test_ws *ws, int code, const char *reason);

/* Wait up to `timeout_ms` for the server to close (messages before it
 * are dropped). Returns 0 (then see tl_test_ws_close_code), UV_ETIMEDOUT,
 * or an error. */
TL_EXTERN int tl_test_ws_wait_close(tl_test_ws *ws, unsigned timeout_ms);

/* The code of the server's close frame: 1000, 1008, ...; 1005 for a close
 * frame without a code; 1006 when the connection ended without one; 0
 * while open. */
TL_EXTERN int tl_test_ws_close_code(const tl_test_ws *ws);

/* The reason of the server's close frame ("" if none). Borrowed. */
TL_EXTERN const char *tl_test_ws_close_reason(const tl_test_ws *ws);

/* Pongs received so far. */
TL_EXTERN unsigned tl_test_ws_pongs(const tl_test_ws *ws);

/* The subprotocol the server chose (Sec-WebSocket-Protocol), or NULL. */
TL_EXTERN const char *tl_test_ws_protocol(const tl_test_ws *ws);

/* Close the socket (without a closing handshake: use tl_test_ws_close
 * first for a clean one) and free `ws`. NULL is a no-op. */
TL_EXTERN void tl_test_ws_free(tl_test_ws *ws);

#ifdef __cplusplus
}
#endif
#endif /* TALON_TEST_H */
