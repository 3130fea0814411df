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
 *   PORT   one port, or several separated by commas: client i connects to
 *          the (i mod n)-th (servers bridged through Redis); the RESULT
 *          line's dlv_p50_us/dlv_p99_us time each message from its send
 *          to its arrival at the other clients
 *   -S     Socket.IO (bench/sio/chat-server.js): the same room spoken in
 *          Socket.IO's protocol over WebSocket (engine.io 4): the path is
 *          /socket.io/?EIO=4&transport=websocket&name=NAME, the client
 *          answers the open packet with a namespace connect ("40") and
 *          counts as connected at the server's "40{...}", answers pings
 *          ("2") with pongs ("3"), and a message M travels as the event
 *          42["msg","M"] both ways (JSON-escaped); implies -L
 *   -z     permessage-deflate (RFC 7692): offer it as a browser does
 *          ("permessage-deflate; client_max_window_bits"), require the
 *          server to agree, and inflate every compressed message (one
 *          inflate stream per client, 15-bit window, context kept, which
 *          reads servers with or without context takeover) before the
 *          checks below; messages are sent uncompressed. The filler is
 *          then words from a small vocabulary (compressible like chat
 *          text) instead of random characters. The RESULT line adds
 *          compressed_pct (of the messages received in the window) and
 *          wire_ratio (their bytes on the wire over their inflated bytes).
 *          For bench/chat.sh DEFLATE=1, the publish side of
 *          permessage-deflate (a server may compress each published
 *          message once for all its subscribers)
 *   -L     lenient: start 300 ms after the last handshake without waiting
 *          for "ready", and count lost messages (skipped sequence numbers,
 *          and what did not arrive within 2 s of the end) instead of
 *          failing; for servers that cannot deliver everything, such as
 *          several processes sharing a port without a shared room
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
 * Build: gcc -O2 -o chat_load chat_load.c wsclient.c -luv -lz
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>
#include <zlib.h>

#include "wsclient.h"

#define SETUP_TIMEOUT_MS 15000 /* connect + handshake + "ready" */
#define STALL_MS 5000          /* nothing received for this long: lost */
#define CLOSE_TIMEOUT_MS 5000  /* close handshake at the end */
#define PAT_SPREAD 251         /* filler of (id, seq) starts at pattern[..% 251] */
#define SEQ_LEN 9              /* 8 hex digits + ' ' */
#define NAME_PREFIX "user"
#define NAME_ROOM 24           /* "user" + digits + ": " fits */

#define fatal wsc_fatal
#define xmalloc wsc_xmalloc
#define xcalloc wsc_xcalloc

/* ---- settings ------------------------------------------------------------ */

static int opt_clients = 16;
static unsigned opt_inflight = 1;
static double opt_secs = 10;
static double opt_warmup = 1;
static size_t opt_size = 16;
static const char *opt_path = "/";
static int opt_pid = 0;
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;     /* the first of opt_ports */
static int opt_ports[16];    /* PORT may list several: client i uses [i % n] */
static int opt_nports = 0;
static int opt_lenient = 0; /* -L: count lost messages instead of failing */
static int opt_sio = 0;     /* -S: Socket.IO framing */
static int opt_deflate = 0; /* -z: permessage-deflate */

/* ---- connections ---------------------------------------------------------- */

enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CLOSING };
static int phase = PH_SETUP;

typedef struct conn {
  wsc_conn ws;  /* first: a wsc_conn * is a conn * */
  int ready;    /* "ready" received */
  uint8_t *msg; /* the data message so far (at most msg_cap) */
  size_t msg_len;
  /* expect[j]: the sequence number of the next message due from client j
   * (all of 0..expect[j]-1 arrived, in order, once each). */
  uint32_t *expect;
  uint32_t sent;     /* messages sent: 0..sent-1 */
  uint64_t *t_sent;  /* send time of message seq, at [seq % inflight] */
  uint64_t *t_ring;  /* send time of message seq, at [seq % RING] */
  uint64_t received; /* messages received after "ready" */
  /* -z: the message in progress is compressed (RSV1): its bytes so far in
   * zmsg (at most zmsg_cap), inflated by `inf` at its end. */
  int msg_z;
  uint8_t *zmsg;
  size_t zmsg_len;
  z_stream *inf;
} conn;

static uv_loop_t *loop;
static conn *conns;
static uint8_t *pattern; /* opt_size + PAT_SPREAD bytes of filler */
static uint8_t *scratch; /* one outgoing message */
static uint8_t *sio_out, *sio_in; /* -S: the framed message out, unescaped in */
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
static uint64_t n_gaps; /* -L: messages skipped (seen lost) so far */
static size_t zmsg_cap; /* -z: longest compressed message */
static uint64_t n_zrecv, n_zwire, n_zplain; /* -z, in the window: compressed
                                               messages, their wire and
                                               inflated bytes */

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

/* ---- delivery latency -------------------------------------------------------

   From a message's send to its arrival at another client (all clients run
   here, on one clock): with several servers bridged (PORT lists several),
   this is the time across the bridge. Send times are kept for the last
   RING messages of each client; a message older than that is not timed.
   Log-linear buckets: 64 per power of two, under 2% error. */
#define RING 4096
static uint64_t dlv_hist[64 * 64], dlv_n;

static unsigned dlv_bucket(uint64_t ns) {
  if (ns < 64)
    return (unsigned)ns;
  unsigned e = 63 - (unsigned)__builtin_clzll(ns); /* >= 6 */
  return (e - 5) * 64 + (unsigned)((ns >> (e - 6)) & 63);
}

static double dlv_value(unsigned b) {
  if (b < 64)
    return b;
  unsigned e = b / 64 + 5;
  return (double)((UINT64_C(64) + (b % 64)) << (e - 6));
}

static void dlv_add(uint64_t ns) {
  unsigned b = dlv_bucket(ns);
  if (b >= 64 * 64)
    b = 64 * 64 - 1;
  dlv_hist[b]++;
  dlv_n++;
}

static double dlv_pct(double p) {
  uint64_t rank = (uint64_t)(p * (double)dlv_n + 0.5), seen = 0;
  for (unsigned i = 0; i < 64 * 64; i++) {
    seen += dlv_hist[i];
    if (seen >= rank && seen)
      return dlv_value(i);
  }
  return 0;
}

/* ---- messages ------------------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

static void put_hex32(uint8_t *p, uint32_t v) {
  for (int i = 7; i >= 0; i--, v >>= 4)
    p[i] = (uint8_t)hexdig[v & 15];
}

/* hexval[c]: the value of lowercase hex digit c, 16 for anything else.
 * Looked up rather than compared: this runs for every message received
 * (up to ~15 M a second), where two range checks per digit were a fifth
 * of the client's own time. */
static uint8_t hexval[256];

static void hexval_init(void) {
  memset(hexval, 16, sizeof hexval);
  for (int i = 0; i < 16; i++)
    hexval[(uint8_t)hexdig[i]] = (uint8_t)i;
}

static int get_hex32(const uint8_t *p, uint32_t *out) {
  uint32_t v = 0, bad = 0;
  for (int i = 0; i < 8; i++) {
    uint32_t d = hexval[p[i]];
    bad |= d;
    v = v << 4 | (d & 15);
  }
  if (bad & 16)
    return -1;
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
  memcpy(scratch + SEQ_LEN, filler((uint32_t)c->ws.id, seq), opt_size - SEQ_LEN);
  if (opt_sio) {
    /* 42["msg","<the message, JSON-escaped>"] */
    static const char head[] = "42[\"msg\",\"";
    uint8_t *o = sio_out;
    memcpy(o, head, sizeof head - 1);
    o += sizeof head - 1;
    for (size_t i = 0; i < opt_size; i++) {
      if (scratch[i] == '"' || scratch[i] == '\\')
        *o++ = '\\';
      *o++ = scratch[i];
    }
    *o++ = '"';
    *o++ = ']';
    wsc_put_frame(&c->ws, 1, 0, sio_out, (size_t)(o - sio_out));
  } else {
    wsc_put_frame(&c->ws, 1, 0, scratch, opt_size);
  }
  c->t_sent[seq % opt_inflight] = now;
  c->t_ring[seq % RING] = now;
  total_sent++;
  if (phase == PH_MEASURE)
    n_sent++;
}

static void start_closing(void);

static uint64_t owed(void) {
  return total_sent * (uint64_t)opt_clients - total_received - n_gaps;
}

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
static void on_lenient_start(uv_timer_t *t);

/* A whole data message `m` of `len` bytes arrived on `c`: check and count
 * it. */
static void message_done(conn *c, const uint8_t *m, size_t len, uint64_t now) {
  if (opt_lenient && len == 5 && memcmp(m, "ready", 5) == 0)
    return; /* -L starts on its own; each server may say "ready" or not */
  if (!c->ready) {
    if (len != 5 || memcmp(m, "ready", 5) != 0)
      fatal(c->ws.id, "the first message is '%.*s', want 'ready'", (int)(len < 80 ? len : 80),
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
    fatal(c->ws.id, "received a message from unknown client '%.*s'", (int)i, (const char *)m);
  m += i + 2;
  if (get_hex32(m, &seq) || m[8] != ' ')
    goto bad;
  uint32_t want = c->expect[from];
  if (seq >= conns[from].sent)
    fatal(c->ws.id, "received message %u of client %u, which sent only 0..%u%s", seq,
          from, conns[from].sent - 1, seq < want ? "" : " (duplicate or corrupted)");
  if (seq < want)
    fatal(c->ws.id, "duplicate: message %u of client %u again (had 0..%u already)", seq,
          from, want - 1);
  if (seq > want && opt_lenient)
    n_gaps += seq - want; /* lost (the server cannot reorder one sender) */
  else if (seq > want)
    fatal(c->ws.id, "message %u of client %u arrived while %u was due: %u message(s) "
          "lost or reordered", seq, from, want, seq - want);
  if (memcmp(m + SEQ_LEN, filler(from, seq), opt_size - SEQ_LEN) != 0)
    fatal(c->ws.id, "message %u of client %u corrupted: '%.*s'", seq, from, (int)opt_size,
          (const char *)m);
  c->expect[from] = seq + 1;
  if (phase == PH_MEASURE && from != (uint32_t)c->ws.id &&
      conns[from].sent - seq <= RING)
    dlv_add(now - conns[from].t_ring[seq % RING]);
  c->received++;
  total_received++;
  if (phase == PH_MEASURE)
    n_recv++;
  if (from == (uint32_t)c->ws.id) { /* our own message is back */
    if (phase == PH_MEASURE)
      wsc_hist_add(now - c->t_sent[seq % opt_inflight]);
    if (phase == PH_WARMUP || phase == PH_MEASURE)
      send_msg(c, now);
  }
  if (phase == PH_DRAIN && owed() == 0)
    start_closing();
  return;
bad:
  if (len == 5 && memcmp(m, "ready", 5) == 0)
    fatal(c->ws.id, "a second 'ready'");
  fatal(c->ws.id, "received '%.*s', want '" NAME_PREFIX "<id>: ' and a %zu-byte message",
        (int)(len < 120 ? len : 120), (const char *)m, opt_size);
}

/* ---- incoming frames ------------------------------------------------------ */

static void frame_begin(wsc_conn *w) {
  conn *c = (conn *)w;
  int rsv = wsc_frame_rsv(w);
  /* RSV1 (4): compressed, allowed with -z on a message's first frame. */
  if (rsv & ~(opt_deflate ? 4 : 0))
    fatal(w->id, "RSV bits 0x%x set without a negotiated extension", rsv);
  uint64_t len = wsc_frame_len(w);
  if (w->f_op >= 8)
    return;
  if ((rsv & 4) && w->f_op == 0)
    fatal(w->id, "RSV1 set on a continuation frame");
  if (w->f_op == 1) {
    if (w->in_msg)
      fatal(w->id, "new data frame inside a fragmented message");
    w->in_msg = 1;
    c->msg_len = 0;
    c->zmsg_len = 0;
    c->msg_z = (rsv & 4) != 0;
  } else if (w->f_op == 2) {
    fatal(w->id, "received a binary message (all are text)");
  }
  if (c->msg_z ? c->zmsg_len + len > zmsg_cap : c->msg_len + len > msg_cap)
    fatal(w->id,
          "received a %smessage of at least %" PRIu64 " bytes, the longest "
          "possible is %zu",
          c->msg_z ? "compressed " : "",
          (c->msg_z ? c->zmsg_len : c->msg_len) + len,
          c->msg_z ? zmsg_cap : msg_cap);
}

static void frame_data(wsc_conn *w, const uint8_t *p, size_t n) {
  conn *c = (conn *)w;
  if (c->msg_z) {
    memcpy(c->zmsg + c->zmsg_len, p, n);
    c->zmsg_len += n;
    return;
  }
  memcpy(c->msg + c->msg_len, p, n);
  c->msg_len += n;
}

/* -z: inflates the compressed message in zmsg into msg (RFC 7692 7.2.2:
 * the tail 00 00 ff ff appended); it must be whole (nothing left over)
 * and fit in msg_cap. */
static void inflate_msg(conn *c) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  memcpy(c->zmsg + c->zmsg_len, tail, 4);
  z_stream *z = c->inf;
  z->next_in = c->zmsg;
  z->avail_in = (uInt)(c->zmsg_len + 4);
  z->next_out = c->msg;
  z->avail_out = (uInt)msg_cap;
  int r = inflate(z, Z_SYNC_FLUSH);
  /* A final block (BFINAL, which a server without context takeover may
   * send) ends the stream before the tail: the next message starts anew. */
  if (r == Z_STREAM_END && z->avail_in <= 4) {
    z->avail_in = 0;
    inflateReset(z);
  }
  if ((r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END) || z->avail_in != 0)
    fatal(c->ws.id,
          "inflate: %s (%d; %u of %zu compressed bytes left, %zu inflated)",
          z->msg ? z->msg : "no more room", r, z->avail_in, c->zmsg_len + 4,
          msg_cap - z->avail_out);
  c->msg_len = msg_cap - z->avail_out;
  if (phase == PH_MEASURE) {
    n_zrecv++;
    n_zwire += c->zmsg_len;
    n_zplain += c->msg_len;
  }
}

static void opened(wsc_conn *w);
static void now_open(void);

/* -S: a Socket.IO packet (one WebSocket text message). */
static void sio_packet(conn *c, const uint8_t *m, size_t len, uint64_t now) {
  static const char head[] = "42[\"msg\",\"";
  size_t hl = sizeof head - 1;
  if (len >= 1 && m[0] == '0' && (len == 1 || m[1] == '{')) {
    wsc_put_frame(&c->ws, 1, 0, (const uint8_t *)"40", 2); /* open: connect */
    return;
  }
  if (len >= 2 && m[0] == '4' && m[1] == '0') {
    now_open(); /* the namespace is connected */
    return;
  }
  if (len == 1 && m[0] == '2') {
    wsc_put_frame(&c->ws, 1, 0, (const uint8_t *)"3", 1); /* ping: pong */
    return;
  }
  if (len < hl + 2 || memcmp(m, head, hl) != 0 || m[len - 2] != '"' || m[len - 1] != ']')
    fatal(c->ws.id, "unexpected Socket.IO packet '%.*s'", (int)(len < 120 ? len : 120),
          (const char *)m);
  size_t n = 0;
  for (size_t i = hl; i < len - 2; i++) {
    if (m[i] == '\\' && i + 1 < len - 2)
      i++;
    sio_in[n++] = m[i];
  }
  message_done(c, sio_in, n, now);
}

static void message_end(wsc_conn *w, uint64_t now) {
  conn *c = (conn *)w;
  w->in_msg = 0;
  if (c->msg_z)
    inflate_msg(c);
  if (opt_sio)
    sio_packet(c, c->msg, c->msg_len, now);
  else
    message_done(c, c->msg, c->msg_len, now);
}

static void short_text(wsc_conn *w, const uint8_t *p, size_t len, uint64_t now) {
  if (opt_sio)
    sio_packet((conn *)w, p, len, now);
  else
    message_done((conn *)w, p, len, now);
}

static void opened(wsc_conn *w) {
  (void)w;
  if (!opt_sio) /* -S: open once the namespace is connected */
    now_open();
}

static void now_open(void) {
  if (++n_open == opt_clients && opt_lenient) {
    /* -L does not wait for "ready" (servers that do not share a room
     * would never all send it): every client starts 300 ms after the last
     * handshake. */
    for (int i = 0; i < opt_clients; i++)
      conns[i].ready = 1;
    n_ready = opt_clients;
    uv_timer_start(&t_setup, on_lenient_start, 300, 0);
  }
}

/* The request target: the path and the client's name. */
static void target(wsc_conn *w, char *buf, size_t size) {
  if (opt_sio)
    snprintf(buf, size, "/socket.io/?EIO=4&transport=websocket&name=" NAME_PREFIX "%d",
             w->id);
  else
    snprintf(buf, size, "%s?name=" NAME_PREFIX "%d", opt_path, w->id);
}

static void on_closed(wsc_conn *w);

/* The server's Sec-WebSocket-Extensions answer (NULL: none): with -z it
 * must be permessage-deflate (any of its parameters: the client sends
 * uncompressed and inflates with a 15-bit window, which reads them all);
 * without, any extension is an error. */
static void handshake_ext(wsc_conn *w, const char *ext) {
  if (!opt_deflate) {
    if (ext)
      fatal(w->id,
            "handshake: server chose extensions '%s' that were not offered",
            ext);
    return;
  }
  if (!ext)
    fatal(w->id, "handshake: the server declined permessage-deflate (-z)");
  size_t n = strlen("permessage-deflate");
  if (strncmp(ext, "permessage-deflate", n) != 0 ||
      (ext[n] && ext[n] != ';' && ext[n] != ' ') || strchr(ext, ','))
    fatal(w->id, "handshake: unexpected extension answer '%s'", ext);
}

static const wsc_ops ops = {
    .target = target,
    .handshake_ext = handshake_ext,
    .opened = opened,
    .frame_begin = frame_begin,
    .frame_data = frame_data,
    .message_end = message_end,
    .short_text = short_text,
    .closed = on_closed,
};

/* ---- phases --------------------------------------------------------------- */

static void on_end(uv_timer_t *t);

static void begin_measure(void) {
  phase = PH_MEASURE;
  uv_update_time(loop); /* the timer counts from now, not from the loop turn */
  if (opt_pid)
    srv_cpu0 = proc_cpu(opt_pid);
  cli_cpu0 = wsc_self_cpu();
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
  if (opt_lenient && phase == PH_DRAIN && watch_idle_ms >= 2000) {
    start_closing(); /* what has not come in 2 s is lost */
    return;
  }
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
    wsc_flush(&conns[i].ws);
  }
  uv_timer_start(&t_watch, on_watch, 1000, 1000);
}

static void on_lenient_start(uv_timer_t *t) {
  (void)t;
  start_run();
}

static void on_close_timeout(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < opt_clients; i++) {
    conn *c = &conns[i];
    if (c->ws.state == WSC_CLOSED)
      continue;
    if (c->ws.state != WSC_CLOSE_RCVD)
      close_unanswered++;
    wsc_close(&c->ws);
  }
}

/* Every message sent has reached every client: close every connection. */
static void start_closing(void) {
  phase = PH_CLOSING;
  uv_timer_stop(&t_watch);
  for (int i = 0; i < opt_clients; i++) {
    wsc_send_close(&conns[i].ws);
    wsc_flush(&conns[i].ws);
  }
  uv_timer_start(&t_close, on_close_timeout, CLOSE_TIMEOUT_MS, 0);
}

static void on_end(uv_timer_t *t) {
  (void)t;
  t_end = uv_hrtime();
  if (opt_pid)
    srv_cpu1 = proc_cpu(opt_pid);
  cli_cpu1 = wsc_self_cpu();
  phase = PH_DRAIN;
  if (owed() == 0)
    start_closing();
  /* else the last message owed calls start_closing(); the watchdog fails
   * the run if that never comes. */
}

static void on_closed(wsc_conn *w) {
  (void)w;
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
  fprintf(stderr, "usage: chat_load [-c clients] [-k inflight] [-d seconds] "
                  "[-w warmup] [-s size]\n"
                  "                 [-p path] [-P server_pid] [-H ipv4] [-L] "
                  "[-S] [-z] PORT\n");
  exit(1);
}

#define parse_int wsc_parse_int
#define parse_secs wsc_parse_secs

int main(int argc, char **argv) {
  int ch;
  wsc_prog = "chat_load";
  wsc_conn_fmt = "client %d (" NAME_PREFIX "%d): ";
  while ((ch = getopt(argc, argv, "c:k:d:w:s:p:P:H:LSz")) != -1) {
    switch (ch) {
    case 'c': opt_clients = (int)parse_int(optarg, 1, 100000, "-c"); break;
    case 'k': opt_inflight = (unsigned)parse_int(optarg, 1, 1 << 16, "-k"); break;
    case 'd': opt_secs = parse_secs(optarg, 0.001, "-d"); break;
    case 'w': opt_warmup = parse_secs(optarg, 0, "-w"); break;
    case 's': opt_size = (size_t)parse_int(optarg, SEQ_LEN, 1 << 20, "-s"); break;
    case 'p': opt_path = optarg; break;
    case 'P': opt_pid = (int)parse_int(optarg, 1, 1 << 30, "-P"); break;
    case 'H': opt_host = optarg; break;
    case 'L': opt_lenient = 1; break;
    case 'S': opt_sio = opt_lenient = 1; break;
    case 'z': opt_deflate = 1; break;
    default: usage();
    }
  }
  if (optind != argc - 1)
    usage();
  hexval_init();
  for (char *p = argv[optind], *end; *p; p = *end ? end + 1 : end) {
    if (opt_nports == 16)
      fatal(-1, "at most 16 ports");
    long v = strtol(p, &end, 10);
    if (end == p || (*end && *end != ',') || v < 1 || v > 65535)
      fatal(-1, "PORT must be a port or a comma-separated list of ports");
    opt_ports[opt_nports++] = (int)v;
  }
  opt_port = opt_ports[0];
  if (opt_path[0] != '/' || strpbrk(opt_path, " \r\n?#"))
    fatal(-1, "path must start with '/' and contain no spaces, line breaks, '?' or '#'");
  if (opt_pid && proc_cpu(opt_pid) < 0)
    fatal(-1, "cannot read /proc/%d/stat", opt_pid);

  struct sockaddr_in addrs[16];
  for (int i = 0; i < opt_nports; i++) {
    int r = uv_ip4_addr(opt_host, opt_ports[i], &addrs[i]);
    if (r)
      fatal(-1, "bad IPv4 address '%s': %s", opt_host, uv_strerror(r));
  }

  wsc_hooks = ops;
  wsc_host = opt_host, wsc_port = opt_port, wsc_path = opt_path;
  wsc_rng_seed();
  if (opt_deflate && opt_sio)
    fatal(-1, "-z and -S cannot be combined");
  pattern = xmalloc(opt_size + PAT_SPREAD);
  if (opt_deflate) { /* words, compressible like chat text */
    static const char *const words[] = {
        "the",     "room", "message", "hello", "and",   "you", "we",
        "meeting", "at",   "today",   "see",   "link",  "is",  "ok",
        "thanks",  "will", "deploy",  "build", "later", "on",  "it",
        "check",   "this", "coffee",  "lunch", "a",     "for", "fixed",
        "test",    "done", "with",    "review"};
    size_t i = 0;
    while (i < opt_size + PAT_SPREAD) {
      const char *wd =
          words[(wsc_rng() >> 32) % (sizeof words / sizeof *words)];
      for (; *wd && i < opt_size + PAT_SPREAD; wd++)
        pattern[i++] = (uint8_t)*wd;
      if (i < opt_size + PAT_SPREAD)
        pattern[i++] = ' ';
    }
  } else { /* printable ASCII: valid UTF-8 */
    for (size_t i = 0; i < opt_size + PAT_SPREAD; i++)
      pattern[i] = (uint8_t)(' ' + (wsc_rng() >> 32) % 95);
  }
  scratch = xmalloc(opt_size);
  msg_cap = opt_size + NAME_ROOM;
  if (opt_sio) {
    sio_out = xmalloc(2 * opt_size + 16);
    sio_in = xmalloc(msg_cap);
    msg_cap = 2 * msg_cap + 16; /* framing and escapes */
  }
  if (opt_deflate) {
    wsc_extra_headers = "Sec-WebSocket-Extensions: permessage-deflate; "
                        "client_max_window_bits\r\n";
    zmsg_cap = msg_cap + msg_cap / 1000 + 64 +
               4; /* deflate's worst growth; the tail */
  }

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
    c->ws.id = i;
    c->msg = xmalloc(msg_cap);
    if (opt_deflate) {
      c->zmsg = xmalloc(zmsg_cap);
      c->inf = xcalloc(1, sizeof *c->inf);
      if (inflateInit2(c->inf, -15) != Z_OK)
        fatal(i, "inflateInit2 failed");
    }
    c->expect = xcalloc((size_t)opt_clients, sizeof *c->expect);
    c->t_sent = xcalloc(opt_inflight, sizeof *c->t_sent);
    c->t_ring = xcalloc(RING, sizeof *c->t_ring);
    wsc_buf_reserve(&c->ws.out, per_write);
    wsc_buf_reserve(&c->ws.wbuf, per_write);
    wsc_connect(&c->ws, loop, &addrs[i % opt_nports]);
  }

  uv_run(loop, UV_RUN_DEFAULT);

  /* Every message sent reached every client once, in order (checked as
   * they came; this is the final count). */
  uint64_t expected = total_sent * (uint64_t)opt_clients;
  uint64_t lost = expected - total_received;
  for (int i = 0; i < opt_clients && !opt_lenient; i++)
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
          "..%" PRIu64 "), %s\n", n_recv, n_sent, secs,
          total_sent, total_received, cmin, cmax,
          lost ? "SOME LOST (-L)" : "none lost, duplicated or reordered");
  if (lost)
    fprintf(stderr, "chat_load: %" PRIu64 " of %" PRIu64 " deliveries never arrived "
            "(%.1f%%)\n", lost, expected, 100.0 * (double)lost / (double)expected);
  if (opt_pid)
    fprintf(stderr, "chat_load: server pid %d used %.2fs of CPU in the window (%.0f%%); "
            "chat_load used %.2fs (%.0f%%)\n", opt_pid, srv, 100 * srv / secs, cli,
            100 * cli / secs);
  if (close_unanswered)
    fprintf(stderr, "chat_load: warning: %d connection(s) got no close frame back "
            "within %d ms (all messages had arrived)\n", close_unanswered,
            CLOSE_TIMEOUT_MS);
  printf(
      "RESULT msgs_per_s=%.0f sent_per_s=%.0f rtt_p50_us=%.1f rtt_p99_us=%.1f "
      "server_cpu_pct=%.1f msgs_per_server_cpu_s=%.0f client_cpu_pct=%.1f "
      "received=%" PRIu64 " sent=%" PRIu64 " secs=%.3f all_received=%" PRIu64
      " clients=%d inflight=%u size=%zu lost=%" PRIu64 " expected=%" PRIu64
      " dlv_p50_us=%.1f dlv_p99_us=%.1f compressed_pct=%.1f wire_ratio=%.3f\n",
      (double)n_recv / secs, (double)n_sent / secs, wsc_hist_pct(0.50) / 1e3,
      wsc_hist_pct(0.99) / 1e3, 100 * srv / secs,
      srv > 0 ? (double)n_recv / srv : 0, 100 * cli / secs, n_recv, n_sent,
      secs, total_received, opt_clients, opt_inflight, opt_size, lost, expected,
      dlv_pct(0.50) / 1e3, dlv_pct(0.99) / 1e3,
      n_recv ? 100.0 * (double)n_zrecv / (double)n_recv : 0,
      n_zplain ? (double)n_zwire / (double)n_zplain : 0);
  fflush(stdout);
  for (int i = 0; i < opt_clients; i++) {
    free(conns[i].msg), free(conns[i].expect), free(conns[i].t_sent);
    free(conns[i].t_ring), free(conns[i].zmsg);
    if (conns[i].inf)
      inflateEnd(conns[i].inf), free(conns[i].inf);
    free(conns[i].ws.out.p), free(conns[i].ws.wbuf.p), free(conns[i].ws.hs);
  }
  free(conns);
  free(pattern), free(scratch), free(sio_out), free(sio_in);
  uv_loop_close(loop);
  return 0;
}
