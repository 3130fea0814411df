/* WebSocket frame parser and frame writer (RFC 6455), server side. Pure
 * code: no libuv, no sockets; unit-tested at every input split and fuzzed.
 *
 * The parser consumes every byte it is given. Complete frames found whole
 * in the caller's buffer are unmasked in place and delivered without a
 * copy; a frame or message that spans calls is unmasked into the parser's
 * own message buffer as its bytes arrive, so the caller never keeps input.
 *
 * It enforces every MUST of RFC 6455 sections 5 and 7 for a server:
 *   - client frames must be masked                           -> 1002
 *     (for a client parser: server frames must not be)
 *   - RSV1-3 must be 0 (RSV1 allowed on the first frame of a data message
 *     only when `allow_rsv1` is set, for permessage-deflate)  -> 1002
 *   - unknown opcodes (3-7, 11-15)                             -> 1002
 *   - control frames: FIN set, payload <= 125                  -> 1002
 *   - continuation without a message in progress, or a new data frame
 *     inside a fragmented message                              -> 1002
 *   - 64-bit length with the top bit set                       -> 1002
 *   - text messages must be UTF-8: checked incrementally, failing at the
 *     first invalid byte even mid-fragment (a truncated sequence at the
 *     end of the message fails at FIN)                          -> 1007
 *     (not checked when the message is compressed: the caller checks
 *     after inflating)
 *   - a message (sum of its fragments) over `max_payload`: fails as soon
 *     as a frame header announces it, before buffering the excess -> 1009
 *   - close frames: payload of 1 byte, or a code that is not valid on the
 *     wire (see tl__ws_close_code_valid)                       -> 1002;
 *     reason not UTF-8                                          -> 1007
 *   - out of memory while buffering a message                 -> 1011
 * After an error (or a stop) the parser stays failed: tl__wsp_feed returns
 * the same code again without reading.
 */
#ifndef TALON_SRC_WS_PARSER_H
#define TALON_SRC_WS_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum {
  TL__WS_OP_CONT = 0,
  TL__WS_OP_TEXT = 1,
  TL__WS_OP_BINARY = 2,
  TL__WS_OP_CLOSE = 8,
  TL__WS_OP_PING = 9,
  TL__WS_OP_PONG = 10
};

/* Returned by tl__wsp_feed when a callback asked to stop. */
#define TL__WSP_STOPPED (-1)
/* A callback's answer asking to pause after its frame, and what
 * tl__wsp_feed_ex returns then (see there). */
#define TL__WSP_PAUSE 2
#define TL__WSP_PAUSED (-2)

typedef struct tl__wsp_callbacks {
  /* A whole data message. `data` is writable and valid only during the
   * call. `compressed`: RSV1 was set on its first frame. Return 0 to go on,
   * TL__WSP_PAUSE to pause (tl__wsp_feed_ex only), other non-zero values
   * to stop feeding (tl__wsp_feed returns TL__WSP_STOPPED). */
  int (*on_message)(void *ud, int opcode, uint8_t *data, size_t len,
                    bool compressed);
  /* A ping or pong (payload <= 125 bytes, unmasked). Same return rule. */
  int (*on_control)(void *ud, int opcode, uint8_t *data, size_t len);
  /* A valid close frame: code 1005 and no reason if its payload was
   * empty. Same return rule. */
  int (*on_close)(void *ud, int code, const char *reason, size_t len);
} tl__wsp_callbacks;

typedef struct tl__wsp {
  /* Settings: set before the first feed. */
  size_t max_payload; /* bytes of one message; 0 means no limit */
  /* State: private. Packed, since every open connection holds one. */
  uint64_t remaining; /* payload bytes left in the current frame */
  uint64_t msg_len;   /* bytes of the data message so far */
  /* Bytes that span calls: the data message's first (msg_len), then
   * those of a control frame in progress (at most 125). Made on the
   * first such byte and freed once they are delivered: an idle parser
   * holds nothing, and a pointer is 16 bytes less in every socket. */
  tl__buf *msg;
  uint8_t hdr[14]; /* a frame header split across calls */
  uint8_t hdr_len;
  uint8_t opcode; /* of the current frame */
  uint8_t mask[4];
  uint8_t mask_pos;   /* payload bytes of the frame seen so far (mod 4) */
  uint8_t msg_opcode; /* of the message in progress */
  uint8_t utf8_state;
  bool allow_rsv1 : 1; /* setting: permessage-deflate negotiated */
  /* Setting: the parser reads a server's frames (talon is the client),
   * which must not be masked (a masked one fails with 1002). */
  bool client : 1;
  bool in_frame : 1;   /* header parsed, payload in progress */
  bool fin : 1;
  bool in_message : 1; /* a data message is in progress */
  bool msg_compressed : 1;
  /* Set when a frame header starts outside a data message, that is when
   * a message or a lone control frame begins; the caller clears it. */
  bool began : 1;
  int16_t error; /* sticky close code (1002/1007/1009/1011), -1, or 0 */
  /* Not the parser's: the caller's record of when the frame or message in
   * progress began (its clock, low 32 bits). Kept here because it fits
   * the struct's padding, which a field of the caller's would not. */
  uint32_t since;
} tl__wsp;

/* Initialise (zero) a parser; then set max_payload / allow_rsv1. */
void tl__wsp_init(tl__wsp *p);
/* Release the message buffer. */
void tl__wsp_free(tl__wsp *p);

/* Feed `len` bytes (writable: unmasked in place). Returns 0 when all were
 * consumed, a close code (1002, 1007, 1009, 1011) on an error, or
 * TL__WSP_STOPPED if a callback returned non-zero (the rest of the input
 * is not parsed; the parser must not be fed again). */
int tl__wsp_feed(tl__wsp *p, uint8_t *data, size_t len,
                 const tl__wsp_callbacks *cb, void *ud);
/* tl__wsp_feed, where a callback may also answer TL__WSP_PAUSE: parsing
 * then stops right after that callback's frame and TL__WSP_PAUSED is
 * returned with *used set to the bytes consumed. The parser is between
 * frames and not failed: the rest of the input (still masked, as it came)
 * is to be fed later, before anything newer. */
int tl__wsp_feed_ex(tl__wsp *p, uint8_t *data, size_t len,
                    const tl__wsp_callbacks *cb, void *ud, size_t *used);

/* Whether a frame or a data message is in progress: some of its bytes
 * arrived, not all. */
bool tl__wsp_in_progress(const tl__wsp *p);

/* Write a server (unmasked) frame header into `out` (at least 10 bytes).
 * Returns its length (2, 4 or 10). */
size_t tl__ws_frame_header(uint8_t *out, bool fin, bool rsv1, int opcode,
                           uint64_t len);

/* Write a client (masked) frame header with `mask` into `out` (at least
 * 14 bytes). Returns its length (6, 8 or 14). */
size_t tl__ws_frame_header_masked(uint8_t *out, bool fin, bool rsv1,
                                  int opcode, uint64_t len,
                                  const uint8_t mask[4]);

/* Copy `len` bytes from `src` to `dst` XORed with `mask` (phase 0): the
 * client's send path masks while it copies into the output buffer, so
 * the payload is walked once. */
void tl__ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t mask[4]);

/* XOR `len` bytes with `mask`, starting at mask phase `pos` (0-3). Fast
 * for large buffers (word at a time). */
void tl__ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4],
                   size_t pos);

/* Whether a close code may appear in a close frame on the wire: 1000-1003,
 * 1007-1011 (and 1012-1014, which IANA assigned later and the Autobahn
 * testsuite accepts), 3000-4999. Not: <1000, 1004-1006, 1015, 1016-2999,
 * >= 5000. */
bool tl__ws_close_code_valid(int code);

/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF). Start with state TL__UTF8_ACCEPT; feed pieces; the state
 * is TL__UTF8_REJECT as soon as an invalid byte is seen (and stays so);
 * a message is valid if the final state is TL__UTF8_ACCEPT. */
#define TL__UTF8_ACCEPT 0u
#define TL__UTF8_REJECT 1u
uint32_t tl__utf8_validate(uint32_t state, const uint8_t *p, size_t len);

#endif
