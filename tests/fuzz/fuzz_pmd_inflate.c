/* libFuzzer target for permessage-deflate (src/ws/pmd.c): tl__pmd_inflate
 * on arbitrary bytes, the deflate/inflate round trip, and offer
 * negotiation.
 *
 * Input: byte 0 = flags, byte 1 = piece sizes, rest = payload.
 *   flags bit 0: reset (no context takeover) for every message;
 *   flags bits 1-2: window bits 9, 11, 13 or 15 for both ends (zlib's
 *     raw deflate has no 8-bit window);
 *   flags bits 3-4: output limit {16, 1000, 65536, 1 MiB};
 *   flags bit 5: round trip instead of raw inflate;
 *   flags bit 6: also run tl__pmd_negotiate on the payload as an offer.
 * The payload is cut into messages of (byte 1 & 63) + 1 bytes (byte 1 = 0
 * or 255: one message).
 *
 * Raw inflate: every message gets 0, 1007, 1009 (or 1011 on out of
 * memory); on 0 the message's output is at most the limit; on 1009 zlib
 * was stopped at limit + 1 bytes. The output buffer's capacity stays
 * within a generous bound of the limit (the limit exists to bound
 * memory). A failed message ends the stream (talon closes the socket).
 * With reset and window 15, tl__pmd_inflate_whole (the one-call path) runs
 * first on each message: input untouched, output within the limit, and
 * the same output as the stream when both read the message (the stream
 * takes only data that ends on a block boundary; the one-call path may
 * take a little more, see pmd.h).
 * Round trip: each message deflated (tl__pmd_deflate, the same reset mode)
 * and inflated again gives the message back when it fits the limit, and
 * 1009 when it does not; with reset and window 15 the one-call path takes
 * every such message that fits its limit, and gives the same. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>

#include "core/buf.h"
#include "talon/common.h"
#include "ws/pmd.h"

static struct libdeflate_decompressor *dec;

static const size_t limits[4] = {16, 1000, 65536, 1 << 20};
static const int bits_of[4] = {9, 11, 13, 15};

static void raw_inflate(const uint8_t *d, size_t n, size_t piece, bool reset,
                        int bits, size_t max) {
  z_stream zs;
  if (tl__pmd_inflate_init(&zs, bits) != 0)
    abort();
  tl__buf out = {0};
  for (size_t off = 0; off < n || off == 0;) {
    size_t len = n - off < piece ? n - off : piece;
    uint8_t *copy = malloc(len ? len : 1); /* exact: catches over-reads */
    if (!copy)
      abort();
    memcpy(copy, d + off, len);
    /* The one-call path for messages that start no context: when it
     * takes a message, it leaves the input as it was, stays within the
     * limit, and gives what the stream gives whenever the stream reads
     * it too (it may take a little the stream refuses). */
    tl__buf whole = {0}, scratch = {0};
    int wrc = 1;
    if (reset && bits == 15) {
      wrc = tl__pmd_inflate_whole(dec, copy, len, max, &scratch, &whole);
      tl__buf_free(&scratch);
      if (memcmp(copy, d + off, len) != 0 || (wrc == 0 && whole.len > max) ||
          (wrc != 0 && wrc != 1 && wrc != TL_ENOMEM) ||
          (wrc != 0 && whole.len != 0))
        abort();
    }
    out.len = 0;
    int rc = tl__pmd_inflate(&zs, copy, len, reset, max, &out);
    if (wrc == 0 && rc == 0 &&
        (whole.len != out.len || memcmp(whole.data, out.data, out.len) != 0))
      abort();
    tl__buf_free(&whole);
    free(copy);
    if (rc == 0 && out.len > max)
      abort();
    if (rc == 1009 && out.len != max + 1)
      abort();
    if (rc != 0 && rc != 1007 && rc != 1009 && rc != 1011)
      abort();
    /* Growth is capped at limit + 1 (never below 256 bytes, the
     * smallest buffer; 16 KiB covers the first reservation). */
    if (out.cap > max + 1 + 16384)
      abort();
    off += len;
    if (rc != 0 || len == 0)
      break;
  }
  tl__buf_free(&out);
  inflateEnd(&zs);
}

static void round_trip(const uint8_t *d, size_t n, size_t piece, bool reset,
                       int bits, size_t max) {
  z_stream def, inf;
  if (tl__pmd_deflate_init(&def, bits, 8, Z_DEFAULT_COMPRESSION) != 0 ||
      tl__pmd_inflate_init(&inf, bits) != 0)
    abort();
  tl__buf z = {0}, out = {0};
  for (size_t off = 0; off < n || off == 0;) {
    size_t len = n - off < piece ? n - off : piece;
    z.len = 0;
    if (tl__pmd_deflate(&def, d + off, len, reset, &z) != 0)
      abort();
    if (z.len == 0)
      abort(); /* an empty message is still one block */
    out.len = 0;
    int rc = tl__pmd_inflate(&inf, z.data, z.len, reset, max, &out);
    if (len <= max) {
      if (rc != 0 || out.len != len || memcmp(out.data, d + off, len) != 0)
        abort();
      if (reset && bits == 15) {
        tl__buf whole = {0}, scratch = {0};
        if (tl__pmd_inflate_whole(dec, (const uint8_t *)z.data, z.len, max,
                                  &scratch, &whole) != 0 ||
            whole.len != len || memcmp(whole.data, d + off, len) != 0)
          abort();
        tl__buf_free(&whole);
        tl__buf_free(&scratch);
      }
    } else {
      if (rc != 1009)
        abort();
      break; /* the connection would be closed */
    }
    off += len;
    if (len == 0)
      break;
  }
  tl__buf_free(&z);
  tl__buf_free(&out);
  deflateEnd(&def);
  inflateEnd(&inf);
}

static void negotiate(const uint8_t *d, size_t n, uint8_t flags) {
  char *hdr = malloc(n ? n : 1);
  if (!hdr)
    abort();
  memcpy(hdr, d, n);
  tl__pmd_policy pol = {.compress = flags & 1,
                        .ctx_takeover = flags & 2,
                        .max_window_bits = 9 + (flags >> 2) % 7,
                        .inflate_takeover = flags & 128};
  tl__pmd_agreed ag;
  char out[128];
  memset(out, 'x', sizeof out);
  if (tl__pmd_negotiate(hdr, n, &pol, &ag, out, sizeof out)) {
    if (!ag.on || !memchr(out, '\0', sizeof out) ||
        strncmp(out, "permessage-deflate", 18) != 0)
      abort();
    if (ag.server_bits < 8 || ag.server_bits > 15 || ag.client_bits < 8 ||
        ag.client_bits > 15 || ag.server_bits > pol.max_window_bits)
      abort();
    if (!pol.inflate_takeover && !ag.client_no_takeover)
      abort(); /* we asked for client_no_context_takeover */
    if (!pol.ctx_takeover && !ag.server_no_takeover)
      abort();
  }
  free(hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  if (!dec && !(dec = libdeflate_alloc_decompressor()))
    abort();
  uint8_t flags = data[0];
  size_t piece = (data[1] == 0 || data[1] == 255) ? SIZE_MAX
                                                  : (size_t)(data[1] & 63) + 1;
  bool reset = flags & 1;
  int bits = bits_of[(flags >> 1) & 3];
  size_t max = limits[(flags >> 3) & 3];
  data += 2;
  size -= 2;
  if (flags & 32)
    round_trip(data, size, piece, reset, bits, max);
  else
    raw_inflate(data, size, piece, reset, bits, max);
  if (flags & 64)
    negotiate(data, size, flags);
  return 0;
}
