/* chat_load: the client side of Bun's WebSocket chat benchmark
 * (oven-sh/bun, bench/websocket-server), in C on libuv (it uses none of
 * talon's code), fast enough to keep a one-core server busy.
 *
 * The protocol (bench/chat_server.c, bench/bunchat/chat-server.js): every
 * client connects to ws://HOST:PORT/PATH?name=NAME and is subscribed to one
 * room; once CLIENTS_COUNT clients are connected the server publishes the
 * text "ready" to all of them; from then on every message M a client sends
 * is published to the room as "NAME: M", the sender included, so every
 * message reaches every client.
 *
 * This program connects -c clients named user0, user1, ... (the server
 * must expect exactly that many: CLIENTS_COUNT), does the RFC 6455 client
 * handshake on each (random key; checks the 101, Upgrade, Connection,
 * Sec-WebSocket-Accept, and that no extension was chosen) and waits until
 * every client has received "ready". Then each client keeps -k messages in
 * flight: a message is in flight from its send until the sender receives
 * it back from the room, and each one that comes back is replaced by the
 * next at once. -k 1 is bound by round trips; a larger -k (or more
 * clients) keeps the server busy.
 *
 *   chat_load [-c clients] [-k inflight] [-d seconds] [-w warmup] [-s size]
 *             [-p path] [-P server_pid] [-H ipv4] PORT
 *
 *   -c N   clients (= the server's CLIENTS_COUNT)   [16]
 *   -k N   messages in flight per client            [1]
 *   -d S   measured seconds                         [10]
 *   -w S   warm-up seconds (after "ready"), not counted [1]
 *   -s N   bytes of one message sent                [16]  (at least 9)
 *   -p P   request path (the name is appended as ?name=) [/]
 *   -P PID the server's pid: its CPU time (utime + stime of all threads,
 *          /proc/PID/stat) is read at the start and end of the measured
 *          window, giving its CPU use and the messages per CPU-second
 *   -H IP  server IPv4 address                      [127.0.0.1]
 *
 * A message is its sequence number (8 hex digits), a space and filler text
 * (printable ASCII) that depends on sender and sequence number. Every
 * message received is checked whole: the first must be the text "ready";
 * each later one must be a text message "NAME: " + a message, with NAME a
 * client of this run, and per receiver and sender the sequence number must
 * be exactly the next one, with the right filler. So a lost message (one
 * skipped), a duplicate, a reordering within one sender's messages, a
 * message never sent, a wrong name or format and corrupted bytes are all
 * errors. Split reads, fragmented messages, pings (answered with a pong)
 * and pongs are handled; a masked server frame, RSV bits, a bad opcode, a
 * non-minimal length, an unsolicited close frame or TCP close is a protocol
 * error. If nothing arrives for 5 s while messages are owed, the missing
 * ones are listed and the run fails.
 *
 * Messages received during the warm-up are not counted; then for -d seconds
 * it counts messages received by all clients (the headline number, like
 * Bun's client: messages received per second), messages sent, and each
 * message's round trip (send to the sender's own copy coming back). When
 * the time is up no new message is sent; every message sent must then
 * reach every client (checked: exact counts per receiver and sender), then
 * each connection sends a close frame (1000) and waits for the server's.
 *
 * Output: details on stderr and one line on stdout,
 *   RESULT msgs_per_s=N sent_per_s=N rtt_p50_us=X rtt_p99_us=X
 *          server_cpu_pct=X msgs_per_server_cpu_s=N client_cpu_pct=X
 *          received=N sent=N secs=X all_received=N clients=N inflight=N size=N
 * (on one line; the server_* fields are 0 without -P). Exit status 0 on
 * success, 1 on a usage error, a failed connection or handshake, a
 * protocol error or a wrong, lost, duplicated or reordered message.
 *
 * Build: gcc -O2 -o chat_load chat_load.c -luv
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#define SETUP_TIMEOUT_MS 15000 /* connect + handshake + "ready" */
#define STALL_MS 5000          /* nothing received for this long: lost */
#define CLOSE_TIMEOUT_MS 5000  /* close handshake at the end */
#define HS_MAX 8192            /* handshake response headers */
#define PAT_SPREAD 251         /* filler of (id, seq) starts at pattern[..% 251] */
#define SEQ_LEN 9              /* 8 hex digits + ' ' */
#define NAME_PREFIX "user"
#define NAME_ROOM 24           /* "user" + digits + ": " fits */

/* ---- settings ------------------------------------------------------------ */

static int opt_clients = 16;
static unsigned opt_inflight = 1;
static double opt_secs = 10;
static double opt_warmup = 1;
static size_t opt_size = 16;
static const char *opt_path = "/";
static int opt_pid = 0;
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;

/* ---- errors -------------------------------------------------------------- */

static void fatal(int conn, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  if (conn >= 0)
    fprintf(stderr, "chat_load: error: client %d (" NAME_PREFIX "%d): ", conn, conn);
  else
    fprintf(stderr, "chat_load: error: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    fatal(-1, "out of memory (%zu bytes)", n);
  return p;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size);
  if (!p)
    fatal(-1, "out of memory");
  return p;
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

/* ---- random numbers (mask keys, filler) -------------------------------- */

static uint64_t rng_state;

static uint64_t rng(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}

static void os_random(void *p, size_t n) {
  int r = uv_random(NULL, NULL, p, n, 0, NULL);
  if (r)
    fatal(-1, "uv_random: %s", uv_strerror(r));
}

/* ---- latency histogram (log-linear, < 1% error) --------------------------- */

#define SUB 128 /* linear sub-buckets per power of two */
#define NBUCKETS (SUB + 57 * SUB)
static uint64_t hist[NBUCKETS];
static uint64_t hist_n, hist_max;
static double hist_sum;

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

static void hist_add(uint64_t ns) {
  hist[bucket_of(ns)]++;
  hist_n++;
  hist_sum += (double)ns;
  if (ns > hist_max)
    hist_max = ns;
}

static double hist_pct(double p) { /* ns */
  if (!hist_n)
    return 0;
  uint64_t rank = (uint64_t)(p * (double)hist_n + 0.5), seen = 0;
  if (rank < 1)
    rank = 1;
  if (rank > hist_n)
    rank = hist_n;
  for (int i = 0; i < NBUCKETS; i++) {
    seen += hist[i];
    if (seen >= rank) {
      double m = bucket_mid(i);
      return m > (double)hist_max ? (double)hist_max : m;
    }
  }
  return (double)hist_max;
}

/* ---- connections ---------------------------------------------------------- */

enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CLOSING };
static int phase = PH_SETUP;

enum { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSE_RCVD, CS_CLOSED };

typedef struct {
  char *p;
  size_t len, cap;
} buf;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  int id;
  int state;
  int ready;       /* "ready" received */
  char accept[32]; /* expected Sec-WebSocket-Accept */
  char *hs;        /* handshake response so far */
  size_t hs_len;
  /* Output: frames are appended to `out`; `wbuf` is being written. */
  buf out, wbuf;
  int writing;
  int sent_close;
  /* Frame parser (the slow path, for frames split across reads). */
  uint8_t hdr[14];
  size_t hdr_len, hdr_need;
  int in_payload;
  int f_fin, f_op;
  uint64_t remaining;
  int in_msg;   /* a data message is in progress (maybe fragmented) */
  uint8_t *msg; /* its bytes so far (at most msg_cap) */
  size_t msg_len;
  uint8_t ctrl[125];
  size_t ctrl_len;
  /* expect[j]: the sequence number of the next message due from client j
   * (all of 0..expect[j]-1 arrived, in order, once each). */
  uint32_t *expect;
  uint32_t sent;     /* messages sent: 0..sent-1 */
  uint64_t *t_sent;  /* send time of message seq, at [seq % inflight] */
  uint64_t received; /* messages received after "ready" */
} conn;

static uv_loop_t *loop;
static conn *conns;
static uint8_t *pattern; /* opt_size + PAT_SPREAD bytes of filler */
static uint8_t *scratch; /* one outgoing message */
static size_t msg_cap;   /* longest message a client can receive */
static int n_open, n_ready, n_closed;
static uint64_t total_sent, total_received;  /* since "ready" */
static uint64_t n_recv, n_sent;              /* in the measured window */
static uint64_t t_start, t_end;              /* measured window, ns */
static double srv_cpu0 = -1, srv_cpu1 = -1;  /* server CPU seconds */
static double cli_cpu0, cli_cpu1;            /* our CPU seconds */
static uv_timer_t t_setup, t_phase, t_close, t_watch;
static uint64_t watch_received, watch_last_recv;
static unsigned watch_idle_ms, watch_secs;
static int close_unanswered;

static void buf_reserve(buf *b, size_t more) {
  if (b->len + more <= b->cap)
    return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p)
    fatal(-1, "out of memory");
  b->p = p, b->cap = cap;
}

static void on_write(uv_write_t *req, int status);

/* Sends what `out` holds unless a write is in progress (then on_write does). */
static void flush(conn *c) {
  if (c->writing || !c->out.len || c->state == CS_CLOSED)
    return;
  uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)c->out.len) {
    c->out.len = 0;
    return;
  }
  if (r < 0 && r != UV_EAGAIN)
    fatal(c->id, "write: %s", uv_strerror(r));
  if (r < 0)
    r = 0;
  buf t = c->wbuf;
  c->wbuf = c->out;
  c->out = t;
  c->out.len = 0;
  b = uv_buf_init(c->wbuf.p + r, (unsigned)(c->wbuf.len - (size_t)r));
  c->writing = 1;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r)
    fatal(c->id, "write: %s", uv_strerror(r));
}

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  c->wbuf.len = 0;
  if (status == UV_ECANCELED && c->state == CS_CLOSED)
    return;
  if (status < 0)
    fatal(c->id, "write: %s", uv_strerror(status));
  flush(c);
}

/* Appends one masked frame (FIN set) to `out`. */
static void put_frame(conn *c, int op, const uint8_t *data, size_t len) {
  buf_reserve(&c->out, len + 14);
  uint8_t *h = (uint8_t *)c->out.p + c->out.len, *d;
  h[0] = (uint8_t)(0x80 | op);
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
  uint32_t m32 = (uint32_t)rng();
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

/* ---- CPU time --------------------------------------------------------------- */

/* utime + stime of process `pid` (all its threads), in seconds; -1 if
 * unreadable. */
static double proc_cpu(int pid) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = 0;
  char *p = strrchr(line, ')');
  if (!p)
    return -1;
  unsigned long long ut, st;
  /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime stime */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
             &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- messages ------------------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

static void put_hex32(uint8_t *p, uint32_t v) {
  for (int i = 7; i >= 0; i--, v >>= 4)
    p[i] = (uint8_t)hexdig[v & 15];
}

static int get_hex32(const uint8_t *p, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 8; i++) {
    int d;
    if (p[i] >= '0' && p[i] <= '9')
      d = p[i] - '0';
    else if (p[i] >= 'a' && p[i] <= 'f')
      d = p[i] - 'a' + 10;
    else
      return -1;
    v = v << 4 | (uint32_t)d;
  }
  *out = v;
  return 0;
}

static const uint8_t *filler(uint32_t id, uint32_t seq) {
  return pattern + (id * 37u + seq) % PAT_SPREAD;
}

/* Client `c` sends its next message. */
static void send_msg(conn *c, uint64_t now) {
  uint32_t seq = c->sent++;
  put_hex32(scratch, seq);
  scratch[8] = ' ';
  memcpy(scratch + SEQ_LEN, filler((uint32_t)c->id, seq), opt_size - SEQ_LEN);
  put_frame(c, 1, scratch, opt_size);
  c->t_sent[seq % opt_inflight] = now;
  total_sent++;
  if (phase == PH_MEASURE)
    n_sent++;
}

static void start_closing(void);

static uint64_t owed(void) { return total_sent * (uint64_t)opt_clients - total_received; }

/* Lists what is missing (which receiver lacks which sender's messages) and
 * fails. */
static void fail_missing(const char *why) {
  int lines = 0;
  fflush(stdout);
  for (int i = 0; i < opt_clients; i++)
    for (int j = 0; j < opt_clients; j++) {
      if (conns[i].expect[j] >= conns[j].sent)
        continue;
      if (lines++ < 12)
        fprintf(stderr, "chat_load:   client %d has messages 0..%" PRId64
                " of client %d, which sent 0..%u\n", i,
                (int64_t)conns[i].expect[j] - 1, j, conns[j].sent - 1);
    }
  if (lines > 12)
    fprintf(stderr, "chat_load:   (%d more receiver/sender pairs)\n", lines - 12);
  fatal(-1, "%s: %" PRIu64 " message(s) sent and not received (lost); %" PRIu64
        " sent, %" PRIu64 " received in all", why, owed(), total_sent, total_received);
}

static void start_run(void);

/* A whole data message `m` of `len` bytes arrived on `c`: check and count
 * it. */
static void message_done(conn *c, const uint8_t *m, size_t len, uint64_t now) {
  if (!c->ready) {
    if (len != 5 || memcmp(m, "ready", 5) != 0)
      fatal(c->id, "the first message is '%.*s', want 'ready'", (int)(len < 80 ? len : 80),
            (const char *)m);
    c->ready = 1;
    if (++n_ready == opt_clients)
      start_run();
    return;
  }
  /* "user<id>: <seq> <filler>" */
  size_t pl = sizeof NAME_PREFIX - 1, i = pl;
  uint32_t from = 0, seq;
  if (len < pl + 3 + opt_size || memcmp(m, NAME_PREFIX, pl) != 0)
    goto bad;
  if (m[i] < '0' || m[i] > '9' || (m[i] == '0' && m[i + 1] != ':'))
    goto bad;
  while (i < len && m[i] >= '0' && m[i] <= '9' && i < pl + 6)
    from = from * 10 + (uint32_t)(m[i++] - '0');
  if (i + 2 + opt_size != len || m[i] != ':' || m[i + 1] != ' ')
    goto bad;
  if (from >= (uint32_t)opt_clients)
    fatal(c->id, "received a message from unknown client '%.*s'", (int)i, (const char *)m);
  m += i + 2;
  if (get_hex32(m, &seq) || m[8] != ' ')
    goto bad;
  uint32_t want = c->expect[from];
  if (seq >= conns[from].sent)
    fatal(c->id, "received message %u of client %u, which sent only 0..%u%s", seq,
          from, conns[from].sent - 1, seq < want ? "" : " (duplicate or corrupted)");
  if (seq < want)
    fatal(c->id, "duplicate: message %u of client %u again (had 0..%u already)", seq,
          from, want - 1);
  if (seq > want)
    fatal(c->id, "message %u of client %u arrived while %u was due: %u message(s) "
          "lost or reordered", seq, from, want, seq - want);
  const uint8_t *f = filler(from, seq);
  for (size_t k = SEQ_LEN; k < opt_size; k++)
    if (m[k] != f[k - SEQ_LEN])
      fatal(c->id, "message %u of client %u corrupted: '%.*s'", seq, from, (int)opt_size,
          (const char *)m);
  c->expect[from] = seq + 1;
  c->received++;
  total_received++;
  if (phase == PH_MEASURE)
    n_recv++;
  if (from == (uint32_t)c->id) { /* our own message is back */
    if (phase == PH_MEASURE)
      hist_add(now - c->t_sent[seq % opt_inflight]);
    if (phase == PH_WARMUP || phase == PH_MEASURE)
      send_msg(c, now);
  }
  if (phase == PH_DRAIN && total_received == total_sent * (uint64_t)opt_clients)
    start_closing();
  return;
bad:
  if (len == 5 && memcmp(m, "ready", 5) == 0)
    fatal(c->id, "a second 'ready'");
  fatal(c->id, "received '%.*s', want '" NAME_PREFIX "<id>: ' and a %zu-byte message",
        (int)(len < 120 ? len : 120), (const char *)m, opt_size);
}

static void send_close(conn *c) {
  uint8_t code[2] = {1000 >> 8, 1000 & 0xff};
  put_frame(c, 8, code, 2);
  c->sent_close = 1;
}

static void on_handle_closed(uv_handle_t *h);

static void close_conn(conn *c) {
  if (c->state == CS_CLOSED)
    return;
  c->state = CS_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- incoming frames ------------------------------------------------------ */

static void frame_begin(conn *c) {
  const uint8_t *h = c->hdr;
  int rsv = (h[0] >> 4) & 7;
  uint64_t len = h[1] & 127;
  c->f_fin = h[0] >> 7;
  c->f_op = h[0] & 15;
  if (h[1] & 0x80)
    fatal(c->id, "server frame is masked (opcode %d)", c->f_op);
  if (rsv)
    fatal(c->id, "RSV bits 0x%x set without a negotiated extension", rsv);
  if (len == 126) {
    len = (uint64_t)h[2] << 8 | h[3];
    if (len < 126)
      fatal(c->id, "16-bit length %" PRIu64 " not minimal", len);
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | h[2 + i];
    if (len >> 63)
      fatal(c->id, "64-bit length with the top bit set");
    if (len < 65536)
      fatal(c->id, "64-bit length %" PRIu64 " not minimal", len);
  }
  c->remaining = len;
  c->in_payload = 1;
  if (c->state == CS_CLOSE_RCVD)
    fatal(c->id, "frame (opcode %d) after the server's close frame", c->f_op);
  switch (c->f_op) {
  case 8:
  case 9:
  case 10:
    if (!c->f_fin)
      fatal(c->id, "fragmented control frame (opcode %d)", c->f_op);
    if (len > 125)
      fatal(c->id, "control frame (opcode %d) of %" PRIu64 " bytes", c->f_op, len);
    c->ctrl_len = 0;
    return;
  case 0:
    if (!c->in_msg)
      fatal(c->id, "continuation frame without a message in progress");
    break;
  case 1:
    if (c->in_msg)
      fatal(c->id, "new data frame inside a fragmented message");
    c->in_msg = 1;
    c->msg_len = 0;
    break;
  case 2:
    fatal(c->id, "received a binary message (all are text)");
    break;
  default:
    fatal(c->id, "reserved opcode %d", c->f_op);
  }
  if (c->msg_len + len > msg_cap)
    fatal(c->id, "received a message of at least %" PRIu64 " bytes, the longest "
          "possible is %zu", c->msg_len + len, msg_cap);
}

static void frame_data(conn *c, const uint8_t *p, size_t n) {
  if (c->f_op >= 8) {
    memcpy(c->ctrl + c->ctrl_len, p, n);
    c->ctrl_len += n;
    return;
  }
  memcpy(c->msg + c->msg_len, p, n);
  c->msg_len += n;
}

static void frame_end(conn *c, uint64_t now) {
  c->in_payload = 0;
  c->hdr_len = 0;
  c->hdr_need = 2;
  switch (c->f_op) {
  case 8: {
    int code = c->ctrl_len >= 2 ? c->ctrl[0] << 8 | c->ctrl[1] : 1005;
    if (c->ctrl_len == 1)
      fatal(c->id, "close frame with a 1-byte payload");
    if (!c->sent_close)
      fatal(c->id, "server closed the connection (close code %d, reason '%.*s')",
            code, (int)(c->ctrl_len > 2 ? c->ctrl_len - 2 : 0), c->ctrl + 2);
    if (c->in_msg)
      fatal(c->id, "close frame inside a fragmented message");
    c->state = CS_CLOSE_RCVD; /* the server closes TCP next */
    return;
  }
  case 9:
    put_frame(c, 10, c->ctrl, c->ctrl_len); /* flushed by the caller */
    return;
  case 10:
    return;
  default:
    if (c->f_fin) {
      c->in_msg = 0;
      message_done(c, c->msg, c->msg_len, now);
    }
  }
}

static void feed(conn *c, const uint8_t *p, size_t n, uint64_t now) {
  while (n > 0) {
    if (!c->in_payload) {
      /* Fast path: a whole unfragmented, unmasked short text frame in the
       * buffer is checked where it lies. */
      if (c->hdr_len == 0 && n >= 2 && p[0] == 0x81 && p[1] < 126 &&
          (size_t)p[1] + 2 <= n && !c->in_msg && c->state != CS_CLOSE_RCVD) {
        size_t len = p[1];
        message_done(c, p + 2, len, now);
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
      frame_begin(c);
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
static size_t handshake_data(conn *c, const char *p, size_t n, int *done) {
  size_t old = c->hs_len, take = n;
  *done = 0;
  if (old + take > HS_MAX)
    take = HS_MAX - old;
  memcpy(c->hs + old, p, take);
  c->hs_len += take;
  c->hs[c->hs_len] = 0;
  char *end = strstr(c->hs, "\r\n\r\n");
  if (!end) {
    if (c->hs_len >= HS_MAX)
      fatal(c->id, "handshake response headers exceed %d bytes", HS_MAX);
    return n;
  }
  size_t hdr_len = (size_t)(end + 4 - c->hs);
  end[2] = 0; /* keep the last CRLF for header() */
  char *eol = strstr(c->hs, "\r\n");
  if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || (c->hs[12] != ' ' && c->hs[12] != '\r'))
    fatal(c->id, "handshake: expected 'HTTP/1.1 101', got '%.*s'",
          (int)(eol - c->hs), c->hs);
  char *v;
  if (!(v = header(eol + 2, "Upgrade")) || strcasecmp(v, "websocket") != 0)
    fatal(c->id, "handshake: Upgrade is '%s', want 'websocket'", v ? v : "(missing)");
  if (!(v = header(eol + 2, "Connection")) || !has_token(v, "upgrade"))
    fatal(c->id, "handshake: Connection is '%s', want 'Upgrade'", v ? v : "(missing)");
  if (!(v = header(eol + 2, "Sec-WebSocket-Accept")) || strcmp(v, c->accept) != 0)
    fatal(c->id, "handshake: Sec-WebSocket-Accept is '%s', want '%s'",
          v ? v : "(missing)", c->accept);
  if ((v = header(eol + 2, "Sec-WebSocket-Extensions")))
    fatal(c->id, "handshake: server chose extensions '%s' that were not offered", v);
  free(c->hs);
  c->hs = NULL;
  c->state = CS_OPEN;
  *done = 1;
  return hdr_len - old; /* bytes of this read that were headers */
}

static uint8_t rbuf[256 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h, (void)suggested;
  *b = uv_buf_init((char *)rbuf, sizeof rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  conn *c = s->data;
  if (nread == 0 || c->state == CS_CLOSED)
    return;
  if (nread < 0) {
    if (c->state == CS_CLOSE_RCVD) { /* the server closed after its close frame */
      close_conn(c);
      return;
    }
    if (nread == UV_EOF)
      fatal(c->id, "server closed the TCP connection %s",
            c->state == CS_HANDSHAKE ? "during the handshake"
                                     : "without a close frame");
    fatal(c->id, "read: %s", uv_strerror((int)nread));
  }
  uint64_t now = uv_hrtime();
  const uint8_t *p = (const uint8_t *)b->base;
  size_t n = (size_t)nread;
  if (c->state == CS_HANDSHAKE) {
    int done;
    size_t used = handshake_data(c, (const char *)p, n, &done);
    if (!done)
      return;
    p += used, n -= used;
    n_open++;
  }
  feed(c, p, n, now);
  flush(c);
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  if (status < 0)
    fatal(c->id, "connect to %s:%d: %s", opt_host, opt_port, uv_strerror(status));
  uv_tcp_nodelay(&c->tcp, 1);
  uint8_t key[16], digest[20];
  char key64[32], cat[96];
  os_random(key, sizeof key);
  base64(key, sizeof key, key64);
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key64);
  sha1(cat, strlen(cat), digest);
  base64(digest, sizeof digest, c->accept);
  char req_s[1024];
  int len = snprintf(req_s, sizeof req_s,
                     "GET %s?name=" NAME_PREFIX "%d HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "User-Agent: chat_load\r\n"
                     "\r\n",
                     opt_path, c->id, opt_host, opt_port, key64);
  if (len < 0 || (size_t)len >= sizeof req_s)
    fatal(c->id, "request path too long");
  c->state = CS_HANDSHAKE;
  c->hs = xmalloc(HS_MAX + 1);
  buf_reserve(&c->out, (size_t)len);
  memcpy(c->out.p, req_s, (size_t)len);
  c->out.len = (size_t)len;
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r)
    fatal(c->id, "read_start: %s", uv_strerror(r));
  flush(c);
}

/* ---- phases --------------------------------------------------------------- */

static void on_end(uv_timer_t *t);

static void begin_measure(void) {
  phase = PH_MEASURE;
  uv_update_time(loop); /* the timer counts from now, not from the loop turn */
  if (opt_pid)
    srv_cpu0 = proc_cpu(opt_pid);
  cli_cpu0 = self_cpu();
  t_start = uv_hrtime();
  watch_secs = 0;
  watch_last_recv = 0;
  uv_timer_start(&t_phase, on_end, (uint64_t)(opt_secs * 1000 + 0.5), 0);
}

static void on_warmup_done(uv_timer_t *t) {
  (void)t;
  begin_measure();
}

/* Every second: log the last second's rate while measuring; if messages
 * are owed and nothing arrived for STALL_MS, they were lost (or the server
 * hangs). */
static void on_watch(uv_timer_t *t) {
  (void)t;
  if (phase == PH_MEASURE) {
    fprintf(stderr, "chat_load: %2us: %" PRIu64 " messages received\n", ++watch_secs,
            n_recv - watch_last_recv);
    watch_last_recv = n_recv;
  }
  if (total_received != watch_received || owed() == 0) {
    watch_received = total_received;
    watch_idle_ms = 0;
    return;
  }
  watch_idle_ms += 1000;
  if (watch_idle_ms >= STALL_MS)
    fail_missing(phase == PH_DRAIN ? "the messages in flight at the end did not all "
                                     "arrive within 5 s"
                                   : "nothing received for 5 s");
}

/* Every client has "ready": the run starts. */
static void start_run(void) {
  uv_timer_stop(&t_setup);
  uint64_t now = uv_hrtime();
  phase = opt_warmup > 0 ? PH_WARMUP : PH_MEASURE;
  fprintf(stderr, "chat_load: %d clients ready, %u message(s) in flight each; warm-up "
          "%.1fs, then %.1fs measured\n", opt_clients, opt_inflight, opt_warmup,
          opt_secs);
  if (opt_warmup > 0)
    uv_timer_start(&t_phase, on_warmup_done, (uint64_t)(opt_warmup * 1000 + 0.5), 0);
  else
    begin_measure();
  for (int i = 0; i < opt_clients; i++) {
    for (unsigned k = 0; k < opt_inflight; k++)
      send_msg(&conns[i], now);
    flush(&conns[i]);
  }
  uv_timer_start(&t_watch, on_watch, 1000, 1000);
}

static void on_close_timeout(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < opt_clients; i++) {
    conn *c = &conns[i];
    if (c->state == CS_CLOSED)
      continue;
    if (c->state != CS_CLOSE_RCVD)
      close_unanswered++;
    close_conn(c);
  }
}

/* Every message sent has reached every client: close every connection. */
static void start_closing(void) {
  phase = PH_CLOSING;
  uv_timer_stop(&t_watch);
  for (int i = 0; i < opt_clients; i++) {
    send_close(&conns[i]);
    flush(&conns[i]);
  }
  uv_timer_start(&t_close, on_close_timeout, CLOSE_TIMEOUT_MS, 0);
}

static void on_end(uv_timer_t *t) {
  (void)t;
  t_end = uv_hrtime();
  if (opt_pid)
    srv_cpu1 = proc_cpu(opt_pid);
  cli_cpu1 = self_cpu();
  phase = PH_DRAIN;
  if (owed() == 0)
    start_closing();
  /* else the last message owed calls start_closing(); the watchdog fails
   * the run if that never comes. */
}

static void on_handle_closed(uv_handle_t *h) {
  (void)h;
  if (++n_closed == opt_clients) {
    uv_close((uv_handle_t *)&t_setup, NULL);
    uv_close((uv_handle_t *)&t_phase, NULL);
    uv_close((uv_handle_t *)&t_close, NULL);
    uv_close((uv_handle_t *)&t_watch, NULL);
  }
}

static void on_setup_timeout(uv_timer_t *t) {
  (void)t;
  fatal(-1, "after %d ms, %d of %d clients finished the handshake and %d received "
        "'ready' (does the server expect CLIENTS_COUNT=%d?)", SETUP_TIMEOUT_MS, n_open,
        opt_clients, n_ready, opt_clients);
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: chat_load [-c clients] [-k inflight] [-d seconds] [-w warmup] [-s size]\n"
          "                 [-p path] [-P server_pid] [-H ipv4] PORT\n");
  exit(1);
}

static long parse_int(const char *s, long lo, long hi, const char *what) {
  char *e;
  errno = 0;
  long v = strtol(s, &e, 10);
  if (errno || e == s || *e || v < lo || v > hi) {
    fprintf(stderr, "chat_load: %s must be an integer in [%ld, %ld], got '%s'\n", what,
            lo, hi, s);
    exit(1);
  }
  return v;
}

static double parse_secs(const char *s, double lo, const char *what) {
  char *e;
  double v = strtod(s, &e);
  if (e == s || *e || !(v >= lo) || v > 86400) {
    fprintf(stderr, "chat_load: %s must be a number of seconds >= %g, got '%s'\n", what,
            lo, s);
    exit(1);
  }
  return v;
}

int main(int argc, char **argv) {
  int ch;
  while ((ch = getopt(argc, argv, "c:k:d:w:s:p:P:H:")) != -1) {
    switch (ch) {
    case 'c': opt_clients = (int)parse_int(optarg, 1, 100000, "-c"); break;
    case 'k': opt_inflight = (unsigned)parse_int(optarg, 1, 1 << 16, "-k"); break;
    case 'd': opt_secs = parse_secs(optarg, 0.001, "-d"); break;
    case 'w': opt_warmup = parse_secs(optarg, 0, "-w"); break;
    case 's': opt_size = (size_t)parse_int(optarg, SEQ_LEN, 1 << 20, "-s"); break;
    case 'p': opt_path = optarg; break;
    case 'P': opt_pid = (int)parse_int(optarg, 1, 1 << 30, "-P"); break;
    case 'H': opt_host = optarg; break;
    default: usage();
    }
  }
  if (optind != argc - 1)
    usage();
  opt_port = (int)parse_int(argv[optind], 1, 65535, "PORT");
  if (opt_path[0] != '/' || strpbrk(opt_path, " \r\n?#"))
    fatal(-1, "path must start with '/' and contain no spaces, line breaks, '?' or '#'");
  if (opt_pid && proc_cpu(opt_pid) < 0)
    fatal(-1, "cannot read /proc/%d/stat", opt_pid);

  struct sockaddr_in addr;
  int r = uv_ip4_addr(opt_host, opt_port, &addr);
  if (r)
    fatal(-1, "bad IPv4 address '%s': %s", opt_host, uv_strerror(r));

  os_random(&rng_state, sizeof rng_state);
  rng_state |= 1;
  pattern = xmalloc(opt_size + PAT_SPREAD);
  for (size_t i = 0; i < opt_size + PAT_SPREAD; i++) /* printable ASCII: valid UTF-8 */
    pattern[i] = (uint8_t)(' ' + (rng() >> 32) % 95);
  scratch = xmalloc(opt_size);
  msg_cap = opt_size + NAME_ROOM;

  loop = uv_default_loop();
  uv_timer_init(loop, &t_setup);
  uv_timer_init(loop, &t_phase);
  uv_timer_init(loop, &t_close);
  uv_timer_init(loop, &t_watch);
  uv_timer_start(&t_setup, on_setup_timeout, SETUP_TIMEOUT_MS, 0);

  conns = xcalloc((size_t)opt_clients, sizeof *conns);
  size_t per_write = (size_t)opt_inflight * (opt_size + 14) + 256;
  for (int i = 0; i < opt_clients; i++) {
    conn *c = &conns[i];
    c->id = i;
    c->hdr_need = 2;
    c->msg = xmalloc(msg_cap);
    c->expect = xcalloc((size_t)opt_clients, sizeof *c->expect);
    c->t_sent = xcalloc(opt_inflight, sizeof *c->t_sent);
    buf_reserve(&c->out, per_write);
    buf_reserve(&c->wbuf, per_write);
    c->tcp.data = c;
    c->creq.data = c;
    c->wreq.data = c;
    if ((r = uv_tcp_init(loop, &c->tcp)))
      fatal(i, "tcp_init: %s", uv_strerror(r));
    if ((r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_connect)))
      fatal(i, "connect: %s", uv_strerror(r));
  }

  uv_run(loop, UV_RUN_DEFAULT);

  /* Every message sent reached every client once, in order (checked as
   * they came; this is the final count). */
  for (int i = 0; i < opt_clients; i++)
    for (int j = 0; j < opt_clients; j++)
      if (conns[i].expect[j] != conns[j].sent)
        fatal(i, "has %u of the %u messages of client %d", conns[i].expect[j],
              conns[j].sent, j);
  double secs = (double)(t_end - t_start) / 1e9;
  if (n_recv == 0)
    fatal(-1, "no message received in the measured %.2fs", secs);
  uint64_t cmin = UINT64_MAX, cmax = 0;
  for (int i = 0; i < opt_clients; i++) {
    if (conns[i].received < cmin)
      cmin = conns[i].received;
    if (conns[i].received > cmax)
      cmax = conns[i].received;
  }
  double srv = opt_pid && srv_cpu0 >= 0 && srv_cpu1 >= 0 ? srv_cpu1 - srv_cpu0 : 0;
  double cli = cli_cpu1 - cli_cpu0;
  fprintf(stderr, "chat_load: %" PRIu64 " messages received and %" PRIu64 " sent in "
          "%.3fs; %" PRIu64 " sent and %" PRIu64 " received in all (per client %" PRIu64
          "..%" PRIu64 "), none lost, duplicated or reordered\n", n_recv, n_sent, secs,
          total_sent, total_received, cmin, cmax);
  if (opt_pid)
    fprintf(stderr, "chat_load: server pid %d used %.2fs of CPU in the window (%.0f%%); "
            "chat_load used %.2fs (%.0f%%)\n", opt_pid, srv, 100 * srv / secs, cli,
            100 * cli / secs);
  if (close_unanswered)
    fprintf(stderr, "chat_load: warning: %d connection(s) got no close frame back "
            "within %d ms (all messages had arrived)\n", close_unanswered,
            CLOSE_TIMEOUT_MS);
  printf("RESULT msgs_per_s=%.0f sent_per_s=%.0f rtt_p50_us=%.1f rtt_p99_us=%.1f "
         "server_cpu_pct=%.1f msgs_per_server_cpu_s=%.0f client_cpu_pct=%.1f "
         "received=%" PRIu64 " sent=%" PRIu64 " secs=%.3f all_received=%" PRIu64
         " clients=%d inflight=%u size=%zu\n",
         (double)n_recv / secs, (double)n_sent / secs, hist_pct(0.50) / 1e3,
         hist_pct(0.99) / 1e3, 100 * srv / secs, srv > 0 ? (double)n_recv / srv : 0,
         100 * cli / secs, n_recv, n_sent, secs, total_received, opt_clients,
         opt_inflight, opt_size);
  fflush(stdout);
  for (int i = 0; i < opt_clients; i++) {
    free(conns[i].msg), free(conns[i].expect), free(conns[i].t_sent);
    free(conns[i].out.p), free(conns[i].wbuf.p), free(conns[i].hs);
  }
  free(conns);
  free(pattern), free(scratch);
  uv_loop_close(loop);
  return 0;
}
