/* libFuzzer target for the WebSocket frame parser (src/ws/parser.c).
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *     -Isrc src/ws/parser.c src/core/buf.c tests/fuzz/fuzz_ws_parser.c \
 *     -o fuzz_ws_parser
 *
 * The first 4 input bytes pick the settings (the limit, RSV1, a stop, the
 * server's or the client's parser) and how the rest is cut into
 * pieces. The rest is parsed twice, whole and in pieces, and the two runs
 * must produce the same callbacks and result. Callbacks also check what
 * the contract promises about their arguments.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws/parser.h"

typedef struct run {
  uint64_t hash; /* FNV-1a over every callback and its arguments */
  int events;
  int stop_at;
  size_t max_payload;
} run;

static void mix(run *r, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) {
    r->hash ^= b[i];
    r->hash *= UINT64_C(0x100000001b3);
  }
}

static int event(run *r, int kind, int a, int b, const void *d, size_t n) {
  int h[3] = {kind, a, b};
  mix(r, h, sizeof h);
  mix(r, &n, sizeof n);
  mix(r, d, n);
  return ++r->events == r->stop_at;
}

static int on_message(void *ud, int opcode, uint8_t *data, size_t len,
                      bool compressed) {
  run *r = ud;
  if (opcode != TL__WS_OP_TEXT && opcode != TL__WS_OP_BINARY)
    abort();
  if (r->max_payload && len > r->max_payload)
    abort();
  if (opcode == TL__WS_OP_TEXT && !compressed &&
      tl__utf8_validate(TL__UTF8_ACCEPT, data, len) != TL__UTF8_ACCEPT)
    abort();
  return event(r, 'M', opcode, compressed, data, len);
}

static int on_control(void *ud, int opcode, uint8_t *data, size_t len) {
  if ((opcode != TL__WS_OP_PING && opcode != TL__WS_OP_PONG) || len > 125)
    abort();
  return event(ud, 'C', opcode, 0, data, len);
}

static int on_close(void *ud, int code, const char *reason, size_t len) {
  if ((code != 1005 && !tl__ws_close_code_valid(code)) || len > 123 ||
      (code == 1005 && len) ||
      tl__utf8_validate(TL__UTF8_ACCEPT, (const uint8_t *)reason, len) !=
          TL__UTF8_ACCEPT)
    abort();
  return event(ud, 'X', code, 0, reason, len);
}

static const tl__wsp_callbacks cbs = {on_message, on_control, on_close};

/* Feeds a private, exactly sized copy so that over-reads are caught. */
static int feed(tl__wsp *p, const uint8_t *d, size_t n, run *r) {
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy)
    abort();
  memcpy(copy, d, n);
  int rc = tl__wsp_feed(p, copy, n, &cbs, r);
  free(copy);
  return rc;
}

/* Whole if `nsizes` is 0; else in pieces of sizes[k] + 1 bytes, cycling. */
static int parse(const uint8_t *d, size_t n, const uint8_t *sizes,
                 size_t nsizes, size_t max_payload, bool rsv1, bool client,
                 int stop_at, run *r) {
  tl__wsp p;
  tl__wsp_init(&p);
  p.max_payload = max_payload;
  p.allow_rsv1 = rsv1;
  p.client = client;
  memset(r, 0, sizeof *r);
  r->hash = UINT64_C(0xcbf29ce484222325);
  r->stop_at = stop_at;
  r->max_payload = max_payload;
  int rc = 0;
  size_t off = 0;
  for (size_t k = 0; off < n && rc == 0; k++) {
    size_t len = nsizes ? (size_t)sizes[k % nsizes] + 1 : n;
    if (len > n - off)
      len = n - off;
    rc = feed(&p, d + off, len, r);
    off += len;
  }
  /* The message so far stays within the limit; the spanning buffer holds
   * at most its bytes plus one control frame in progress (125). */
  if ((p.max_payload && p.msg_len > p.max_payload) ||
      (p.msg && p.msg->len > p.msg_len + 125))
    abort();
  if (rc != 0 && feed(&p, d, n, r) != rc)
    abort(); /* sticky */
  tl__wsp_free(&p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4)
    return 0;
  static const size_t limits[4] = {0, 16, 200, 70000};
  size_t max_payload = limits[data[0] & 3];
  bool rsv1 = data[0] & 4;
  int stop_at = (data[0] >> 3) & 7; /* 0: never */
  bool client = data[0] & 0x40;     /* the client's parser: unmasked frames */
  /* Piece sizes: bytes 1-3 give up to 3 sizes (1..256) to cycle through;
   * byte 1 bit 7 asks for one byte at a time. */
  uint8_t sizes[3] = {data[1] & 0x7f, data[2], data[3]};
  size_t nsizes = 3;
  if (data[1] & 0x80) {
    sizes[0] = 0;
    nsizes = 1;
  }
  data += 4;
  size -= 4;

  run whole, pieces;
  int a =
      parse(data, size, NULL, 0, max_payload, rsv1, client, stop_at, &whole);
  int b = parse(data, size, sizes, nsizes, max_payload, rsv1, client, stop_at,
                &pieces);
  if (a != b || whole.hash != pieces.hash || whole.events != pieces.events)
    abort();
  if (a != 0 && a != 1002 && a != 1007 && a != 1009 && a != TL__WSP_STOPPED)
    abort();
  return 0;
}
