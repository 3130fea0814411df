/* permessage-deflate (RFC 7692): offer negotiation (pure) and the zlib
 * glue for compressing and inflating messages. No libuv. */
#ifndef TALON_SRC_WS_PMD_H
#define TALON_SRC_WS_PMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "core/buf.h"

/* What the server is willing to do (from the route's options). */
typedef struct tl__pmd_policy {
  bool compress;         /* we may send compressed messages */
  bool ctx_takeover;     /* dedicated compressor: keep context */
  int max_window_bits;   /* our compressor's window, 9..15 */
  bool inflate_takeover; /* dedicated decompressor: the client may keep
                            its context; else we ask for
                            client_no_context_takeover */
} tl__pmd_policy;

/* What was agreed for one connection. */
typedef struct tl__pmd_agreed {
  bool on;
  bool server_no_takeover; /* we reset our compressor per message */
  bool client_no_takeover; /* the client resets its compressor */
  int server_bits;         /* our compressor's window bits (9..15) */
  int client_bits;         /* the client's window bits (8..15) */
} tl__pmd_agreed;

/* Parse every offer in `header` (the Sec-WebSocket-Extensions values,
 * joined by ", " if repeated) and pick the first acceptable
 * permessage-deflate offer. Invalid offers (unknown or duplicate
 * parameters, bad values) are skipped, not fatal. On success writes the
 * response header value into `out` (NUL-terminated) and returns true;
 * returns false when nothing fits (decline: no extension). */
bool tl__pmd_negotiate(const char *header, size_t len,
                       const tl__pmd_policy *policy, tl__pmd_agreed *agreed,
                       char *out, size_t out_size);

/* The client's side: the server's answer `header` to an offer of
 * permessage-deflate with client_max_window_bits (and
 * client_no_context_takeover when `reset_ours`, and
 * server_max_window_bits=`their_max` when that is not 0). On a valid
 * answer fills
 * `agreed` from the client's point of view (server_* fields: the
 * client's own compressor, whose window is `our_bits` or less;
 * client_* fields: the server's) and returns true; false for anything
 * else (another extension, bad or unknown parameters, a window of 8, a
 * server window missing or over `their_max`). */
bool tl__pmd_client_accept(const char *header, size_t len, int our_bits,
                           bool reset_ours, int their_max,
                           tl__pmd_agreed *agreed);

/* Compress `len` bytes as one message into `out` (appended), with the
 * trailing 00 00 ff ff removed (RFC 7692 7.2.1). If `reset`, the stream
 * starts fresh (no context takeover). Returns 0 or TL_ENOMEM / TL_EIO. */
int tl__pmd_deflate(z_stream *zs, const void *data, size_t len, bool reset,
                    tl__buf *out);

/* Compress `len` bytes as one message into `out` (appended) in one call
 * of libdeflate `c`: a whole DEFLATE stream whose last block has BFINAL
 * set, which a receiver takes as it is (RFC 7692 7.2.3.3). Only for a
 * message sent without context takeover, with a 32 KiB window allowed
 * (server_max_window_bits 15). Returns 0, TL_ENOMEM, or TL_EIO when the
 * output would not be smaller than the input (send it uncompressed). */
struct libdeflate_compressor;
int tl__pmd_deflate_whole(struct libdeflate_compressor *c, const void *data,
                          size_t len, tl__buf *out);

/* Inflate a message that starts no context (the sender resets) in one
 * libdeflate call, when it inflates to at most `cap` bytes: the message
 * is copied into `in` (a scratch buffer, overwritten) with the tail the
 * sender removed and an empty final block after it, and must decode to
 * its end as the stream would (see tl__pmd_inflate_some). Returns 0 with
 * the message appended to `out`, 1 when it did not apply (inflate with a
 * zlib stream instead: nothing was appended), or TL_ENOMEM. For a sound
 * message the output is the stream's; a corrupt one that this path takes
 * is one whose blocks, read on into the appended bytes, happen to end
 * exactly at their end. */
struct libdeflate_decompressor;
int tl__pmd_inflate_whole(struct libdeflate_decompressor *d,
                          const uint8_t *data, size_t len, size_t cap,
                          tl__buf *in, tl__buf *out);

/* Inflate one compressed message (the tail 00 00 ff ff is appended here)
 * into `out` (appended), refusing to produce more than `max` bytes.
 * Returns 0, 1009 if the output would pass `max`, 1007 for corrupt data,
 * or 1011 on out of memory. If `reset`, the stream starts fresh. */
int tl__pmd_inflate(z_stream *zs, const void *data, size_t len, bool reset,
                    size_t max, tl__buf *out);

/* The same, a slice at a time, so that one message cannot hold the loop
 * for long: where the input of a message being inflated stands. `in`
 * points at the caller's bytes (or at the tail), which must stay valid
 * until the message is done; the caller may move them and update `in`. */
typedef struct tl__pmd_msg {
  const uint8_t *in; /* compressed bytes not yet taken by zlib */
  size_t in_len;
  bool tail; /* the message's bytes are in; `in` is the appended tail */
  bool empty; /* an empty payload: nothing is fed (see tl__pmd_inflate_start) */
} tl__pmd_msg;

/* Returned by tl__pmd_inflate_some when its budget ran out first. */
#define TL__PMD_MORE 1

/* Start inflating the `len` bytes at `data` as one message (the stream
 * starts fresh if `reset`). Returns 0 or 1011. */
int tl__pmd_inflate_start(z_stream *zs, tl__pmd_msg *m, const void *data,
                          size_t len, bool reset);
/* Inflate more of message `m` into `out` (appended); the message's bytes
 * so far are those of `out` past `start`, and may not pass `max`. Stops
 * once this call has produced more than `budget` bytes (at most budget +
 * 1). Returns 0 when the message is complete, TL__PMD_MORE when the
 * budget ran out first (call again with the same `m`, `out` and
 * `start`), or 1009 / 1007 / 1011 as tl__pmd_inflate. */
int tl__pmd_inflate_some(z_stream *zs, tl__pmd_msg *m, size_t max,
                         size_t budget, size_t start, tl__buf *out);

/* Initialise zlib streams for raw deflate with `bits` window (the
 * deflater at zlib's `level`, 1..9 or Z_DEFAULT_COMPRESSION). 0 or
 * TL_ENOMEM. */
int tl__pmd_deflate_init(z_stream *zs, int bits, int mem_level, int level);
int tl__pmd_inflate_init(z_stream *zs, int bits);

#endif
