/* ws_load: a WebSocket echo load generator on libuv.
 *
 * An independent client (it uses none of talon's code): it opens CONNS
 * connections to ws://HOST:PORT/PATH, does the RFC 6455 client handshake
 * (random 16-byte key, checks the 101 and Sec-WebSocket-Accept), then each
 * connection keeps INFLIGHT messages of SIZE bytes in flight: every echo
 * that comes back is checked and answered with a new message. Frames are
 * masked as a client must. Messages echoed during the measured window
 * (after the warm-up) are counted and their round-trip time recorded.
 *
 *   ws_load [-c conns] [-d seconds] [-w warmup] [-s size] [-k inflight]
 *           [-p path] [-b] [-H host] PORT
 *
 *   -c N   connections                              [64]
 *   -d S   measured seconds                         [10]
 *   -w S   warm-up seconds, not counted             [1]
 *   -s N   message size in bytes                    [32]
 *   -k N   messages in flight per connection        [1]  (1 = ping-pong)
 *   -p P   request path                             [/ws]
 *   -b     binary messages (default: text, printable ASCII)
 *   -H IP  server IPv4 address                      [127.0.0.1]
 *
 * Each echo is checked: opcode, length and every byte (messages differ from
 * one another, so a lost, duplicated or reordered echo is caught too).
 * Fragmented echoes, split reads, pings (answered) and pongs (ignored) are
 * handled. Anything else the server does wrong is a protocol error.
 *
 * When the time is up every connection sends a close frame (1000) after its
 * last message and waits for the echoes still in flight and the server's
 * close frame; an echo that never comes is an error.
 *
 * Output: one line on stdout,
 *   RESULT msgs_per_s=N p50_us=X p99_us=X p999_us=X max_us=X mean_us=X
 *          msgs=N secs=X conns=N size=N inflight=N mode=text|binary
 * (on one line), details on stderr. Exit status 0 on success, 1 on a
 * usage error, a failed connection or handshake, a protocol error or a
 * wrong or missing echo.
 *
 * Build: gcc -O2 -o ws_load ws_load.c wsclient.c -luv
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "wsclient.h"

#define SETUP_TIMEOUT_MS 10000 /* connect + handshake of every connection */
#define DRAIN_TIMEOUT_MS 5000  /* outstanding echoes + close handshake */
#define PAT_SPREAD 251         /* message i starts at pattern[i % 251] */

#define fatal wsc_fatal
#define xmalloc wsc_xmalloc

/* ---- settings ------------------------------------------------------------ */

static int opt_conns = 64;
static double opt_secs = 10;
static double opt_warmup = 1;
static size_t opt_size = 32;
static unsigned opt_inflight = 1;
static const char *opt_path = "/ws";
static int opt_binary = 0;
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;

/* ---- connections ---------------------------------------------------------- */

enum { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN };
static int phase = PH_SETUP;

typedef struct conn {
  wsc_conn ws; /* first: a wsc_conn * is a conn * */
  int msg_op;
  uint64_t msg_off; /* bytes of the current message seen */
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
static uint8_t *pattern; /* opt_size + PAT_SPREAD bytes */
static int n_open, n_closed;
static uint64_t t_start, t_end; /* measured window, ns */
static uv_timer_t t_setup, t_phase, t_drain;
static uint64_t n_measured;
static int close_unanswered;

static void send_message(conn *c, uint64_t now) {
  uint32_t seq = c->next_seq++;
  size_t slot = c->tail % opt_inflight;
  wsc_put_frame(&c->ws, opt_binary ? 2 : 1, 0, pattern + seq % PAT_SPREAD, opt_size);
  c->sent_at[slot] = now;
  c->sent_seq[slot] = seq;
  c->tail++;
}

/* ---- incoming frames ------------------------------------------------------ */

static void frame_begin(wsc_conn *w) {
  conn *c = (conn *)w;
  int rsv = wsc_frame_rsv(w);
  if (rsv)
    fatal(w->id, "RSV bits 0x%x set without a negotiated extension", rsv);
  uint64_t len = wsc_frame_len(w);
  if (w->f_op >= 8)
    return;
  if (w->f_op != 0) { /* 1 or 2: a new message */
    if (w->in_msg)
      fatal(w->id, "new data frame (opcode %d) inside a fragmented message",
            w->f_op);
    if (c->head == c->tail)
      fatal(w->id, "unexpected message (opcode %d, nothing in flight)", w->f_op);
    if (w->f_op != (opt_binary ? 2 : 1))
      fatal(w->id, "echo has opcode %d, sent %d", w->f_op, opt_binary ? 2 : 1);
    w->in_msg = 1;
    c->msg_op = w->f_op;
    c->msg_off = 0;
  }
  if (c->msg_off + len > opt_size)
    fatal(w->id, "echo %u is longer than sent: at least %" PRIu64 " bytes, sent %zu",
          c->sent_seq[c->head % opt_inflight], c->msg_off + len, opt_size);
}

static void frame_data(wsc_conn *w, const uint8_t *p, size_t n) {
  conn *c = (conn *)w;
  uint32_t seq = c->sent_seq[c->head % opt_inflight];
  if (memcmp(p, pattern + seq % PAT_SPREAD + c->msg_off, n) != 0) {
    size_t i = 0;
    while (i < n && p[i] == pattern[seq % PAT_SPREAD + c->msg_off + i])
      i++;
    fatal(w->id, "echo of message %u differs from what was sent at byte %" PRIu64
          " (got 0x%02x, sent 0x%02x)", seq, c->msg_off + i, p[i],
          pattern[seq % PAT_SPREAD + c->msg_off + i]);
  }
  c->msg_off += n;
}

static void message_done(wsc_conn *w, uint64_t now) {
  conn *c = (conn *)w;
  size_t slot = c->head % opt_inflight;
  if (c->msg_off != opt_size)
    fatal(w->id, "echo of message %u has %" PRIu64 " bytes, sent %zu",
          c->sent_seq[slot], c->msg_off, opt_size);
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
}

static void close_check(wsc_conn *w) {
  conn *c = (conn *)w;
  if (c->head != c->tail)
    fatal(w->id, "server's close frame came with %" PRIu64
          " echo(es) still missing (lost)", c->tail - c->head);
}

static void start_run(void);

static void opened(wsc_conn *w) {
  (void)w;
  if (++n_open == opt_conns)
    start_run();
}

static void on_closed(wsc_conn *w);

static const wsc_ops ops = {
    .opened = opened,
    .frame_begin = frame_begin,
    .frame_data = frame_data,
    .message_end = message_done,
    .close_check = close_check,
    .closed = on_closed,
};

/* ---- phases --------------------------------------------------------------- */

static void on_end(uv_timer_t *t);

static void begin_measure(void) {
  phase = PH_MEASURE;
  t_start = uv_hrtime();
  uv_timer_start(&t_phase, on_end, (uint64_t)(opt_secs * 1000 + 0.5), 0);
}

static void on_warmup_done(uv_timer_t *t) {
  (void)t;
  begin_measure();
}

static void start_run(void) {
  uv_timer_stop(&t_setup);
  uint64_t now = uv_hrtime();
  for (int i = 0; i < opt_conns; i++) {
    conn *c = &conns[i];
    for (unsigned k = 0; k < opt_inflight; k++)
      send_message(c, now);
    wsc_flush(&c->ws);
  }
  fprintf(stderr, "ws_load: %d connections open; warm-up %.1fs, then %.1fs measured\n",
          opt_conns, opt_warmup, opt_secs);
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
          "usage: ws_load [-c conns] [-d seconds] [-w warmup] [-s size] [-k inflight]\n"
          "               [-p path] [-b] [-H ipv4] PORT\n");
  exit(1);
}

#define parse_int wsc_parse_int
#define parse_secs wsc_parse_secs

int main(int argc, char **argv) {
  int ch;
  wsc_prog = "ws_load";
  while ((ch = getopt(argc, argv, "c:d:w:s:k:p:bH:")) != -1) {
    switch (ch) {
    case 'c': opt_conns = (int)parse_int(optarg, 1, 100000, "-c"); break;
    case 'd': opt_secs = parse_secs(optarg, 0.001, "-d"); break;
    case 'w': opt_warmup = parse_secs(optarg, 0, "-w"); break;
    case 's': opt_size = (size_t)parse_int(optarg, 0, 1L << 30, "-s"); break;
    case 'k': opt_inflight = (unsigned)parse_int(optarg, 1, 1 << 20, "-k"); break;
    case 'p': opt_path = optarg; break;
    case 'b': opt_binary = 1; break;
    case 'H': opt_host = optarg; break;
    default: usage();
    }
  }
  if (optind != argc - 1)
    usage();
  opt_port = (int)parse_int(argv[optind], 1, 65535, "PORT");
  if (opt_path[0] != '/' || strpbrk(opt_path, " \r\n"))
    fatal(-1, "path must start with '/' and contain no spaces or line breaks");

  struct sockaddr_in addr;
  int r = uv_ip4_addr(opt_host, opt_port, &addr);
  if (r)
    fatal(-1, "bad IPv4 address '%s': %s", opt_host, uv_strerror(r));
  wsc_hooks = ops;
  wsc_host = opt_host, wsc_port = opt_port, wsc_path = opt_path;

  wsc_rng_seed();
  pattern = xmalloc(opt_size + PAT_SPREAD);
  for (size_t i = 0; i < opt_size + PAT_SPREAD; i++) {
    uint64_t x = wsc_rng();
    /* text: printable ASCII, so the message is valid UTF-8 */
    pattern[i] = opt_binary ? (uint8_t)(x >> 32) : (uint8_t)(' ' + (x >> 32) % 95);
  }

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
    wsc_buf_reserve(&c->ws.out, opt_inflight * (opt_size + 14) + 256);
    wsc_buf_reserve(&c->ws.wbuf, opt_inflight * (opt_size + 14) + 256);
    wsc_connect(&c->ws, loop, &addr);
  }

  uv_run(loop, UV_RUN_DEFAULT);

  double secs = (double)(t_end - t_start) / 1e9;
  uint64_t cmin = UINT64_MAX, cmax = 0;
  for (int i = 0; i < opt_conns; i++) {
    if (conns[i].measured < cmin)
      cmin = conns[i].measured;
    if (conns[i].measured > cmax)
      cmax = conns[i].measured;
  }
  if (n_measured == 0)
    fatal(-1, "no echo received in the measured %.2fs", secs);
  fprintf(stderr, "ws_load: %" PRIu64 " echoes in %.3fs; per connection min %" PRIu64
          " max %" PRIu64 "%s\n", n_measured, secs, cmin, cmax,
          cmin == 0 ? " (some connection got no echo: starved?)" : "");
  if (close_unanswered)
    fprintf(stderr, "ws_load: warning: %d connection(s) got no close frame back "
            "within %d ms (all echoes had arrived)\n", close_unanswered,
            DRAIN_TIMEOUT_MS);
  printf("RESULT msgs_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
         "mean_us=%.1f msgs=%" PRIu64 " secs=%.3f conns=%d size=%zu inflight=%u "
         "mode=%s\n",
         (double)n_measured / secs, wsc_hist_pct(0.50) / 1e3, wsc_hist_pct(0.99) / 1e3,
         wsc_hist_pct(0.999) / 1e3, (double)wsc_hist_max / 1e3,
         wsc_hist_sum / (double)wsc_hist_n / 1e3, n_measured, secs, opt_conns, opt_size,
         opt_inflight, opt_binary ? "binary" : "text");
  fflush(stdout);
  for (int i = 0; i < opt_conns; i++) {
    free(conns[i].sent_at), free(conns[i].sent_seq);
    free(conns[i].ws.out.p), free(conns[i].ws.wbuf.p), free(conns[i].ws.hs);
  }
  free(conns);
  free(pattern);
  uv_loop_close(loop);
  return 0;
}
