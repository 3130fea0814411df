/* talon — WebSocket routes (RFC 6455).
 *
 *   typedef struct { char name[32]; } user;
 *   static int up(tl_req *req, tl_res *res, void *data) {
 *     user *u = data;                               // zeroed, sizeof(user)
 *     const char *n = tl_req_query(req, "name");
 *     if (!n) { tl_res_status(res, 401); return TL_REJECT; }
 *     snprintf(u->name, sizeof u->name, "%s", n);
 *     return TL_ACCEPT;
 *   }
 *   static void msg(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
 *     tl_ws_send(ws, p, n, op);                     // echo
 *   }
 *   static const tl_ws_handlers chat = {.upgrade = up, .message = msg};
 *   tl_app_ws(app, "/chat", &chat, sizeof(user));
 *
 * Lifetimes:
 *  1. A `tl_ws *` is valid from `open` until the `close` handler returns
 *     (`close` is always called once for a socket that was opened). After
 *     that it must not be used. Sends after a close started return
 *     TL_WS_DROPPED and send nothing.
 *     One exception keeps a caller safe: when `close` runs inside a talon
 *     call the app made (a tl_ws_send that crossed max_backpressure with
 *     close_on_backpressure_limit set, which closes with 1008 and returns
 *     TL_WS_DROPPED; a publish that did the same to a subscriber), the
 *     `tl_ws *` stays valid until the app's callback that made the call
 *     returns (its memory goes only after the loop turn): further sends
 *     return TL_WS_DROPPED, tl_ws_ready_state() says TL_WS_CLOSED,
 *     tl_ws_data() returns the context as `close` left it. So code after
 *     a send may still read its socket; it must not keep the pointer
 *     past that callback. Check tl_ws_ready_state() after a send when it
 *     matters whether `close` already ran.
 *  2. The context block (`data`, `data_size` bytes, zeroed, aligned for any
 *     type) is allocated with the connection before `upgrade` runs and
 *     freed after `close` returns (or after a rejected or abandoned
 *     upgrade). tl_ws_data() returns it.
 *  3. Message data passed to handlers is valid only during the call.
 *  4. Everything a handler sends within one callback (open, message, drain,
 *     ...) leaves in one write, after the callback returns.
 */
#ifndef TALON_WS_H
#define TALON_WS_H

#include "app.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_ws tl_ws;

typedef enum tl_opcode {
  TL_WS_TEXT = 1,
  TL_WS_BINARY = 2,
  TL_WS_CLOSE = 8,
  TL_WS_PING = 9,
  TL_WS_PONG = 10
} tl_opcode;

/* What an upgrade handler returns. TL_PENDING (from talon/middleware.h)
 * means "decided later": call tl_ws_upgrade_accept() or answer `res` (e.g.
 * tl_res_status + tl_res_text) from a later callback; register an abort
 * callback with tl_res_defer() to learn that the client left first. */
enum { TL_ACCEPT = 0, TL_REJECT = 1 };

/* Send results (like Bun's ServerWebSocket.send): the WebSocket names of
 * the send convention in common.h. */
#define TL_WS_BACKPRESSURE TL_SEND_BACKPRESSURE /* queued: wait for drain */
#define TL_WS_DROPPED TL_SEND_DROPPED /* not sent: over max_backpressure,  \
                                         or the socket is closing */

typedef enum tl_ws_state {
  TL_WS_OPEN = 1,    /* messages flow */
  TL_WS_CLOSING = 2, /* a close frame was sent or received */
  TL_WS_CLOSED = 3   /* gone (only seen inside the close handler) */
} tl_ws_state;

typedef struct tl_ws_handlers {
  /* Decide the upgrade. `data` is the zeroed context block. Return
   * TL_ACCEPT, TL_REJECT (the client gets the status and headers set on
   * `res`, 403 if none was set) or TL_PENDING. Headers set on `res` go out
   * with the 101. NULL: accept every valid handshake. */
  int (*upgrade)(tl_req *req, tl_res *res, void *data);
  /* The socket is open; sends are allowed. */
  void (*open)(tl_ws *ws);
  /* A whole message (fragments reassembled; text is valid UTF-8). */
  void (*message)(tl_ws *ws, const void *data, size_t len, tl_opcode op);
  /* The socket closed. `code`: the peer's close code when it sent a close
   * frame (1005 if that frame had none); the code talon sent when it
   * failed the connection itself (1002 protocol error, 1007 invalid UTF-8,
   * 1009 too big, 1001 idle timeout or shutdown, 1008 backpressure limit
   * or message timeout, 1011 out of memory); 1006 when the connection ended
   * without a close frame from the peer (also after tl_ws_close() if the peer
   * never answered). The reason (UTF-8, not NUL-terminated) is valid during the
   * call. */
  void (*close)(tl_ws *ws, int code, const char *reason, size_t len);
  /* The backlog emptied after a send returned TL_WS_BACKPRESSURE. */
  void (*drain)(tl_ws *ws);
  /* Something failed on this socket; `close` follows (with 1006 for an
   * I/O error). `err`: a libuv code for a read error (UV_ECONNRESET: the
   * peer reset the connection, ...) or a write error (UV_EPIPE,
   * UV_ECONNRESET), TL_ENOMEM when a send could not be queued (close
   * 1011). Called at most once per socket, and not for a clean end (the
   * peer's close frame or FIN) or a timeout. Sends inside it are dropped. */
  void (*error)(tl_ws *ws, int err);
  /* A ping arrived (the pong is sent automatically) / a pong arrived. */
  void (*ping)(tl_ws *ws, const void *data, size_t len);
  void (*pong)(tl_ws *ws, const void *data, size_t len);
  /* A message was dropped for backpressure (not sent). */
  void (*dropped)(tl_ws *ws, const void *data, size_t len, tl_opcode op);
  /* `ws` joined or left `topic` (talon/pubsub.h): the topic's subscriber
   * count went from `old_count` to `new_count`. Also called for each topic
   * a closing socket leaves, after its `close` handler. */
  void (*subscription)(tl_ws *ws, const char *topic, int new_count,
                       int old_count);

  /* Options (0 = default, in brackets). */
  /* Bytes of one message [16 MiB; for a message that arrives compressed,
   * once inflated: 1 MiB]; over: 1009. permessage-deflate lets a few KiB
   * on the wire inflate to a MiB, and an inflated message is held whole,
   * so a compressed message is cheap for a client to send and costly for
   * the server to hold: without a limit of the app's, those get the
   * smaller one. A set value applies to both. talon inflates at most
   * 1 MiB per connection per loop turn (not reading that socket
   * meanwhile), so a larger limit costs other clients no latency, only
   * memory (the message's size, per connection inflating one) and CPU
   * (about 1 ms per MiB, 1000 times what the client sent at worst). */
  size_t max_payload;
  unsigned idle_timeout_s; /* close after this long without a frame
                              [120]; TL_WS_NO_TIMEOUT disables */
  int send_pings;          /* ping at half the idle timeout [off] */
  size_t max_backpressure; /* backlog bytes before sends drop [16 MiB] */
  int close_on_backpressure_limit; /* close (1008) instead of dropping */
  unsigned max_lifetime_s;         /* close with 1000 after this long [off] */
  /* Allowed Origin values, NULL-terminated; NULL: any origin. Borrowed: it
   * must outlive the app (use a static array). A browser sends Origin on
   * every WebSocket handshake; when cookies carry identity, set this, or a
   * foreign page could open a socket with the user's cookies (cross-site
   * WebSocket hijacking). A refused upgrade gets 403. Requests without an
   * Origin header (non-browser clients) are allowed. */
  const char *const *allowed_origins;
  /* tl_ws_publish() from a socket of this route also reaches the socket
   * itself (Bun's publishToSelf) [off]. */
  int publish_to_self;
  /* permessage-deflate (RFC 7692): TL_NO_COMPRESSION (default), or an OR
   * of one compressor and one decompressor below (a compressor alone
   * implies TL_SHARED_DECOMPRESSOR). Offers a client makes are parsed and
   * the first one these settings can honour is accepted; otherwise the
   * extension is declined and the socket works uncompressed. */
  int compression;
  /* Window of a dedicated compressor, 9..15 [15], and its zlib memLevel,
   * 1..9 [8]: its memory is about 2^(bits+2) + 2^(mem_level+9) bytes per
   * connection (15/8: 256 KiB; 9/1: 3 KiB). */
  int compress_window_bits;
  int compress_mem_level;
  /* zlib level of a dedicated compressor, 1..9 [1]. With the window kept,
   * 1 (zlib's fastest) gave 1.5-3.5 times the echoes per CPU-second of
   * zlib's default 6 on chat-like text (bench/deflate.sh, 200 B and 4 KiB
   * messages; the time at 6 goes to walking match chains) for 15% more
   * bytes on the wire; higher levels trade CPU for bytes. The shared
   * compressor (each message on its own, no history to search) always
   * uses level 1: it packed chat text within 2% of level 6. */
  int compress_level;
  /* Messages shorter than this are sent uncompressed [128]. */
  size_t compress_threshold;
  /* A frame, or a fragmented message, must be complete within this long
   * of its first byte [30]; TL_WS_NO_TIMEOUT disables. Over: close 1008
   * (policy violation) and TCP. Bytes of an unfinished frame or message
   * keep the socket from the idle timeout, but not past this time, so a
   * client that trickles a frame cannot hold its socket (like
   * header_timeout_ms for HTTP). The time also runs while reading is
   * paused (tl_ws_pause, backpressure). Larger than 2,073,600 (24 days)
   * counts as that. Set it above the time your largest message takes to
   * upload on your slowest client's link. */
  unsigned message_timeout_s;
} tl_ws_handlers;

#define TL_WS_NO_TIMEOUT ((unsigned)-1)

/* tl_ws_handlers.compression. Memory per connection, measured in the
 * notes: shared compressor and decompressor cost nothing per connection
 * (one per worker, each message on its own: server_no_context_takeover /
 * client_no_context_takeover are negotiated; libdeflate in one call where
 * it can, a reset zlib stream otherwise); a dedicated compressor
 * keeps context per connection (best ratio, see compress_window_bits); a
 * dedicated decompressor lets clients keep their context (about 40 KiB per
 * connection). */
enum {
  TL_NO_COMPRESSION = 0,
  TL_SHARED_COMPRESSOR = 1,
  TL_DEDICATED_COMPRESSOR = 2,
  TL_SHARED_DECOMPRESSOR = 4,
  TL_DEDICATED_DECOMPRESSOR = 8
};

/* Register a WebSocket route. `handlers` is copied (allowed_origins stays
 * borrowed). `data_size` is the size of the per-connection context block
 * (0 allowed). A path may have both HTTP routes and a ws route: a GET with
 * `Upgrade: websocket` goes to the ws route, everything else to the HTTP
 * routes; a plain GET on a path with only a ws route gets 426. Returns 0,
 * TL_EINVAL (bad pattern, NULL handlers), TL_EEXIST, TL_ESTATE (after
 * listen) or TL_ENOMEM. */
TL_EXTERN int tl_router_ws(tl_router *router, const char *pattern,
                           const tl_ws_handlers *handlers, size_t data_size);
TL_EXTERN int tl_app_ws(tl_app *app, const char *pattern,
                        const tl_ws_handlers *handlers, size_t data_size);

/* tl_router_ws() with `nmw` route-level middleware (copied; may be NULL
 * when nmw is 0; their ctx ownership passes to talon, as for
 * tl_router_route). They run for the upgrade request after app and
 * router middleware and before `upgrade`; one that answers (a 401, say)
 * refuses the upgrade with that answer, and one that sets request locals
 * (tl_req_set) hands them to `upgrade`. Returns like tl_router_ws(), and
 * a failed middleware constructor's error. */
TL_EXTERN int tl_router_ws_route(tl_router *router, const char *pattern,
                                 const tl_ws_handlers *handlers,
                                 size_t data_size, const tl_middleware *mw,
                                 size_t nmw);
TL_EXTERN int tl_app_ws_route(tl_app *app, const char *pattern,
                              const tl_ws_handlers *handlers, size_t data_size,
                              const tl_middleware *mw, size_t nmw);

/* WebSockets of the app open now, over all its workers: opened (`open`
 * ran) and whose `close` has not run yet (Bun's
 * server.pendingWebSockets). Any thread. */
TL_EXTERN size_t tl_app_ws_count(const tl_app *app);

/* Finish an upgrade whose handler returned TL_PENDING: send the 101 and
 * open the socket (`open` runs before this returns). Returns 0, TL_ESTATE
 * if `res` is not a pending upgrade, TL_ECLOSED if the client left. */
TL_EXTERN int tl_ws_upgrade_accept(tl_res *res);

/* Whether the client offered subprotocol `name` in Sec-WebSocket-Protocol
 * (exact match). */
TL_EXTERN bool tl_ws_protocol_offered(const tl_req *req, const char *name);

/* Choose the subprotocol for the 101 (at most one; a later call replaces
 * it). `name` must be one the client offered: else TL_EINVAL. */
TL_EXTERN int tl_ws_select_protocol(tl_res *res, const char *name);

/* Send a message (`op` TL_WS_TEXT or TL_WS_BINARY; text must be valid
 * UTF-8, which is not checked). `data` is copied or written at once.
 * Returns (the send convention of common.h) the bytes accepted (> 0,
 * frame included), TL_WS_BACKPRESSURE (queued, but the socket could not
 * take it all at once: it has a backlog, wait for `drain` before sending
 * much more), TL_WS_DROPPED (0: over max_backpressure, or closing;
 * `dropped` is told), or TL_EINVAL for a bad opcode. */
TL_EXTERN int tl_ws_send(tl_ws *ws, const void *data, size_t len, tl_opcode op);
/* tl_ws_send() with an explicit compression choice (Bun's
 * send(msg, compress)): `compress` 1 compresses when permessage-deflate
 * was negotiated (even under compress_threshold), 0 never compresses, -1
 * is tl_ws_send()'s default: compress when negotiated and the message is
 * at least compress_threshold bytes. */
TL_EXTERN int tl_ws_send_ex(tl_ws *ws, const void *data, size_t len,
                            tl_opcode op, int compress);
TL_EXTERN int tl_ws_send_text(tl_ws *ws, const char *text);
TL_EXTERN int tl_ws_send_binary(tl_ws *ws, const void *data, size_t len);

/* Send a ping with up to 125 bytes of payload. Returns like tl_ws_send;
 * TL_EINVAL if `len` > 125. */
TL_EXTERN int tl_ws_ping(tl_ws *ws, const void *data, size_t len);

/* Send an unsolicited pong with up to 125 bytes of payload: a one-way
 * heartbeat the peer does not answer (RFC 6455 5.5.3). Returns like
 * tl_ws_ping(). */
TL_EXTERN int tl_ws_pong(tl_ws *ws, const void *data, size_t len);

/* Start the closing handshake: send a close frame with `code` and
 * `reason` (may be NULL; at most 123 bytes of UTF-8), then wait for the
 * peer's close (or a timeout) and close TCP. `code` is any an endpoint
 * may send: 1000 normal, 1001 going away, 1003 unsupported data, 1007
 * invalid data, 1008 policy violation, 1009 too big, 1010 (a client's),
 * 1011 internal error, 1012 service restart, 1013 try again later, 1014
 * bad gateway, 3000-3999 (registered) and 4000-4999 (private); 0 sends
 * no code (then no reason either). 1002 (protocol error) is talon's to
 * send, 1004-1006 and 1015 never go on the wire. The `close` handler runs
 * when the socket is gone. Returns 0, TL_EINVAL for another code or a
 * reason too long, or TL_ESTATE if already closing. */
TL_EXTERN int tl_ws_close(tl_ws *ws, int code, const char *reason);

/* Close TCP at once, without a close frame. `close` runs with 1006. */
TL_EXTERN void tl_ws_terminate(tl_ws *ws);

/* Runs `fn(ws, arg)` and nothing more: kept for Bun's ws.cork(). In
 * talon every send is corked already, wherever it is made (a handler, a
 * timer, another socket's callback): what a socket is sent in one loop
 * turn leaves in one write at the end of the turn (early only when more
 * than 64 KiB piles up). */
TL_EXTERN void tl_ws_cork(tl_ws *ws, void (*fn)(tl_ws *ws, void *arg),
                          void *arg);

/* The per-connection context block (data_size bytes; NULL if 0). */
TL_EXTERN void *tl_ws_data(const tl_ws *ws);

/* The peer address as text; see tl_req_remote_address(). */
TL_EXTERN int tl_ws_remote_address(const tl_ws *ws, char *buf, size_t size);

/* Bytes queued and not yet taken by the kernel. */
TL_EXTERN size_t tl_ws_buffered_amount(const tl_ws *ws);

/* The socket's state: TL_WS_OPEN, TL_WS_CLOSING (a close frame went one
 * way), or TL_WS_CLOSED (only seen inside the close handler). */
TL_EXTERN tl_ws_state tl_ws_ready_state(const tl_ws *ws);

/* The app serving this socket. */
TL_EXTERN tl_app *tl_ws_app(const tl_ws *ws);

/* Counters of a socket, for loggers and metrics. */
typedef struct tl_ws_stats {
  uint64_t messages_in, messages_out; /* whole messages (out: queued) */
  uint64_t bytes_in, bytes_out;       /* payload bytes, before compression */
  uint64_t opened_ms;                 /* loop time (tl_app_now) at open */
} tl_ws_stats;

/* Fill `stats` for `ws`. */
TL_EXTERN void tl_ws_get_stats(const tl_ws *ws, tl_ws_stats *stats);

/* Observe every WebSocket of an app (what a logger middleware needs: it
 * cannot see sockets otherwise). `open` runs after the route's open
 * handler, with the upgrade request (valid only during the call); `close`
 * runs after the route's close handler, with the same code. Either may be
 * NULL. */
typedef struct tl_ws_observer {
  void (*open)(tl_ws *ws, tl_req *req, void *arg);
  void (*close)(tl_ws *ws, int code, void *arg);
  void *arg;
} tl_ws_observer;

/* Add an observer (copied; any number per app). Returns 0, TL_EINVAL
 * (NULL), or TL_ENOMEM. Before tl_app_listen() it observes the sockets of
 * every worker; afterwards, called on a worker's thread (a middleware can
 * register on its first request), it observes the sockets that worker
 * opens from then on, and its callbacks run on that worker's thread. */
TL_EXTERN int tl_app_ws_observe(tl_app *app, const tl_ws_observer *observer);

/* Stop reading from the socket (inbound flow control) / start again.
 * talon also stops reading by itself once the socket's backlog passes
 * half of max_backpressure or a send to it is dropped for backpressure,
 * and starts again when the backlog has drained, so a client that sends
 * without reading cannot grow the server's memory or keep it busy. */
TL_EXTERN void tl_ws_pause(tl_ws *ws);
TL_EXTERN void tl_ws_resume(tl_ws *ws);


/* ---- the client -------------------------------------------------------
 *
 *   static void got(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
 *     printf("%.*s\n", (int)n, (const char *)p);
 *   }
 *   static void failed(tl_app *app, const tl_ws_connect_failure *f,
 *                      void *data) {
 *     fprintf(stderr, "%s: %s\n", f->url, f->message);
 *     tl_app_stop(app);
 *   }
 *   static const tl_ws_handlers feed = {.message = got};
 *   tl_ws_connect(app, "wss://example.com/feed?x=1", &feed, 0,
 *                 &(tl_ws_client_options){.on_fail = failed});
 *   tl_app_run(app);        // no listener needed (or tl_app_listen)
 *
 * A client socket is a `tl_ws *` like any other: the same handlers (open,
 * message, close, drain, ping, pong, error, dropped, subscription; not
 * upgrade), the same typed context, and tl_ws_send, tl_ws_close,
 * tl_ws_ping, tl_ws_subscribe / tl_ws_publish (it can join the app's
 * local topics), backpressure results, pause/resume and stats work as for
 * a server socket. Its frames are masked with a fresh mask each; frames
 * from the server must not be (a masked one fails the socket with 1002),
 * and everything else a server socket checks holds (UTF-8, control
 * frames, fragments, max_payload, inflating bounded by it). Timeouts:
 * idle_timeout_s, send_pings, message_timeout_s and max_lifetime_s apply
 * as for a server socket (so a quiet upstream is closed with 1001 after
 * 120 s unless send_pings is set or the timeout is TL_WS_NO_TIMEOUT);
 * tl_app_stop closes open client sockets with 1001 too. Observers (tl_app_ws_observe) do not see client
 * sockets; tl_app_ws_count counts them. After tl_ws_close(), the messages
 * the server sent before its close frame are still delivered (a server
 * socket drops them).
 *
 * The handlers' compression field says what the client offers:
 * TL_NO_COMPRESSION offers nothing; otherwise permessage-deflate is
 * offered with client_max_window_bits (= compress_window_bits with a
 * dedicated compressor below 15), client_no_context_takeover unless
 * the compressor is dedicated, server_no_context_takeover unless the
 * decompressor is dedicated (a server that keeps its context anyway gets
 * a dedicated decompressor on that socket), and server_max_window_bits
 * when the options ask for it. Within what was offered, whatever the
 * server answers is honoured; a message arriving compressed is bounded by max_payload
 * (1 MiB when unset) once inflated.
 */

/* Why a connect failed (tl_ws_connect_failure.reason). */
typedef enum tl_ws_fail_reason {
  TL_WS_FAIL_DNS = 1,     /* the host did not resolve (code: UV_EAI_*) */
  TL_WS_FAIL_CONNECT,     /* TCP connect failed (code: UV_ECONNREFUSED,
                             UV_ENETUNREACH, ...) */
  TL_WS_FAIL_TIMEOUT,     /* connect_timeout_ms or handshake_timeout_ms
                             passed (code: UV_ETIMEDOUT) */
  TL_WS_FAIL_TLS,         /* the TLS handshake failed: the certificate
                             did not verify (message says why), or a
                             protocol error */
  TL_WS_FAIL_STATUS,      /* the server answered with a status other than
                             101 (status and headers are set) */
  TL_WS_FAIL_ACCEPT,      /* a 101 without the right Sec-WebSocket-Accept,
                             Upgrade: websocket or Connection: Upgrade */
  TL_WS_FAIL_EXTENSION,   /* the 101 names an extension the client did not
                             offer, or parameters it cannot take */
  TL_WS_FAIL_SUBPROTOCOL, /* the 101 names a subprotocol not offered */
  TL_WS_FAIL_RESPONSE,    /* the response is not HTTP, or its head passed
                             16 KiB */
  TL_WS_FAIL_CLOSED,      /* the server closed or reset the connection
                             before the handshake completed */
  TL_WS_FAIL_SHUTDOWN,    /* the app stopped first */
  TL_WS_FAIL_NOMEM        /* out of memory */
} tl_ws_fail_reason;

/* A header of a failed handshake's response; both strings NUL-terminated
 * (names as sent). */
typedef struct tl_ws_header {
  const char *name;
  const char *value;
} tl_ws_header;

/* What the failure callback gets. Every pointer is valid only during the
 * call: copy what you keep. */
typedef struct tl_ws_connect_failure {
  tl_ws_fail_reason reason;
  int code;            /* a libuv (negative errno, UV_EAI_*) or TL_E*
                          code, or 0 */
  int status;          /* the HTTP status, 0 when no response was read */
  const char *message; /* one line for people, never NULL ("connection
                          refused", "certificate verify failed: ...",
                          "HTTP 403 Forbidden") */
  const char *url;     /* the URL given to tl_ws_connect */
  const tl_ws_header *headers; /* the response's headers, when a response
                                  was read (nheaders of them) */
  size_t nheaders;
} tl_ws_connect_failure;

/* Options of tl_ws_connect() (NULL: all defaults; a zero field means the
 * default, in brackets). Everything is copied. */
typedef struct tl_ws_client_options {
  /* Extra request headers, "Name: value" each, NULL-terminated (cookies,
   * Authorization, Origin, ...). [none] */
  const char *const *headers;
  /* Subprotocols offered in Sec-WebSocket-Protocol, in order of
   * preference, NULL-terminated; the server's choice is
   * tl_ws_protocol(). [none] */
  const char *const *protocols;
  /* DNS and TCP connect together [10000 ms]; then the TLS handshake and
   * the HTTP upgrade together [10000 ms]. Checked by the loop's timeout
   * sweep, like every talon timeout: a timeout fires up to one sweep
   * later (a quarter of the app's shortest HTTP timeout, at most 1 s). */
  unsigned connect_timeout_ms;
  unsigned handshake_timeout_ms;
  /* wss://: the server's certificate is verified against the system's CA
   * store and must name the host of the URL. `ca_file` (PEM) replaces
   * the store. [NULL] */
  const char *ca_file;
  /* DANGEROUS, for development only: do not verify the server's
   * certificate at all (self-signed certificates; anyone on the path
   * can read and change the traffic). [false] */
  bool tls_insecure_skip_verify;
  /* With permessage-deflate offered (the handlers' compression): ask the
   * server to compress with a window of at most 2^N bytes, 8..15
   * (server_max_window_bits); a server that answers without it, or with
   * more, fails the connect (TL_WS_FAIL_EXTENSION). With a dedicated
   * decompressor its memory is then about 2^N + 7 KiB per socket. [0:
   * not asked; the server picks, up to 15] */
  int server_max_window_bits;
  /* The context block (data_size bytes) starts as a copy of this; NULL:
   * zeroed. */
  const void *data;
  /* The connect failed (the socket never opened; no handler of `h`
   * runs): `data` is the context block, freed after the call. Runs on the
   * loop that connected. NULL: failures are silent. */
  void (*on_fail)(tl_app *app, const tl_ws_connect_failure *failure,
                  void *data);
} tl_ws_client_options;

/* Connect to `url` (ws:// or wss://, host as a name, an IPv4 address or
 * [an IPv6 one], optional :port, path and ?query) and run `h` on the
 * socket once the server accepts: `open` first, then as for a server
 * socket; or, if the connect fails, `options->on_fail`. `h` is copied;
 * `data_size` is the context's size (0 allowed).
 * Threads and loops: called on a worker's thread (in a handler, a timer,
 * a tl_app_call function), the socket lives on that worker's loop;
 * called before tl_app_listen / tl_app_run (on the thread that then
 * calls it), it connects on worker 0 when the loops start; called from
 * any other thread while the app runs, it is handed to worker 0 (as
 * tl_app_call). The name is resolved on libuv's thread pool; the loop
 * never blocks.
 * Returns 0 (the outcome comes through open or on_fail), TL_EINVAL (NULL
 * app, url or h; a URL that is not ws:// or wss://; a header without
 * "Name: value" or with a line break; a subprotocol that is not a
 * token; server_max_window_bits outside 8..15), TL_ESTATE (the app is stopping), or TL_ENOMEM. */
TL_EXTERN int tl_ws_connect(tl_app *app, const char *url,
                            const tl_ws_handlers *h, size_t data_size,
                            const tl_ws_client_options *options);

/* The subprotocol the server chose for a client socket, or NULL (none,
 * or a server socket). Lives as long as the socket. */
TL_EXTERN const char *tl_ws_protocol(const tl_ws *ws);

/* Whether `ws` is a client socket (tl_ws_connect). */
TL_EXTERN bool tl_ws_is_client(const tl_ws *ws);

/* A short name for a failure reason ("dns", "connect", "timeout", "tls",
 * "status", "accept", "extension", "subprotocol", "response", "closed",
 * "shutdown", "nomem"). */
TL_EXTERN const char *tl_ws_fail_reason_name(tl_ws_fail_reason reason);

#ifdef __cplusplus
}
#endif
#endif /* TALON_WS_H */
