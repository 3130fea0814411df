/* Unit tests for the WebSocket frame parser (src/ws/parser.c).
 *
 * Cases are grouped like the sections of the Autobahn testsuite. Every
 * parser case goes through check(), which feeds the same input whole,
 * split in two at every byte boundary, and one byte at a time, each piece
 * in its own exactly sized heap block (so ASan sees any over-read), and
 * requires the same callback log and the same result every time. After
 * an error it also checks that the error is sticky.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "talon/common.h"
#include "ws/parser.h"

#define FIN 0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10
#define OP_CONT TL__WS_OP_CONT
#define OP_TEXT TL__WS_OP_TEXT
#define OP_BIN TL__WS_OP_BINARY
#define OP_CLOSE TL__WS_OP_CLOSE
#define OP_PING TL__WS_OP_PING
#define OP_PONG TL__WS_OP_PONG

/* ---- frame building ------------------------------------------------------ */

static uint32_t rng = 0x9e3779b9u;

/* xorshift32: deterministic "random" masks and payloads. */
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static void put(tl__buf *b, const void *p, size_t n) {
  assert_int_equal(tl__buf_append(b, p, n), 0);
}

static void put_byte(tl__buf *b, uint8_t c) {
  put(b, &c, 1);
}

/* Length forms: the minimal one, or forced 16- or 64-bit. */
enum { LEN_MIN, LEN_16, LEN_64 };

/* Appends a frame header with byte 0 `b0` announcing `declared` bytes. When
 * `mask` is non-NULL the mask bit is set and the 4 bytes are written. */
static void put_header(tl__buf *o, uint8_t b0, uint64_t declared, int form,
                       const uint8_t *mask) {
  uint8_t mbit = mask ? 0x80 : 0;
  put_byte(o, b0);
  if (form == LEN_MIN && declared < 126) {
    put_byte(o, (uint8_t)(mbit | declared));
  } else if (form != LEN_64 && declared <= 0xffff) {
    put_byte(o, mbit | 126);
    put_byte(o, (uint8_t)(declared >> 8));
    put_byte(o, (uint8_t)declared);
  } else {
    put_byte(o, mbit | 127);
    for (int i = 7; i >= 0; i--)
      put_byte(o, (uint8_t)(declared >> (8 * i)));
  }
  if (mask)
    put(o, mask, 4);
}

static void frame_ex(tl__buf *o, uint8_t b0, const void *payload, size_t n,
                     bool masked, int form) {
  uint8_t mask[4];
  uint32_t r = rnd();
  memcpy(mask, &r, 4);
  put_header(o, b0, n, form, masked ? mask : NULL);
  const uint8_t *s = payload;
  for (size_t i = 0; i < n; i++)
    put_byte(o, s[i] ^ (masked ? mask[i & 3] : 0));
}

/* A masked client frame. */
static void frame(tl__buf *o, uint8_t b0, const void *payload, size_t n) {
  frame_ex(o, b0, payload, n, true, LEN_MIN);
}

static void frame_s(tl__buf *o, uint8_t b0, const char *s) {
  frame(o, b0, s, strlen(s));
}

/* A masked header announcing `declared` bytes, without the payload. */
static void header_only(tl__buf *o, uint8_t b0, uint64_t declared, int form) {
  uint8_t mask[4] = {1, 2, 3, 4};
  put_header(o, b0, declared, form, mask);
}

static void close_frame(tl__buf *o, int code, const void *reason, size_t n) {
  uint8_t pl[200];
  pl[0] = (uint8_t)(code >> 8);
  pl[1] = (uint8_t)code;
  memcpy(pl + 2, reason, n);
  frame(o, FIN | OP_CLOSE, pl, n + 2);
}

static uint8_t *pattern(size_t n) {
  uint8_t *d = malloc(n ? n : 1);
  assert_non_null(d);
  for (size_t i = 0; i < n; i++)
    d[i] = (uint8_t)(rnd() >> 24);
  return d;
}

/* ---- recording callbacks ------------------------------------------------- */

/* Every callback appends one line to a log; the expected log is written
 * with the same functions. */
static void log_ev(tl__buf *log, char kind, int a, int b, const void *d,
                   size_t n) {
  char h[64];
  int k = snprintf(h, sizeof h, "%c %d %d %zu:", kind, a, b, n);
  put(log, h, (size_t)k);
  put(log, d, n);
  put_byte(log, '\n');
}

static void ev_msg(tl__buf *e, int op, const void *d, size_t n, bool comp) {
  log_ev(e, 'M', op, comp, d, n);
}
static void ev_ctl(tl__buf *e, int op, const void *d, size_t n) {
  log_ev(e, 'C', op, 0, d, n);
}
static void ev_close(tl__buf *e, int code, const void *d, size_t n) {
  log_ev(e, 'X', code, 0, d, n);
}

typedef struct rec {
  tl__buf log;
  int events;
  int stop_at; /* return non-zero from this event (1-based); 0: never */
} rec;

static int count(rec *r) {
  return ++r->events == r->stop_at;
}

static int on_message(void *ud, int opcode, uint8_t *data, size_t len,
                      bool compressed) {
  rec *r = ud;
  assert_non_null(data);
  log_ev(&r->log, 'M', opcode, compressed, data, len);
  return count(r);
}

static int on_control(void *ud, int opcode, uint8_t *data, size_t len) {
  rec *r = ud;
  assert_non_null(data);
  assert_true(len <= 125);
  log_ev(&r->log, 'C', opcode, 0, data, len);
  return count(r);
}

static int on_close(void *ud, int code, const char *reason, size_t len) {
  rec *r = ud;
  assert_non_null(reason);
  log_ev(&r->log, 'X', code, 0, reason, len);
  return count(r);
}

static const tl__wsp_callbacks cbs = {on_message, on_control, on_close};

typedef struct cfg {
  size_t max_payload;
  bool allow_rsv1;
  int stop_at;
  bool client; /* the parser reads a server's (unmasked) frames */
} cfg;

static const cfg dflt = {0, false, 0, false};

/* Feeds a private, exactly sized copy of one piece. */
static int feed_copy(tl__wsp *p, const uint8_t *src, size_t n, rec *r) {
  uint8_t *copy = malloc(n);
  assert_non_null(copy);
  memcpy(copy, src, n);
  int rc = tl__wsp_feed(p, copy, n, &cbs, r);
  free(copy);
  return rc;
}

/* Feeds `in` in pieces: `step` bytes at a time if `step` is non-zero,
 * else split at `cut`. Returns the first non-zero result (or 0); the log
 * is left in r->log (which the caller frees). */
static int run(const uint8_t *in, size_t len, const cfg *c, size_t step,
               size_t cut, rec *r) {
  tl__wsp p;
  tl__wsp_init(&p);
  p.max_payload = c->max_payload;
  p.allow_rsv1 = c->allow_rsv1;
  p.client = c->client;
  memset(r, 0, sizeof *r);
  r->stop_at = c->stop_at;
  int rc = 0;
  size_t off = 0;
  while (off < len && rc == 0) {
    size_t n = step ? step : (off < cut ? cut - off : len - off);
    if (n > len - off)
      n = len - off;
    rc = feed_copy(&p, in + off, n, r);
    off += n;
  }
  if (rc != 0) {
    /* Sticky: a valid frame fed now changes nothing. */
    tl__buf more = {0};
    frame_s(&more, FIN | OP_TEXT, "x");
    size_t before = r->log.len;
    assert_int_equal(feed_copy(&p, (uint8_t *)more.data, more.len, r), rc);
    assert_int_equal(r->log.len, before);
    assert_int_equal(p.error, rc);
    tl__buf_free(&more);
  } else {
    assert_int_equal(p.error, 0);
  }
  tl__wsp_free(&p);
  return rc;
}

static void compare(const char *mode, size_t at, int rc, const rec *r,
                    const tl__buf *expect, int expect_rc) {
  if (rc != expect_rc || r->log.len != expect->len ||
      (expect->len && memcmp(r->log.data, expect->data, expect->len))) {
    print_error("mismatch feeding %s (%zu): rc %d (want %d)\n"
                "log:\n%.*s\nwant:\n%.*s\n",
                mode, at, rc, expect_rc, (int)r->log.len,
                r->log.data ? r->log.data : "", (int)expect->len,
                expect->data ? expect->data : "");
    fail();
  }
}

/* The core check: same log and result at every split. Inputs above 8 KiB
 * are split only near both ends and at a stride, to keep the run short. */
static void check_cfg(const tl__buf *in, const cfg *c, const tl__buf *expect,
                      int expect_rc) {
  const uint8_t *d = (const uint8_t *)in->data;
  size_t len = in->len;
  rec r;
  int rc = run(d, len, c, 0, len, &r);
  compare("whole", len, rc, &r, expect, expect_rc);
  tl__buf_free(&r.log);
  size_t stride = len <= 8192 ? 1 : len / 61;
  for (size_t cut = 1; cut < len; cut++) {
    if (cut > 64 && cut + 64 < len && cut % stride)
      continue;
    rc = run(d, len, c, 0, cut, &r);
    compare("split at", cut, rc, &r, expect, expect_rc);
    tl__buf_free(&r.log);
  }
  rc = run(d, len, c, 1, 0, &r);
  compare("bytewise", 1, rc, &r, expect, expect_rc);
  tl__buf_free(&r.log);
  if (len > 8192) {
    rc = run(d, len, c, 4093, 0, &r);
    compare("in pieces of", 4093, rc, &r, expect, expect_rc);
    tl__buf_free(&r.log);
  }
}

static void check(const tl__buf *in, const tl__buf *expect, int expect_rc) {
  check_cfg(in, &dflt, expect, expect_rc);
}

/* Frees the two buffers every test uses. */
static void done(tl__buf *in, tl__buf *e) {
  tl__buf_free(in);
  tl__buf_free(e);
}

/* ---- 1: framing, data lengths -------------------------------------------- */

static void t1_lengths(void **state) {
  static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536};
  for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
    for (int op = OP_TEXT; op <= OP_BIN; op++) {
      size_t n = lens[i];
      uint8_t *pl = pattern(n);
      if (op == OP_TEXT)
        for (size_t j = 0; j < n; j++)
          pl[j] = (uint8_t)('a' + pl[j] % 26);
      tl__buf in = {0}, e = {0};
      frame(&in, FIN | (uint8_t)op, pl, n);
      ev_msg(&e, op, pl, n, false);
      check(&in, &e, 0);
      done(&in, &e);
      free(pl);
    }
  }
}

static void t1_one_mib(void **state) {
  size_t n = 1u << 20;
  uint8_t *pl = pattern(n);
  tl__buf in = {0}, e = {0};
  frame(&in, FIN | OP_BIN, pl, n);
  ev_msg(&e, OP_BIN, pl, n, false);
  check(&in, &e, 0);
  done(&in, &e);
  free(pl);
}

/* Lengths in a longer form than needed are accepted. */
static void t1_nonminimal_length(void **state) {
  tl__buf in = {0}, e = {0};
  frame_ex(&in, FIN | OP_TEXT, "abc", 3, true, LEN_16);
  frame_ex(&in, FIN | OP_BIN, "de", 2, true, LEN_64);
  ev_msg(&e, OP_TEXT, "abc", 3, false);
  ev_msg(&e, OP_BIN, "de", 2, false);
  check(&in, &e, 0);
  done(&in, &e);
}

static void t1_unmasked(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, FIN | OP_TEXT, "ok");
  frame_ex(&in, FIN | OP_TEXT, "hello", 5, false, LEN_MIN);
  ev_msg(&e, OP_TEXT, "ok", 2, false);
  check(&in, &e, 1002);
  done(&in, &e);
  frame_ex(&in, FIN | OP_PING, "", 0, false, LEN_MIN);
  check(&in, &e, 1002);
  done(&in, &e);
}

static void t1_length_top_bit(void **state) {
  static const uint64_t bad[] = {UINT64_C(1) << 63, UINT64_MAX,
                                 (UINT64_C(1) << 63) | 5};
  for (size_t i = 0; i < 3; i++) {
    tl__buf in = {0}, e = {0};
    header_only(&in, FIN | OP_BIN, bad[i], LEN_64);
    put(&in, "abcd", 4);
    check(&in, &e, 1002);
    done(&in, &e);
  }
}

/* ---- 2: pings and pongs -------------------------------------------------- */

static void t2_ping_pong(void **state) {
  tl__buf in = {0}, e = {0};
  uint8_t *pl = pattern(125);
  frame(&in, FIN | OP_PING, "", 0);
  frame_s(&in, FIN | OP_PING, "Hello, world!");
  frame(&in, FIN | OP_PING, pl, 125);
  frame_s(&in, FIN | OP_PONG, "unsolicited");
  frame(&in, FIN | OP_PONG, pl, 125);
  ev_ctl(&e, OP_PING, "", 0);
  ev_ctl(&e, OP_PING, "Hello, world!", 13);
  ev_ctl(&e, OP_PING, pl, 125);
  ev_ctl(&e, OP_PONG, "unsolicited", 11);
  ev_ctl(&e, OP_PONG, pl, 125);
  check(&in, &e, 0);
  done(&in, &e);
  free(pl);
}

static void t2_ping_too_long(void **state) {
  static const int ops[] = {OP_PING, OP_PONG, OP_CLOSE};
  uint8_t *pl = pattern(200);
  pl[0] = 0x03, pl[1] = 0xe8; /* a valid close code, for OP_CLOSE */
  for (int i = 0; i < 3; i++) {
    tl__buf in = {0}, e = {0};
    frame_s(&in, FIN | OP_TEXT, "before");
    frame(&in, FIN | (uint8_t)ops[i], pl, 126);
    ev_msg(&e, OP_TEXT, "before", 6, false);
    check(&in, &e, 1002);
    done(&in, &e);
    /* 125 announced in the 16-bit form still fails: only 0-125 fit the
     * 7-bit field, and anything else announces more than a control
     * frame may carry. */
    frame_ex(&in, FIN | (uint8_t)ops[i], pl, 125, true, LEN_16);
    check(&in, &e, 1002);
    done(&in, &e);
  }
  free(pl);
}

static void t2_fragmented_ping(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, OP_PING, "frag");
  frame_s(&in, FIN | OP_CONT, "ment");
  check(&in, &e, 1002);
  done(&in, &e);
  frame_s(&in, OP_PONG, "");
  check(&in, &e, 1002);
  done(&in, &e);
  frame_s(&in, OP_CLOSE, "");
  check(&in, &e, 1002);
  done(&in, &e);
}

/* ---- 3: reserved bits ---------------------------------------------------- */

static void t3_reserved_bits(void **state) {
  static const uint8_t rsv[] = {RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3};
  static const int ops[] = {OP_TEXT, OP_BIN, OP_PING, OP_PONG, OP_CLOSE};
  for (size_t i = 0; i < 4; i++) {
    for (size_t j = 0; j < 5; j++) {
      tl__buf in = {0}, e = {0};
      frame_s(&in, FIN | OP_TEXT, "small");
      frame(&in, FIN | rsv[i] | (uint8_t)ops[j], "", 0);
      frame_s(&in, FIN | OP_PING, "after");
      ev_msg(&e, OP_TEXT, "small", 5, false);
      check(&in, &e, 1002);
      done(&in, &e);
    }
    /* On a continuation frame. */
    tl__buf in = {0}, e = {0};
    frame_s(&in, OP_TEXT, "a");
    frame_s(&in, FIN | rsv[i] | OP_CONT, "b");
    check(&in, &e, 1002);
    done(&in, &e);
  }
}

static void t3_rsv1_deflate(void **state) {
  cfg c = {0, true, 0, false};
  tl__buf in = {0}, e = {0};
  /* Compressed text is not UTF-8 checked: 0xff is passed through. */
  frame_s(&in, FIN | RSV1 | OP_TEXT, "\xff\x01");
  frame_s(&in, FIN | RSV1 | OP_BIN, "zz");
  frame_s(&in, RSV1 | OP_TEXT, "\xc0");
  frame_s(&in, FIN | OP_PING, "p");
  frame_s(&in, FIN | OP_CONT, "\x80");
  frame_s(&in, FIN | OP_TEXT, "plain");
  ev_msg(&e, OP_TEXT, "\xff\x01", 2, true);
  ev_msg(&e, OP_BIN, "zz", 2, true);
  ev_ctl(&e, OP_PING, "p", 1);
  ev_msg(&e, OP_TEXT, "\xc0\x80", 2, true);
  ev_msg(&e, OP_TEXT, "plain", 5, false);
  check_cfg(&in, &c, &e, 0);
  done(&in, &e);

  /* Even with deflate: never on a continuation or a control frame. */
  frame_s(&in, RSV1 | OP_TEXT, "a");
  frame_s(&in, FIN | RSV1 | OP_CONT, "b");
  check_cfg(&in, &c, &e, 1002);
  done(&in, &e);
  frame_s(&in, FIN | RSV1 | OP_PING, "a");
  check_cfg(&in, &c, &e, 1002);
  done(&in, &e);
  close_frame(&in, 1000, "", 0);
  in.data[0] |= RSV1;
  check_cfg(&in, &c, &e, 1002);
  done(&in, &e);
  /* RSV2 stays forbidden. */
  frame_s(&in, FIN | RSV2 | OP_TEXT, "a");
  check_cfg(&in, &c, &e, 1002);
  done(&in, &e);
  /* And without deflate, RSV1 on a data frame fails. */
  frame_s(&in, FIN | RSV1 | OP_BIN, "a");
  check(&in, &e, 1002);
  done(&in, &e);
}

/* ---- 4: opcodes ---------------------------------------------------------- */

static void t4_reserved_opcodes(void **state) {
  static const uint8_t ops[] = {3, 4, 5, 6, 7, 11, 12, 13, 14, 15};
  for (size_t i = 0; i < sizeof ops; i++) {
    for (int with_payload = 0; with_payload < 2; with_payload++) {
      tl__buf in = {0}, e = {0};
      frame_s(&in, FIN | OP_TEXT, "small");
      frame_s(&in, FIN | ops[i], with_payload ? "reserved" : "");
      frame_s(&in, FIN | OP_PING, "");
      ev_msg(&e, OP_TEXT, "small", 5, false);
      check(&in, &e, 1002);
      done(&in, &e);
    }
  }
}

/* ---- 5: fragmentation ---------------------------------------------------- */

static void t5_fragments(void **state) {
  tl__buf in = {0}, e = {0};
  /* Two fragments; then many; then fragments with empty ones. */
  frame_s(&in, OP_TEXT, "frag");
  frame_s(&in, FIN | OP_CONT, "ment1");
  frame_s(&in, OP_BIN, "a");
  for (int i = 0; i < 20; i++)
    frame_s(&in, OP_CONT, "b");
  frame_s(&in, FIN | OP_CONT, "c"); /* "a", 20 times "b", "c" */
  frame_s(&in, OP_TEXT, "");
  frame_s(&in, OP_CONT, "");
  frame_s(&in, OP_CONT, "x");
  frame_s(&in, FIN | OP_CONT, "");
  frame_s(&in, OP_TEXT, "");
  frame_s(&in, FIN | OP_CONT, "");
  frame_s(&in, FIN | OP_BIN, "");
  ev_msg(&e, OP_TEXT, "fragment1", 9, false);
  ev_msg(&e, OP_BIN, "abbbbbbbbbbbbbbbbbbbbc", 22, false);
  ev_msg(&e, OP_TEXT, "x", 1, false);
  ev_msg(&e, OP_TEXT, "", 0, false);
  ev_msg(&e, OP_BIN, "", 0, false);
  check(&in, &e, 0);
  done(&in, &e);
}

static void t5_interleaved_control(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, OP_TEXT, "one ");
  frame_s(&in, FIN | OP_PING, "ping 1");
  frame_s(&in, OP_CONT, "two ");
  frame_s(&in, FIN | OP_PONG, "pong");
  frame_s(&in, FIN | OP_PING, "");
  frame_s(&in, FIN | OP_CONT, "three");
  frame_s(&in, OP_BIN, "b");
  close_frame(&in, 1000, "bye", 3);
  frame_s(&in, FIN | OP_CONT, "in");
  ev_ctl(&e, OP_PING, "ping 1", 6);
  ev_ctl(&e, OP_PONG, "pong", 4);
  ev_ctl(&e, OP_PING, "", 0);
  ev_msg(&e, OP_TEXT, "one two three", 13, false);
  ev_close(&e, 1000, "bye", 3);
  ev_msg(&e, OP_BIN, "bin", 3, false);
  check(&in, &e, 0);
  done(&in, &e);
}

static void t5_continuation_without_start(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, FIN | OP_CONT, "orphan");
  check(&in, &e, 1002);
  done(&in, &e);
  frame_s(&in, OP_CONT, "orphan");
  frame_s(&in, FIN | OP_CONT, "s");
  check(&in, &e, 1002);
  done(&in, &e);
  /* After a complete message, a continuation is an orphan again. */
  frame_s(&in, OP_TEXT, "a");
  frame_s(&in, FIN | OP_CONT, "b");
  frame_s(&in, FIN | OP_CONT, "c");
  ev_msg(&e, OP_TEXT, "ab", 2, false);
  check(&in, &e, 1002);
  done(&in, &e);
}

static void t5_new_message_inside_fragmented(void **state) {
  static const uint8_t b0[] = {FIN | OP_TEXT, OP_TEXT, FIN | OP_BIN, OP_BIN};
  for (size_t i = 0; i < 4; i++) {
    tl__buf in = {0}, e = {0};
    frame_s(&in, OP_TEXT, "start");
    frame_s(&in, FIN | OP_PING, "p");
    frame_s(&in, b0[i], "new");
    frame_s(&in, FIN | OP_CONT, "end");
    ev_ctl(&e, OP_PING, "p", 1);
    check(&in, &e, 1002);
    done(&in, &e);
  }
}

/* ---- 6: UTF-8 ------------------------------------------------------------ */

/* `bad`: index of the first invalid byte; -1 when valid; -2 when valid so
 * far but cut short (fails only at the end of the message). */
typedef struct u8case {
  const char *s;
  size_t n;
  int bad;
} u8case;

#define U8(lit, bad)                                                           \
  { lit, sizeof(lit) - 1, bad }

static const u8case u8cases[] = {
    U8("", -1),
    U8("a", -1),
    U8("\x00", -1),
    U8("\x7f", -1),             /* U+007F */
    U8("\xc2\x80", -1),         /* U+0080 */
    U8("\xdf\xbf", -1),         /* U+07FF */
    U8("\xe0\xa0\x80", -1),     /* U+0800 */
    U8("\xed\x9f\xbf", -1),     /* U+D7FF */
    U8("\xee\x80\x80", -1),     /* U+E000 */
    U8("\xef\xbf\xbd", -1),     /* U+FFFD */
    U8("\xef\xbf\xbe", -1),     /* U+FFFE: a noncharacter, valid */
    U8("\xef\xbf\xbf", -1),     /* U+FFFF */
    U8("\xf0\x90\x80\x80", -1), /* U+10000 */
    U8("\xf4\x8f\xbf\xbf", -1), /* U+10FFFF */
    U8("\xf3\xbf\xbf\xbf", -1), /* U+FFFFF */
    U8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", -1), /* κόσμε */
    U8("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!"
       "!",
       -1),
    U8("abcdefgh\xe2\x82\xac"
       "abcdefghijklmnop",
       -1),
    /* Lone continuation bytes and never-valid bytes. */
    U8("\x80", 0),
    U8("\xbf", 0),
    U8("a\x80", 1),
    U8("\xc0\x80", 0),     /* overlong U+0000 */
    U8("\xc0\xaf", 0),     /* overlong '/' */
    U8("\xc1\xbf", 0),     /* overlong U+007F */
    U8("\xe0\x80\x80", 1), /* overlong U+0000 */
    U8("\xe0\x80\xaf", 1),
    U8("\xe0\x9f\xbf", 1),     /* overlong U+07FF */
    U8("\xf0\x80\x80\x80", 1), /* overlong U+0000 */
    U8("\xf0\x80\x80\xaf", 1),
    U8("\xf0\x8f\xbf\xbf", 1),         /* overlong U+FFFF */
    U8("\xed\xa0\x80", 1),             /* U+D800 */
    U8("\xed\xad\xbf", 1),             /* U+DB7F */
    U8("\xed\xae\x80", 1),             /* U+DB80 */
    U8("\xed\xbf\xbf", 1),             /* U+DFFF */
    U8("\xed\xa0\x80\xed\xb0\x80", 1), /* surrogate pair */
    U8("\xf4\x90\x80\x80", 1),         /* U+110000 */
    U8("\xf4\xbf\xbf\xbf", 1),
    U8("\xf5\x80\x80\x80", 0),
    U8("\xf7\xbf\xbf\xbf", 0),         /* U+1FFFFF, old 4-byte form */
    U8("\xf8\x88\x80\x80\x80", 0),     /* old 5-byte form */
    U8("\xfc\x84\x80\x80\x80\x80", 0), /* old 6-byte form */
    U8("\xfe", 0),
    U8("\xff", 0),
    U8("\xfe\xfe\xff\xff", 0),
    U8("\xc2\x41", 1), /* continuation missing */
    U8("\xc2\xc2\x80", 1),
    U8("\xe1\x80\x41", 2),
    U8("\xf1\x80\x80\x41", 3),
    U8("\xe2\x82\x20\xac", 2),
    U8("abcdefgh\x80", 8), /* after an ASCII word */
    U8("abcdefghijklmnop\xff", 16),
    U8("abcdefg\xc3\xa9"
       "abcdefgh\xc0",
       17),
    U8("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
       "edited",
       12),
    /* Cut short: valid up to the end of the message. */
    U8("\xc2", -2),
    U8("\xdf", -2),
    U8("\xe0\xa0", -2),
    U8("\xe1", -2),
    U8("\xed\x9f", -2),
    U8("\xf0\x90\x80", -2),
    U8("\xf4\x8f\xbf", -2),
    U8("\xf1", -2),
    U8("abc\xe2\x82", -2),
    U8("abcdefgh\xf0\x9f\x98", -2),
};

#define N_U8CASES (sizeof u8cases / sizeof *u8cases)

static void t6_validator_table(void **state) {
  for (size_t i = 0; i < N_U8CASES; i++) {
    const u8case *c = &u8cases[i];
    const uint8_t *s = (const uint8_t *)c->s;
    size_t n = c->n;
    uint32_t want = c->bad == -1  ? TL__UTF8_ACCEPT
                    : c->bad >= 0 ? TL__UTF8_REJECT
                                  : 0xffffffffu; /* neither */
    uint32_t whole = tl__utf8_validate(TL__UTF8_ACCEPT, s, n);
    if (want == 0xffffffffu) {
      assert_int_not_equal(whole, TL__UTF8_ACCEPT);
      assert_int_not_equal(whole, TL__UTF8_REJECT);
    } else {
      assert_int_equal(whole, want);
    }
    /* Byte by byte: REJECT appears exactly at the first invalid byte. */
    uint32_t st = TL__UTF8_ACCEPT;
    for (size_t k = 0; k < n; k++) {
      st = tl__utf8_validate(st, s + k, 1);
      if (c->bad >= 0 && (int)k >= c->bad)
        assert_int_equal(st, TL__UTF8_REJECT);
      else
        assert_int_not_equal(st, TL__UTF8_REJECT);
    }
    assert_int_equal(st, whole);
    /* In two pieces, at every split. */
    for (size_t k = 0; k <= n; k++) {
      uint32_t s2 = tl__utf8_validate(TL__UTF8_ACCEPT, s, k);
      s2 = tl__utf8_validate(s2, s + k, n - k);
      assert_int_equal(s2, whole);
    }
  }
  /* REJECT stays REJECT. */
  assert_int_equal(tl__utf8_validate(TL__UTF8_REJECT, (const uint8_t *)"a", 1),
                   TL__UTF8_REJECT);
}

static void t6_text_messages(void **state) {
  for (size_t i = 0; i < N_U8CASES; i++) {
    const u8case *c = &u8cases[i];
    size_t n = c->n;
    int want_rc = c->bad == -1 ? 0 : 1007;
    /* One frame. */
    tl__buf in = {0}, e = {0};
    frame(&in, FIN | OP_TEXT, c->s, n);
    if (!want_rc)
      ev_msg(&e, OP_TEXT, c->s, n, false);
    check(&in, &e, want_rc);
    done(&in, &e);
    /* Two fragments, split at every byte, with a ping in between. */
    for (size_t k = 0; k <= n; k++) {
      frame(&in, OP_TEXT, c->s, k);
      frame_s(&in, FIN | OP_PING, "");
      frame(&in, FIN | OP_CONT, c->s + k, n - k);
      /* A fragment that holds the first invalid byte fails before the
       * ping after it is seen. */
      if (c->bad < 0 || (size_t)c->bad >= k)
        ev_ctl(&e, OP_PING, "", 0);
      if (!want_rc)
        ev_msg(&e, OP_TEXT, c->s, n, false);
      check(&in, &e, want_rc);
      done(&in, &e);
    }
    /* One fragment per byte. */
    frame(&in, OP_TEXT, "", 0);
    for (size_t k = 0; k < n; k++)
      frame(&in, OP_CONT, c->s + k, 1);
    frame(&in, FIN | OP_CONT, "", 0);
    if (!want_rc)
      ev_msg(&e, OP_TEXT, c->s, n, false);
    check(&in, &e, want_rc);
    done(&in, &e);
    /* Binary messages are never checked. */
    frame(&in, FIN | OP_BIN, c->s, n);
    ev_msg(&e, OP_BIN, c->s, n, false);
    check(&in, &e, 0);
    done(&in, &e);
  }
}

/* The first fragment alone (no FIN yet) already fails; so does a frame
 * cut right after the invalid byte. */
static void t6_fail_fast(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90");
  check(&in, &e, 1007);
  done(&in, &e);
  /* Only the first 12 of the 29 payload bytes arrive; byte 11 is bad. */
  frame_s(&in, FIN | OP_TEXT, "hello world\xff and so on and so");
  assert_int_equal(in.len, 6 + 29);
  in.len -= 29 - 12;
  check(&in, &e, 1007);
  done(&in, &e);
  /* Same in a continuation frame of a message split across frames. */
  frame_s(&in, OP_TEXT, "ok so far \xe2");
  frame_s(&in, OP_CONT, "\x82\xac then \xed\xa0\x80 and more bytes");
  in.len -= 10; /* the cut is after the bad byte (\xa0) */
  check(&in, &e, 1007);
  done(&in, &e);
  /* A sequence cut by FIN fails at FIN, not before. */
  frame_s(&in, OP_TEXT, "abc\xe2\x82");
  check(&in, &e, 0);
  frame_s(&in, FIN | OP_CONT, "");
  check(&in, &e, 1007);
  done(&in, &e);
  frame_s(&in, OP_TEXT, "abc\xe2\x82");
  frame_s(&in, FIN | OP_CONT, "\xac");
  ev_msg(&e, OP_TEXT, "abc\xe2\x82\xac", 6, false);
  check(&in, &e, 0);
  done(&in, &e);
}

/* Checks the DFA against a direct reading of the well-formed byte
 * sequences table (Unicode 3-7) on random strings rich in edge bytes. */
static int ref_first_bad(const uint8_t *s, size_t n, bool *complete) {
  size_t i = 0;
  *complete = true;
  while (i < n) {
    uint8_t b = s[i];
    uint8_t lo = 0x80, hi = 0xbf;
    size_t need;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b == 0xe0)
        lo = 0xa0;
      if (b == 0xed)
        hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b == 0xf0)
        lo = 0x90;
      if (b == 0xf4)
        hi = 0x8f;
    } else {
      return (int)i;
    }
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= n) {
        *complete = false;
        return -1;
      }
      uint8_t cb = s[i + k];
      if (k == 1 ? (cb < lo || cb > hi) : (cb < 0x80 || cb > 0xbf))
        return (int)(i + k);
    }
    i += need + 1;
  }
  return -1;
}

static void t6_random_vs_reference(void **state) {
  static const uint8_t edge[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
                                 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
                                 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1,
                                 0xf3, 0xf4, 0xf5, 0xff};
  uint8_t s[24];
  for (int iter = 0; iter < 200000; iter++) {
    size_t n = rnd() % sizeof s;
    for (size_t i = 0; i < n; i++)
      s[i] = (rnd() & 3) ? edge[rnd() % sizeof edge] : (uint8_t)rnd();
    bool complete;
    int bad = ref_first_bad(s, n, &complete);
    uint32_t st = tl__utf8_validate(TL__UTF8_ACCEPT, s, n);
    if (bad >= 0) {
      assert_int_equal(st, TL__UTF8_REJECT);
      assert_int_not_equal(tl__utf8_validate(TL__UTF8_ACCEPT, s, (size_t)bad),
                           TL__UTF8_REJECT);
    } else if (complete) {
      assert_int_equal(st, TL__UTF8_ACCEPT);
    } else {
      assert_int_not_equal(st, TL__UTF8_ACCEPT);
      assert_int_not_equal(st, TL__UTF8_REJECT);
    }
  }
}

/* ---- 7: close ------------------------------------------------------------ */

static void t7_close_basic(void **state) {
  tl__buf in = {0}, e = {0};
  frame(&in, FIN | OP_CLOSE, "", 0);
  ev_close(&e, 1005, "", 0);
  check(&in, &e, 0);
  done(&in, &e);
  close_frame(&in, 1000, "", 0);
  ev_close(&e, 1000, "", 0);
  check(&in, &e, 0);
  done(&in, &e);
  close_frame(&in, 1001, "going away", 10);
  ev_close(&e, 1001, "going away", 10);
  check(&in, &e, 0);
  done(&in, &e);
  /* The longest reason: 123 bytes, with multi-byte characters. */
  char reason[124];
  for (int i = 0; i < 41; i++)
    memcpy(reason + 3 * i, "\xe2\x82\xac", 3);
  close_frame(&in, 1000, reason, 123);
  ev_close(&e, 1000, reason, 123);
  check(&in, &e, 0);
  done(&in, &e);
  /* Frames after a close are still parsed; what to do with them is the
   * caller's business. */
  close_frame(&in, 3000, "x", 1);
  frame_s(&in, FIN | OP_PING, "late");
  ev_close(&e, 3000, "x", 1);
  ev_ctl(&e, OP_PING, "late", 4);
  check(&in, &e, 0);
  done(&in, &e);
}

static void t7_close_one_byte(void **state) {
  tl__buf in = {0}, e = {0};
  frame(&in, FIN | OP_CLOSE, "\x03", 1);
  check(&in, &e, 1002);
  done(&in, &e);
}

static void t7_close_codes(void **state) {
  static const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                              1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  static const int invalid[] = {0,    999,  1004, 1005, 1006, 1015,
                                1016, 1100, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
    assert_true(tl__ws_close_code_valid(valid[i]));
    tl__buf in = {0}, e = {0};
    close_frame(&in, valid[i], "r", 1);
    ev_close(&e, valid[i], "r", 1);
    check(&in, &e, 0);
    done(&in, &e);
  }
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
    assert_false(tl__ws_close_code_valid(invalid[i]));
    tl__buf in = {0}, e = {0};
    close_frame(&in, invalid[i], "", 0);
    check(&in, &e, 1002);
    done(&in, &e);
  }
  assert_false(tl__ws_close_code_valid(-1));
  assert_false(tl__ws_close_code_valid(2999));
  assert_false(tl__ws_close_code_valid(5001));
}

static void t7_close_reason_utf8(void **state) {
  tl__buf in = {0}, e = {0};
  close_frame(&in, 1000, "bad \xce\xba\xe1\xbd\xb9\xed\xa0\x80", 11);
  check(&in, &e, 1007);
  done(&in, &e);
  close_frame(&in, 1000, "cut \xe2\x82", 6);
  check(&in, &e, 1007);
  done(&in, &e);
  /* An invalid code is reported before the reason is looked at. */
  close_frame(&in, 999, "\xff", 1);
  check(&in, &e, 1002);
  done(&in, &e);
}

/* ---- 9-like: throughput shapes ------------------------------------------- */

static void t9_many_back_to_back(void **state) {
  tl__buf in = {0}, e = {0};
  char msg[64];
  for (int i = 0; i < 1000; i++) {
    int k = snprintf(msg, sizeof msg, "message %d", i);
    frame(&in, FIN | (i % 3 ? OP_TEXT : OP_BIN), msg, (size_t)k);
    ev_msg(&e, i % 3 ? OP_TEXT : OP_BIN, msg, (size_t)k, false);
  }
  check(&in, &e, 0);
  done(&in, &e);
}

static void t9_large_fragmented(void **state) {
  static const size_t frags[] = {65536, 4093, 1};
  for (size_t f = 0; f < 3; f++) {
    size_t n = frags[f] == 1 ? 4096 : (size_t)1 << 20;
    uint8_t *pl = pattern(n);
    for (size_t i = 0; i < n; i++)
      pl[i] = (uint8_t)(' ' + pl[i] % 95);
    tl__buf in = {0}, e = {0};
    for (size_t off = 0; off < n; off += frags[f]) {
      size_t k = n - off < frags[f] ? n - off : frags[f];
      uint8_t b0 = (off ? OP_CONT : OP_TEXT) | (off + k == n ? FIN : 0);
      frame(&in, b0, pl + off, k);
    }
    ev_msg(&e, OP_TEXT, pl, n, false);
    check(&in, &e, 0);
    done(&in, &e);
    free(pl);
  }
}

/* ---- limits -------------------------------------------------------------- */

static void t_max_payload(void **state) {
  cfg c = {100, false, 0, false};
  uint8_t *pl = pattern(200);
  tl__buf in = {0}, e = {0};
  frame(&in, FIN | OP_BIN, pl, 100);
  ev_msg(&e, OP_BIN, pl, 100, false);
  check_cfg(&in, &c, &e, 0);
  done(&in, &e);
  /* The header alone is enough to fail; the payload never comes. */
  header_only(&in, FIN | OP_BIN, 101, LEN_MIN);
  check_cfg(&in, &c, &e, 1009);
  done(&in, &e);
  header_only(&in, FIN | OP_TEXT, UINT64_C(1) << 62, LEN_64);
  check_cfg(&in, &c, &e, 1009);
  done(&in, &e);
  /* Across fragments: 60 + 40 fits, 60 + 41 does not. */
  frame(&in, OP_BIN, pl, 60);
  frame(&in, FIN | OP_CONT, pl + 60, 40);
  ev_msg(&e, OP_BIN, pl, 100, false);
  check_cfg(&in, &c, &e, 0);
  done(&in, &e);
  frame(&in, OP_BIN, pl, 60);
  frame(&in, FIN | OP_PING, "", 0);
  header_only(&in, FIN | OP_CONT, 41, LEN_MIN);
  ev_ctl(&e, OP_PING, "", 0);
  check_cfg(&in, &c, &e, 1009);
  done(&in, &e);
  /* The limit is per message: the next message starts from zero. */
  frame(&in, OP_BIN, pl, 60);
  frame(&in, FIN | OP_CONT, pl, 40);
  frame(&in, FIN | OP_TEXT, "0123456789", 10);
  frame(&in, FIN | OP_BIN, pl, 100);
  tl__buf whole = {0};
  put(&whole, pl, 60);
  put(&whole, pl, 40);
  ev_msg(&e, OP_BIN, whole.data, 100, false);
  ev_msg(&e, OP_TEXT, "0123456789", 10, false);
  ev_msg(&e, OP_BIN, pl, 100, false);
  check_cfg(&in, &c, &e, 0);
  done(&in, &e);
  tl__buf_free(&whole);
  /* Control frames are not messages: a 125-byte ping passes a 10-byte
   * limit. */
  cfg small = {10, false, 0, false};
  frame(&in, FIN | OP_PING, pl, 125);
  ev_ctl(&e, OP_PING, pl, 125);
  check_cfg(&in, &small, &e, 0);
  done(&in, &e);
  free(pl);
}

/* A peer announcing a huge frame gets no memory for it: the buffer holds
 * what arrived. Then a large buffered message releases its memory, while
 * a small one keeps it for the next message. */
static void t_memory(void **state) {
  tl__wsp p;
  tl__wsp_init(&p);
  rec r;
  memset(&r, 0, sizeof r);
  tl__buf in = {0};
  header_only(&in, OP_BIN, UINT64_C(1) << 40, LEN_64);
  put(&in, "0123456789", 10);
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, &r), 0);
  assert_non_null(p.msg);
  assert_int_equal(p.msg->len, 10);
  assert_true(p.msg->cap <= 1024);
  assert_int_equal(p.msg_len, 10);
  tl__wsp_free(&p);
  assert_null(p.msg);
  tl__buf_free(&in);

  tl__wsp_init(&p);
  size_t n = 1u << 20;
  uint8_t *pl = pattern(n);
  frame(&in, OP_BIN, pl, n / 2);
  frame(&in, FIN | OP_CONT, pl + n / 2, n - n / 2);
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, &r), 0);
  assert_int_equal(r.events, 1);
  assert_null(p.msg);
  tl__buf_free(&in);
  free(pl);

  frame_s(&in, OP_TEXT, "small ");
  frame_s(&in, FIN | OP_CONT, "one");
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, &r), 0);
  assert_int_equal(r.events, 2);
  /* Even a small message's buffer is released once delivered: an idle
   * connection holds no message memory. */
  assert_null(p.msg);
  tl__buf_free(&in);
  frame_s(&in, OP_TEXT, "again ");
  frame_s(&in, FIN | OP_CONT, "small");
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, &r), 0);
  assert_int_equal(r.events, 3);
  assert_null(p.msg);
  tl__buf_free(&in);
  tl__wsp_free(&p);
  assert_null(p.msg);
  tl__buf_free(&r.log);
}

/* ---- callbacks that stop ------------------------------------------------- */

static void t_stop(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, FIN | OP_TEXT, "one");
  frame_s(&in, FIN | OP_PING, "two");
  close_frame(&in, 1000, "three", 5);
  frame_s(&in, OP_TEXT, "fo");
  frame_s(&in, FIN | OP_CONT, "ur");
  frame_s(&in, FIN | OP_PONG, "five");
  frame(&in, FIN | OP_CLOSE, "", 0);
  for (int stop = 1; stop <= 6; stop++) {
    cfg c = {0, false, stop, false};
    ev_msg(&e, OP_TEXT, "one", 3, false);
    if (stop >= 2)
      ev_ctl(&e, OP_PING, "two", 3);
    if (stop >= 3)
      ev_close(&e, 1000, "three", 5);
    if (stop >= 4)
      ev_msg(&e, OP_TEXT, "four", 4, false);
    if (stop >= 5)
      ev_ctl(&e, OP_PONG, "five", 4);
    if (stop >= 6)
      ev_close(&e, 1005, "", 0);
    check_cfg(&in, &c, &e, TL__WSP_STOPPED);
    tl__buf_free(&e);
  }
  tl__buf_free(&in);
}

/* After a stop, the rest of the input is left as it was (still masked). */
static void t_stop_leaves_input(void **state) {
  tl__buf in = {0};
  frame_s(&in, FIN | OP_TEXT, "first");
  size_t first = in.len;
  frame_s(&in, FIN | OP_TEXT, "second");
  tl__buf orig = {0};
  put(&orig, in.data, in.len);
  tl__wsp p;
  tl__wsp_init(&p);
  rec r;
  memset(&r, 0, sizeof r);
  r.stop_at = 1;
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, &r),
                   TL__WSP_STOPPED);
  assert_int_equal(r.events, 1);
  assert_memory_equal(in.data + first, orig.data + first, in.len - first);
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, &r),
                   TL__WSP_STOPPED);
  assert_int_equal(r.events, 1);
  tl__wsp_free(&p);
  tl__buf_free(&in);
  tl__buf_free(&orig);
  tl__buf_free(&r.log);
}

/* Pausing: a message callback answers TL__WSP_PAUSE; feeding the rest of
 * that input again (from *used, still masked) gives the same log as
 * without pauses, at every split. */
static int on_message_pause(void *ud, int opcode, uint8_t *data, size_t len,
                            bool compressed) {
  rec *r = ud;
  log_ev(&r->log, 'M', opcode, compressed, data, len);
  r->events++;
  return TL__WSP_PAUSE;
}

static const tl__wsp_callbacks pause_cbs = {on_message_pause, on_control,
                                            on_close};

/* Feeds a copy of in[0, n) with pauses; returns the pauses seen. */
static int feed_pausing(tl__wsp *p, const uint8_t *in, size_t n, rec *r) {
  int pauses = 0;
  size_t off = 0;
  while (off < n) {
    uint8_t *copy = malloc(n - off);
    assert_non_null(copy);
    memcpy(copy, in + off, n - off);
    size_t used = 12345;
    int rc = tl__wsp_feed_ex(p, copy, n - off, &pause_cbs, r, &used);
    free(copy);
    if (rc == 0)
      break;
    assert_int_equal(rc, TL__WSP_PAUSED);
    assert_true(used <= n - off);
    assert_false(tl__wsp_in_progress(p));
    pauses++;
    off += used;
  }
  return pauses;
}

static void t_pause(void **state) {
  tl__buf in = {0}, e = {0};
  frame_s(&in, FIN | OP_TEXT, "one");
  frame_s(&in, FIN | OP_PING, "two");
  frame_s(&in, OP_TEXT, "fo");
  frame_s(&in, FIN | OP_PONG, "three");
  frame_s(&in, FIN | OP_CONT, "ur");
  frame_s(&in, FIN | OP_BIN, "five");
  frame(&in, FIN | OP_TEXT, "", 0);
  close_frame(&in, 1000, "six", 3);
  ev_msg(&e, OP_TEXT, "one", 3, false);
  ev_ctl(&e, OP_PING, "two", 3);
  ev_ctl(&e, OP_PONG, "three", 5);
  ev_msg(&e, OP_TEXT, "four", 4, false);
  ev_msg(&e, OP_BIN, "five", 4, false);
  ev_msg(&e, OP_TEXT, "", 0, false);
  ev_close(&e, 1000, "six", 3);
  const uint8_t *d = (const uint8_t *)in.data;
  for (size_t cut = 0; cut <= in.len + 1; cut++) {
    /* cut == in.len + 1: bytewise. */
    tl__wsp p;
    tl__wsp_init(&p);
    rec r;
    memset(&r, 0, sizeof r);
    int pauses = 0;
    if (cut > in.len) {
      for (size_t i = 0; i < in.len; i++)
        pauses += feed_pausing(&p, d + i, 1, &r);
    } else {
      pauses += feed_pausing(&p, d, cut, &r);
      pauses += feed_pausing(&p, d + cut, in.len - cut, &r);
    }
    compare("pausing, split at", cut, 0, &r, &e, 0);
    assert_int_equal(pauses, 4);
    assert_int_equal(p.error, 0);
    tl__wsp_free(&p);
    tl__buf_free(&r.log);
  }
  /* tl__wsp_feed cannot pause: the answer stops it. */
  tl__wsp p;
  tl__wsp_init(&p);
  rec r;
  memset(&r, 0, sizeof r);
  uint8_t *copy = malloc(in.len);
  assert_non_null(copy);
  memcpy(copy, in.data, in.len);
  assert_int_equal(tl__wsp_feed(&p, copy, in.len, &pause_cbs, &r),
                   TL__WSP_STOPPED);
  free(copy);
  tl__wsp_free(&p);
  tl__buf_free(&r.log);
  done(&in, &e);
}

/* tl__wsp_in_progress and `began`, byte by byte: in progress from a
 * frame's first byte to its last (a fragmented message: to its last
 * frame's last, control frames between included); `began` set by the
 * first byte of a message or of a lone control frame only. */
static void t_in_progress(void **state) {
  tl__buf in = {0};
  frame_s(&in, FIN | OP_TEXT, "ab"); /* 0: 8 bytes */
  frame_s(&in, OP_TEXT, "c");        /* 8: 7 bytes */
  frame_s(&in, FIN | OP_PING, "p");  /* 15: 7 bytes */
  frame_s(&in, FIN | OP_CONT, "d");  /* 22: 7 bytes */
  frame_s(&in, FIN | OP_PONG, "q");  /* 29: 7 bytes, ends at 36 */
  static const size_t starts[] = {0, 8, 29}, ends[] = {8, 29, 36};
  tl__wsp p;
  tl__wsp_init(&p);
  rec r;
  memset(&r, 0, sizeof r);
  assert_false(tl__wsp_in_progress(&p));
  for (size_t i = 0; i < in.len; i++) {
    p.began = false;
    uint8_t byte = (uint8_t)in.data[i];
    assert_int_equal(tl__wsp_feed(&p, &byte, 1, &cbs, &r), 0);
    bool start = false, end = false;
    for (size_t k = 0; k < 3; k++) {
      start |= i == starts[k];
      end |= i + 1 == ends[k];
    }
    assert_int_equal(p.began, start);
    assert_int_equal(tl__wsp_in_progress(&p), !end);
  }
  assert_int_equal(r.events, 4);
  tl__wsp_free(&p);
  tl__buf_free(&r.log);
  tl__buf_free(&in);
}

/* Zero-copy delivery: an unfragmented message whole in the buffer is
 * handed out from the caller's buffer, unmasked in place. */
static uint8_t *seen_ptr;
static int on_message_ptr(void *ud, int opcode, uint8_t *data, size_t len,
                          bool compressed) {
  seen_ptr = data;
  return 0;
}

static void t_zero_copy(void **state) {
  tl__buf in = {0};
  frame_s(&in, FIN | OP_TEXT, "hello");
  tl__wsp p;
  tl__wsp_init(&p);
  tl__wsp_callbacks c = cbs;
  c.on_message = on_message_ptr;
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &c, NULL), 0);
  assert_ptr_equal(seen_ptr, (uint8_t *)in.data + 6);
  assert_memory_equal(in.data + 6, "hello", 5);
  assert_null(p.msg);
  tl__wsp_free(&p);
  tl__buf_free(&in);
}

/* Feeding nothing is allowed and does nothing. */
static void t_empty_feed(void **state) {
  tl__wsp p;
  tl__wsp_init(&p);
  assert_int_equal(tl__wsp_feed(&p, NULL, 0, &cbs, NULL), 0);
  tl__buf in = {0};
  frame_s(&in, OP_TEXT, "abc");
  in.len -= 2;
  assert_int_equal(tl__wsp_feed(&p, (uint8_t *)in.data, in.len, &cbs, NULL), 0);
  assert_int_equal(tl__wsp_feed(&p, NULL, 0, &cbs, NULL), 0);
  tl__wsp_free(&p);
  tl__buf_free(&in);
}

/* ---- frame writer and unmasking ------------------------------------------ */

static void t_frame_header(void **state) {
  uint8_t out[10];
  static const uint8_t h0[] = {0x81, 0x00};
  assert_int_equal(tl__ws_frame_header(out, true, false, OP_TEXT, 0), 2);
  assert_memory_equal(out, h0, 2);
  static const uint8_t h125[] = {0x02, 0x7d};
  assert_int_equal(tl__ws_frame_header(out, false, false, OP_BIN, 125), 2);
  assert_memory_equal(out, h125, 2);
  static const uint8_t h126[] = {0xc1, 0x7e, 0x00, 0x7e};
  assert_int_equal(tl__ws_frame_header(out, true, true, OP_TEXT, 126), 4);
  assert_memory_equal(out, h126, 4);
  static const uint8_t h65535[] = {0x42, 0x7e, 0xff, 0xff};
  assert_int_equal(tl__ws_frame_header(out, false, true, OP_BIN, 65535), 4);
  assert_memory_equal(out, h65535, 4);
  static const uint8_t h65536[] = {0x80, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
  assert_int_equal(tl__ws_frame_header(out, true, false, OP_CONT, 65536), 10);
  assert_memory_equal(out, h65536, 10);
  static const uint8_t h4g[] = {0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0};
  assert_int_equal(
      tl__ws_frame_header(out, true, false, OP_BIN, UINT64_C(1) << 32), 10);
  assert_memory_equal(out, h4g, 10);
  static const uint8_t hclose[] = {0x88, 0x02};
  assert_int_equal(tl__ws_frame_header(out, true, false, OP_CLOSE, 2), 2);
  assert_memory_equal(out, hclose, 2);
  static const uint8_t hpong[] = {0x8a, 0x7d};
  assert_int_equal(tl__ws_frame_header(out, true, false, OP_PONG, 125), 2);
  assert_memory_equal(out, hpong, 2);
  static const uint8_t hbig[] = {0x81, 0x7f, 0x01, 0x23, 0x45,
                                 0x67, 0x89, 0xab, 0xcd, 0xef};
  assert_int_equal(tl__ws_frame_header(out, true, false, OP_TEXT,
                                       UINT64_C(0x0123456789abcdef)),
                   10);
  assert_memory_equal(out, hbig, 10);
}

/* Frames the writer makes parse back (without the mask) once masked. */
static void t_frame_header_roundtrip(void **state) {
  static const uint64_t lens[] = {0, 125, 126, 65535, 65536};
  for (size_t i = 0; i < 5; i++) {
    size_t n = (size_t)lens[i];
    uint8_t hdr[14];
    size_t h = tl__ws_frame_header(hdr, true, false, OP_BIN, n);
    hdr[1] |= 0x80;
    memset(hdr + h, 0, 4); /* a zero mask */
    uint8_t *pl = pattern(n);
    tl__buf in = {0}, e = {0};
    put(&in, hdr, h + 4);
    put(&in, pl, n);
    ev_msg(&e, OP_BIN, pl, n, false);
    rec r;
    assert_int_equal(run((uint8_t *)in.data, in.len, &dflt, 0, in.len, &r), 0);
    compare("whole", in.len, 0, &r, &e, 0);
    tl__buf_free(&r.log);
    done(&in, &e);
    free(pl);
  }
}

/* The client's parser: a server's frames are unmasked; every rule but
 * the mask holds, at every split; a masked frame fails with 1002. */
static void t_client_mode(void **state) {
  static const cfg client = {0, false, 0, true};
  static const cfg client_small = {100, false, 0, true};
  tl__buf in = {0}, e = {0};
  uint8_t *big = pattern(70000);
  frame_ex(&in, FIN | OP_TEXT, "hello", 5, false, LEN_MIN);
  frame_ex(&in, OP_BIN, "ab", 2, false, LEN_16);
  frame_ex(&in, FIN | OP_PING, "p", 1, false, LEN_MIN);
  frame_ex(&in, FIN | OP_CONT, "cd", 2, false, LEN_64);
  frame_ex(&in, FIN | OP_BIN, big, 70000, false, LEN_MIN);
  ev_msg(&e, OP_TEXT, "hello", 5, false);
  ev_ctl(&e, OP_PING, "p", 1);
  ev_msg(&e, OP_BIN, "abcd", 4, false);
  ev_msg(&e, OP_BIN, big, 70000, false);
  check_cfg(&in, &client, &e, 0);
  done(&in, &e);
  free(big);
  /* Masked: refused, also when it is a control frame. */
  frame_ex(&in, FIN | OP_TEXT, "ok", 2, false, LEN_MIN);
  frame_s(&in, FIN | OP_TEXT, "masked");
  ev_msg(&e, OP_TEXT, "ok", 2, false);
  check_cfg(&in, &client, &e, 1002);
  done(&in, &e);
  frame_s(&in, FIN | OP_PING, "");
  check_cfg(&in, &client, &e, 1002);
  done(&in, &e);
  /* Invalid UTF-8 and the size limit hold too. */
  frame_ex(&in, FIN | OP_TEXT, "\xc3\x28", 2, false, LEN_MIN);
  check_cfg(&in, &client, &e, 1007);
  done(&in, &e);
  header_only(&in, FIN | OP_BIN, 101, LEN_MIN);
  in.data[1] &= 0x7f; /* the same header, unmasked (no key follows) */
  in.len -= 4;
  check_cfg(&in, &client_small, &e, 1009);
  done(&in, &e);
}

/* Masking while copying equals copying then masking, at every alignment
 * and length. */
static void t_mask_copy(void **state) {
  uint8_t src[80], dst[88], ref[88];
  const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
  for (size_t i = 0; i < sizeof src; i++)
    src[i] = (uint8_t)(rnd() >> 24);
  for (size_t align = 0; align < 8; align++) {
    for (size_t len = 0; len <= 80; len++) {
      memset(dst, 0x55, sizeof dst);
      memset(ref, 0x55, sizeof ref);
      memcpy(ref + align, src, len);
      tl__ws_unmask(ref + align, len, mask, 0);
      tl__ws_mask_copy(dst + align, src, len, mask);
      assert_memory_equal(dst, ref, sizeof dst);
    }
  }
  uint8_t h[14];
  assert_int_equal(tl__ws_frame_header_masked(h, true, false, 1, 5, mask), 6);
  assert_int_equal(h[0], 0x81);
  assert_int_equal(h[1], 0x85);
  assert_memory_equal(h + 2, mask, 4);
  assert_int_equal(tl__ws_frame_header_masked(h, true, true, 2, 70000, mask),
                   14);
  assert_int_equal(h[1], 0xff);
  assert_memory_equal(h + 10, mask, 4);
}

static void t_unmask(void **state) {
  uint8_t buf[64 + 8], ref[64 + 8];
  const uint8_t mask[4] = {0x12, 0x34, 0xab, 0xcd};
  for (size_t align = 0; align < 8; align++) {
    for (size_t pos = 0; pos < 4; pos++) {
      for (size_t len = 0; len <= 64; len++) {
        for (size_t i = 0; i < sizeof buf; i++)
          buf[i] = ref[i] = (uint8_t)(rnd() >> 24);
        for (size_t i = 0; i < len; i++)
          ref[align + i] ^= mask[(pos + i) % 4];
        tl__ws_unmask(buf + align, len, mask, pos);
        assert_memory_equal(buf, ref, sizeof buf);
      }
    }
  }
  /* Unmasking in two pieces equals unmasking at once, at every split. */
  uint8_t a[100], b[100];
  for (size_t i = 0; i < 100; i++)
    a[i] = b[i] = (uint8_t)i;
  tl__ws_unmask(a, 100, mask, 0);
  for (size_t k = 0; k <= 100; k++) {
    uint8_t c[100];
    memcpy(c, b, 100);
    tl__ws_unmask(c, k, mask, 0);
    tl__ws_unmask(c + k, 100 - k, mask, k % 4);
    assert_memory_equal(c, a, 100);
  }
}

/* ---- out of memory ------------------------------------------------------- */

/* A second copy of parser.c, renamed, whose buffer appends fail on demand
 * (cmocka's fail() macro is set aside while it is compiled). */
static int oom_countdown; /* the append that fails (1-based); 0: none */

static int oom_buf_append(tl__buf *b, const void *p, size_t n) {
  if (oom_countdown && --oom_countdown == 0)
    return TL_ENOMEM;
  return tl__buf_append(b, p, n);
}

void oom_wsp_init(tl__wsp *p);
void oom_wsp_free(tl__wsp *p);
int oom_wsp_feed(tl__wsp *p, uint8_t *data, size_t len,
                 const tl__wsp_callbacks *cb, void *ud);
int oom_wsp_feed_ex(tl__wsp *p, uint8_t *data, size_t len,
                    const tl__wsp_callbacks *cb, void *ud, size_t *used);
bool oom_wsp_in_progress(const tl__wsp *p);
size_t oom_ws_frame_header(uint8_t *out, bool fin, bool rsv1, int opcode,
                           uint64_t len);
void oom_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4],
                   size_t pos);
size_t oom_ws_frame_header_masked(uint8_t *out, bool fin, bool rsv1,
                                  int opcode, uint64_t len,
                                  const uint8_t mask[4]);
void oom_ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t mask[4]);
bool oom_ws_close_code_valid(int code);
uint32_t oom_utf8_validate(uint32_t state, const uint8_t *p, size_t len);

#pragma push_macro("fail")
#undef fail
#define tl__buf_append oom_buf_append
#define tl__wsp_init oom_wsp_init
#define tl__wsp_free oom_wsp_free
#define tl__wsp_feed oom_wsp_feed
#define tl__wsp_feed_ex oom_wsp_feed_ex
#define tl__wsp_in_progress oom_wsp_in_progress
#define tl__ws_frame_header oom_ws_frame_header
#define tl__ws_unmask oom_ws_unmask
#define tl__ws_frame_header_masked oom_ws_frame_header_masked
#define tl__ws_mask_copy oom_ws_mask_copy
#define tl__ws_close_code_valid oom_ws_close_code_valid
#define tl__utf8_validate oom_utf8_validate
#include "ws/parser.c"
#undef tl__buf_append
#undef tl__wsp_init
#undef tl__wsp_free
#undef tl__wsp_feed
#undef tl__wsp_feed_ex
#undef tl__wsp_in_progress
#undef tl__ws_frame_header
#undef tl__ws_unmask
#undef tl__ws_frame_header_masked
#undef tl__ws_mask_copy
#undef tl__ws_close_code_valid
#undef tl__utf8_validate
#pragma pop_macro("fail")

/* A failed append fails the connection with 1011, sticky, and leaks
 * nothing (ASan checks the last part). */
static void t_out_of_memory(void **state) {
  tl__buf in = {0};
  frame_s(&in, OP_TEXT, "ab");
  frame_s(&in, FIN | OP_PING, "p");
  frame_s(&in, OP_CONT, "cd");
  frame_s(&in, FIN | OP_CONT, "ef");
  for (int nth = 1; nth <= 4; nth++) {
    tl__wsp p;
    oom_wsp_init(&p);
    rec r;
    memset(&r, 0, sizeof r);
    oom_countdown = nth;
    int rc = 0;
    for (size_t i = 0; i < in.len && rc == 0; i++) {
      uint8_t byte = (uint8_t)in.data[i];
      rc = oom_wsp_feed(&p, &byte, 1, &cbs, &r);
    }
    /* Bytewise, every payload byte is one append: "a", "b", the ping's
     * "p" (kept after the message's bytes), then "c"; the ping is
     * delivered only once its byte was stored. */
    assert_int_equal(rc, 1011);
    assert_int_equal(r.events, nth <= 3 ? 0 : 1);
    uint8_t byte = 0x81;
    assert_int_equal(oom_wsp_feed(&p, &byte, 1, &cbs, &r), 1011);
    oom_wsp_free(&p);
    assert_null(p.msg);
    tl__buf_free(&r.log);
  }
  oom_countdown = 0;
  tl__buf_free(&in);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(t1_lengths),
      cmocka_unit_test(t1_one_mib),
      cmocka_unit_test(t1_nonminimal_length),
      cmocka_unit_test(t1_unmasked),
      cmocka_unit_test(t_client_mode),
      cmocka_unit_test(t_mask_copy),
      cmocka_unit_test(t1_length_top_bit),
      cmocka_unit_test(t2_ping_pong),
      cmocka_unit_test(t2_ping_too_long),
      cmocka_unit_test(t2_fragmented_ping),
      cmocka_unit_test(t3_reserved_bits),
      cmocka_unit_test(t3_rsv1_deflate),
      cmocka_unit_test(t4_reserved_opcodes),
      cmocka_unit_test(t5_fragments),
      cmocka_unit_test(t5_interleaved_control),
      cmocka_unit_test(t5_continuation_without_start),
      cmocka_unit_test(t5_new_message_inside_fragmented),
      cmocka_unit_test(t6_validator_table),
      cmocka_unit_test(t6_text_messages),
      cmocka_unit_test(t6_fail_fast),
      cmocka_unit_test(t6_random_vs_reference),
      cmocka_unit_test(t7_close_basic),
      cmocka_unit_test(t7_close_one_byte),
      cmocka_unit_test(t7_close_codes),
      cmocka_unit_test(t7_close_reason_utf8),
      cmocka_unit_test(t9_many_back_to_back),
      cmocka_unit_test(t9_large_fragmented),
      cmocka_unit_test(t_max_payload),
      cmocka_unit_test(t_memory),
      cmocka_unit_test(t_stop),
      cmocka_unit_test(t_stop_leaves_input),
      cmocka_unit_test(t_pause),
      cmocka_unit_test(t_in_progress),
      cmocka_unit_test(t_zero_copy),
      cmocka_unit_test(t_empty_feed),
      cmocka_unit_test(t_frame_header),
      cmocka_unit_test(t_frame_header_roundtrip),
      cmocka_unit_test(t_unmask),
      cmocka_unit_test(t_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
