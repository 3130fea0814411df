/* talon — HTTP requests and responses.
 *
 * Lifetimes (read these once; every function below follows them):
 *  1. A `tl_req *` and its `tl_res *` are created by talon when a request's
 *     head has been parsed and its body fully read (on a stream_body route:
 *     when its head has been parsed; see "Streamed request bodies"). They
 *     stay valid until the
 *     response is finished (tl_res_send / tl_res_end / the handler returning
 *     without tl_res_defer) or, for a deferred response, until the client goes
 *     away (the abort callback, if any, is the last moment they are valid).
 *  2. Strings talon returns from a request (path, headers, params, query
 *     values, body) point into the bytes as received, with no copy. They are
 *     valid until the callback that obtained them (handler, middleware,
 *     timer...) returns. A deferred response's request is moved out of the
 *     receive buffer after the handler returns; call the accessor again in
 *     the later callback, and from then on its result stays valid until the
 *     response finishes. Values from tl_req_alloc() and tl_req_set() live
 *     until the response finishes. Copy anything you keep longer.
 *  3. Every pointer you pass to a tl_res_* function is copied before the call
 *     returns, except where a function says otherwise.
 *  4. A handler that returns without finishing its response and without
 *     calling tl_res_defer() gets it finished by talon with the status and
 *     headers set so far and an empty body.
 */
#ifndef TALON_HTTP_H
#define TALON_HTTP_H

#include <stdarg.h>
#include <stdbool.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_req tl_req;
typedef struct tl_res tl_res;
typedef struct tl_app tl_app;

/* ---- Request ------------------------------------------------------------ */

/* The method as an upper-case, NUL-terminated string ("GET"). Static. */
TL_EXTERN const char *tl_req_method(const tl_req *req);

/* The percent-decoded path, without the query string ("/users/a b").
 * NUL-terminated; lives as long as the request. Never NULL. */
TL_EXTERN const char *tl_req_path(tl_req *req);

/* The request target exactly as received ("/users/a%20b?x=1").
 * NUL-terminated; lives as long as the request. */
TL_EXTERN const char *tl_req_target(const tl_req *req);

/* The raw query string after '?', without the '?' ("" if none).
 * NUL-terminated; lives as long as the request. */
TL_EXTERN const char *tl_req_query_string(const tl_req *req);

/* The first value of query parameter `name`, percent- and '+'-decoded
 * ("?a=b+c" gives "b c"); "" for a key without '='; NULL if absent.
 * `name` is matched against the decoded key. The result lives as long as
 * the request. */
TL_EXTERN const char *tl_req_query(tl_req *req, const char *name);

/* The value of route parameter `name` (":id" in the pattern is "id";
 * "*" for the wildcard), percent-decoded; NULL if the route has no such
 * parameter. Lives as long as the request. */
TL_EXTERN const char *tl_req_param(tl_req *req, const char *name);

/* The value of header `name`, matched case-insensitively, leading and
 * trailing whitespace removed; NULL if absent. For a header sent more than
 * once this is the first; see tl_req_header_at(). Lives as long as the
 * request. */
TL_EXTERN const char *tl_req_header(const tl_req *req, const char *name);

/* The `index`-th (0-based) occurrence of header `name`, or NULL. */
TL_EXTERN const char *tl_req_header_at(const tl_req *req, const char *name,
                                       size_t index);

/* The number of header lines in the request. */
TL_EXTERN size_t tl_req_header_count(const tl_req *req);

/* Header line `i` (0-based, in arrival order): name and value slices,
 * NUL-terminated, living as long as the request. Returns 0, or TL_ENOENT
 * if `i` is out of range. */
TL_EXTERN int tl_req_header_get(const tl_req *req, size_t i, tl_slice *name,
                                tl_slice *value);

/* The request body (empty slice, ptr non-NULL, if none). Chunked bodies
 * are de-chunked. Not NUL-terminated; lives as long as the request. */
TL_EXTERN tl_slice tl_req_body(const tl_req *req);

/* ---- Streamed request bodies ------------------------------------------
 *
 * On a route registered with stream_body (tl_route_options, talon/
 * router.h) the chain runs as soon as the head has arrived, and the body
 * is read as it arrives, at bounded memory (about one read, 64 KiB, at a
 * time), however large it is: a multi-GB upload goes to disk without
 * being held. A handler or middleware sets a reader:
 *
 *   static int on_data(tl_req *req, tl_res *res, const void *p, size_t n,
 *                      void *arg) {
 *     return write(fd, p, n) == (ssize_t)n ? TL_BODY_NEXT : TL_BODY_PAUSE;
 *   }
 *   static void on_end(tl_req *req, tl_res *res, int err, void *arg) {
 *     close(fd);
 *     if (err == 0) tl_res_text(res, "stored\n");   (else talon answers)
 *   }
 *   static void upload(tl_req *req, tl_res *res) {
 *     ... open fd ...
 *     tl_req_body_stream(req, on_data, on_end, state);
 *   }
 *
 * Backpressure: an on_data that returns TL_BODY_PAUSE stops the reading
 * (the client's TCP window closes) until tl_req_body_resume(), e.g. when
 * an asynchronous write of the chunk completed. Until a reader is set,
 * nothing is read either, so a middleware may decide asynchronously
 * (TL_PENDING) before the handler reads the body.
 *
 * max_body_bytes (the route's, else the app's) counts every body byte:
 * a declared Content-Length over it gets 413 before the chain runs; a
 * body that crosses it ends the stream with TL_ETOOBIG. While the body
 * streams and the app is not pausing it, header_timeout_ms bounds the
 * time between two reads (over: 408); while it pauses (or has set no
 * reader yet) no timeout runs: the app decides, and a stopping app closes
 * the connection after shutdown_timeout_ms (on_end: TL_ECLOSED).
 *
 * A response finished before the body was read in full (an early 401,
 * 413 or 507) closes the connection after it (the head says "Connection:
 * close"); the rest of the body is not read. */

enum {
  TL_BODY_NEXT = 0, /* on_data: go on reading */
  TL_BODY_PAUSE = 1 /* on_data: stop reading until tl_req_body_resume() */
};

/* Body bytes as they arrived, de-chunked: `data` is valid only during the
 * call (copy what an asynchronous write needs); `len` > 0. Runs on the
 * thread of the worker serving the request. Return TL_BODY_NEXT or TL_BODY_PAUSE. The response may be
 * finished from here (the rest of the body is then not read). */
typedef int (*tl_body_data_cb)(tl_req *req, tl_res *res, const void *data,
                               size_t len, void *arg);

/* The end of the body, called exactly once for a reader that was set,
 * after its last on_data, with `err`:
 *   0           the whole body arrived (and the reader is not paused);
 *   TL_ETOOBIG  it crossed max_body_bytes;
 *   TL_EINVAL   its chunked framing was malformed;
 *   TL_EAGAIN   the client sent nothing for header_timeout_ms;
 *   TL_ECLOSED  the client left, or the response was finished before the
 *               body ended: nothing more arrives (and when the client
 *               left, nothing can be sent: `req` and `res` are valid for
 *               the last time; remove what the upload left behind).
 * For 0 the handler answers (now or later; the response is deferred).
 * For TL_ETOOBIG, TL_EINVAL and TL_EAGAIN it may answer; a response left
 * unfinished is answered 413, 400 or 408 and the connection closes. */
typedef void (*tl_body_end_cb)(tl_req *req, tl_res *res, int err, void *arg);

/* Read the body of `req` with `on_data` (required) and `on_end` (may be
 * NULL), passing `arg`. Defers the response (tl_res_defer) if it is not
 * deferred yet. On a streamed route the body is delivered as it arrives;
 * on a buffered route (or a request without a body) what was buffered is
 * delivered as one piece, then on_end(0). Callbacks never run inside this
 * call: they start once the calling handler or middleware has returned.
 * A middleware that sets a reader returns TL_PENDING and continues the
 * chain with tl_next() from on_end (as tl_body_multipart does); a handler
 * answers from on_end. Returns 0, TL_EINVAL (no on_data), or TL_ESTATE (a
 * reader is already set, the response is finished, or this is a WebSocket
 * upgrade). */
TL_EXTERN int tl_req_body_stream(tl_req *req, tl_body_data_cb on_data,
                                 tl_body_end_cb on_end, void *arg);

/* Resume reading after on_data returned TL_BODY_PAUSE: the next piece
 * (or on_end) comes in this loop turn, after the caller returns. Call it
 * on the thread of the worker serving `req` (from a timer started in a
 * callback of the request, a libuv callback on its tl_app_loop(), or
 * tl_app_call(app, worker, ...) from a thread of yours).
 * Called inside on_data, before that returns TL_BODY_PAUSE, it cancels
 * the pause. Returns 0, or TL_ESTATE if the body is not paused. */
TL_EXTERN int tl_req_body_resume(tl_req *req);

/* Whether the body of `req` is still to be read (a streamed route, not
 * read to its end yet): tl_req_body() is then empty, and
 * tl_req_body_stream() reads it. */
TL_EXTERN bool tl_req_body_pending(const tl_req *req);

/* HTTP version: 10 for HTTP/1.0, 11 for HTTP/1.1. */
TL_EXTERN int tl_req_version(const tl_req *req);

/* The peer's address as text ("127.0.0.1", "::1"; "::ffff:127.0.0.1" for
 * an IPv4 client of a dual-stack "::" listener; "unix:" for a client of a
 * unix socket listener, which has no address of its own) into `buf` of
 * `size` bytes, NUL-terminated. Returns 0, TL_ETOOBIG if `buf` is too
 * small, or a libuv error. */
TL_EXTERN int tl_req_remote_address(const tl_req *req, char *buf, size_t size);

/* The app serving this request. */
TL_EXTERN tl_app *tl_req_app(const tl_req *req);

/* Allocate `size` bytes (aligned for any type) that are freed
 * automatically when the request ends. Returns NULL on failure. For
 * middleware that builds request-scoped data (parsed cookies, ...). */
TL_EXTERN void *tl_req_alloc(tl_req *req, size_t size);

/* Per-request locals: attach `value` under `key` so later middleware and
 * the handler can read it with tl_req_get(). `key` is borrowed for the
 * request's lifetime (use a string literal). Setting an existing key
 * replaces its value (the old value's `free_fn` runs). `free_fn`, if not
 * NULL, is called with `value` when the request ends; otherwise the caller
 * keeps ownership of `value`. Returns 0 or TL_ENOMEM (then `free_fn` is
 * not called and ownership stays with the caller). */
TL_EXTERN int tl_req_set(tl_req *req, const char *key, void *value,
                         void (*free_fn)(void *));

/* The value stored under `key`, or NULL. */
TL_EXTERN void *tl_req_get(const tl_req *req, const char *key);

/* ---- Response ----------------------------------------------------------- */

/* Set the status code (100-999; default 200). Returns 0, TL_EINVAL for an
 * out-of-range code, or TL_ESTATE once the head has been sent. */
TL_EXTERN int tl_res_status(tl_res *res, int status);

/* The status set so far. */
TL_EXTERN int tl_res_get_status(const tl_res *res);

/* Add a header line. `name` and `value` are copied. talon writes Date,
 * Content-Length / Transfer-Encoding and Connection itself; setting
 * Content-Length here is honoured only by streamed responses. Returns 0,
 * TL_EINVAL if either contains CR, LF or NUL (header injection), TL_ENOMEM,
 * or TL_ESTATE once the head has been sent. */
TL_EXTERN int tl_res_header(tl_res *res, const char *name, const char *value);

/* Set header `name` to `value`: every line of that name (matched
 * case-insensitively) added so far is removed and one line is added.
 * Copied like tl_res_header(). Returns 0, TL_EINVAL, TL_ENOMEM (then the
 * old lines are still there) or TL_ESTATE once the head has been sent. */
TL_EXTERN int tl_res_set_header(tl_res *res, const char *name,
                                const char *value);

/* Remove every line of header `name` (case-insensitive) added so far.
 * Returns how many were removed (0 if none), TL_EINVAL for an empty
 * name, or TL_ESTATE once the head has been sent. Headers talon writes
 * itself (Date, framing, Connection) are not in that list. */
TL_EXTERN int tl_res_remove_header(tl_res *res, const char *name);

/* Like tl_res_header() with a printf-formatted value. */
TL_EXTERN int tl_res_headerf(tl_res *res, const char *name, const char *fmt,
                             ...) __attribute__((format(printf, 3, 4)));

/* The value of the first response header named `name`
 * (case-insensitive) added so far, or NULL (also on out of memory). The
 * copy lives until the response finishes. */
TL_EXTERN const char *tl_res_get_header(tl_res *res, const char *name);

/* Whether a header named `name` (case-insensitive) has been added. */
TL_EXTERN bool tl_res_has_header(const tl_res *res, const char *name);

/* Send the whole response with `body` (copied; may be NULL when `len` is
 * 0) and finish it. Content-Length is set. For HEAD requests the body is
 * not sent but Content-Length is. Returns 0, TL_ESTATE if the response was
 * already finished or streaming started, TL_ECLOSED if the client is gone,
 * or TL_ENOMEM. After it returns (whatever it returns) `req` and `res` must
 * not be used again, unless it returned TL_ESTATE. */
TL_EXTERN int tl_res_send(tl_res *res, const void *body, size_t len);

/* Frees a buffer given to tl_res_send_buffer(): `body` as given, `arg`
 * the caller's. */
typedef void (*tl_res_free_cb)(void *body, void *arg);

/* Like tl_res_send(), without copying `body`: ownership of the `len`
 * bytes at `body` passes to talon, which writes them from where they are
 * and calls `free_cb(body, arg)` (may be NULL: nothing to free) exactly
 * once, on the thread of the worker serving `res`, whatever this returns:
 *  - after the kernel has taken the last byte;
 *  - or when the connection closes first (the client left, a send
 *    timeout, the app stopping);
 *  - or before this returns, when no body goes out (HEAD, 204, 304, an
 *    empty body, an error) or a response filter (compression) engaged
 *    and made its own copy.
 * Until then the bytes must not change. Returns like tl_res_send(). For
 * large bodies built in memory (a report, a tarball from a cache): a
 * response no longer costs a copy of its body per connection. */
TL_EXTERN int tl_res_send_buffer(tl_res *res, const void *body, size_t len,
                                 tl_res_free_cb free_cb, void *arg);

/* tl_res_send() of a NUL-terminated string with Content-Type
 * "text/plain; charset=utf-8" (unless a Content-Type was set). */
TL_EXTERN int tl_res_text(tl_res *res, const char *text);

/* tl_res_send() of a JSON text (not validated) with Content-Type
 * "application/json". */
TL_EXTERN int tl_res_json(tl_res *res, const char *json);

/* Redirect to `location` with `status` (301, 302, 303, 307 or 308; 0 means
 * 302) and finish the response. */
TL_EXTERN int tl_res_redirect(tl_res *res, int status, const char *location);

/* Streaming. Send `len` bytes of body now; the head goes out with the first
 * write, with Transfer-Encoding: chunked for HTTP/1.1 unless a
 * Content-Length header was set (HTTP/1.0 clients get the body unframed and
 * the connection closes at the end). Returns (the send convention of
 * common.h) `len` (capped at INT_MAX - 1; 0 for an empty write) when the
 * backlog is small, TL_SEND_BACKPRESSURE when the socket's backlog passed
 * write_high_water (stop writing and wait for the drain callback), or
 * TL_ECLOSED / TL_ESTATE / TL_ENOMEM. The bytes are always queued unless an
 * error is returned: HTTP never drops. */
TL_EXTERN int tl_res_write(tl_res *res, const void *data, size_t len);

/* Finish a response: sends the head if not yet sent, then `data` (may be
 * NULL), then the chunked terminator if needed. Returns like
 * tl_res_send(). */
TL_EXTERN int tl_res_end(tl_res *res, const void *data, size_t len);

/* Send the file at `path` as the whole body with sendfile(2), then finish
 * the response. Sets Content-Length (the caller sets Content-Type). Opening
 * the file happens on the loop thread. Returns 0; TL_ENOENT if the file
 * does not exist or is not a regular file (the response is then still
 * open, so the caller can send a 404); a libuv error for other open
 * failures (response still open); or errors like tl_res_send(). */
TL_EXTERN int tl_res_send_file(tl_res *res, const char *path);

/* Send `length` bytes of the file at `path` from `offset` (length -1: to
 * the end) as the body, like tl_res_send_file(); for Range answers (the
 * caller sets 206 and Content-Range). Returns like tl_res_send_file(), and
 * TL_EINVAL for a range outside the file (the response stays open). */
TL_EXTERN int tl_res_send_file_range(tl_res *res, const char *path,
                                     int64_t offset, int64_t length);

/* Called once when the response is finished (sent in full, or aborted
 * because the client left): for loggers and metrics. Inside, `res` and its
 * request are still valid (re-read request strings there), and
 * tl_res_get_status, tl_res_body_bytes and tl_res_aborted describe the
 * outcome. Nothing may be sent from it. */
typedef void (*tl_res_finish_cb)(tl_res *res, void *arg);

/* Register a finish callback (any number; they run in registration order).
 * Returns 0, TL_EINVAL, TL_ESTATE if already finished, or TL_ENOMEM. */
TL_EXTERN int tl_res_on_finish(tl_res *res, tl_res_finish_cb cb, void *arg);

/* Body bytes queued for this response so far (without the head; for HEAD
 * requests 0). */
TL_EXTERN uint64_t tl_res_body_bytes(const tl_res *res);

/* Whether the client left before the response was finished. */
TL_EXTERN bool tl_res_aborted(const tl_res *res);

/* A response body filter, for middleware that transforms bodies (e.g.
 * compression). Filters see bodies given to tl_res_send, tl_res_write and
 * tl_res_end; not file bodies (tl_res_send_file*), HEAD responses or
 * statuses without a body. */
typedef struct tl_res_filter {
  /* Called once, just before the head is written: `body_len` is the
   * whole body's length for tl_res_send, or -1 when streaming. Return 1 to
   * engage (headers may still be added here, e.g. Content-Encoding and
   * Vary), anything else to stay out of the way. An engaged filter makes a
   * streamed response chunked (a Content-Length the handler set is then
   * not used: do not engage when the response has one). */
  int (*begin)(tl_res *res, void *ctx, int64_t body_len);
  /* Transform `len` bytes; `last` is set with the final piece (possibly
   * empty). Pass output on with tl_res_filter_out(). Return 0, or a TL_E*
   * code: the connection is then closed. */
  int (*data)(tl_res *res, void *ctx, const void *data, size_t len, bool last);
} tl_res_filter;

/* Install a filter on this response (one per response; `filter` is
 * borrowed and must outlive it, `ctx` is passed back). Returns 0,
 * TL_EINVAL, TL_EEXIST if one is set, or TL_ESTATE once the head went
 * out. */
TL_EXTERN int tl_res_set_filter(tl_res *res, const tl_res_filter *filter,
                                void *ctx);

/* Emit filtered body bytes (copied) from a filter's `data` callback.
 * Returns 0, TL_ESTATE outside an engaged filter, or TL_ENOMEM. */
TL_EXTERN int tl_res_filter_out(tl_res *res, const void *data, size_t len);

/* Bytes of this response's connection queued and not yet taken by the
 * kernel (corked in this loop turn, or waiting on a slow client). */
TL_EXTERN size_t tl_res_buffered_amount(const tl_res *res);

/* Called once when the socket's backlog has drained below its low-water
 * mark after tl_res_write() returned TL_SEND_BACKPRESSURE. `arg` is the
 * caller's. */
typedef void (*tl_res_drain_cb)(tl_res *res, void *arg);
/* Set the drain callback (replacing any earlier one; NULL removes it). */
TL_EXTERN void tl_res_on_drain(tl_res *res, tl_res_drain_cb cb, void *arg);

/* Called when the client goes away before a deferred response finished.
 * Inside the callback `req` and `res` are valid for the last time; nothing
 * is written. */
typedef void (*tl_res_abort_cb)(tl_res *res, void *arg);

/* Keep the response open after the handler (or a middleware) returns: it
 * is finished later with tl_res_send/end/... from a timer, a database
 * callback, a drain callback. `on_abort` (may be NULL) is told if the
 * client disconnects first; after it returns the request is gone. Further
 * requests on the same connection wait, so pipelined responses keep their
 * order. */
TL_EXTERN void tl_res_defer(tl_res *res, tl_res_abort_cb on_abort, void *arg);

/* Whether the response has been finished (sent in full or aborted). */
TL_EXTERN bool tl_res_finished(const tl_res *res);

/* Whether the head has gone out (streaming started). */
TL_EXTERN bool tl_res_head_sent(const tl_res *res);

/* Close the connection after this response even if keep-alive was
 * possible. */
TL_EXTERN void tl_res_close_after(tl_res *res);

/* The request this response answers. */
TL_EXTERN tl_req *tl_res_req(const tl_res *res);

#ifdef __cplusplus
}
#endif
#endif /* TALON_HTTP_H */
