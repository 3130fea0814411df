/* talon — access log middleware.
 *
 *   tl_app_use(app, tl_logger(NULL));            combined format to stdout
 *
 *   tl_logger_options lo = {.format = TL_LOG_JSON, .file = f};
 *   tl_app_use(app, tl_logger(&lo));
 *
 * One line per HTTP request, written when the response finishes (sent in
 * full or aborted because the client left: see tl_res_on_finish). Requests
 * that talon answers before any middleware runs (400 malformed, 408, 413
 * body too large, 414, 431) are not seen by middleware and so not logged.
 * An accepted WebSocket upgrade is logged as an HTTP line with status 101;
 * besides, every WebSocket session of the app gets one line when it opens
 * and one when it closes (see below). The logger
 * registers its WebSocket observer (tl_app_ws_observe) on each worker at
 * that worker's first request, so it sees every socket of the app opened
 * from then on, whatever level (app, router, route) it was registered at.
 *
 * Workers: one logger serves every worker of the app. Each line is
 * written whole: lines of different workers never interleave inside a
 * line, and they reach the sink in the order they were queued (which,
 * between workers, is the order they finished in, give or take). The
 * counters are app-wide. Session ids are app-wide too.
 *
 * Formats (the duration is in milliseconds with 3 decimals; an aborted
 * request gets a trailing "aborted" token, or "aborted":true in JSON):
 *   TL_LOG_COMMON    NCSA common + duration:
 *     127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "GET /a?b HTTP/1.1" 200 11 0.143
 *   TL_LOG_COMBINED  common + "Referer" "User-Agent" before the duration:
 *     127.0.0.1 - - [...] "GET /a HTTP/1.1" 200 11 "http://r/" "curl/7.88.1" 0.143
 *   TL_LOG_JSON      one object per line:
 *     {"time":"2024-10-10T13:55:36.123+00:00","remote_addr":"127.0.0.1",
 *      "method":"GET","target":"/a?b","path":"/a","protocol":"HTTP/1.1",
 *      "status":200,"bytes":11,"duration_ms":0.143,"referer":null,
 *      "user_agent":"curl/7.88.1","aborted":false}
 * WebSocket session lines (id numbers the logger's sessions from 1 and
 * pairs the two lines; target, path and address are the upgrade
 * request's; code is the close code the route's close handler got;
 * messages and payload bytes from tl_ws_get_stats; duration_ms is loop
 * time from open to close, whole milliseconds):
 *   text   127.0.0.1 - - [...] "WS /chat?r=1" open id=7
 *          (TL_LOG_COMBINED adds "Origin" "User-Agent" to the open line)
 *          127.0.0.1 - - [...] "WS /chat?r=1" close id=7 code=1000
 *            messages_in=3 messages_out=4 bytes_in=45 bytes_out=60
 *            duration_ms=2012
 *   JSON   {"time":...,"type":"ws","event":"open","id":7,
 *           "remote_addr":"127.0.0.1","target":"/chat?r=1","path":"/chat",
 *           "origin":null,"user_agent":"..."}
 *          {"time":...,"type":"ws","event":"close","id":7,"remote_addr":...,
 *           "target":...,"path":...,"code":1000,"duration_ms":2012,
 *           "messages_in":3,"messages_out":4,"bytes_in":45,"bytes_out":60}
 *   (HTTP request lines have no "type" member.) Each open socket holds a
 *   record of about 100 bytes plus its target and path until it closes.
 * Server lines: the logger joins the app's log hooks (tl_app_on_log,
 * through the middleware's attach at listen), so what the server reports
 * below the request level (a failed TLS handshake and why, a handshake
 * timeout, plain HTTP on a TLS port) lands in the same log:
 *   text   [10/Oct/2024:13:55:36 +0000] talon tls: 203.0.113.9: handshake
 *            failed: ...
 *   JSON   {"time":...,"type":"server","message":"tls: 203.0.113.9: ..."}
 * In the text formats a body of 0 bytes is "-" and a missing Referer or
 * User-Agent is "-"; `"`, `\`, control bytes and bytes >= 0x80 in the
 * request line and headers are written as \" \\ \xHH (no log injection). In
 * JSON, strings are escaped per RFC 8259 and invalid UTF-8 bytes become
 * U+FFFD, so every line is valid JSON.
 */
#ifndef TALON_MW_LOGGER_H
#define TALON_MW_LOGGER_H

#include <stdint.h>
#include <stdio.h>

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tl_log_format {
  TL_LOG_COMBINED = 0, /* the default */
  TL_LOG_COMMON = 1,
  TL_LOG_JSON = 2
} tl_log_format;

/* A line sink: `line` is `len` bytes ending in '\n' and NUL-terminated
 * after that; valid only during the call. Called on the worker thread
 * that finished the request (or opened or closed the socket), so with
 * several workers from several threads, but never two calls at once:
 * the logger serialises the calls with a mutex of its own, so a sink
 * needs no lock for its own state. It must not block (hand the line to
 * your own queue if it might): every worker that has a line for it waits
 * meanwhile. It must not call back into the logger. */
typedef void (*tl_logger_write_fn)(const char *line, size_t len, void *arg);

/* Options for tl_logger(). Zero fields mean the default in brackets. */
typedef struct tl_logger_options {
  tl_log_format format; /* [TL_LOG_COMBINED] */
  /* Where lines go when `write` is NULL [stdout]. Borrowed: it must stay
   * open until the app is freed; the logger never closes it. Lines are
   * written to its file descriptor (fileno) by a writer on the libuv
   * threadpool, bypassing the FILE's own buffer: fflush anything you
   * printed to the same FILE yourself. The descriptor's flags are never
   * changed. */
  FILE *file;
  /* A callback sink instead of `file` [NULL]; `write_arg` is passed to it
   * and stays the caller's. */
  tl_logger_write_fn write;
  void *write_arg;
  /* For the `file` sink: bytes of lines waiting for a slow sink at most
   * [1048576], for the whole app (one queue, shared by the workers, and
   * one writer on the threadpool at a time). While the queue is full, new
   * lines are dropped and counted;
   * when there is room again a line "talon logger: N lines dropped" (in
   * JSON: {"event":"lines_dropped","dropped":N,...}) is written first. */
  size_t max_queue_bytes;
  /* Timestamps in UTC instead of local time [0: local time]. */
  int utc;
} tl_logger_options;

/* The access log middleware for `opts` (NULL: all defaults). `opts` is
 * copied; `file` and `write_arg` stay borrowed (see above). On allocation
 * failure the returned value's fn is NULL (tl_app_use() then returns
 * TL_EINVAL). The context is freed by the app (tl_app_free), which first
 * tries for up to ~0.5 s to write lines still queued. */
TL_EXTERN tl_middleware tl_logger(const tl_logger_options *opts);

/* Counters of a logger. */
typedef struct tl_logger_stats {
  uint64_t lines;        /* lines produced (queued or given to `write`) */
  uint64_t dropped;      /* lines dropped because the queue was full or the
                            sink failed */
  uint64_t write_errors; /* write(2) failures of the file sink (EPIPE...) */
  size_t queued_bytes;   /* bytes waiting for the file sink now */
} tl_logger_stats;

/* Read the counters of the logger `mw` (a value tl_logger() returned, for
 * as long as the app that uses it lives), summed over all workers. Any
 * thread.
 * Returns 0, or TL_EINVAL if `mw` or `out` is NULL or `mw` is not a
 * logger. */
TL_EXTERN int tl_logger_get_stats(const tl_middleware *mw,
                                  tl_logger_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_LOGGER_H */
