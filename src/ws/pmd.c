/* permessage-deflate: negotiation and zlib glue. See pmd.h. */
#include "ws/pmd.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <libdeflate.h>

#include "talon/common.h"

/* ---- negotiation --------------------------------------------------------- */

typedef struct offer {
  bool is_pmd;
  bool valid;
  bool snct, cnct; /* server/client_no_context_takeover */
  bool has_sbits, has_cbits;
  int sbits, cbits; /* 0: client_max_window_bits without a value */
} offer;

static bool ws_char(char c) {
  return c == ' ' || c == '\t';
}

static void trim(const char **p, const char **e) {
  while (*p < *e && ws_char(**p))
    (*p)++;
  while (*e > *p && ws_char((*e)[-1]))
    (*e)--;
}

static bool eq(const char *p, const char *e, const char *lit) {
  size_t n = strlen(lit);
  return (size_t)(e - p) == n && memcmp(p, lit, n) == 0;
}

/* A window-bits value: 8..15, digits only, no leading zero; quoted
 * allowed. Returns the value or -1. */
static int bits_value(const char *p, const char *e) {
  if (e - p >= 2 && *p == '"' && e[-1] == '"') {
    p++;
    e--;
  }
  if (e - p == 1 && *p >= '8' && *p <= '9')
    return *p - '0';
  if (e - p == 2 && p[0] == '1' && p[1] >= '0' && p[1] <= '5')
    return 10 + p[1] - '0';
  return -1;
}

/* Parses one parameter "name[=value]" into `o`; marks the offer invalid
 * for unknown names, duplicates and bad values. */
static void param(offer *o, const char *p, const char *e) {
  trim(&p, &e);
  const char *eqs = memchr(p, '=', (size_t)(e - p));
  const char *ne = eqs ? eqs : e;
  const char *vp = eqs ? eqs + 1 : e, *ve = e;
  trim(&p, &ne);
  trim(&vp, &ve);
  if (eq(p, ne, "server_no_context_takeover") && !eqs && !o->snct) {
    o->snct = true;
  } else if (eq(p, ne, "client_no_context_takeover") && !eqs && !o->cnct) {
    o->cnct = true;
  } else if (eq(p, ne, "server_max_window_bits") && eqs && !o->has_sbits &&
             (o->sbits = bits_value(vp, ve)) > 0) {
    o->has_sbits = true;
  } else if (eq(p, ne, "client_max_window_bits") && !o->has_cbits &&
             (!eqs || (o->cbits = bits_value(vp, ve)) > 0)) {
    o->has_cbits = true;
  } else {
    o->valid = false;
  }
}

/* Finds the end of the element starting at p: the next `sep` outside a
 * quoted string. */
static const char *next_sep(const char *p, const char *e, char sep) {
  bool quoted = false;
  for (; p < e; p++) {
    if (*p == '"')
      quoted = !quoted;
    else if (*p == '\\' && quoted && p + 1 < e)
      p++;
    else if (*p == sep && !quoted)
      return p;
  }
  return e;
}

static offer parse_offer(const char *p, const char *e) {
  offer o = {.valid = true};
  const char *semi = next_sep(p, e, ';');
  const char *np = p, *ne = semi;
  trim(&np, &ne);
  o.is_pmd = eq(np, ne, "permessage-deflate");
  p = semi;
  while (o.is_pmd && o.valid && p < e) {
    p++; /* past ';' */
    const char *end = next_sep(p, e, ';');
    param(&o, p, end);
    p = end;
  }
  return o;
}

bool tl__pmd_negotiate(const char *header, size_t len,
                       const tl__pmd_policy *pol, tl__pmd_agreed *ag, char *out,
                       size_t out_size) {
  const char *p = header, *e = header + len;
  memset(ag, 0, sizeof *ag);
  while (p < e) {
    const char *end = next_sep(p, e, ',');
    offer o = parse_offer(p, end);
    p = end < e ? end + 1 : e;
    if (!o.is_pmd || !o.valid)
      continue;
    int sbits = pol->max_window_bits;
    if (o.has_sbits) {
      /* zlib cannot compress raw deflate with an 8-bit window. */
      if (o.sbits < 9)
        continue;
      if (o.sbits < sbits)
        sbits = o.sbits;
    }
    ag->on = true;
    ag->server_no_takeover = o.snct || !pol->ctx_takeover;
    ag->client_no_takeover = o.cnct || !pol->inflate_takeover;
    ag->server_bits = sbits;
    /* Our inflater always has a 15-bit window, which reads any client
     * window, so client_max_window_bits needs no answer. */
    ag->client_bits = 15;
    int n =
        snprintf(out, out_size, "permessage-deflate%s%s",
                 ag->server_no_takeover ? "; server_no_context_takeover" : "",
                 ag->client_no_takeover ? "; client_no_context_takeover" : "");
    if (n > 0 && (o.has_sbits || sbits < 15) && (size_t)n < out_size)
      snprintf(out + n, out_size - (size_t)n, "; server_max_window_bits=%d",
               sbits);
    return true;
  }
  return false;
}

bool tl__pmd_client_accept(const char *header, size_t len, int our_bits,
                           bool reset_ours, int their_max,
                           tl__pmd_agreed *ag) {
  memset(ag, 0, sizeof *ag);
  const char *e = header + len;
  /* One answer, to the one offer made: a second element is an extension
   * the client did not offer. */
  if (next_sep(header, e, ',') != e)
    return false;
  offer o = parse_offer(header, e);
  /* The answer to client_max_window_bits carries a value; 8 cannot be
   * honoured by zlib's raw deflate (it makes 9-bit windows). */
  if (!o.is_pmd || !o.valid || (o.has_cbits && o.cbits < 9))
    return false;
  /* Asked for a server window of at most their_max: the answer must name
   * one within it (RFC 7692 7.1.2.1). */
  if (their_max && (!o.has_sbits || o.sbits > their_max))
    return false;
  ag->on = true;
  ag->server_no_takeover = o.cnct || reset_ours;
  ag->client_no_takeover = o.snct;
  ag->server_bits = o.has_cbits && o.cbits < our_bits ? o.cbits : our_bits;
  ag->client_bits = o.has_sbits ? o.sbits : 15;
  return true;
}

/* ---- zlib glue ------------------------------------------------------------
 */

#ifdef TALON_FAULT_INJECTION
/* zlib's own allocations go through the counted allocator too. */
static voidpf fault_zalloc(voidpf opaque, uInt items, uInt size) {
  (void)opaque;
  return calloc(items, size);
}
static void fault_zfree(voidpf opaque, voidpf p) {
  (void)opaque;
  free(p);
}
#define SET_ALLOCATOR(zs)                                                      \
  ((zs)->zalloc = fault_zalloc, (zs)->zfree = fault_zfree)
#else
#define SET_ALLOCATOR(zs) ((void)0)
#endif

int tl__pmd_deflate_init(z_stream *zs, int bits, int mem_level, int level) {
  memset(zs, 0, sizeof *zs);
  SET_ALLOCATOR(zs);
  return deflateInit2(zs, level, Z_DEFLATED, -bits, mem_level,
                      Z_DEFAULT_STRATEGY) == Z_OK
             ? 0
             : TL_ENOMEM;
}

int tl__pmd_inflate_init(z_stream *zs, int bits) {
  memset(zs, 0, sizeof *zs);
  SET_ALLOCATOR(zs);
  return inflateInit2(zs, -bits) == Z_OK ? 0 : TL_ENOMEM;
}

int tl__pmd_deflate(z_stream *zs, const void *data, size_t len, bool reset,
                    tl__buf *out) {
  if (reset && deflateReset(zs) != Z_OK)
    return TL_EIO;
  size_t start = out->len;
  zs->next_in = (Bytef *)data;
  zs->avail_in = (uInt)len;
  for (;;) {
    size_t room = deflateBound(zs, zs->avail_in) + 16;
    if (tl__buf_reserve(out, room) != 0)
      return TL_ENOMEM;
    zs->next_out = (Bytef *)out->data + out->len;
    zs->avail_out = (uInt)(out->cap - out->len);
    int rc = deflate(zs, Z_SYNC_FLUSH);
    out->len = out->cap - zs->avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return TL_EIO;
    if (zs->avail_in == 0 && zs->avail_out > 0)
      break;
  }
  /* A sync flush ends with an empty stored block 00 00 ff ff, which the
   * receiver adds back (RFC 7692 7.2.1). */
  if (out->len - start >= 4 &&
      memcmp(out->data + out->len - 4, "\x00\x00\xff\xff", 4) == 0)
    out->len -= 4;
  /* An empty message on a stream that was just flushed produces nothing;
   * the payload must still be a valid block: one empty fixed block
   * (RFC 7692 7.2.3.6). */
  if (out->len == start)
    return tl__buf_append(out, "\x00", 1);
  return 0;
}

int tl__pmd_deflate_whole(struct libdeflate_compressor *c, const void *data,
                          size_t len, tl__buf *out) {
  /* Room for the message itself: more than that is not worth sending. */
  if (tl__buf_reserve(out, len + 1) != 0)
    return TL_ENOMEM;
  size_t n = libdeflate_deflate_compress(c, data, len, out->data + out->len,
                                         len);
  if (n == 0)
    return TL_EIO;
  out->len += n;
  return 0;
}

/* What the one-call path puts after a message: the tail the sender
 * removed (an empty stored block, RFC 7692 7.2.2), then an empty final
 * stored block, because libdeflate reads until a final block. */
static const uint8_t whole_end[9] = {0x00, 0x00, 0xff, 0xff, 0x01,
                                     0x00, 0x00, 0xff, 0xff};

int tl__pmd_inflate_whole(struct libdeflate_decompressor *d,
                          const uint8_t *data, size_t len, size_t cap,
                          tl__buf *in, tl__buf *out) {
  /* Compressed bytes beyond the output limit and stored blocks' headers
   * are left to the stream, which refuses or bounds them. */
  if (len == 0 || len > cap + cap / 1024 + 64)
    return 1;
  in->len = 0;
  if (tl__buf_append(in, data, len) != 0 ||
      tl__buf_append(in, whole_end, sizeof whole_end) != 0 ||
      tl__buf_reserve(out, cap) != 0)
    return TL_ENOMEM;
  size_t used = 0, made = 0;
  enum libdeflate_result r = libdeflate_deflate_decompress_ex(
      d, in->data, in->len, out->data + out->len, cap, &used, &made);
  /* The stream reads the same bits the same way as far as it goes: the
   * message and its tail. It stops there, at a block boundary if the
   * message is sound (tl__pmd_inflate_some), where libdeflate goes on to
   * read the final empty block and ends on its last byte. A final block
   * of the message's own ends the stream too, which then must have used
   * every byte of the message. Anything else, the stream decides. */
  if (r != LIBDEFLATE_SUCCESS || (used != in->len && used != len))
    return 1;
  out->len += made;
  return 0;
}

/* The empty stored block the sender removed from the end of every
 * message (RFC 7692 7.2.2): fed after the message's own bytes. */
static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};

int tl__pmd_inflate_start(z_stream *zs, tl__pmd_msg *m, const void *data,
                          size_t len, bool reset) {
  m->in = data;
  m->in_len = len;
  /* An empty payload is an empty message, and the stream is left as it
   * is: RFC 7692 7.2.3.6 has a sender write one 00 byte for it, but with
   * nothing in front of it the tail would leave the stream inside a
   * stored block, and the next message would be read as its bytes. */
  m->empty = len == 0;
  m->tail = m->empty;
  return reset && inflateReset(zs) != Z_OK ? 1011 : 0;
}

int tl__pmd_inflate_some(z_stream *zs, tl__pmd_msg *m, size_t max,
                         size_t budget, size_t start, tl__buf *out) {
  size_t begin = out->len;
  for (;;) {
    if (m->in_len == 0) {
      /* Once the tail is taken in, everything before it has come out:
       * zlib reads a block's header only after the previous block's last
       * byte went out. */
      /* A message ends on a block boundary: the tail is an empty stored
       * block, after which zlib waits for the next block's header, on a
       * byte boundary (zlib.h: data_type is 128 + the unused bits there).
       * Data that stops inside a block is corrupt, not a short message:
       * its decoding would depend on what follows. */
      if (m->tail)
        return m->empty || (zs->data_type & 0xc7) == 0x80 ? 0 : 1007;
      m->tail = true;
      m->in = tail;
      m->in_len = sizeof tail;
    }
    size_t made = out->len - begin;
    if (made > budget)
      return TL__PMD_MORE;
    size_t room = out->cap - out->len;
    if (room < 4096) {
      size_t sofar = out->len - start;
      size_t want = sofar < 65536 ? 16384 : sofar;
      /* Never reserve past the limit (+1 byte to see it passed). */
      if (want > max + 1 - sofar)
        want = max + 1 - sofar;
      if (tl__buf_reserve_capped(out, want, start + max + 1) != 0)
        return 1011;
      room = out->cap - out->len;
    }
    /* Never let zlib write past the limit (+1 to detect passing it), nor
     * much past the budget (+1 likewise: a message that ends exactly at
     * the budget is finished by this call, not the next). */
    size_t allowed = max - (out->len - start) + 1;
    if (room > allowed)
      room = allowed;
    if (room > budget - made)
      room = budget - made + 1;
    if (room > UINT_MAX)
      room = UINT_MAX;
    uInt chunk = m->in_len > UINT_MAX ? UINT_MAX : (uInt)m->in_len;
    zs->next_in = (Bytef *)m->in;
    zs->avail_in = chunk;
    zs->next_out = (Bytef *)out->data + out->len;
    zs->avail_out = (uInt)room;
    int rc = inflate(zs, Z_SYNC_FLUSH);
    size_t took = chunk - zs->avail_in, gave = room - zs->avail_out;
    m->in += took;
    m->in_len -= took;
    out->len += gave;
    if (out->len - start > max)
      return 1009;
    if (rc == Z_STREAM_END) {
      /* A final block (BFINAL) ended the deflate stream: nothing may
       * follow it in the message, and the next message starts a new
       * stream. */
      if (m->in_len)
        return 1007;
      m->tail = true;
      return inflateReset(zs) == Z_OK ? 0 : 1011;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      return rc == Z_MEM_ERROR ? 1011 : 1007;
    /* With input and room, zlib always moves; if it did not, the loop
     * would spin. */
    if (took == 0 && gave == 0)
      return 1007;
  }
}

int tl__pmd_inflate(z_stream *zs, const void *data, size_t len, bool reset,
                    size_t max, tl__buf *out) {
  tl__pmd_msg m;
  if (tl__pmd_inflate_start(zs, &m, data, len, reset) != 0)
    return 1011;
  return tl__pmd_inflate_some(zs, &m, max, SIZE_MAX, out->len, out);
}
