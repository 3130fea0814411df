/* ws_load_deflate: a WebSocket echo load generator with permessage-deflate
 * (RFC 7692), on libuv and zlib. A sibling of bench/ws_load.c (same
 * structure, same checks; it uses none of talon's code) for
 * bench/deflate.sh.
 *
 * It offers the extension like a browser does,
 *   Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
 * (-n adds client_no_context_takeover, -x offers nothing), reads which
 * parameters the server agreed to (the same on every connection, or it is
 * an error), then compresses every message it sends (raw deflate at zlib's
 * default level and memLevel 8 like Chromium, Z_SYNC_FLUSH, the trailing
 * 00 00 ff ff stripped, RSV1 set; one deflate stream per connection that
 * keeps its context unless client_no_context_takeover was agreed, window as
 * client_max_window_bits allows) and inflates every compressed echo
 * (00 00 ff ff appended; one inflate stream per connection, 15-bit window,
 * context kept, which reads servers with or without context takeover).
 *
 *   ws_load_deflate [-c conns] [-d seconds] [-w warmup] [-s size]
 *                   [-k inflight] [-p path] [-n] [-x] [-S seed]
 *                   [-M pid] [-H host] PORT
 *
 *   -c N   connections                              [64]
 *   -d S   measured seconds                         [10]
 *   -w S   warm-up seconds, not counted             [1]
 *   -s N   message size in bytes (uncompressed)     [200]
 *   -k N   messages in flight per connection        [1]  (1 = ping-pong)
 *   -p P   request path                             [/ws]
 *   -n     also offer client_no_context_takeover
 *   -x     offer no extension (plain WebSocket)
 *   -S N   seed of the message generator            [1]
 *   -M PID memory mode (see below) against server process PID
 *   -H IP  server IPv4 address                      [127.0.0.1]
 *
 * Messages are text: JSON-like chat messages of exactly -s bytes (below
 * 512 bytes one message object, from 512 bytes a "history" object with an
 * array of them), words drawn from a small vocabulary, ids, user names and
 * timestamps: compressible like real chat traffic. A pool of 512 of them is
 * generated from the seed, so every server gets the same payloads; message
 * i of connection c is pool[(i + 37 c) % 512].
 *
 * Each echo is checked whole: opcode (text), RSV1 only on the first frame
 * of a data message and only when the extension was agreed, the inflated
 * length and every byte, in order, so a lost, duplicated, reordered or
 * corrupted echo is an error. Echoes may come compressed or not (a server
 * may skip small messages); both are counted.
 *
 * Throughput mode (default): as ws_load: -k messages in flight per
 * connection, each echo answered with the next message; the -w warm-up is
 * not counted, then -d seconds are measured; at the end close frames
 * (1000) and a wait for the echoes still in flight. One line on stdout:
 *   RESULT msgs_per_s=N p50_us=X p99_us=X p999_us=X max_us=X mean_us=X
 *          msgs=N secs=X conns=N size=N inflight=N tx_ratio=X rx_ratio=X
 *          rx_compressed=F client_cpu=F all_msgs=N ext=EXT
 * tx_ratio / rx_ratio: payload bytes on the wire per message byte (sent /
 * received; 1.00 = uncompressed), rx_compressed: the fraction of echoes
 * that came compressed, client_cpu: this process's CPU time per second of
 * the measured window (near 1.00: the client was the limit), all_msgs: the
 * echoes of the whole run (warm-up and drain included), EXT: the
 * agreed Sec-WebSocket-Extensions without spaces, or "none".
 *
 * Memory mode (-M PID): reads VmRSS of process PID (/proc/PID/status)
 * before connecting; opens -c connections (at most 256 handshakes at a
 * time) and leaves them idle; after 1 s reads VmRSS again; sends one
 * message on every connection and waits for all echoes (so per-connection
 * compressors and decompressors exist), 1 s, VmRSS; closes every
 * connection, 1 s, VmRSS. One line on stdout:
 *   MEM conns=N size=N rss_base_kib=N rss_open_kib=N rss_msg_kib=N
 *       rss_closed_kib=N open_per_conn_kib=X msg_per_conn_kib=X
 *       tx_ratio=X rx_ratio=X rx_compressed=F ext=EXT
 * (per_conn: the VmRSS growth over the base divided by -c). In this mode
 * one message is sent per connection, so the client compresses and
 * inflates with one shared stream reset per message (the first message of
 * a stream that keeps its context is the same bytes).
 *
 * Details on stderr. Exit status 0 on success, 1 on a usage error, a failed
 * connection or handshake, a protocol error or a wrong or missing echo.
 *
 * Build: gcc -O2 -o ws_load_deflate ws_load_deflate.c wsclient.c -luv -lz
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

#define SETUP_TIMEOUT_MS 30000 /* connect + handshake of every connection */
#define DRAIN_TIMEOUT_MS 5000  /* outstanding echoes + close handshake */
#define SETTLE_MS 1000         /* memory mode: wait before reading VmRSS */
#define POOL 512               /* distinct messages */
#define MAX_CONNECTING 256     /* handshakes in progress at once */

#define fatal wsc_fatal
#define xmalloc wsc_xmalloc

/* ---- settings ------------------------------------------------------------ */

static int opt_conns = 64;
static double opt_secs = 10;
static double opt_warmup = 1;
static size_t opt_size = 200;
static unsigned opt_inflight = 1;
static const char *opt_path = "/ws";
static int opt_cnct = 0;
static int opt_no_offer = 0;
static uint64_t opt_seed = 1;
static int opt_mem_pid = 0;
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;

/* ---- messages: JSON-like chat text ---------------------------------------- */

static uint64_t gen_state; /* seeded by -S: the same pool for every server */

static uint64_t gen(void) {
  gen_state ^= gen_state >> 12;
  gen_state ^= gen_state << 25;
  gen_state ^= gen_state >> 27;
  return gen_state * 0x2545F4914F6CDD1DULL;
}

static const char *const words[] = {
    "the", "a", "to", "and", "of", "in", "is", "it", "you", "that", "for",
    "on", "we", "this", "with", "be", "have", "are", "not", "just", "can",
    "what", "so", "do", "at", "but", "if", "was", "will", "me", "my", "your",
    "they", "there", "about", "think", "know", "going", "good", "yes", "no",
    "ok", "thanks", "lol", "really", "now", "today", "tomorrow", "meeting",
    "deploy", "build", "test", "server", "client", "release", "branch",
    "merge", "review", "looks", "great", "sure", "let", "check", "fixed",
    "bug", "issue", "ticket", "coffee", "lunch", "later", "morning", "again",
    "please", "sorry", "maybe", "works", "broken", "latency", "memory",
    "benchmark", "numbers", "ship", "it", "here", "link", "docs", "update",
    "channel", "room", "message", "everyone", "team", "weekend", "friday",
    "monday", "done", "started", "waiting", "on", "ci", "green", "red",
    "flaky", "again?", "nice", ":)", "+1", "agreed", "hmm", "wait"};
#define NWORDS (sizeof words / sizeof words[0])
static const char *const users[] = {"alice", "bob", "carol", "dave", "erin",
                                    "frank", "grace", "heidi", "ivan", "judy",
                                    "mallory", "oscar", "peggy", "trent",
                                    "victor", "walter"};
#define NUSERS (sizeof users / sizeof users[0])

/* Appends text of exactly `n` bytes of words to p; returns p + n. */
static char *fill_words(char *p, size_t n) {
  size_t used = 0;
  while (used < n) {
    const char *w = words[gen() % NWORDS];
    size_t wl = strlen(w);
    if (used && used < n)
      p[used++] = ' ';
    for (size_t i = 0; i < wl && used < n; i++)
      p[used++] = w[i];
  }
  return p + n;
}

static uint64_t msg_id = 1000, ts = 1700000000000ULL;

/* One chat object of exactly `n` bytes when n >= its header, else words. */
static void chat_object(char *p, size_t n) {
  char head[160];
  ts += gen() % 5000;
  int hl = snprintf(head, sizeof head,
                    "{\"type\":\"chat\",\"room\":\"general\",\"id\":%" PRIu64
                    ",\"user\":\"%s\",\"ts\":%" PRIu64 ",\"text\":\"",
                    msg_id++, users[gen() % NUSERS], ts);
  if ((size_t)hl + 2 > n) {
    fill_words(p, n);
    return;
  }
  memcpy(p, head, (size_t)hl);
  fill_words(p + hl, n - (size_t)hl - 2);
  memcpy(p + n - 2, "\"}", 2);
}

/* A message of exactly `n` bytes: one chat object below 512 bytes, else
 * {"type":"history","room":"general","messages":[obj,obj,...]}. */
static void make_message(char *p, size_t n) {
  static const char pre[] = "{\"type\":\"history\",\"room\":\"general\",\"messages\":[";
  size_t pl = sizeof pre - 1;
  if (n < 512) {
    chat_object(p, n);
    return;
  }
  memcpy(p, pre, pl);
  size_t at = pl, end = n - 2; /* "]}" */
  for (;;) {
    size_t obj = 110 + gen() % 180; /* 110..289 bytes */
    size_t left = end - at;
    if (obj + 1 + 130 > left) /* not enough room for one more after it */
      obj = left;
    chat_object(p + at, obj);
    at += obj;
    if (at == end)
      break;
    p[at++] = ',';
  }
  memcpy(p + end, "]}", 2);
}

static char *pool; /* POOL messages of opt_size bytes */

/* ---- connections ---------------------------------------------------------- */

enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_MEM_IDLE, PH_MEM_MSG, PH_MEM_CLOSE };
static int phase = PH_SETUP;

typedef wsc_buf buf;

typedef struct conn {
  wsc_conn ws; /* first: a wsc_conn * is a conn * */
  int msg_op;
  int msg_z;        /* the current message is compressed (RSV1) */
  uint64_t msg_off; /* bytes of the current message seen (wire) */
  buf zin;          /* compressed bytes of the current message */
  z_stream *def, *inf; /* per connection, created on first use */
  /* Messages in flight, oldest first: ring of opt_inflight entries. */
  uint64_t *sent_at;
  uint32_t *sent_seq;
  uint64_t head, tail; /* received, sent */
  uint32_t next_seq;
  uint64_t measured; /* echoes counted in the measured window */
  uint64_t echoed;   /* all echoes */
} conn;

static uv_loop_t *loop;
static conn *conns;
static int n_started, n_open, n_closed, n_echoed_mem;
static uint64_t t_start, t_end; /* measured window, ns */
static double cpu_start, cpu_end;
static uv_timer_t t_setup, t_phase, t_drain;
static uint64_t n_measured;
static int close_unanswered;

/* What was agreed (the same on every connection). */
static int ag_checked, ag_on, ag_cnct, ag_snct, ag_cbits = 15, ag_sbits = 15;
static char ag_ext[512] = "none";

/* Bytes: message payload vs on the wire (frame payload), both ways. */
static uint64_t tx_msg_bytes, tx_wire_bytes, rx_msg_bytes, rx_wire_bytes;
static uint64_t rx_z_msgs, rx_plain_msgs;

/* Scratch: compressed output and inflated echoes. */
static uint8_t *zout;
static size_t zout_cap;
static uint8_t *zplain; /* opt_size + 1 */
static z_stream *shared_def, *shared_inf; /* memory mode */

static const char *msg_of(const conn *c, uint32_t seq) {
  return pool + (size_t)((seq + 37u * (uint32_t)c->ws.id) % POOL) * opt_size;
}

/* ---- zlib ------------------------------------------------------------------ */

static z_stream *new_deflater(void) {
  z_stream *z = calloc(1, sizeof *z);
  if (!z)
    fatal(-1, "out of memory");
  /* Chromium: default level, memLevel 8; the window the server allows. */
  if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -ag_cbits, 8,
                   Z_DEFAULT_STRATEGY) != Z_OK)
    fatal(-1, "deflateInit2 failed");
  return z;
}

static z_stream *new_inflater(void) {
  z_stream *z = calloc(1, sizeof *z);
  if (!z)
    fatal(-1, "out of memory");
  if (inflateInit2(z, -15) != Z_OK)
    fatal(-1, "inflateInit2 failed");
  return z;
}

/* Compresses one message into zout; returns the length without the
 * trailing 00 00 ff ff. */
static size_t compress_msg(conn *c, const uint8_t *data, size_t len) {
  z_stream *z;
  if (opt_mem_pid) {
    z = shared_def;
    deflateReset(z);
  } else {
    if (!c->def)
      c->def = new_deflater();
    z = c->def;
  }
  z->next_in = (Bytef *)data;
  z->avail_in = (uInt)len;
  z->next_out = zout;
  z->avail_out = (uInt)zout_cap;
  int r = deflate(z, Z_SYNC_FLUSH);
  if (r != Z_OK || z->avail_in != 0 || z->avail_out == 0)
    fatal(c->ws.id, "deflate failed (%d)", r);
  size_t n = zout_cap - z->avail_out;
  if (n < 4 || memcmp(zout + n - 4, "\0\0\xff\xff", 4) != 0)
    fatal(c->ws.id, "deflate output does not end with 00 00 ff ff");
  if (ag_cnct && !opt_mem_pid)
    deflateReset(z);
  return n - 4;
}

/* Inflates the compressed message in c->zin and checks it against `want`. */
static void check_compressed(conn *c, uint32_t seq, const char *want) {
  z_stream *z;
  if (opt_mem_pid) {
    z = shared_inf;
    inflateReset(z);
  } else {
    if (!c->inf)
      c->inf = new_inflater();
    z = c->inf;
  }
  wsc_buf_reserve(&c->zin, 4);
  memcpy(c->zin.p + c->zin.len, "\0\0\xff\xff", 4);
  z->next_in = (Bytef *)c->zin.p;
  z->avail_in = (uInt)(c->zin.len + 4);
  z->next_out = zplain;
  z->avail_out = (uInt)(opt_size + 1);
  int r = inflate(z, Z_SYNC_FLUSH);
  if (r == Z_STREAM_END) {
    inflateReset(z); /* a final block (BFINAL): the next message starts anew */
  } else if (r != Z_OK && r != Z_BUF_ERROR) {
    fatal(c->ws.id, "echo of message %u does not inflate: zlib %d (%s)", seq, r,
          z->msg ? z->msg : "?");
  } else if (z->avail_in != 0) {
    if (z->avail_out == 0)
      fatal(c->ws.id, "echo of message %u inflates to more than the %zu bytes sent",
            seq, opt_size);
    fatal(c->ws.id, "echo of message %u: inflate stopped with %u bytes left", seq,
          z->avail_in);
  }
  size_t got = opt_size + 1 - z->avail_out;
  if (got != opt_size)
    fatal(c->ws.id, "echo of message %u inflates to %zu bytes, sent %zu", seq, got,
          opt_size);
  if (memcmp(zplain, want, opt_size) != 0) {
    size_t i = 0;
    while (zplain[i] == (uint8_t)want[i])
      i++;
    fatal(c->ws.id, "echo of message %u differs from what was sent at byte %zu "
          "(got 0x%02x, sent 0x%02x)", seq, i, zplain[i], (uint8_t)want[i]);
  }
  c->zin.len = 0;
}

static void send_message(conn *c, uint64_t now) {
  uint32_t seq = c->next_seq++;
  size_t slot = c->tail % opt_inflight;
  const uint8_t *m = (const uint8_t *)msg_of(c, seq);
  if (ag_on) {
    size_t n = compress_msg(c, m, opt_size);
    wsc_put_frame(&c->ws, 1, 1, zout, n);
    tx_wire_bytes += n;
  } else {
    wsc_put_frame(&c->ws, 1, 0, m, opt_size);
    tx_wire_bytes += opt_size;
  }
  tx_msg_bytes += opt_size;
  c->sent_at[slot] = now;
  c->sent_seq[slot] = seq;
  c->tail++;
}

/* ---- incoming frames ------------------------------------------------------ */

static void frame_begin(wsc_conn *w) {
  conn *c = (conn *)w;
  int rsv = wsc_frame_rsv(w);
  if (rsv & 3)
    fatal(w->id, "RSV2/RSV3 set (0x%x)", rsv);
  if ((rsv & 4) && !ag_on)
    fatal(w->id, "RSV1 set without permessage-deflate agreed (opcode %d)", w->f_op);
  if ((rsv & 4) && w->f_op != 1 && w->f_op != 2)
    fatal(w->id, "RSV1 set on a frame with opcode %d (only on the first frame "
          "of a data message)", w->f_op);
  uint64_t len = wsc_frame_len(w);
  if (w->f_op >= 8)
    return;
  if (w->f_op != 0) { /* 1 or 2: a new message */
    if (w->in_msg)
      fatal(w->id, "new data frame (opcode %d) inside a fragmented message",
            w->f_op);
    if (c->head == c->tail)
      fatal(w->id, "unexpected message (opcode %d, nothing in flight)", w->f_op);
    if (w->f_op != 1)
      fatal(w->id, "echo has opcode %d, sent 1 (text)", w->f_op);
    w->in_msg = 1;
    c->msg_op = w->f_op;
    c->msg_off = 0;
    c->msg_z = (rsv & 4) != 0;
    c->zin.len = 0;
  }
  if (!c->msg_z && c->msg_off + len > opt_size)
    fatal(c->ws.id, "echo %u is longer than sent: at least %" PRIu64 " bytes, sent %zu",
          c->sent_seq[c->head % opt_inflight], c->msg_off + len, opt_size);
  /* Compressed: a generous bound on the wire size (deflate expands by a few
   * bytes per 16 KiB block at worst). */
  if (c->msg_z && c->msg_off + len > opt_size + opt_size / 8 + 1024)
    fatal(c->ws.id, "compressed echo %u is implausibly long: %" PRIu64 " bytes for %zu",
          c->sent_seq[c->head % opt_inflight], c->msg_off + len, opt_size);
}

static void frame_data(wsc_conn *w, const uint8_t *p, size_t n) {
  conn *c = (conn *)w;
  if (c->msg_z) {
    wsc_buf_reserve(&c->zin, n + 4);
    memcpy(c->zin.p + c->zin.len, p, n);
    c->zin.len += n;
    c->msg_off += n;
    return;
  }
  uint32_t seq = c->sent_seq[c->head % opt_inflight];
  const char *want = msg_of(c, seq);
  if (memcmp(p, want + c->msg_off, n) != 0) {
    size_t i = 0;
    while (i < n && p[i] == (uint8_t)want[c->msg_off + i])
      i++;
    fatal(c->ws.id, "echo of message %u differs from what was sent at byte %" PRIu64
          " (got 0x%02x, sent 0x%02x)", seq, c->msg_off + i, p[i],
          (uint8_t)want[c->msg_off + i]);
  }
  c->msg_off += n;
}

static void mem_all_echoed(void);

static void message_done(wsc_conn *w, uint64_t now) {
  conn *c = (conn *)w;
  size_t slot = c->head % opt_inflight;
  uint32_t seq = c->sent_seq[slot];
  if (c->msg_z) {
    check_compressed(c, seq, msg_of(c, seq));
    rx_z_msgs++;
  } else {
    if (c->msg_off != opt_size)
      fatal(c->ws.id, "echo of message %u has %" PRIu64 " bytes, sent %zu", seq,
            c->msg_off, opt_size);
    rx_plain_msgs++;
  }
  rx_wire_bytes += c->msg_off;
  rx_msg_bytes += opt_size;
  w->in_msg = 0;
  c->head++;
  c->echoed++;
  if (phase == PH_MEASURE) {
    wsc_hist_add(now - c->sent_at[slot]);
    c->measured++;
    n_measured++;
  }
  if ((phase == PH_WARMUP || phase == PH_MEASURE) && !w->sent_close)
    send_message(c, now);
  if (phase == PH_MEM_MSG && ++n_echoed_mem == opt_conns)
    mem_all_echoed();
}

static void close_check(wsc_conn *w) {
  conn *c = (conn *)w;
  if (c->head != c->tail)
    fatal(w->id, "server's close frame came with %" PRIu64
          " echo(es) still missing (lost)", c->tail - c->head);
}

/* ---- handshake ------------------------------------------------------------ */

static void start_run(void);
static void start_connect(int i);

/* Parses the server's Sec-WebSocket-Extensions answer (NULL: none) into the
 * ag_* settings; every connection must get the same answer. */
static void agree(wsc_conn *c, const char *v) {
  char compact[512];
  size_t n = 0;
  if (!v) {
    strcpy(compact, "none");
  } else {
    for (const char *p = v; *p && n < sizeof compact - 1; p++)
      if (*p != ' ' && *p != '\t')
        compact[n++] = *p;
    compact[n] = 0;
  }
  if (ag_checked) {
    if (strcmp(compact, ag_ext) != 0)
      fatal(c->id, "handshake: extensions '%s' differ from the first connection's '%s'",
            compact, ag_ext);
    return;
  }
  ag_checked = 1;
  snprintf(ag_ext, sizeof ag_ext, "%s", compact);
  if (!v)
    return;
  if (opt_no_offer)
    fatal(c->id, "handshake: server chose extensions '%s' that were not offered", v);
  if (strchr(compact, ','))
    fatal(c->id, "handshake: more than one extension chosen: '%s'", v);
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s", compact);
  char *save = NULL, *tok = strtok_r(tmp, ";", &save);
  if (!tok || strcmp(tok, "permessage-deflate") != 0)
    fatal(c->id, "handshake: unexpected extension '%s'", v);
  ag_on = 1;
  int seen_s = 0, seen_c = 0;
  while ((tok = strtok_r(NULL, ";", &save))) {
    if (strcmp(tok, "server_no_context_takeover") == 0 && !ag_snct) {
      ag_snct = 1;
    } else if (strcmp(tok, "client_no_context_takeover") == 0 && !ag_cnct) {
      ag_cnct = 1;
    } else if (strncmp(tok, "server_max_window_bits=", 23) == 0 && !seen_s) {
      seen_s = 1;
      ag_sbits = atoi(tok + 23);
      if (ag_sbits < 8 || ag_sbits > 15)
        fatal(c->id, "handshake: bad server_max_window_bits in '%s'", v);
    } else if (strncmp(tok, "client_max_window_bits=", 23) == 0 && !seen_c) {
      seen_c = 1;
      ag_cbits = atoi(tok + 23);
      if (ag_cbits < 8 || ag_cbits > 15)
        fatal(c->id, "handshake: bad client_max_window_bits in '%s'", v);
      if (ag_cbits == 8)
        fatal(c->id, "handshake: client_max_window_bits=8 (zlib cannot deflate "
              "raw streams with an 8-bit window)");
    } else {
      fatal(c->id, "handshake: bad or repeated parameter '%s' in '%s'", tok, v);
    }
  }
  fprintf(stderr, "ws_load_deflate: agreed: %s\n", v);
  if (opt_mem_pid) { /* the deflater's window depends on the agreement */
    shared_def = new_deflater();
    shared_inf = new_inflater();
  }
}

static void opened(wsc_conn *w) {
  (void)w;
  if (n_started < opt_conns)
    start_connect(n_started++);
  if (++n_open == opt_conns)
    start_run();
}

static void on_closed(wsc_conn *w);

static const wsc_ops ops = {
    .handshake_ext = agree,
    .opened = opened,
    .frame_begin = frame_begin,
    .frame_data = frame_data,
    .message_end = message_done,
    .close_check = close_check,
    .closed = on_closed,
};

static struct sockaddr_in server_addr;

static void start_connect(int i) { wsc_connect(&conns[i].ws, loop, &server_addr); }

/* ---- memory mode ------------------------------------------------------------ */

static long rss_base, rss_open, rss_msg, rss_closed;

static long read_rss(void) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", opt_mem_pid);
  FILE *f = fopen(path, "r");
  if (!f)
    fatal(-1, "cannot open %s (is the server process %d alive?)", path, opt_mem_pid);
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      kib = strtol(line + 6, NULL, 10);
  fclose(f);
  if (kib < 0)
    fatal(-1, "no VmRSS in %s", path);
  return kib;
}

static void mem_after_close(uv_timer_t *t) {
  (void)t;
  rss_closed = read_rss();
  uv_close((uv_handle_t *)&t_setup, NULL);
  uv_close((uv_handle_t *)&t_phase, NULL);
  uv_close((uv_handle_t *)&t_drain, NULL);
}

static void mem_after_msg(uv_timer_t *t) {
  (void)t;
  rss_msg = read_rss();
  fprintf(stderr, "ws_load_deflate: VmRSS %ld KiB after one message per connection\n",
          rss_msg);
  phase = PH_MEM_CLOSE;
  for (int i = 0; i < opt_conns; i++) {
    wsc_send_close(&conns[i].ws);
    wsc_flush(&conns[i].ws);
  }
}

static void mem_all_echoed(void) {
  uv_timer_start(&t_phase, mem_after_msg, SETTLE_MS, 0);
}

static void mem_after_open(uv_timer_t *t) {
  (void)t;
  rss_open = read_rss();
  fprintf(stderr, "ws_load_deflate: VmRSS %ld KiB with %d idle connections\n",
          rss_open, opt_conns);
  phase = PH_MEM_MSG;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < opt_conns; i++) {
    send_message(&conns[i], now);
    wsc_flush(&conns[i].ws);
  }
}

/* ---- phases --------------------------------------------------------------- */

static void on_end(uv_timer_t *t);

static void begin_measure(void) {
  phase = PH_MEASURE;
  t_start = uv_hrtime();
  cpu_start = wsc_self_cpu();
  uv_timer_start(&t_phase, on_end, (uint64_t)(opt_secs * 1000 + 0.5), 0);
}

static void on_warmup_done(uv_timer_t *t) {
  (void)t;
  begin_measure();
}

static void start_run(void) {
  uv_timer_stop(&t_setup);
  if (opt_mem_pid) {
    fprintf(stderr, "ws_load_deflate: %d connections open (extensions: %s)\n",
            opt_conns, ag_ext);
    phase = PH_MEM_IDLE;
    uv_timer_start(&t_phase, mem_after_open, SETTLE_MS, 0);
    return;
  }
  uint64_t now = uv_hrtime();
  for (int i = 0; i < opt_conns; i++) {
    conn *c = &conns[i];
    for (unsigned k = 0; k < opt_inflight; k++)
      send_message(c, now);
    wsc_flush(&c->ws);
  }
  fprintf(stderr, "ws_load_deflate: %d connections open (extensions: %s); "
          "warm-up %.1fs, then %.1fs measured\n", opt_conns, ag_ext, opt_warmup,
          opt_secs);
  if (opt_warmup > 0) {
    phase = PH_WARMUP;
    uv_timer_start(&t_phase, on_warmup_done, (uint64_t)(opt_warmup * 1000 + 0.5), 0);
  } else {
    begin_measure();
  }
}

static void on_drain_timeout(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < opt_conns; i++) {
    conn *c = &conns[i];
    if (c->ws.state == WSC_CLOSED)
      continue;
    if (c->head != c->tail)
      fatal(c->ws.id, "%" PRIu64 " echo(es) not received within %d ms after the run "
            "(lost; %" PRIu64 " echoed on this connection)",
            c->tail - c->head, DRAIN_TIMEOUT_MS, c->echoed);
    if (c->ws.state != WSC_CLOSE_RCVD)
      close_unanswered++;
    wsc_close(&c->ws);
  }
}

static void on_end(uv_timer_t *t) {
  (void)t;
  t_end = uv_hrtime();
  cpu_end = wsc_self_cpu();
  phase = PH_DRAIN;
  for (int i = 0; i < opt_conns; i++) {
    conn *c = &conns[i];
    wsc_send_close(&c->ws);
    wsc_flush(&c->ws);
  }
  uv_timer_start(&t_drain, on_drain_timeout, DRAIN_TIMEOUT_MS, 0);
}

static void on_closed(wsc_conn *w) {
  (void)w;
  if (++n_closed == opt_conns) {
    if (opt_mem_pid) {
      uv_timer_stop(&t_drain);
      uv_timer_start(&t_phase, mem_after_close, SETTLE_MS, 0);
      return;
    }
    uv_close((uv_handle_t *)&t_setup, NULL);
    uv_close((uv_handle_t *)&t_phase, NULL);
    uv_close((uv_handle_t *)&t_drain, NULL);
  }
}

static void on_setup_timeout(uv_timer_t *t) {
  (void)t;
  fatal(-1, "only %d of %d connections finished the handshake within %d ms",
        n_open, opt_conns, SETUP_TIMEOUT_MS);
}

/* ---- main ----------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: ws_load_deflate [-c conns] [-d seconds] [-w warmup] [-s size]\n"
          "                       [-k inflight] [-p path] [-n] [-x] [-S seed]\n"
          "                       [-M pid] [-H ipv4] PORT\n");
  exit(1);
}

#define parse_int wsc_parse_int
#define parse_secs wsc_parse_secs

static double ratio(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0; }

int main(int argc, char **argv) {
  int ch;
  wsc_prog = "ws_load_deflate";
  while ((ch = getopt(argc, argv, "c:d:w:s:k:p:nxS:M:H:")) != -1) {
    switch (ch) {
    case 'c': opt_conns = (int)parse_int(optarg, 1, 100000, "-c"); break;
    case 'd': opt_secs = parse_secs(optarg, 0.001, "-d"); break;
    case 'w': opt_warmup = parse_secs(optarg, 0, "-w"); break;
    case 's': opt_size = (size_t)parse_int(optarg, 1, 16L << 20, "-s"); break;
    case 'k': opt_inflight = (unsigned)parse_int(optarg, 1, 1 << 20, "-k"); break;
    case 'p': opt_path = optarg; break;
    case 'n': opt_cnct = 1; break;
    case 'x': opt_no_offer = 1; break;
    case 'S': opt_seed = (uint64_t)parse_int(optarg, 0, 1L << 62, "-S"); break;
    case 'M': opt_mem_pid = (int)parse_int(optarg, 1, 1L << 30, "-M"); break;
    case 'H': opt_host = optarg; break;
    default: usage();
    }
  }
  if (optind != argc - 1)
    usage();
  opt_port = (int)parse_int(argv[optind], 1, 65535, "PORT");
  if (opt_path[0] != '/' || strpbrk(opt_path, " \r\n"))
    fatal(-1, "path must start with '/' and contain no spaces or line breaks");
  if (opt_mem_pid)
    opt_inflight = 1;

  int r = uv_ip4_addr(opt_host, opt_port, &server_addr);
  if (r)
    fatal(-1, "bad IPv4 address '%s': %s", opt_host, uv_strerror(r));

  wsc_hooks = ops;
  wsc_host = opt_host, wsc_port = opt_port, wsc_path = opt_path;
  wsc_extra_headers =
      opt_no_offer ? ""
      : opt_cnct   ? "Sec-WebSocket-Extensions: permessage-deflate; "
                     "client_no_context_takeover; client_max_window_bits\r\n"
                   : "Sec-WebSocket-Extensions: permessage-deflate; "
                     "client_max_window_bits\r\n";
  wsc_rng_seed();
  gen_state = opt_seed * 0x9E3779B97F4A7C15ULL + 0x1234567;
  if (!gen_state)
    gen_state = 1;
  pool = xmalloc(POOL * opt_size);
  for (size_t i = 0; i < POOL; i++)
    make_message(pool + i * opt_size, opt_size);
  zout_cap = opt_size + opt_size / 8 + 4096;
  zout = xmalloc(zout_cap);
  zplain = xmalloc(opt_size + 1);

  loop = uv_default_loop();
  uv_timer_init(loop, &t_setup);
  uv_timer_init(loop, &t_phase);
  uv_timer_init(loop, &t_drain);
  uv_timer_start(&t_setup, on_setup_timeout, SETUP_TIMEOUT_MS, 0);

  conns = calloc((size_t)opt_conns, sizeof *conns);
  if (!conns)
    fatal(-1, "out of memory");
  for (int i = 0; i < opt_conns; i++) {
    conn *c = &conns[i];
    c->ws.id = i;
    c->sent_at = xmalloc(opt_inflight * sizeof *c->sent_at);
    c->sent_seq = xmalloc(opt_inflight * sizeof *c->sent_seq);
  }
  if (opt_mem_pid)
    rss_base = read_rss();
  while (n_started < opt_conns && n_started < MAX_CONNECTING)
    start_connect(n_started++);

  uv_run(loop, UV_RUN_DEFAULT);

  if (opt_mem_pid) {
    printf("MEM conns=%d size=%zu rss_base_kib=%ld rss_open_kib=%ld rss_msg_kib=%ld "
           "rss_closed_kib=%ld open_per_conn_kib=%.1f msg_per_conn_kib=%.1f "
           "tx_ratio=%.3f rx_ratio=%.3f rx_compressed=%.2f ext=%s\n",
           opt_conns, opt_size, rss_base, rss_open, rss_msg, rss_closed,
           (double)(rss_open - rss_base) / opt_conns,
           (double)(rss_msg - rss_base) / opt_conns, ratio(tx_wire_bytes, tx_msg_bytes),
           ratio(rx_wire_bytes, rx_msg_bytes),
           ratio(rx_z_msgs, rx_z_msgs + rx_plain_msgs), ag_ext);
    fflush(stdout);
    return 0;
  }

  double secs = (double)(t_end - t_start) / 1e9;
  uint64_t cmin = UINT64_MAX, cmax = 0, all = 0;
  for (int i = 0; i < opt_conns; i++) {
    all += conns[i].echoed;
    if (conns[i].measured < cmin)
      cmin = conns[i].measured;
    if (conns[i].measured > cmax)
      cmax = conns[i].measured;
  }
  if (n_measured == 0)
    fatal(-1, "no echo received in the measured %.2fs", secs);
  fprintf(stderr, "ws_load_deflate: %" PRIu64 " echoes in %.3fs; per connection min %"
          PRIu64 " max %" PRIu64 "%s\n", n_measured, secs, cmin, cmax,
          cmin == 0 ? " (some connection got no echo: starved?)" : "");
  if (close_unanswered)
    fprintf(stderr, "ws_load_deflate: warning: %d connection(s) got no close frame "
            "back within %d ms (all echoes had arrived)\n", close_unanswered,
            DRAIN_TIMEOUT_MS);
  printf("RESULT msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
         "mean_us=%.1f msgs=%" PRIu64 " secs=%.3f conns=%d size=%zu inflight=%u "
         "tx_ratio=%.3f rx_ratio=%.3f rx_compressed=%.2f client_cpu=%.2f all_msgs=%" PRIu64
         " ext=%s\n",
         (double)n_measured / secs, wsc_hist_pct(0.50) / 1e3, wsc_hist_pct(0.99) / 1e3,
         wsc_hist_pct(0.999) / 1e3, (double)wsc_hist_max / 1e3,
         wsc_hist_sum / (double)wsc_hist_n / 1e3, n_measured, secs, opt_conns, opt_size,
         opt_inflight, ratio(tx_wire_bytes, tx_msg_bytes),
         ratio(rx_wire_bytes, rx_msg_bytes), ratio(rx_z_msgs, rx_z_msgs + rx_plain_msgs),
         (cpu_end - cpu_start) / secs, all, ag_ext);
  fflush(stdout);
  return 0;
}
