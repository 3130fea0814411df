/* wsclient: the WebSocket client core of the load generators; see
 * wsclient.h. libuv only, none of talon's code. */
#include "wsclient.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

/* ---- errors and memory ----------------------------------------------------- */

const char *wsc_prog = "wsclient";
const char *wsc_conn_fmt = "conn %d: ";

void wsc_fatal(int conn, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, "%s: error: ", wsc_prog);
  if (conn >= 0)
    fprintf(stderr, wsc_conn_fmt, conn, conn);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

void *wsc_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    wsc_fatal(-1, "out of memory (%zu bytes)", n);
  return p;
}

void *wsc_xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    wsc_fatal(-1, "out of memory");
  return p;
}

long wsc_parse_int(const char *s, long lo, long hi, const char *what) {
  char *e;
  errno = 0;
  long v = strtol(s, &e, 10);
  if (errno || e == s || *e || v < lo || v > hi) {
    fprintf(stderr, "%s: %s must be an integer in [%ld, %ld], got '%s'\n", wsc_prog, what,
            lo, hi, s);
    exit(1);
  }
  return v;
}

double wsc_parse_secs(const char *s, double lo, const char *what) {
  char *e;
  double v = strtod(s, &e);
  if (e == s || *e || !(v >= lo) || v > 86400) {
    fprintf(stderr, "%s: %s must be a number of seconds >= %g, got '%s'\n", wsc_prog, what,
            lo, s);
    exit(1);
  }
  return v;
}

/* ---- random numbers, CPU time ---------------------------------------------- */

uint64_t wsc_rng_state;

void wsc_os_random(void *p, size_t n) {
  int r = uv_random(NULL, NULL, p, n, 0, NULL);
  if (r)
    wsc_fatal(-1, "uv_random: %s", uv_strerror(r));
}

void wsc_rng_seed(void) {
  wsc_os_random(&wsc_rng_state, sizeof wsc_rng_state);
  wsc_rng_state |= 1;
}

double wsc_self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- SHA-1 and base64, for the handshake -------------------------------- */

typedef struct {
  uint32_t h[5];
  uint64_t len;
  uint8_t blk[64];
  size_t n;
} sha1_ctx;

static uint32_t rol(uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
  uint32_t w[80], a, b, d, e, f, k, t, cc;
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
           (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++)
    w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
  for (int i = 0; i < 80; i++) {
    if (i < 20)
      f = (b & cc) | (~b & d), k = 0x5A827999;
    else if (i < 40)
      f = b ^ cc ^ d, k = 0x6ED9EBA1;
    else if (i < 60)
      f = (b & cc) | (b & d) | (cc & d), k = 0x8F1BBCDC;
    else
      f = b ^ cc ^ d, k = 0xCA62C1D6;
    t = rol(a, 5) + f + e + k + w[i];
    e = d, d = cc, cc = rol(b, 30), b = a, a = t;
  }
  c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20]) {
  sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0},
                0, {0}, 0};
  const uint8_t *p = data;
  uint8_t pad[72];
  size_t padn;
  c.len = (uint64_t)len * 8;
  while (len >= 64) {
    sha1_block(&c, p);
    p += 64, len -= 64;
  }
  memcpy(c.blk, p, len);
  c.n = len;
  padn = (c.n < 56 ? 56 : 120) - c.n;
  memset(pad, 0, sizeof pad);
  pad[0] = 0x80;
  for (int i = 0; i < 8; i++)
    pad[padn + i] = (uint8_t)(c.len >> (56 - 8 * i));
  /* c.blk holds c.n bytes; append padn + 8 bytes of pad. */
  {
    uint8_t tail[128];
    memcpy(tail, c.blk, c.n);
    memcpy(tail + c.n, pad, padn + 8);
    sha1_block(&c, tail);
    if (c.n + padn + 8 == 128)
      sha1_block(&c, tail + 64);
  }
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(c.h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(c.h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(c.h[i] >> 8);
    out[4 * i + 3] = (uint8_t)c.h[i];
  }
}

static void base64(const uint8_t *in, size_t n, char *out) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0, o = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = tab[v >> 18], out[o++] = tab[(v >> 12) & 63];
    out[o++] = tab[(v >> 6) & 63], out[o++] = tab[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    out[o++] = tab[v >> 18], out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = 0;
}

/* ---- latency histogram (log-linear, < 1% error) --------------------------- */

#define SUB 128 /* linear sub-buckets per power of two */
#define NBUCKETS (SUB + 57 * SUB)
static uint64_t hist[NBUCKETS];
uint64_t wsc_hist_n, wsc_hist_max;
double wsc_hist_sum;

static int bucket_of(uint64_t v) {
  if (v < SUB)
    return (int)v;
  int e = 63 - __builtin_clzll(v); /* >= 7 */
  int shift = e - 7;
  return SUB + shift * SUB + (int)((v >> shift) - SUB);
}

static double bucket_mid(int i) {
  if (i < SUB)
    return i;
  int shift = (i - SUB) / SUB;
  uint64_t lo = (uint64_t)(SUB + (i - SUB) % SUB) << shift;
  return (double)lo + ((double)((uint64_t)1 << shift) - 1) / 2;
}

void wsc_hist_add(uint64_t ns) {
  hist[bucket_of(ns)]++;
  wsc_hist_n++;
  wsc_hist_sum += (double)ns;
  if (ns > wsc_hist_max)
    wsc_hist_max = ns;
}

double wsc_hist_pct(double p) { /* ns */
  if (!wsc_hist_n)
    return 0;
  uint64_t rank = (uint64_t)(p * (double)wsc_hist_n + 0.5), seen = 0;
  if (rank < 1)
    rank = 1;
  if (rank > wsc_hist_n)
    rank = wsc_hist_n;
  for (int i = 0; i < NBUCKETS; i++) {
    seen += hist[i];
    if (seen >= rank) {
      double m = bucket_mid(i);
      return m > (double)wsc_hist_max ? (double)wsc_hist_max : m;
    }
  }
  return (double)wsc_hist_max;
}

/* ---- output ------------------------------------------------------------------ */

wsc_ops wsc_hooks;
const char *wsc_host = "127.0.0.1", *wsc_path = "/";
int wsc_port;
const char *wsc_extra_headers = "";

void wsc_buf_reserve(wsc_buf *b, size_t more) {
  if (b->len + more <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p)
    wsc_fatal(-1, "out of memory");
  b->p = p, b->cap = cap;
}

static void on_write(uv_write_t *req, int status);

void wsc_flush(wsc_conn *c) {
  if (c->writing || !c->out.len || c->state == WSC_CLOSED)
    return;
  uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)c->out.len) {
    c->out.len = 0;
    return;
  }
  if (r < 0 && r != UV_EAGAIN)
    wsc_fatal(c->id, "write: %s", uv_strerror(r));
  if (r < 0)
    r = 0;
  wsc_buf t = c->wbuf;
  c->wbuf = c->out;
  c->out = t;
  c->out.len = 0;
  b = uv_buf_init(c->wbuf.p + r, (unsigned)(c->wbuf.len - (size_t)r));
  c->writing = 1;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r)
    wsc_fatal(c->id, "write: %s", uv_strerror(r));
}

static void on_write(uv_write_t *req, int status) {
  wsc_conn *c = req->data;
  c->writing = 0;
  c->wbuf.len = 0;
  if (status == UV_ECANCELED && c->state == WSC_CLOSED)
    return;
  if (status < 0)
    wsc_fatal(c->id, "write: %s", uv_strerror(status));
  wsc_flush(c);
}

void wsc_put_frame(wsc_conn *c, int op, int rsv1, const uint8_t *data, size_t len) {
  wsc_buf_reserve(&c->out, len + 14);
  uint8_t *h = (uint8_t *)c->out.p + c->out.len, *d;
  h[0] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | op);
  if (len < 126) {
    h[1] = (uint8_t)(0x80 | len);
    d = h + 2;
  } else if (len < 65536) {
    h[1] = 0x80 | 126;
    h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len;
    d = h + 4;
  } else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
      h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    d = h + 10;
  }
  uint32_t m32 = (uint32_t)wsc_rng();
  memcpy(d, &m32, 4);
  uint8_t *mask = d;
  d += 4;
  uint64_t m64 = (uint64_t)m32 << 32 | m32;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t v;
    memcpy(&v, data + i, 8);
    v ^= m64;
    memcpy(d + i, &v, 8);
  }
  for (; i < len; i++)
    d[i] = data[i] ^ mask[i & 3];
  c->out.len = (size_t)(d + len - (uint8_t *)c->out.p);
}

void wsc_send_close(wsc_conn *c) {
  uint8_t code[2] = {1000 >> 8, 1000 & 0xff};
  wsc_put_frame(c, 8, 0, code, 2);
  c->sent_close = 1;
}

static void on_handle_closed(uv_handle_t *h) { wsc_hooks.closed(h->data); }

void wsc_close(wsc_conn *c) {
  if (c->state == WSC_CLOSED)
    return;
  c->state = WSC_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- incoming frames ------------------------------------------------------ */

int wsc_frame_rsv(wsc_conn *c) {
  const uint8_t *h = c->hdr;
  c->f_fin = h[0] >> 7;
  c->f_op = h[0] & 15;
  if (h[1] & 0x80)
    wsc_fatal(c->id, "server frame is masked (opcode %d)", c->f_op);
  return (h[0] >> 4) & 7;
}

uint64_t wsc_frame_len(wsc_conn *c) {
  const uint8_t *h = c->hdr;
  uint64_t len = h[1] & 127;
  if (len == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    if (len < 126)
      wsc_fatal(c->id, "16-bit length %" PRIu64 " not minimal", len);
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | h[2 + i];
    if (len >> 63)
      wsc_fatal(c->id, "64-bit length with the top bit set");
    if (len < 65536)
      wsc_fatal(c->id, "64-bit length %" PRIu64 " not minimal", len);
  }
  c->remaining = len;
  c->in_payload = 1;
  if (c->state == WSC_CLOSE_RCVD)
    wsc_fatal(c->id, "frame (opcode %d) after the server's close frame", c->f_op);
  switch (c->f_op) {
  case 8:
  case 9:
  case 10:
    if (!c->f_fin)
      wsc_fatal(c->id, "fragmented control frame (opcode %d)", c->f_op);
    if (len > 125)
      wsc_fatal(c->id, "control frame (opcode %d) of %" PRIu64 " bytes", c->f_op, len);
    c->ctrl_len = 0;
    break;
  case 0:
    if (!c->in_msg)
      wsc_fatal(c->id, "continuation frame without a message in progress");
    break;
  case 1:
  case 2:
    break;
  default:
    wsc_fatal(c->id, "reserved opcode %d", c->f_op);
  }
  return len;
}

static void frame_data(wsc_conn *c, const uint8_t *p, size_t n) {
  if (c->f_op >= 8) {
    memcpy(c->ctrl + c->ctrl_len, p, n);
    c->ctrl_len += n;
    return;
  }
  wsc_hooks.frame_data(c, p, n);
}

static void frame_end(wsc_conn *c, uint64_t now) {
  c->in_payload = 0;
  c->hdr_len = 0;
  c->hdr_need = 2;
  switch (c->f_op) {
  case 8: {
    int code = c->ctrl_len >= 2 ? c->ctrl[0] << 8 | c->ctrl[1] : 1005;
    if (c->ctrl_len == 1)
      wsc_fatal(c->id, "close frame with a 1-byte payload");
    if (!c->sent_close)
      wsc_fatal(c->id, "server closed the connection (close code %d, reason '%.*s')",
                code, (int)(c->ctrl_len > 2 ? c->ctrl_len - 2 : 0), c->ctrl + 2);
    if (wsc_hooks.close_check)
      wsc_hooks.close_check(c);
    if (c->in_msg)
      wsc_fatal(c->id, "close frame inside a fragmented message");
    c->state = WSC_CLOSE_RCVD; /* the server closes TCP next */
    return;
  }
  case 9:
    wsc_put_frame(c, 10, 0, c->ctrl, c->ctrl_len); /* flushed by the caller */
    return;
  case 10:
    return;
  default:
    if (c->f_fin)
      wsc_hooks.message_end(c, now);
  }
}

static void feed(wsc_conn *c, const uint8_t *p, size_t n, uint64_t now) {
  while (n > 0) {
    if (!c->in_payload) {
      /* Fast path: a whole unfragmented, unmasked short text frame in the
       * buffer is checked where it lies. */
      if (wsc_hooks.short_text && c->hdr_len == 0 && n >= 2 && p[0] == 0x81 &&
          p[1] < 126 && (size_t)p[1] + 2 <= n && !c->in_msg &&
          c->state != WSC_CLOSE_RCVD) {
        size_t len = p[1];
        wsc_hooks.short_text(c, p + 2, len, now);
        p += 2 + len, n -= 2 + len;
        continue;
      }
      size_t take = c->hdr_need - c->hdr_len;
      if (take > n)
        take = n;
      memcpy(c->hdr + c->hdr_len, p, take);
      c->hdr_len += take, p += take, n -= take;
      if (c->hdr_len == 2) {
        uint8_t l = c->hdr[1] & 127;
        c->hdr_need = 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + (c->hdr[1] & 0x80 ? 4 : 0);
      }
      if (c->hdr_len < c->hdr_need)
        continue;
      wsc_hooks.frame_begin(c);
      if (c->remaining == 0)
        frame_end(c, now);
      continue;
    }
    size_t take = c->remaining < n ? (size_t)c->remaining : n;
    frame_data(c, p, take);
    p += take, n -= take;
    c->remaining -= take;
    if (c->remaining == 0)
      frame_end(c, now);
  }
}

/* ---- handshake ------------------------------------------------------------ */

/* Returns the value of header `name` (NUL-terminated in place) or NULL. */
static char *header(char *hdrs, const char *name) {
  size_t nl = strlen(name);
  for (char *line = hdrs; line && *line;) {
    char *eol = strstr(line, "\r\n");
    if (!eol)
      break;
    if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 &&
        line[nl] == ':') {
      char *v = line + nl + 1, *e = eol;
      while (*v == ' ' || *v == '\t')
        v++;
      while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
      static char val[512];
      size_t vl = (size_t)(e - v) < sizeof val - 1 ? (size_t)(e - v) : sizeof val - 1;
      memcpy(val, v, vl);
      val[vl] = 0;
      return val;
    }
    line = eol + 2;
  }
  return NULL;
}

static int has_token(const char *list, const char *tok) {
  size_t tl = strlen(tok);
  for (const char *p = list; *p;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    const char *s = p;
    while (*p && *p != ',')
      p++;
    const char *e = p;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
      e--;
    if ((size_t)(e - s) == tl && strncasecmp(s, tok, tl) == 0)
      return 1;
  }
  return 0;
}

/* Handshake bytes arrived; returns how many of `n` belong to it (the rest
 * are frames). *done is set once the headers are complete. */
static size_t handshake_data(wsc_conn *c, const char *p, size_t n, int *done) {
  size_t old = c->hs_len, take = n;
  *done = 0;
  if (old + take > WSC_HS_MAX)
    take = WSC_HS_MAX - old;
  memcpy(c->hs + old, p, take);
  c->hs_len += take;
  c->hs[c->hs_len] = 0;
  char *end = strstr(c->hs, "\r\n\r\n");
  if (!end) {
    if (c->hs_len >= WSC_HS_MAX)
      wsc_fatal(c->id, "handshake response headers exceed %d bytes", WSC_HS_MAX);
    return n;
  }
  size_t hdr_len = (size_t)(end + 4 - c->hs);
  end[2] = 0; /* keep the last CRLF for header() */
  char *eol = strstr(c->hs, "\r\n");
  if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || (c->hs[12] != ' ' && c->hs[12] != '\r'))
    wsc_fatal(c->id, "handshake: expected 'HTTP/1.1 101', got '%.*s'",
              (int)(eol - c->hs), c->hs);
  char *v;
  if (!(v = header(eol + 2, "Upgrade")) || strcasecmp(v, "websocket") != 0)
    wsc_fatal(c->id, "handshake: Upgrade is '%s', want 'websocket'", v ? v : "(missing)");
  if (!(v = header(eol + 2, "Connection")) || !has_token(v, "upgrade"))
    wsc_fatal(c->id, "handshake: Connection is '%s', want 'Upgrade'", v ? v : "(missing)");
  if (!(v = header(eol + 2, "Sec-WebSocket-Accept")) || strcmp(v, c->accept) != 0)
    wsc_fatal(c->id, "handshake: Sec-WebSocket-Accept is '%s', want '%s'",
              v ? v : "(missing)", c->accept);
  v = header(eol + 2, "Sec-WebSocket-Extensions");
  if (wsc_hooks.handshake_ext)
    wsc_hooks.handshake_ext(c, v);
  else if (v)
    wsc_fatal(c->id, "handshake: server chose extensions '%s' that were not offered", v);
  free(c->hs);
  c->hs = NULL;
  c->state = WSC_OPEN;
  *done = 1;
  return hdr_len - old; /* bytes of this read that were headers */
}

static uint8_t rbuf[256 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h, (void)suggested;
  *b = uv_buf_init((char *)rbuf, sizeof rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  wsc_conn *c = s->data;
  if (nread == 0 || c->state == WSC_CLOSED)
    return;
  if (nread < 0) {
    if (c->state == WSC_CLOSE_RCVD) { /* the server closed after its close frame */
      wsc_close(c);
      return;
    }
    if (nread == UV_EOF)
      wsc_fatal(c->id, "server closed the TCP connection %s",
                c->state == WSC_HANDSHAKE ? "during the handshake"
                                          : "without a close frame");
    wsc_fatal(c->id, "read: %s", uv_strerror((int)nread));
  }
  uint64_t now = uv_hrtime();
  const uint8_t *p = (const uint8_t *)b->base;
  size_t n = (size_t)nread;
  if (c->state == WSC_HANDSHAKE) {
    int done;
    size_t used = handshake_data(c, (const char *)p, n, &done);
    if (!done)
      return;
    p += used, n -= used;
    wsc_hooks.opened(c);
  }
  feed(c, p, n, now);
  wsc_flush(c);
}

static void on_connect(uv_connect_t *req, int status) {
  wsc_conn *c = req->data;
  if (status < 0)
    wsc_fatal(c->id, "connect to %s:%d: %s", wsc_host, wsc_port, uv_strerror(status));
  uv_tcp_nodelay(&c->tcp, 1);
  uint8_t key[16], digest[20];
  char key64[32], cat[96];
  wsc_os_random(key, sizeof key);
  base64(key, sizeof key, key64);
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key64);
  sha1(cat, strlen(cat), digest);
  base64(digest, sizeof digest, c->accept);
  char target[1024], req_s[1024];
  if (wsc_hooks.target)
    wsc_hooks.target(c, target, sizeof target);
  else
    snprintf(target, sizeof target, "%s", wsc_path);
  int len = snprintf(req_s, sizeof req_s,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s"
                     "User-Agent: %s\r\n"
                     "\r\n",
                     target, wsc_host, wsc_port, key64, wsc_extra_headers, wsc_prog);
  if (len < 0 || (size_t)len >= sizeof req_s)
    wsc_fatal(c->id, "request path too long");
  c->state = WSC_HANDSHAKE;
  c->hs = wsc_xmalloc(WSC_HS_MAX + 1);
  wsc_buf_reserve(&c->out, (size_t)len);
  memcpy(c->out.p, req_s, (size_t)len);
  c->out.len = (size_t)len;
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r)
    wsc_fatal(c->id, "read_start: %s", uv_strerror(r));
  wsc_flush(c);
}

void wsc_connect(wsc_conn *c, uv_loop_t *loop, const struct sockaddr_in *addr) {
  int r;
  c->hdr_need = 2;
  c->tcp.data = c;
  c->creq.data = c;
  c->wreq.data = c;
  if ((r = uv_tcp_init(loop, &c->tcp)))
    wsc_fatal(c->id, "tcp_init: %s", uv_strerror(r));
  if ((r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)addr, on_connect)))
    wsc_fatal(c->id, "connect: %s", uv_strerror(r));
}
