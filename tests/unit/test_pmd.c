/* Unit tests for permessage-deflate (RFC 7692): offer negotiation
 * (tl__pmd_negotiate) and the zlib glue (tl__pmd_deflate,
 * tl__pmd_inflate) in src/ws/pmd.c.
 *
 * Negotiation is a table of Sec-WebSocket-Extensions values x server
 * policies -> whether an offer is accepted, the exact response value and
 * the agreed parameters; every row is its own cmocka test (named after
 * the row) so a failure names the offending header.
 *
 * The zlib part checks round trips against independent zlib streams (so
 * a mistake shared by both sides of talon's glue would still show), the
 * message size limit (an inflate bomb stops at the limit and the output
 * buffer never grows far past it), corrupt input, data after a final
 * block, and inflating a slice at a time (the same results at every
 * budget).
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
#include <libdeflate.h>
#include <zlib.h>

#include "core/buf.h"
#include "talon/common.h"
#include "ws/pmd.h"

/* ---- policies ------------------------------------------------------------
 * As src/ws/upgrade.c builds them from a route's `compression`. */

/* TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR */
static const tl__pmd_policy P_SHARED = {true, false, 15, false};
/* TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR */
static const tl__pmd_policy P_DED = {true, true, 15, true};
/* dedicated, compress_window_bits 9 */
static const tl__pmd_policy P_DED9 = {true, true, 9, true};
/* TL_DEDICATED_COMPRESSOR alone (implies a shared decompressor) */
static const tl__pmd_policy P_COMP = {true, true, 15, false};
/* TL_SHARED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR */
static const tl__pmd_policy P_SH_DD = {true, false, 15, true};

#define PMD "permessage-deflate"
#define SNCT "; server_no_context_takeover"
#define CNCT "; client_no_context_takeover"

typedef struct row {
  const char *name;
  const char *header;
  const tl__pmd_policy *pol;
  bool accept;
  const char *response; /* when accepted */
  bool snt, cnt;        /* agreed no-context-takeover flags */
  int sbits;            /* agreed server window bits */
} row;

#define YES(n, h, p, r, s, c, b) {n, h, &p, true, r, s, c, b}
#define NO(n, h, p) {n, h, &p, false, NULL, false, false, 0}

static const row rows[] = {
    /* -- a plain offer under every policy -- */
    YES("plain/dedicated", PMD, P_DED, PMD, false, false, 15),
    YES("plain/shared", PMD, P_SHARED, PMD SNCT CNCT, true, true, 15),
    YES("plain/dedicated9", PMD, P_DED9, PMD "; server_max_window_bits=9",
        false, false, 9),
    YES("plain/compressor-only", PMD, P_COMP, PMD CNCT, false, true, 15),
    YES("plain/shared-comp-dedicated-decomp", PMD, P_SH_DD, PMD SNCT, true,
        false, 15),

    /* -- context takeover parameters -- */
    YES("snct/dedicated", PMD SNCT, P_DED, PMD SNCT, true, false, 15),
    YES("cnct/dedicated", PMD CNCT, P_DED, PMD CNCT, false, true, 15),
    YES("snct+cnct/dedicated", PMD SNCT CNCT, P_DED, PMD SNCT CNCT, true,
        true, 15),
    YES("cnct+snct order/dedicated", PMD CNCT SNCT, P_DED, PMD SNCT CNCT,
        true, true, 15),
    YES("snct/shared", PMD SNCT, P_SHARED, PMD SNCT CNCT, true, true, 15),
    YES("cnct/compressor-only", PMD CNCT, P_COMP, PMD CNCT, false, true, 15),
    NO("snct with value", PMD "; server_no_context_takeover=1", P_DED),
    NO("cnct with empty value", PMD "; client_no_context_takeover=", P_DED),
    NO("snct with quoted value", PMD "; server_no_context_takeover=\"\"",
       P_DED),

    /* -- server_max_window_bits -- */
    NO("smwb=8 declined (zlib cannot)", PMD "; server_max_window_bits=8",
       P_DED),
    NO("smwb=8 declined/shared", PMD "; server_max_window_bits=8", P_SHARED),
    YES("smwb=8 then plain offer", PMD "; server_max_window_bits=8, " PMD,
        P_DED, PMD, false, false, 15),
    YES("smwb=9", PMD "; server_max_window_bits=9", P_DED,
        PMD "; server_max_window_bits=9", false, false, 9),
    YES("smwb=10", PMD "; server_max_window_bits=10", P_DED,
        PMD "; server_max_window_bits=10", false, false, 10),
    YES("smwb=11", PMD "; server_max_window_bits=11", P_DED,
        PMD "; server_max_window_bits=11", false, false, 11),
    YES("smwb=12", PMD "; server_max_window_bits=12", P_DED,
        PMD "; server_max_window_bits=12", false, false, 12),
    YES("smwb=13", PMD "; server_max_window_bits=13", P_DED,
        PMD "; server_max_window_bits=13", false, false, 13),
    YES("smwb=14", PMD "; server_max_window_bits=14", P_DED,
        PMD "; server_max_window_bits=14", false, false, 14),
    YES("smwb=15", PMD "; server_max_window_bits=15", P_DED,
        PMD "; server_max_window_bits=15", false, false, 15),
    YES("smwb=12/shared", PMD "; server_max_window_bits=12", P_SHARED,
        PMD SNCT CNCT "; server_max_window_bits=12", true, true, 12),
    YES("smwb=12/dedicated9 (ours is smaller)",
        PMD "; server_max_window_bits=12", P_DED9,
        PMD "; server_max_window_bits=9", false, false, 9),
    YES("smwb=9/dedicated9", PMD "; server_max_window_bits=9", P_DED9,
        PMD "; server_max_window_bits=9", false, false, 9),
    YES("smwb quoted", PMD "; server_max_window_bits=\"10\"", P_DED,
        PMD "; server_max_window_bits=10", false, false, 10),
    NO("smwb=7", PMD "; server_max_window_bits=7", P_DED),
    NO("smwb=16", PMD "; server_max_window_bits=16", P_DED),
    NO("smwb=010", PMD "; server_max_window_bits=010", P_DED),
    NO("smwb=09", PMD "; server_max_window_bits=09", P_DED),
    NO("smwb=abc", PMD "; server_max_window_bits=abc", P_DED),
    NO("smwb empty", PMD "; server_max_window_bits=", P_DED),
    NO("smwb empty quoted", PMD "; server_max_window_bits=\"\"", P_DED),
    NO("smwb no value", PMD "; server_max_window_bits", P_DED),
    NO("smwb=-10", PMD "; server_max_window_bits=-10", P_DED),
    NO("smwb=+10", PMD "; server_max_window_bits=+10", P_DED),
    NO("smwb=1 0", PMD "; server_max_window_bits=1 0", P_DED),
    NO("smwb half quoted", PMD "; server_max_window_bits=\"10", P_DED),
    YES("smwb invalid then plain", PMD "; server_max_window_bits=16, " PMD,
        P_DED, PMD, false, false, 15),

    /* -- client_max_window_bits -- */
    YES("cmwb no value", PMD "; client_max_window_bits", P_DED, PMD, false,
        false, 15),
    YES("cmwb no value/shared", PMD "; client_max_window_bits", P_SHARED,
        PMD SNCT CNCT, true, true, 15),
    YES("cmwb=8", PMD "; client_max_window_bits=8", P_DED, PMD, false, false,
        15),
    YES("cmwb=10", PMD "; client_max_window_bits=10", P_DED, PMD, false,
        false, 15),
    YES("cmwb=15", PMD "; client_max_window_bits=15", P_DED, PMD, false,
        false, 15),
    YES("cmwb quoted", PMD "; client_max_window_bits=\"12\"", P_DED, PMD,
        false, false, 15),
    NO("cmwb=7", PMD "; client_max_window_bits=7", P_DED),
    NO("cmwb=16", PMD "; client_max_window_bits=16", P_DED),
    NO("cmwb=010", PMD "; client_max_window_bits=010", P_DED),
    NO("cmwb=abc", PMD "; client_max_window_bits=abc", P_DED),
    NO("cmwb empty", PMD "; client_max_window_bits=", P_DED),
    YES("browser offer", PMD "; client_max_window_bits", P_DED, PMD, false,
        false, 15),
    YES("all four/shared",
        PMD "; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=10",
        P_SHARED, PMD SNCT CNCT "; server_max_window_bits=10", true, true, 10),
    YES("all four/dedicated",
        PMD "; client_max_window_bits; server_max_window_bits=11; "
            "client_no_context_takeover; server_no_context_takeover",
        P_DED, PMD SNCT CNCT "; server_max_window_bits=11", true, true, 11),

    /* -- duplicates: the offer is skipped -- */
    NO("dup snct", PMD SNCT SNCT, P_DED),
    NO("dup cnct", PMD CNCT CNCT, P_DED),
    NO("dup smwb", PMD "; server_max_window_bits=10; server_max_window_bits=10",
       P_DED),
    NO("dup smwb different",
       PMD "; server_max_window_bits=10; server_max_window_bits=12", P_DED),
    NO("dup cmwb", PMD "; client_max_window_bits; client_max_window_bits",
       P_DED),
    NO("dup cmwb values",
       PMD "; client_max_window_bits=10; client_max_window_bits", P_DED),
    YES("dup then good", PMD SNCT SNCT ", " PMD CNCT, P_DED, PMD CNCT, false,
        true, 15),
    YES("dup smwb then smwb",
        PMD "; server_max_window_bits=10; server_max_window_bits=10, " PMD
            "; server_max_window_bits=12",
        P_DED, PMD "; server_max_window_bits=12", false, false, 12),

    /* -- unknown parameters: the offer is skipped -- */
    NO("unknown param", PMD "; foo", P_DED),
    NO("unknown param with value", PMD "; foo=1", P_DED),
    NO("unknown param after good ones", PMD SNCT "; x-bar", P_DED),
    NO("param case differs", PMD "; Server_No_Context_Takeover", P_DED),
    NO("empty param (trailing ;)", PMD ";", P_DED),
    YES("unknown then good", PMD "; foo=1, " PMD CNCT, P_DED, PMD CNCT,
        false, true, 15),

    /* -- several offers: the first acceptable one wins -- */
    YES("first of two", PMD "; server_max_window_bits=10, " PMD, P_DED,
        PMD "; server_max_window_bits=10", false, false, 10),
    YES("first of three",
        PMD "; server_max_window_bits=8, " PMD
            "; server_max_window_bits=11, " PMD,
        P_DED, PMD "; server_max_window_bits=11", false, false, 11),
    YES("repeated headers joined", PMD "; foo, " PMD SNCT ", " PMD, P_DED,
        PMD SNCT, true, false, 15),

    /* -- other extensions -- */
    NO("other only", "x-webkit-deflate-frame", P_DED),
    NO("prefix of name", "permessage-deflat", P_DED),
    NO("name with suffix", "permessage-deflatex", P_DED),
    NO("name with suffix 2", "permessage-deflate-x; server_no_context_takeover",
       P_DED),
    YES("other before", "x-webkit-deflate-frame, " PMD, P_DED, PMD, false,
        false, 15),
    YES("other after", PMD CNCT ", x-webkit-deflate-frame", P_DED, PMD CNCT,
        false, true, 15),
    YES("others around", "foo; a=1, " PMD "; server_max_window_bits=13, bar",
        P_DED, PMD "; server_max_window_bits=13", false, false, 13),
    YES("other with pmd-like params",
        "foo; server_max_window_bits=8, " PMD, P_DED, PMD, false, false, 15),

    /* -- commas and semicolons inside quoted strings -- */
    YES("comma in quoted value of other", "foo; bar=\"a,b\", " PMD, P_DED, PMD,
        false, false, 15),
    YES("semicolon in quoted value", "foo; bar=\"a;b,c\", " PMD CNCT, P_DED,
        PMD CNCT, false, true, 15),
    NO("pmd inside quoted string", "foo; bar=\"x, permessage-deflate\"",
       P_DED),
    YES("escaped quote in quoted string",
        "foo; bar=\"x\\\", permessage-deflate; y\", " PMD SNCT, P_DED,
        PMD SNCT, true, false, 15),
    NO("unterminated quote swallows the rest",
       "foo; bar=\"x, permessage-deflate", P_DED),

    /* -- whitespace -- */
    YES("no spaces", PMD ";server_no_context_takeover;server_max_window_bits=10",
        P_DED, PMD SNCT "; server_max_window_bits=10", true, false, 10),
    YES("lots of spaces",
        "   " PMD "   ;   client_no_context_takeover   ;  "
        "server_max_window_bits = 12   ",
        P_DED, PMD CNCT "; server_max_window_bits=12", false, true, 12),
    YES("tabs", "\t" PMD "\t;\tserver_no_context_takeover\t,\tfoo", P_DED,
        PMD SNCT, true, false, 15),
    YES("spaces around commas", "foo  ,  " PMD "  ,  bar", P_DED, PMD, false,
        false, 15),
    YES("empty elements", " , ," PMD ",,", P_DED, PMD, false, false, 15),
    NO("space inside name", "permessage - deflate", P_DED),

    /* -- empty and degenerate headers -- */
    NO("empty header", "", P_DED),
    NO("blank header", "   ", P_DED),
    NO("only commas", ",,, ,", P_DED),
    NO("only semicolons", ";;;", P_DED),
    NO("param without name", PMD "; =10", P_DED),
};

#define NROWS (sizeof rows / sizeof rows[0])

static void negotiation_row(void **state) {
  const row *r = *state;
  tl__pmd_agreed ag;
  memset(&ag, 0xa5, sizeof ag);
  char out[256];
  memset(out, 'X', sizeof out);
  /* The header in its own exactly sized block: ASan catches over-reads
   * (it is not NUL-terminated for the parser). */
  size_t n = strlen(r->header);
  char *h = malloc(n ? n : 1);
  assert_non_null(h);
  memcpy(h, r->header, n);
  bool ok = tl__pmd_negotiate(h, n, r->pol, &ag, out, sizeof out);
  free(h);
  if (ok != r->accept)
    fail_msg("header [%s]: expected %s, got %s (response [%s])", r->header,
             r->accept ? "accept" : "decline", ok ? "accept" : "decline",
             ok ? out : "");
  if (!ok) {
    assert_false(ag.on);
    return;
  }
  if (strcmp(out, r->response) != 0)
    fail_msg("header [%s]: response\n  got      [%s]\n  expected [%s]",
             r->header, out, r->response);
  assert_true(ag.on);
  if (ag.server_no_takeover != r->snt || ag.client_no_takeover != r->cnt ||
      ag.server_bits != r->sbits)
    fail_msg("header [%s]: agreed snt=%d cnt=%d sbits=%d, expected "
             "snt=%d cnt=%d sbits=%d",
             r->header, ag.server_no_takeover, ag.client_no_takeover,
             ag.server_bits, r->snt, r->cnt, r->sbits);
  /* Our inflater reads any client window. */
  assert_in_range(ag.client_bits, 8, 15);
}

/* The response never overflows a small buffer and is NUL-terminated. */
static void negotiation_small_out(void **state) {
  (void)state;
  const char *h = PMD "; server_max_window_bits=10";
  for (size_t size = 1; size < 100; size++) {
    char *out = malloc(size);
    assert_non_null(out);
    tl__pmd_agreed ag;
    bool ok = tl__pmd_negotiate(h, strlen(h), &P_SHARED, &ag, out, size);
    if (ok)
      assert_true(memchr(out, 0, size) != NULL);
    free(out);
  }
}

/* ---- zlib helpers ----------------------------------------------------- */

static uint32_t rng = 0x12345678u;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

static unsigned char *random_bytes(size_t n) {
  unsigned char *p = malloc(n ? n : 1);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)rnd();
  return p;
}

/* Text-like, very compressible. */
static unsigned char *text_bytes(size_t n, unsigned seed) {
  static const char *words[] = {"talon ", "deflate ", "window ", "message ",
                                "context ", "takeover ", "frame ", "zlib "};
  unsigned char *p = malloc(n ? n : 1);
  assert_non_null(p);
  uint32_t s = seed * 2654435761u + 1;
  size_t i = 0;
  while (i < n) {
    s = s * 1103515245u + 12345u;
    const char *w = words[(s >> 16) % 8];
    for (; *w && i < n; w++)
      p[i++] = (unsigned char)*w;
  }
  return p;
}

/* Independent raw inflate of a permessage-deflate payload (tail added). */
static unsigned char *ref_inflate(z_stream *zs, const void *data, size_t len,
                                  size_t *outlen) {
  size_t cap = len * 4 + 1024, n = 0;
  unsigned char *out = malloc(cap);
  assert_non_null(out);
  unsigned char *in = malloc(len + 4);
  assert_non_null(in);
  memcpy(in, data, len);
  memcpy(in + len, "\x00\x00\xff\xff", 4);
  zs->next_in = in;
  zs->avail_in = (uInt)(len + 4);
  for (;;) {
    if (cap - n < 1024) {
      cap *= 2;
      out = realloc(out, cap);
      assert_non_null(out);
    }
    zs->next_out = out + n;
    zs->avail_out = (uInt)(cap - n);
    int rc = inflate(zs, Z_SYNC_FLUSH);
    n = cap - zs->avail_out;
    assert_true(rc == Z_OK || rc == Z_BUF_ERROR || rc == Z_STREAM_END);
    if (zs->avail_in == 0 && zs->avail_out > 0)
      break;
  }
  free(in);
  *outlen = n;
  return out;
}

/* Independent raw deflate of one message (sync flush, tail removed). */
static unsigned char *ref_deflate(z_stream *zs, const void *data, size_t len,
                                  int flush, size_t *outlen) {
  size_t cap = deflateBound(zs, len) + 64;
  unsigned char *out = malloc(cap);
  assert_non_null(out);
  zs->next_in = (Bytef *)data;
  zs->avail_in = (uInt)len;
  zs->next_out = out;
  zs->avail_out = (uInt)cap;
  int rc = deflate(zs, flush);
  assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
  assert_int_equal(zs->avail_in, 0);
  size_t n = cap - zs->avail_out;
  if (flush == Z_SYNC_FLUSH) {
    assert_true(n >= 4);
    assert_memory_equal(out + n - 4, "\x00\x00\xff\xff", 4);
    n -= 4;
  }
  *outlen = n;
  return out;
}

static bool ends_with_tail(const tl__buf *b) {
  return b->len >= 4 &&
         memcmp(b->data + b->len - 4, "\x00\x00\xff\xff", 4) == 0;
}

/* One message through talon's deflate and inflate, and through the
 * reference inflater too. */
static void roundtrip_one(const void *data, size_t len, int bits,
                          bool expect_smaller) {
  z_stream d, i;
  assert_int_equal(tl__pmd_deflate_init(&d, bits, 8, Z_DEFAULT_COMPRESSION), 0);
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  tl__buf z = {0}, out = {0};
  assert_int_equal(tl__pmd_deflate(&d, data, len, true, &z), 0);
  if (len > 0)
    assert_false(ends_with_tail(&z));
  if (expect_smaller)
    assert_true(z.len < len / 2);
  assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, true, 1u << 30, &out),
                   0);
  assert_int_equal(out.len, len);
  if (len)
    assert_memory_equal(out.data, data, len);
  /* An inflater with exactly the negotiated window reads it too. */
  z_stream r;
  memset(&r, 0, sizeof r);
  assert_int_equal(inflateInit2(&r, -bits), Z_OK);
  size_t rn;
  unsigned char *rp = ref_inflate(&r, z.data, z.len, &rn);
  assert_int_equal(rn, len);
  if (len)
    assert_memory_equal(rp, data, len);
  free(rp);
  inflateEnd(&r);
  deflateEnd(&d);
  inflateEnd(&i);
  tl__buf_free(&z);
  tl__buf_free(&out);
}

static void roundtrip_random(void **state) {
  (void)state;
  size_t sizes[] = {1, 2, 100, 4095, 4096, 65535, 65536, 300000};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    unsigned char *p = random_bytes(sizes[k]);
    roundtrip_one(p, sizes[k], 15, false);
    roundtrip_one(p, sizes[k], 9, false);
    free(p);
  }
}

static void roundtrip_compressible(void **state) {
  (void)state;
  size_t sizes[] = {1000, 65536, 1 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    unsigned char *p = text_bytes(sizes[k], (unsigned)k);
    for (int bits = 9; bits <= 15; bits++)
      roundtrip_one(p, sizes[k], bits, true);
    free(p);
  }
}

static void roundtrip_empty(void **state) {
  (void)state;
  roundtrip_one("", 0, 15, false);
  roundtrip_one("", 0, 9, false);
  /* The canonical compressed empty message is one 0x00 byte (RFC 7692
   * 7.2.3.6). */
  z_stream i;
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  tl__buf out = {0};
  assert_int_equal(tl__pmd_inflate(&i, "\x00", 1, true, 10, &out), 0);
  assert_int_equal(out.len, 0);
  assert_int_equal(tl__pmd_inflate(&i, "\x00", 1, false, 10, &out), 0);
  assert_int_equal(out.len, 0);
  /* An empty payload (not a block at all) is taken as an empty message,
   * and the context is kept for the next one. */
  z_stream d;
  assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
  tl__buf a = {0}, b = {0};
  assert_int_equal(tl__pmd_deflate(&d, "hello hello", 11, false, &a), 0);
  assert_int_equal(tl__pmd_deflate(&d, "hello hello", 11, false, &b), 0);
  assert_int_equal(tl__pmd_inflate(&i, a.data, a.len, true, 100, &out), 0);
  assert_int_equal(tl__pmd_inflate(&i, "", 0, false, 100, &out), 0);
  assert_int_equal(out.len, 11);
  assert_int_equal(tl__pmd_inflate(&i, b.data, b.len, false, 100, &out), 0);
  assert_int_equal(out.len, 22);
  assert_memory_equal(out.data, "hello hellohello hello", 22);
  deflateEnd(&d);
  tl__buf_free(&a);
  tl__buf_free(&b);
  tl__buf_free(&out);
  inflateEnd(&i);
}

/* Empty messages within a context-takeover stream, between others: each
 * must be a complete deflate block (an empty payload is not: the receiver
 * appends 00 00 ff ff, which is only part of a stored block, and its next
 * message is then read as the rest of that block). */
static void empty_with_context_takeover(void **state) {
  (void)state;
  z_stream d, i;
  assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  const char *msgs[] = {"", "", "hello hello hello", "", "", "hello", ""};
  int empty_at = -1, bad_at = -1, rc = 0;
  for (size_t k = 0; k < 7 && bad_at < 0; k++) {
    tl__buf z = {0}, out = {0};
    size_t n = strlen(msgs[k]);
    assert_int_equal(tl__pmd_deflate(&d, msgs[k], n, false, &z), 0);
    if (z.len == 0 && empty_at < 0)
      empty_at = (int)k;
    rc = tl__pmd_inflate(&i, z.data, z.len, false, 1000, &out);
    if (rc != 0 || out.len != n || (n && memcmp(out.data, msgs[k], n) != 0))
      bad_at = (int)k;
    tl__buf_free(&z);
    tl__buf_free(&out);
  }
  deflateEnd(&d);
  inflateEnd(&i);
  if (empty_at >= 0 || bad_at >= 0)
    fail_msg("message %d (empty) compressed to an empty payload; message "
             "%d then failed to inflate (rc %d)",
             empty_at, bad_at, rc);
}

/* Context takeover: later messages refer back to earlier ones, so they
 * shrink, and only an inflater that kept its context reads them. With
 * reset, every message compresses to the same bytes and stands alone. */
static void context_takeover(void **state) {
  (void)state;
  unsigned char *msg = random_bytes(2000); /* incompressible alone */
  z_stream d, i, fresh;
  assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  assert_int_equal(tl__pmd_inflate_init(&fresh, 15), 0);
  size_t first = 0;
  for (int k = 0; k < 6; k++) {
    tl__buf z = {0}, out = {0}, out2 = {0};
    assert_int_equal(tl__pmd_deflate(&d, msg, 2000, false, &z), 0);
    if (k == 0)
      first = z.len;
    else
      assert_true(z.len < first / 10);
    assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, false, 1 << 20, &out),
                     0);
    assert_int_equal(out.len, 2000);
    assert_memory_equal(out.data, msg, 2000);
    if (k > 0) {
      /* A reset inflater has no history: invalid distance -> 1007. */
      assert_int_equal(
          tl__pmd_inflate(&fresh, z.data, z.len, true, 1 << 20, &out2), 1007);
    }
    tl__buf_free(&z);
    tl__buf_free(&out);
    tl__buf_free(&out2);
  }
  /* Reset: the same bytes every time, each readable by a fresh stream. */
  tl__buf z0 = {0};
  for (int k = 0; k < 4; k++) {
    tl__buf z = {0}, out = {0};
    assert_int_equal(tl__pmd_deflate(&d, msg, 2000, true, &z), 0);
    if (k == 0)
      assert_int_equal(tl__buf_append(&z0, z.data, z.len), 0);
    else {
      assert_int_equal(z.len, z0.len);
      assert_memory_equal(z.data, z0.data, z.len);
    }
    assert_int_equal(
        tl__pmd_inflate(&fresh, z.data, z.len, true, 1 << 20, &out), 0);
    assert_int_equal(out.len, 2000);
    assert_memory_equal(out.data, msg, 2000);
    tl__buf_free(&z);
    tl__buf_free(&out);
  }
  tl__buf_free(&z0);
  deflateEnd(&d);
  inflateEnd(&i);
  inflateEnd(&fresh);
  free(msg);
}

/* Messages from an independent deflater with context takeover, several in
 * a row, text-like, of mixed sizes. */
static void inflate_reference_stream(void **state) {
  (void)state;
  for (int bits = 8; bits <= 15; bits++) {
    z_stream ref, i;
    memset(&ref, 0, sizeof ref);
    /* zlib raises a raw window of 8 to 9; a client may still announce 8. */
    assert_int_equal(deflateInit2(&ref, 6, Z_DEFLATED, -(bits < 9 ? 9 : bits),
                                  8, Z_DEFAULT_STRATEGY),
                     Z_OK);
    assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
    for (unsigned k = 0; k < 20; k++) {
      size_t n = (k * 7919) % 30000;
      unsigned char *p = text_bytes(n, k % 3);
      size_t zn;
      unsigned char *z = ref_deflate(&ref, p, n, Z_SYNC_FLUSH, &zn);
      tl__buf out = {0};
      assert_int_equal(tl__pmd_inflate(&i, z, zn, false, n, &out), 0);
      assert_int_equal(out.len, n);
      if (n)
        assert_memory_equal(out.data, p, n);
      tl__buf_free(&out);
      free(z);
      free(p);
    }
    deflateEnd(&ref);
    inflateEnd(&i);
  }
}

/* talon's deflater with context takeover, read by an independent
 * inflater with exactly the agreed window. */
static void deflate_reference_stream(void **state) {
  (void)state;
  for (int bits = 9; bits <= 15; bits += 3) {
    for (int mem = 1; mem <= 9; mem += 4) {
      z_stream d, ref;
      assert_int_equal(
          tl__pmd_deflate_init(&d, bits, mem, Z_DEFAULT_COMPRESSION), 0);
      memset(&ref, 0, sizeof ref);
      assert_int_equal(inflateInit2(&ref, -bits), Z_OK);
      for (unsigned k = 0; k < 15; k++) {
        size_t n = (k * 4099) % 20000;
        unsigned char *p = k % 2 ? text_bytes(n, k) : random_bytes(n);
        tl__buf z = {0};
        assert_int_equal(tl__pmd_deflate(&d, p, n, false, &z), 0);
        size_t rn;
        unsigned char *r = ref_inflate(&ref, z.data, z.len, &rn);
        assert_int_equal(rn, n);
        if (n)
          assert_memory_equal(r, p, n);
        free(r);
        free(p);
        tl__buf_free(&z);
      }
      deflateEnd(&d);
      inflateEnd(&ref);
    }
  }
}

/* deflate appends to what the buffer holds; inflate too, and its limit
 * counts only the new bytes. */
static void appends(void **state) {
  (void)state;
  z_stream d, i;
  assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  tl__buf z = {0}, out = {0};
  assert_int_equal(tl__buf_append(&z, "HDR", 3), 0);
  unsigned char *p = text_bytes(5000, 1);
  assert_int_equal(tl__pmd_deflate(&d, p, 5000, true, &z), 0);
  assert_memory_equal(z.data, "HDR", 3);
  assert_int_equal(tl__buf_append(&out, "0123456789", 10), 0);
  assert_int_equal(
      tl__pmd_inflate(&i, z.data + 3, z.len - 3, true, 5000, &out), 0);
  assert_int_equal(out.len, 5010);
  assert_memory_equal(out.data, "0123456789", 10);
  assert_memory_equal(out.data + 10, p, 5000);
  free(p);
  tl__buf_free(&z);
  tl__buf_free(&out);
  deflateEnd(&d);
  inflateEnd(&i);
}

/* The limit is inclusive: exactly `max` bytes pass, one more is 1009. */
static void limit_exact(void **state) {
  (void)state;
  size_t sizes[] = {1, 100, 4096, 16384, 65536, 100000};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    unsigned char *p = text_bytes(n, 3);
    z_stream d, i;
    assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
    assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
    tl__buf z = {0}, out = {0};
    assert_int_equal(tl__pmd_deflate(&d, p, n, true, &z), 0);
    assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, true, n, &out), 0);
    assert_int_equal(out.len, n);
    out.len = 0;
    assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, true, n - 1, &out),
                     1009);
    assert_true(out.len <= n);
    /* The stream is usable again after a reset. */
    out.len = 0;
    assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, true, n, &out), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, p, n);
    free(p);
    tl__buf_free(&z);
    tl__buf_free(&out);
    deflateEnd(&d);
    inflateEnd(&i);
  }
}

/* ~100 MB of zeros, compressed (deflate's best ratio is ~1030:1, so this
 * is ~100 KB: no single deflate stream of "a few KB" reaches 100 MB). */
static unsigned char *bomb(size_t total, size_t *zlen) {
  z_stream ref;
  memset(&ref, 0, sizeof ref);
  assert_int_equal(
      deflateInit2(&ref, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
  static unsigned char zeros[1 << 20];
  size_t cap = total / 1000 + 65536, n = 0;
  unsigned char *out = malloc(cap);
  assert_non_null(out);
  for (size_t done = 0; done < total; done += sizeof zeros) {
    ref.next_in = zeros;
    ref.avail_in = sizeof zeros;
    bool last = done + sizeof zeros >= total;
    do {
      ref.next_out = out + n;
      ref.avail_out = (uInt)(cap - n);
      deflate(&ref, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
      n = cap - ref.avail_out;
      assert_true(n < cap);
    } while (ref.avail_in > 0 || ref.avail_out == 0);
  }
  deflateEnd(&ref);
  assert_memory_equal(out + n - 4, "\x00\x00\xff\xff", 4);
  *zlen = n - 4;
  return out;
}

static void inflate_bomb(void **state) {
  (void)state;
  size_t zlen;
  const size_t total = 100u << 20;
  unsigned char *z = bomb(total, &zlen);
  assert_true(zlen < 200000);
  size_t limits[] = {64u << 10, 100000, 1u << 20, 1000000, 16u << 20};
  int over = 0;
  for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
    size_t max = limits[k];
    z_stream i;
    assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
    tl__buf out = {0};
    assert_int_equal(tl__pmd_inflate(&i, z, zlen, true, max, &out), 1009);
    /* It stopped near the limit ... */
    assert_true(out.len <= max + 1);
    assert_true(out.len >= max - 65536 || out.len >= max / 2);
    /* ... and the output buffer did not grow far past it (a bomb must
     * cost about the limit, not a multiple of it). */
    if (out.cap > max + max / 8 + 65536) {
      print_error("limit %zu: inflated %zu bytes into a buffer of %zu bytes "
                  "(%.2fx the limit)\n",
                  max, out.len, out.cap, (double)out.cap / (double)max);
      over++;
    }
    tl__buf_free(&out);
    inflateEnd(&i);
  }
  /* With a large enough limit, the whole thing inflates. */
  z_stream i;
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  tl__buf out = {0};
  assert_int_equal(tl__pmd_inflate(&i, z, zlen, true, total, &out), 0);
  assert_int_equal(out.len, total);
  tl__buf_free(&out);
  inflateEnd(&i);
  free(z);
  assert_int_equal(over, 0);
}

static void corrupt(void **state) {
  (void)state;
  z_stream i;
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  tl__buf out = {0};
  /* BTYPE 11 (reserved). */
  assert_int_equal(tl__pmd_inflate(&i, "\xff\xff\xff\xff", 4, true, 1000, &out),
                   1007);
  /* A stored block whose NLEN does not match LEN. */
  out.len = 0;
  assert_int_equal(
      tl__pmd_inflate(&i, "\x00\x05\x00\x00\x00hello", 10, true, 1000, &out),
      1007);
  /* A valid message with a byte flipped in the middle. */
  unsigned char *p = text_bytes(20000, 2);
  z_stream d;
  assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
  tl__buf z = {0};
  assert_int_equal(tl__pmd_deflate(&d, p, 20000, true, &z), 0);
  int bad = 0;
  for (size_t at = 1; at < z.len; at += z.len / 16 + 1) {
    z.data[at] ^= 0x5a;
    out.len = 0;
    int rc = tl__pmd_inflate(&i, z.data, z.len, true, 1 << 20, &out);
    assert_true(rc == 0 || rc == 1007 || rc == 1009);
    /* Never past the limit, never an out-of-bounds write (ASan). */
    if (rc != 0 || out.len != 20000 || memcmp(out.data, p, 20000) != 0)
      bad++;
    z.data[at] ^= 0x5a;
  }
  assert_true(bad > 0);
  /* The stream recovers with a reset. */
  out.len = 0;
  assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, true, 1 << 20, &out), 0);
  assert_int_equal(out.len, 20000);
  assert_memory_equal(out.data, p, 20000);
  /* Truncated to half: the implicit tail is then read as part of the
   * block, and the data stops inside it: refused, never past the limit. */
  out.len = 0;
  int rc = tl__pmd_inflate(&i, z.data, z.len / 2, true, 30000, &out);
  assert_true(rc == 1007 || rc == 1009);
  assert_true(out.len <= 30001);
  free(p);
  tl__buf_free(&z);
  tl__buf_free(&out);
  deflateEnd(&d);
  inflateEnd(&i);
}

/* A message that ends its deflate stream (BFINAL) is fine; anything after
 * the final block is corrupt (1007). */
/* libdeflate's whole-message form (the shared compressor's, window 15):
 * a stream ending in a final block, read by talon's inflater (twice on
 * one stream, as a client keeping its inflater would) and by plain zlib
 * with the tail appended, as RFC 7692 7.2.2 has every receiver do. */
static void deflate_whole(void **state) {
  (void)state;
  unsigned char *p = text_bytes(3000, 7);
  struct libdeflate_compressor *c = libdeflate_alloc_compressor(6);
  assert_non_null(c);
  tl__buf z = {0}, out = {0};
  assert_int_equal(tl__pmd_deflate_whole(c, p, 3000, &z), 0);
  assert_true(z.len < 1500);
  z_stream i;
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  for (int k = 0; k < 2; k++) {
    out.len = 0;
    assert_int_equal(tl__pmd_inflate(&i, z.data, z.len, false, 1 << 20, &out),
                     0);
    assert_int_equal(out.len, 3000);
    assert_memory_equal(out.data, p, 3000);
  }
  inflateEnd(&i);
  z_stream r;
  memset(&r, 0, sizeof r);
  assert_int_equal(inflateInit2(&r, -15), Z_OK);
  unsigned char in[4096], res[4096];
  memcpy(in, z.data, z.len);
  memcpy(in + z.len, "\x00\x00\xff\xff", 4);
  r.next_in = in;
  r.avail_in = (uInt)(z.len + 4);
  r.next_out = res;
  r.avail_out = sizeof res;
  int rc = inflate(&r, Z_SYNC_FLUSH);
  assert_true(rc == Z_STREAM_END || rc == Z_OK);
  assert_int_equal(sizeof res - r.avail_out, 3000);
  assert_memory_equal(res, p, 3000);
  inflateEnd(&r);
  /* Bytes that do not shrink, and nothing at all: sent uncompressed. */
  unsigned char noise[200];
  uint32_t x = 12345;
  for (size_t k = 0; k < sizeof noise; k++)
    noise[k] = (unsigned char)((x = x * 1103515245u + 12345u) >> 24);
  z.len = 0;
  assert_int_equal(tl__pmd_deflate_whole(c, noise, sizeof noise, &z), TL_EIO);
  assert_int_equal(tl__pmd_deflate_whole(c, "", 0, &z), TL_EIO);
  libdeflate_free_compressor(c);
  tl__buf_free(&z);
  tl__buf_free(&out);
  free(p);
}

/* The one-call inflate of a message that starts no context: taken when
 * the message decodes to its end as the stream reads it (zlib's
 * sync-flushed messages of one block or several), declined otherwise;
 * the input is never touched. */
static void inflate_whole(void **state) {
  (void)state;
  struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
  assert_non_null(d);
  static const size_t sizes[] = {1, 100, 3000, 20000};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t n = sizes[k];
    unsigned char *p = text_bytes(n, 11 + (unsigned)k);
    z_stream ref;
    memset(&ref, 0, sizeof ref);
    assert_int_equal(
        deflateInit2(&ref, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t zn;
    unsigned char *z = ref_deflate(&ref, p, n, Z_SYNC_FLUSH, &zn);
    deflateEnd(&ref);
    tl__buf out = {0}, in = {0};
    assert_int_equal(tl__pmd_inflate_whole(d, z, zn, 64 * 1024, &in, &out), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, p, n);
    /* Too small a cap: declined, nothing appended. */
    out.len = 0;
    if (n > 1) {
      assert_int_equal(tl__pmd_inflate_whole(d, z, zn, n - 1, &in, &out), 1);
      assert_int_equal(out.len, 0);
    }
    tl__buf_free(&out);
    tl__buf_free(&in);
    free(z);
    free(p);
  }
  /* Two blocks (a sync flush in the middle): declined, and the stream
   * path reads it. */
  unsigned char *p = text_bytes(2000, 3);
  z_stream ref;
  memset(&ref, 0, sizeof ref);
  assert_int_equal(deflateInit2(&ref, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY),
                   Z_OK);
  size_t an, bn;
  unsigned char *a = ref_deflate(&ref, p, 1000, Z_FULL_FLUSH, &an);
  unsigned char *b = ref_deflate(&ref, p + 1000, 1000, Z_SYNC_FLUSH, &bn);
  deflateEnd(&ref);
  unsigned char *two = malloc(an + bn);
  memcpy(two, a, an);
  memcpy(two + an, b, bn);
  tl__buf out = {0}, in = {0};
  assert_int_equal(tl__pmd_inflate_whole(d, two, an + bn, 64 * 1024, &in, &out),
                   0);
  assert_int_equal(out.len, 2000);
  assert_memory_equal(out.data, p, 2000);
  out.len = 0;
  z_stream i;
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  assert_int_equal(tl__pmd_inflate(&i, two, an + bn, true, 1 << 20, &out), 0);
  assert_int_equal(out.len, 2000);
  assert_memory_equal(out.data, p, 2000);
  /* A block ('a'), then the header of another that the tail's bytes
   * cannot finish: the stream refuses it (it used to give "a" and stop
   * inside the second block), and the one-call path does not take it
   * either (it once ignored what followed the first block). */
  static const unsigned char open_block[3] = {0x4a, 0x04, 0x08};
  out.len = 0;
  assert_int_equal(
      tl__pmd_inflate_whole(d, open_block, sizeof open_block, 1024, &in, &out),
      1);
  assert_int_equal(
      tl__pmd_inflate(&i, open_block, sizeof open_block, true, 1024, &out),
      1007);
  inflateEnd(&i);
  /* Garbage and nothing: declined. */
  out.len = 0;
  unsigned char junk[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(tl__pmd_inflate_whole(d, junk, sizeof junk, 1024, &in, &out),
                   1);
  assert_int_equal(tl__pmd_inflate_whole(d, junk, 0, 1024, &in, &out), 1);
  assert_int_equal(out.len, 0);
  tl__buf_free(&out);
  tl__buf_free(&in);
  free(a);
  free(b);
  free(two);
  free(p);
  libdeflate_free_decompressor(d);
}

static void after_final_block(void **state) {
  (void)state;
  unsigned char *p = text_bytes(3000, 5);
  z_stream ref;
  memset(&ref, 0, sizeof ref);
  assert_int_equal(
      deflateInit2(&ref, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t zn;
  unsigned char *z = ref_deflate(&ref, p, 3000, Z_FINISH, &zn);
  deflateEnd(&ref);

  z_stream i;
  assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
  tl__buf out = {0};
  /* Exactly the final block, on a context-takeover stream, twice: the
   * stream starts over after a final block. */
  for (int k = 0; k < 2; k++) {
    out.len = 0;
    assert_int_equal(tl__pmd_inflate(&i, z, zn, false, 1 << 20, &out), 0);
    assert_int_equal(out.len, 3000);
    assert_memory_equal(out.data, p, 3000);
  }
  /* Then a normal sync-flushed message on the same stream. */
  z_stream d;
  assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
  tl__buf zz = {0};
  assert_int_equal(tl__pmd_deflate(&d, "after", 5, true, &zz), 0);
  out.len = 0;
  assert_int_equal(tl__pmd_inflate(&i, zz.data, zz.len, false, 100, &out), 0);
  assert_int_equal(out.len, 5);
  assert_memory_equal(out.data, "after", 5);

  /* Trailing garbage and a second stream after the final block. */
  unsigned char *zg = malloc(zn + zz.len);
  assert_non_null(zg);
  memcpy(zg, z, zn);
  memcpy(zg + zn, "\x12\x34\x56", 3);
  out.len = 0;
  assert_int_equal(tl__pmd_inflate(&i, zg, zn + 3, true, 1 << 20, &out), 1007);
  memcpy(zg + zn, zz.data, zz.len);
  out.len = 0;
  assert_int_equal(tl__pmd_inflate(&i, zg, zn + zz.len, true, 1 << 20, &out),
                   1007);
  /* The empty final stored block followed by the implicit tail: the tail
   * is then data after the final block. 0x01 = BFINAL stored, then
   * LEN/NLEN 0000 ffff make a complete empty final block. */
  out.len = 0;
  assert_int_equal(
      tl__pmd_inflate(&i, "\x01\x00\x00\xff\xff", 5, true, 100, &out), 0);
  assert_int_equal(out.len, 0);
  free(zg);
  free(z);
  free(p);
  tl__buf_free(&zz);
  tl__buf_free(&out);
  deflateEnd(&d);
  inflateEnd(&i);
}

/* Inflates one message a slice at a time (tl__pmd_inflate_some with
 * `budget`), moving the unconsumed input to a fresh exact-size block
 * between slices as talon's WebSocket code does. Returns the final code;
 * *slices gets the number of calls. Every call but the last produced
 * more than `budget` bytes, none more than budget + 1. */
static int sliced(z_stream *zs, const void *data, size_t len, bool reset,
                  size_t max, size_t budget, tl__buf *out, size_t *slices) {
  tl__pmd_msg m;
  assert_int_equal(tl__pmd_inflate_start(zs, &m, data, len, reset), 0);
  unsigned char *copy = NULL;
  int rc;
  *slices = 0;
  for (;;) {
    size_t before = out->len;
    rc = tl__pmd_inflate_some(zs, &m, max, budget, 0, out);
    (*slices)++;
    assert_true(out->len - before <= budget + 1);
    if (rc != TL__PMD_MORE)
      break;
    assert_true(out->len - before > budget);
    unsigned char *moved = malloc(m.in_len ? m.in_len : 1);
    assert_non_null(moved);
    memcpy(moved, m.in, m.in_len);
    free(copy);
    copy = moved;
    m.in = copy;
  }
  free(copy);
  return rc;
}

/* Sliced inflating gives what one call gives, for every budget: the same
 * bytes, the same limit (1009 at max + 1 bytes), the same errors, and the
 * stream's context carries over to the next message. */
static void inflate_in_slices(void **state) {
  (void)state;
  size_t full = 300000;
  unsigned char *text = text_bytes(full, 7), *rnd_ = random_bytes(full);
  size_t zlen;
  unsigned char *zeros = bomb(8u << 20, &zlen);
  size_t budgets[] = {0, 1, 100, 4095, 65536, 1u << 20};
  for (size_t b = 0; b < sizeof budgets / sizeof budgets[0]; b++) {
    size_t budget = budgets[b];
    z_stream d, i, one;
    assert_int_equal(tl__pmd_deflate_init(&d, 15, 8, Z_DEFAULT_COMPRESSION), 0);
    assert_int_equal(tl__pmd_inflate_init(&i, 15), 0);
    assert_int_equal(tl__pmd_inflate_init(&one, 15), 0);
    /* Two messages with context takeover, then random bytes (shorter
     * ones for the tiniest budgets: a call per byte or two). */
    const unsigned char *msgs[] = {text, text, rnd_};
    size_t n = budget < 100 ? 20000 : full;
    for (int k = 0; k < 3; k++) {
      tl__buf z = {0}, out = {0}, ref = {0};
      assert_int_equal(tl__pmd_deflate(&d, msgs[k], n, false, &z), 0);
      size_t slices;
      assert_int_equal(
          sliced(&i, z.data, z.len, false, n, budget, &out, &slices), 0);
      assert_int_equal(tl__pmd_inflate(&one, z.data, z.len, false, n, &ref), 0);
      assert_int_equal(out.len, n);
      assert_memory_equal(out.data, msgs[k], n);
      assert_memory_equal(ref.data, msgs[k], n);
      if (budget < n)
        assert_true(slices >= n / (budget + 1));
      else
        assert_int_equal(slices, 1); /* within the budget: one call */
      tl__buf_free(&z);
      tl__buf_free(&out);
      tl__buf_free(&ref);
    }
    if (budget > 0 && budget < full) {
      /* A message of exactly the budget is done in one call. */
      tl__buf z = {0}, out = {0};
      size_t slices;
      assert_int_equal(tl__pmd_deflate(&d, text, budget, true, &z), 0);
      assert_int_equal(
          sliced(&i, z.data, z.len, true, full, budget, &out, &slices), 0);
      assert_int_equal(out.len, budget);
      assert_int_equal(slices, 1);
      tl__buf_free(&z);
      tl__buf_free(&out);
    }
    if (budget >= 4095) { /* tiny budgets would take millions of calls */
      /* A bomb: inflates whole under a limit that fits, else 1009 at
       * exactly max + 1 bytes. */
      tl__buf out = {0};
      size_t slices;
      assert_int_equal(
          sliced(&i, zeros, zlen, true, 8u << 20, budget, &out, &slices), 0);
      assert_int_equal(out.len, 8u << 20);
      out.len = 0;
      assert_int_equal(
          sliced(&i, zeros, zlen, true, (8u << 20) - 1, budget, &out, &slices),
          1009);
      assert_int_equal(out.len, 8u << 20);
      tl__buf_free(&out);
    }
    /* Corrupt data after valid output: 1007, as in one call. */
    tl__buf z = {0}, out = {0};
    assert_int_equal(tl__pmd_deflate(&d, text, n, true, &z), 0);
    assert_int_equal(tl__buf_append(&z, "\xff\xff\xff\xff", 4), 0);
    size_t slices;
    assert_int_equal(
        sliced(&i, z.data, z.len, true, 1u << 30, budget, &out, &slices), 1007);
    tl__buf_free(&z);
    tl__buf_free(&out);
    deflateEnd(&d);
    inflateEnd(&i);
    inflateEnd(&one);
  }
  free(text);
  free(rnd_);
  free(zeros);
}

/* The client's reading of a server's answer, from its own point of view
 * (server_* fields: the client's compressor). */
static void client_accept(void **state) {
  tl__pmd_agreed a;
  const char *ok = "permessage-deflate; server_no_context_takeover";
  assert_true(tl__pmd_client_accept(ok, strlen(ok), 15, true, 0, &a));
  assert_true(a.on && a.server_no_takeover && a.client_no_takeover);
  assert_int_equal(a.server_bits, 15);
  assert_int_equal(a.client_bits, 15);
  const char *bits =
      "permessage-deflate;client_max_window_bits=10; server_max_window_bits=12";
  assert_true(tl__pmd_client_accept(bits, strlen(bits), 15, false, 0, &a));
  assert_false(a.server_no_takeover || a.client_no_takeover);
  assert_int_equal(a.server_bits, 10);
  assert_int_equal(a.client_bits, 12);
  /* Our window is never widened; the server may ask us to reset. */
  const char *wide = "permessage-deflate; client_max_window_bits=15; "
                     "client_no_context_takeover";
  assert_true(tl__pmd_client_accept(wide, strlen(wide), 11, false, 0, &a));
  assert_int_equal(a.server_bits, 11);
  assert_true(a.server_no_takeover);
  static const char *bad[] = {
      "x-webkit-deflate-frame",
      "permessage-deflate, permessage-deflate",
      "permessage-deflate; unknown",
      "permessage-deflate; server_max_window_bits",
      "permessage-deflate; client_max_window_bits=8",
      "permessage-deflate; client_max_window_bits=16",
      "permessage-deflate; server_no_context_takeover; "
      "server_no_context_takeover",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_false(
        tl__pmd_client_accept(bad[i], strlen(bad[i]), 15, true, 0, &a));
  /* Asked for server_max_window_bits=10: the answer must name 10 or
   * less. */
  const char *s10 = "permessage-deflate; server_max_window_bits=10";
  assert_true(tl__pmd_client_accept(s10, strlen(s10), 15, true, 10, &a));
  assert_int_equal(a.client_bits, 10);
  const char *s9 = "permessage-deflate; server_max_window_bits=9";
  assert_true(tl__pmd_client_accept(s9, strlen(s9), 15, true, 10, &a));
  assert_int_equal(a.client_bits, 9);
  const char *s12 = "permessage-deflate; server_max_window_bits=12";
  assert_false(tl__pmd_client_accept(s12, strlen(s12), 15, true, 10, &a));
  assert_false(tl__pmd_client_accept(ok, strlen(ok), 15, true, 10, &a));
}

int main(void) {
  static struct CMUnitTest tests[NROWS + 17];
  for (size_t k = 0; k < NROWS; k++) {
    char *name = malloc(strlen(rows[k].name) + 16);
    sprintf(name, "negotiate: %s", rows[k].name);
    tests[k] = (struct CMUnitTest){.name = name,
                                   .test_func = negotiation_row,
                                   .initial_state = (void *)&rows[k]};
  }
  const struct CMUnitTest more[] = {
      cmocka_unit_test(negotiation_small_out),
      cmocka_unit_test(roundtrip_random),
      cmocka_unit_test(roundtrip_compressible),
      cmocka_unit_test(roundtrip_empty),
      cmocka_unit_test(empty_with_context_takeover),
      cmocka_unit_test(context_takeover),
      cmocka_unit_test(inflate_reference_stream),
      cmocka_unit_test(deflate_reference_stream),
      cmocka_unit_test(appends),
      cmocka_unit_test(limit_exact),
      cmocka_unit_test(inflate_bomb),
      cmocka_unit_test(corrupt),
      cmocka_unit_test(after_final_block),
      cmocka_unit_test(deflate_whole),
      cmocka_unit_test(inflate_whole),
      cmocka_unit_test(inflate_in_slices),
      cmocka_unit_test(client_accept),
  };
  _Static_assert(sizeof more / sizeof more[0] == 17, "tests array size");
  for (size_t k = 0; k < 17; k++)
    tests[NROWS + k] = more[k];
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  return rc;
}
