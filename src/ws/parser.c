/* WebSocket frame parser (RFC 6455), server side. The contract is in
 * parser.h; this file explains the choices behind it.
 *
 * Input is walked once. A frame header is collected in p->hdr (at most 14
 * bytes, so copying it costs nothing and a header split across calls needs
 * no second code path). Every header field is checked as soon as the byte
 * that holds it has arrived, so an invalid frame fails without waiting for
 * the rest of its header; since no callback can run in the middle of a
 * header, this gives the same result at every input split.
 *
 * Payload bytes are unmasked in the caller's buffer, which the contract
 * says is writable. When the whole payload of an unfragmented data message
 * (or of a control frame) is in that buffer, it is delivered from there;
 * otherwise the unmasked bytes are appended to p->msg. A control frame
 * that spans calls (a ping between two fragments, say) is collected after
 * the message's bytes in the same buffer and cut off again once delivered,
 * so the parser needs no second buffer (every open socket has a parser).
 * p->msg only ever grows by bytes that really arrived: a declared length
 * is checked against max_payload but never used to size an allocation,
 * so a peer cannot make us reserve memory it does not send.
 */
#include "ws/parser.h"

#include <stdlib.h>
#include <string.h>

/* p->msg: made for a message's first byte that spans reads, freed once
 * it is delivered, so that an idle connection holds no message buffer at
 * all (measured: keeping a 16 KiB one cost ~8 KiB RSS per idle socket
 * after one 4 KiB message); only messages that span reads pay for it. */
static int msg_append(tl__wsp *p, const uint8_t *d, size_t n) {
  if (!p->msg && !(p->msg = calloc(1, sizeof *p->msg)))
    return -1;
  return tl__buf_append(p->msg, d, n);
}

static void msg_drop(tl__wsp *p) {
  if (p->msg) {
    tl__buf_free(p->msg);
    free(p->msg);
    p->msg = NULL;
  }
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* A DFA over byte classes. The classes split the lead bytes by how many
 * continuation bytes follow and by which of them restrict the range of
 * the first continuation byte (E0, ED, F0, F4: overlongs, surrogates and
 * code points above U+10FFFF are thereby rejected at their first wrong
 * byte, not at the end of the sequence). */
enum {
  C_ASCII, /* 00..7F */
  C_CONT8, /* 80..8F */
  C_CONT9, /* 90..9F */
  C_CONTA, /* A0..BF */
  C_BAD,   /* C0 C1 F5..FF: never valid */
  C_LEAD2, /* C2..DF */
  C_E0,    /* E0: next byte A0..BF */
  C_LEAD3, /* E1..EC EE EF */
  C_ED,    /* ED: next byte 80..9F */
  C_F0,    /* F0: next byte 90..BF */
  C_LEAD4, /* F1..F3 */
  C_F4,    /* F4: next byte 80..8F */
  C_COUNT
};

/* States 0 and 1 are TL__UTF8_ACCEPT and TL__UTF8_REJECT. */
enum {
  S_ACC,   /* between sequences */
  S_REJ,   /* an invalid byte was seen */
  S_NEED1, /* 1 more continuation byte (80..BF) */
  S_NEED2, /* 2 more */
  S_NEED3, /* 3 more */
  S_E0,    /* after E0: A0..BF, then 1 more */
  S_ED,    /* after ED: 80..9F, then 1 more */
  S_F0,    /* after F0: 90..BF, then 2 more */
  S_F4,    /* after F4: 80..8F, then 2 more */
  S_COUNT
};

/* clang-format off */
#define A C_ASCII
#define X C_BAD
#define L2 C_LEAD2
#define L3 C_LEAD3
#define L4 C_LEAD4
#define C8 C_CONT8
#define C9 C_CONT9
#define CA C_CONTA
static const uint8_t utf8_class[256] = {
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 00 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 10 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 20 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 30 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 40 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 50 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 60 */
  A, A, A, A, A, A, A, A, A, A, A, A, A, A, A, A,                  /* 70 */
  C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8, C8,  /* 80 */
  C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9, C9,  /* 90 */
  CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA,  /* A0 */
  CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA, CA,  /* B0 */
  X,  X,  L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2,  /* C0 */
  L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2, L2,  /* D0 */
  C_E0, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, L3, C_ED, L3, L3, /* E0 */
  C_F0, L4, L4, L4, C_F4, X, X, X, X, X, X, X, X, X, X, X,         /* F0 */
};
#undef A
#undef X
#undef L2
#undef L3
#undef L4
#undef C8
#undef C9
#undef CA

/* Next state by [state][class]; short names keep the table readable. */
#define OK S_ACC
#define R S_REJ
#define N1 S_NEED1
#define N2 S_NEED2
#define N3 S_NEED3
#define E0 S_E0
#define ED S_ED
#define F0 S_F0
#define F4 S_F4
static const uint8_t utf8_next[S_COUNT][C_COUNT] = {
  /* class:     ASC C8  C9  CA  BAD L2  E0  L3  ED  F0  L4  F4 */
  [S_ACC]   = {OK, R,  R,  R,  R,  N1, E0, N2, ED, F0, N3, F4},
  [S_REJ]   = {R,  R,  R,  R,  R,  R,  R,  R,  R,  R,  R,  R},
  [S_NEED1] = {R,  OK, OK, OK, R,  R,  R,  R,  R,  R,  R,  R},
  [S_NEED2] = {R,  N1, N1, N1, R,  R,  R,  R,  R,  R,  R,  R},
  [S_NEED3] = {R,  N2, N2, N2, R,  R,  R,  R,  R,  R,  R,  R},
  [S_E0]    = {R,  R,  R,  N1, R,  R,  R,  R,  R,  R,  R,  R},
  [S_ED]    = {R,  N1, N1, R,  R,  R,  R,  R,  R,  R,  R,  R},
  [S_F0]    = {R,  R,  N2, N2, R,  R,  R,  R,  R,  R,  R,  R},
  [S_F4]    = {R,  N2, R,  R,  R,  R,  R,  R,  R,  R,  R,  R},
};
#undef OK
#undef R
#undef N1
#undef N2
#undef N3
#undef E0
#undef ED
#undef F0
#undef F4
/* clang-format on */

_Static_assert(S_ACC == TL__UTF8_ACCEPT && S_REJ == TL__UTF8_REJECT,
               "DFA states 0/1 are the public ACCEPT/REJECT values");

uint32_t tl__utf8_validate(uint32_t state, const uint8_t *p, size_t len) {
  const uint8_t *end = p + len;
  if (state >= S_COUNT)
    return TL__UTF8_REJECT;
  while (p < end) {
    if (state == S_REJ)
      return TL__UTF8_REJECT;
    /* Text is mostly ASCII: between sequences, skip 8 such bytes per
     * step. The load goes through memcpy because `p` has any alignment. */
    if (state == S_ACC) {
      while ((size_t)(end - p) >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w & UINT64_C(0x8080808080808080))
          break;
        p += 8;
      }
      if (p == end)
        break;
    }
    state = utf8_next[state][utf8_class[*p++]];
  }
  return state;
}

/* ---- framing helpers --------------------------------------------------- */

/* dst = src XOR the mask from phase `pos` (0-3); dst may be src. The
 * 8-byte mask starts at phase `pos`; 8 is a multiple of 4, so it stays in
 * phase for every word. Loads and stores go through memcpy: the buffers
 * have any alignment, and compilers turn these into plain moves. */
static void xor_mask(uint8_t *dst, const uint8_t *src, size_t len,
                     const uint8_t mask[4], size_t pos) {
  uint8_t m8[8];
  for (size_t i = 0; i < 8; i++)
    m8[i] = mask[(pos + i) & 3];
  uint64_t m;
  memcpy(&m, m8, 8);
  size_t i = 0;
  for (; len - i >= 32; i += 32) {
    uint64_t w[4];
    memcpy(w, src + i, 32);
    w[0] ^= m;
    w[1] ^= m;
    w[2] ^= m;
    w[3] ^= m;
    memcpy(dst + i, w, 32);
  }
  for (; len - i >= 8; i += 8) {
    uint64_t w;
    memcpy(&w, src + i, 8);
    w ^= m;
    memcpy(dst + i, &w, 8);
  }
  for (; i < len; i++)
    dst[i] = src[i] ^ m8[i & 7];
}

void tl__ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4],
                   size_t pos) {
  xor_mask(data, data, len, mask, pos);
}

void tl__ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t len,
                      const uint8_t mask[4]) {
  xor_mask(dst, src, len, mask, 0);
}

size_t tl__ws_frame_header(uint8_t *out, bool fin, bool rsv1, int opcode,
                           uint64_t len) {
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xffff) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++)
    out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

size_t tl__ws_frame_header_masked(uint8_t *out, bool fin, bool rsv1, int opcode,
                                  uint64_t len, const uint8_t mask[4]) {
  size_t n = tl__ws_frame_header(out, fin, rsv1, opcode, len);
  out[1] |= 0x80;
  memcpy(out + n, mask, 4);
  return n + 4;
}

bool tl__ws_close_code_valid(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

/* ---- parser ------------------------------------------------------------ */

void tl__wsp_init(tl__wsp *p) {
  memset(p, 0, sizeof *p);
}

void tl__wsp_free(tl__wsp *p) {
  msg_drop(p);
  p->msg_len = 0;
  p->in_message = false;
}

static bool is_control(int opcode) {
  return opcode >= 8;
}

/* Sets the sticky error and returns it. */
static int fail(tl__wsp *p, int code) {
  p->error = (int16_t)code;
  return code;
}

/* A callback asked to stop. The input after this point was not parsed,
 * so the parser is out of step with the stream: that is sticky too. */
static int stopped(tl__wsp *p) {
  return fail(p, TL__WSP_STOPPED);
}

/* What a callback's answer `r` makes of the feed: go on (0), pause
 * (TL__WSP_PAUSED, not sticky: the caller feeds the rest later) or stop. */
static int answer(tl__wsp *p, int r) {
  if (r == 0)
    return 0;
  return r == TL__WSP_PAUSE ? TL__WSP_PAUSED : stopped(p);
}

bool tl__wsp_in_progress(const tl__wsp *p) {
  return p->in_frame || p->hdr_len || p->in_message;
}

/* Checks byte 0 of a header: FIN, RSV1-3, opcode. */
static int check_byte0(const tl__wsp *p, uint8_t b) {
  bool fin = b & 0x80, rsv1 = b & 0x40;
  int op = b & 0x0f;
  if (b & 0x30)
    return 1002; /* RSV2/RSV3: no extension we negotiate defines them */
  switch (op) {
  case TL__WS_OP_CONT:
    if (!p->in_message || rsv1)
      return 1002; /* RSV1 (compressed) belongs to a message's first frame */
    return 0;
  case TL__WS_OP_TEXT:
  case TL__WS_OP_BINARY:
    if (p->in_message || (rsv1 && !p->allow_rsv1))
      return 1002;
    return 0;
  case TL__WS_OP_CLOSE:
  case TL__WS_OP_PING:
  case TL__WS_OP_PONG:
    if (!fin || rsv1)
      return 1002;
    return 0;
  default: return 1002;
  }
}

/* Checks byte 1: the mask bit and, for control frames, the 7-bit length
 * (126 and 127 announce more than 125 bytes, so they fail here too). */
static int check_byte1(const tl__wsp *p, uint8_t b0, uint8_t b1) {
  if (!(b1 & 0x80) != p->client)
    return 1002; /* a client's frames are masked, a server's are not */
  if (is_control(b0 & 0x0f) && (b1 & 0x7f) > 125)
    return 1002;
  return 0;
}

/* Header bytes needed, given what is already in p->hdr. */
static size_t header_need(const tl__wsp *p) {
  if (p->hdr_len < 2)
    return 2;
  uint8_t l7 = p->hdr[1] & 0x7f;
  return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (p->client ? 0 : 4);
}

/* Takes header bytes from data[*off..len). Returns 0 with p->in_frame set
 * when the header is complete, 0 with *off == len when more is needed, or
 * a close code. */
static int read_header(tl__wsp *p, const uint8_t *data, size_t len,
                       size_t *off) {
  for (;;) {
    size_t need = header_need(p);
    size_t n = need - p->hdr_len;
    if (n > len - *off)
      n = len - *off;
    size_t before = p->hdr_len;
    memcpy(p->hdr + before, data + *off, n);
    p->hdr_len = (uint8_t)(before + n);
    *off += n;
    int rc;
    if (before < 1 && p->hdr_len >= 1 && (rc = check_byte0(p, p->hdr[0])))
      return rc;
    if (before < 2 && p->hdr_len >= 2) {
      if ((rc = check_byte1(p, p->hdr[0], p->hdr[1])))
        return rc;
      continue; /* the full header size is known only now */
    }
    if (p->hdr_len < need)
      return 0; /* input exhausted */
    break;
  }

  const uint8_t *h = p->hdr;
  uint64_t flen = h[1] & 0x7f;
  size_t at = 2;
  if (flen == 126) {
    flen = (uint64_t)h[2] << 8 | h[3];
    at = 4;
  } else if (flen == 127) {
    flen = 0;
    for (int i = 0; i < 8; i++)
      flen = flen << 8 | h[2 + i];
    if (flen >> 63)
      return 1002;
    at = 10;
  }
  /* Non-minimal length encodings (e.g. 5 in 16 bits) are accepted: the
   * RFC puts that MUST on the sender and rejecting them buys nothing. */

  int op = h[0] & 0x0f;
  if (!is_control(op)) {
    /* Check the whole message against the limit here, before any byte
     * of this frame is buffered. A message that could not be addressed
     * in memory is too big even without a limit. */
    uint64_t sofar = op == TL__WS_OP_CONT ? p->msg_len : 0;
    uint64_t limit = p->max_payload ? p->max_payload : SIZE_MAX;
    if (flen > limit || sofar > limit - flen)
      return 1009;
    if (op != TL__WS_OP_CONT) {
      p->in_message = true;
      p->msg_opcode = (uint8_t)op;
      p->msg_compressed = (h[0] & 0x40) != 0;
      p->msg_len = 0;
      p->utf8_state = TL__UTF8_ACCEPT;
    }
  }
  p->fin = (h[0] & 0x80) != 0;
  p->opcode = (uint8_t)op;
  if (p->client)
    memset(p->mask, 0, 4); /* unmasking with zeros is skipped */
  else
    memcpy(p->mask, h + at, 4);
  p->remaining = flen;
  p->mask_pos = 0;
  p->in_frame = true;
  p->hdr_len = 0;
  return 0;
}

static bool checks_utf8(const tl__wsp *p) {
  return p->msg_opcode == TL__WS_OP_TEXT && !p->msg_compressed;
}

/* A complete control frame (payload already unmasked). */
static int control_frame(tl__wsp *p, uint8_t *d, size_t n,
                         const tl__wsp_callbacks *cb, void *ud) {
  if (p->opcode != TL__WS_OP_CLOSE)
    return answer(p, cb->on_control(ud, p->opcode, d, n));
  if (n == 0)
    return answer(p, cb->on_close(ud, 1005, "", 0));
  if (n == 1)
    return fail(p, 1002);
  int code = d[0] << 8 | d[1];
  if (!tl__ws_close_code_valid(code))
    return fail(p, 1002);
  if (tl__utf8_validate(TL__UTF8_ACCEPT, d + 2, n - 2) != TL__UTF8_ACCEPT)
    return fail(p, 1007);
  return answer(p, cb->on_close(ud, code, (const char *)d + 2, n - 2));
}

/* The last frame of a data message ended; its bytes are in p->msg. */
static int buffered_message(tl__wsp *p, const tl__wsp_callbacks *cb, void *ud) {
  if (checks_utf8(p) && p->utf8_state != TL__UTF8_ACCEPT)
    return fail(p, 1007); /* a sequence was cut by the end of the message */
  /* Callbacks get a non-NULL pointer even for an empty message. */
  uint8_t empty = 0;
  uint8_t *d = p->msg && p->msg->data ? (uint8_t *)p->msg->data : &empty;
  int r = cb->on_message(ud, p->msg_opcode, d, (size_t)p->msg_len,
                         p->msg_compressed);
  p->in_message = false;
  p->msg_len = 0;
  msg_drop(p);
  return answer(p, r);
}

int tl__wsp_feed(tl__wsp *p, uint8_t *data, size_t len,
                 const tl__wsp_callbacks *cb, void *ud) {
  return tl__wsp_feed_ex(p, data, len, cb, ud, NULL);
}

/* The feed loop; returns as tl__wsp_feed_ex, with *off the bytes consumed
 * (always past a whole frame when a callback paused). */
static int feed(tl__wsp *p, uint8_t *data, size_t len,
                const tl__wsp_callbacks *cb, void *ud, size_t *offp) {
  size_t off = 0;
  int rc;
  for (;;) {
    if (!p->in_frame) {
      if (off == len)
        return 0;
      if (p->hdr_len == 0 && !p->in_message)
        p->began = true;
      if ((rc = read_header(p, data, len, &off)))
        return fail(p, rc);
      if (!p->in_frame)
        return 0;
      /* Whole payload here: deliver it from the caller's buffer when it
       * is a control frame or a complete unfragmented message. */
      bool whole = p->remaining <= len - off;
      bool single = p->fin && p->opcode != TL__WS_OP_CONT;
      if (whole && (is_control(p->opcode) || single)) {
        size_t n = (size_t)p->remaining;
        uint8_t *d = data + off;
        if (!p->client)
          tl__ws_unmask(d, n, p->mask, 0);
        off += n;
        p->remaining = 0;
        p->in_frame = false;
        *offp = off;
        if (is_control(p->opcode)) {
          if ((rc = control_frame(p, d, n, cb, ud)))
            return rc;
          continue;
        }
        if (checks_utf8(p) &&
            tl__utf8_validate(TL__UTF8_ACCEPT, d, n) != TL__UTF8_ACCEPT)
          return fail(p, 1007);
        p->in_message = false;
        if ((rc = answer(
                 p, cb->on_message(ud, p->opcode, d, n, p->msg_compressed))))
          return rc;
        continue;
      }
    }

    /* Part of a frame: unmask what is here and keep it. (n is 0 when
     * the input ended with the header, or for an empty frame.) */
    size_t n = len - off;
    if (p->remaining < n)
      n = (size_t)p->remaining;
    if (n > 0) {
      uint8_t *d = data + off;
      if (!p->client)
        tl__ws_unmask(d, n, p->mask, p->mask_pos);
      p->mask_pos = (uint8_t)((p->mask_pos + n) & 3);
      if (is_control(p->opcode)) {
        /* After the message's bytes; n <= 125 in all. */
        if (msg_append(p, d, n))
          return fail(p, 1011);
      } else {
        if (checks_utf8(p)) {
          p->utf8_state = (uint8_t)tl__utf8_validate(p->utf8_state, d, n);
          if (p->utf8_state == TL__UTF8_REJECT)
            return fail(p, 1007);
        }
        /* Out of memory fails this connection only: 1011 is the close code
         * for "the server hit an unexpected condition", and being a close
         * code it takes the caller's usual path for a failed parse. */
        if (msg_append(p, d, n))
          return fail(p, 1011);
        p->msg_len += n;
      }
    }
    off += n;
    *offp = off;
    p->remaining -= n;
    if (p->remaining)
      return 0; /* input exhausted mid-frame */
    p->in_frame = false;
    if (is_control(p->opcode)) {
      /* Its bytes follow the message's; cut them off before the callback
       * so that the buffer is consistent whatever the callback does. An
       * empty control frame never allocated anything. */
      uint8_t empty = 0;
      size_t at = (size_t)p->msg_len, cn = p->msg ? p->msg->len - at : 0;
      uint8_t *d = cn ? (uint8_t *)p->msg->data + at : &empty;
      if (p->msg)
        p->msg->len = at;
      rc = control_frame(p, d, cn, cb, ud);
      if (p->msg_len == 0)
        msg_drop(p);
    } else if (p->fin) {
      rc = buffered_message(p, cb, ud);
    } else {
      rc = 0;
    }
    if (rc)
      return rc;
  }
}

int tl__wsp_feed_ex(tl__wsp *p, uint8_t *data, size_t len,
                    const tl__wsp_callbacks *cb, void *ud, size_t *used) {
  if (p->error)
    return p->error;
  if (len == 0)
    return 0; /* a frame never waits with no payload left, so none ends */
  size_t off = 0;
  int rc = feed(p, data, len, cb, ud, &off);
  if (rc == TL__WSP_PAUSED) {
    if (!used)
      return stopped(p); /* tl__wsp_feed has no way to pause */
    *used = off;
  }
  return rc;
}
