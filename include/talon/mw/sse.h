/* talon — server-sent events: `text/event-stream` responses.
 *
 *   static void events(tl_req *req, tl_res *res) {
 *     tl_sse *sse = tl_sse_start(req, res, NULL);  // head out, response open
 *     if (!sse)
 *       return;                                    // answered 500
 *     const char *last = tl_sse_last_event_id(sse); // a reconnecting client's
 *     tl_sse_send(sse, "hello", "line one\nline two", "1");
 *     keep `sse` (e.g. in a list) and send from timers or other callbacks;
 *     drop it in on_close.
 *   }
 *
 * A stream is a deferred, streamed response (talon/http.h) that talon
 * keeps open after the handler returns: events go out with
 * tl_sse_send() from any callback on its worker's thread, a comment line
 * keeps idle proxies from closing it, and it ends with tl_sse_end(), when
 * the client goes away, or when the app stops.
 *
 * Lifetime: a `tl_sse *` is valid from tl_sse_start() until tl_sse_end()
 * is called or `on_close` returns, whichever comes first; the request
 * and response it came with live as long (talon/http.h, rule 1).
 *
 * Backpressure: every send queues the whole event or nothing. A send
 * returns the bytes queued (> 0) while the client keeps up,
 * TL_SEND_BACKPRESSURE when the connection's backlog passed the app's
 * write_high_water (the event is queued: send no more until `on_drain`),
 * and TL_SEND_DROPPED (0) when the event would take the backlog past
 * `max_buffered` (not queued; `on_drain` still comes). Keep-alive
 * comments are not sent while output waits.
 *
 * Written only against the public API (middleware/sse.c). Every function
 * must be called on the thread of the worker that started the stream (the
 * worker of its connection; talon/app.h): to send from another thread or
 * worker, hand the event over with tl_app_call().
 */
#ifndef TALON_MW_SSE_H
#define TALON_MW_SSE_H

#include "../app.h"
#include "../http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_sse tl_sse;

#define TL_SSE_NO_KEEPALIVE ((unsigned)-1)

/* Options for tl_sse_start() (NULL: all defaults; zero = default). */
typedef struct tl_sse_options {
  /* After this long without output, a comment line (": keep-alive") is
   * sent [15000 ms]; TL_SSE_NO_KEEPALIVE: never. */
  unsigned keepalive_ms;
  /* Sent first as "retry:", the client's reconnection delay [0: not
   * sent; the browser's default applies]. */
  unsigned retry_ms;
  /* Queued bytes past which an event is dropped instead of queued
   * [1 MiB]. */
  size_t max_buffered;
  /* The backlog drained after a send returned TL_SEND_BACKPRESSURE or
   * TL_SEND_DROPPED. May be NULL. */
  void (*on_drain)(tl_sse *sse, void *arg);
  /* The stream ended without tl_sse_end(): the client went away, or the
   * app is stopping (talon then ends the response after this returns,
   * within a second of the stop). The last moment `sse` is valid; sends
   * inside return TL_ECLOSED. May be NULL. */
  void (*on_close)(tl_sse *sse, void *arg);
  /* Passed to the callbacks. Borrowed. */
  void *arg;
} tl_sse_options;

/* Turn `res` into an event stream: status 200 (unless another 2xx was
 * set), Content-Type text/event-stream, Cache-Control no-cache,
 * X-Accel-Buffering no (headers set before are kept), the head sent at
 * once, the response deferred. Call from a handler (or a middleware
 * that then returns TL_DONE). `options` is copied. Returns the stream, or
 * NULL: then the response is still open if the error was TL_ESTATE (the
 * head was sent already), else it was answered with 500 or the client is
 * gone. */
TL_EXTERN tl_sse *tl_sse_start(tl_req *req, tl_res *res,
                               const tl_sse_options *options);

/* Send one event: "event:" `event` (NULL: none, the browser's "message"),
 * the data split at every line break ("\r\n", "\r" or "\n") into one
 * "data:" line each, so the client's event.data is `data` with line
 * breaks as "\n" (NULL: no data lines; "" one empty data line), "id:" `id`
 * (NULL: none; "" resets the client's last event id), then the blank line
 * that ends the event. Strings are copied. Returns as said at the top, or
 * TL_EINVAL when `event` or `id` contains CR or LF, TL_ECLOSED / TL_ESTATE
 * when the stream is over, TL_ENOMEM. */
TL_EXTERN int tl_sse_send(tl_sse *sse, const char *event, const char *data,
                          const char *id);

/* tl_sse_send() with `len` bytes of data (may contain NUL bytes only if
 * the client copes; browsers do). */
TL_EXTERN int tl_sse_send_data(tl_sse *sse, const char *event, const void *data,
                               size_t len, const char *id);

/* A comment line (": text"; the client ignores it). `text` must not
 * contain CR or LF (TL_EINVAL); NULL is "". Returns like tl_sse_send(). */
TL_EXTERN int tl_sse_comment(tl_sse *sse, const char *text);

/* Send "retry: ms": the client waits this long before reconnecting.
 * Returns like tl_sse_send(). */
TL_EXTERN int tl_sse_retry(tl_sse *sse, unsigned ms);

/* The Last-Event-ID header of the request (what a reconnecting browser
 * sends: the id of the last event it got), or NULL. Copied at start:
 * valid as long as `sse`. */
TL_EXTERN const char *tl_sse_last_event_id(const tl_sse *sse);

/* The stream's response (for tl_res_req, tl_res_buffered_amount...). */
TL_EXTERN tl_res *tl_sse_res(const tl_sse *sse);

/* End the stream: the response finishes (the last chunk is sent) and
 * `sse` is invalid when this returns. `on_close` is not called. */
TL_EXTERN void tl_sse_end(tl_sse *sse);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_SSE_H */
