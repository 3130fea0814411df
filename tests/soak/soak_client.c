/* soak_client: the load side of the WebSocket pub/sub soak test (see
 * tests/soak/README.md and soak_server.c for the protocol). libuv and
 * OpenSSL's SHA-1 only; none of talon's code.
 *
 * Usage: soak_client [options] PORT
 *   -c CONNS     connection slots [2000]
 *   -t SECONDS   length of the random phase [60]
 *   -k TOPICS    topics t0..t<K-1> [50]; must not exceed the server's
 *   -p RATE      publishes per second, all connections together [2000]
 *   -r RATE      new connections per second at most [500]
 *   -l SECONDS   mean connection lifetime (exponential) [20]
 *   -s N         source addresses 127.0.0.1..127.0.0.N to bind before
 *                connect (0: let the kernel choose) [0, or CONNS/10000+1
 *                above 20000 connections]
 *   -m KIB       heap growth allowed after everybody left [64 + CONNS/64:
 *                64 KiB, plus libuv's per-descriptor watcher table (8
 *                bytes per descriptor up to the next power of two, never
 *                shrunk) for the peak descriptor count]
 *   -w CONNS     warm-up connections [50]
 *
 * Phases: warm-up (a few connections subscribe to every topic, publish to
 * each, leave); baseline heap read from GET /stats once the server reports
 * no open connection; the random phase (connect, subscribe, publish,
 * unsubscribe, disconnect cleanly or with a reset, reconnect); drain
 * (every connection unsubscribes from everything, checks that every
 * message up to the unsubscribe ack arrived, and closes); final heap once
 * the server reports no open connection. Every message is checked in
 * order per topic and connection (see check_seq). Exit status 0 only if
 * nothing failed; the summary goes to stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <uv.h>

#define TICK_MS 20
#define STATS_MS 1000
#define MAX_PAYLOAD 200
#define SUB_MAX 4            /* topics one connection holds at most */
#define TOGGLE_MEAN_MS 2000  /* mean time between sub/unsub per connection */
#define DRAIN_LIMIT_MS 60000 /* drain must finish within this */
#define IDLE_LIMIT_MS 30000  /* server must report 0 open within this */

/* ---- options, counters ------------------------------------------------- */

static struct {
  int conns, seconds, topics, warm, srcaddrs;
  double pubrate, connrate, lifetime;
  long slack_kb;
  int port;
} opt = {2000, 60, 50, 50, -1, 2000, 500, 20, -1, 0};

static struct {
  uint64_t connects, opened, open_now, peak_open;
  uint64_t leave_closes, frame_closes, resets;
  uint64_t pubs_sent, pubs_acked, msgs, verified, own, app_own;
  uint64_t windows; /* unsubscribe acks whose window was complete */
  uint64_t gap_msgs, gap_events, excused, dups, unexpected, corrupt;
  uint64_t tail_missing, errors, sent_missing;
} n;

static int err_printed;

static void fail_msg(int slot, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail_msg(int slot, const char *fmt, ...) {
  if (err_printed++ >= 30)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "soak_client: slot %d: ", slot);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "soak_client: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static void *xrealloc(void *p, size_t size) {
  p = realloc(p, size ? size : 1);
  if (!p)
    die("out of memory");
  return p;
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}
static double rnd01(void) {
  return (double)(rng() >> 11) / 9007199254740992.0;
}
static int rnd(int n) {
  return (int)(rng() % (uint64_t)n);
}

/* ---- GET /stats, blocking (the server is another process) -------------- */

typedef struct {
  long long open, opened, published, deliveries, drops, errors, heap, rss_kb;
} srv_stats;

static long long json_num(const char *body, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(body, pat);
  if (!p)
    die("/stats has no %s: %s", key, body);
  return strtoll(p + strlen(pat), NULL, 10);
}

static srv_stats get_stats(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    die("socket: %s", strerror(errno));
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)opt.port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a))
    die("GET /stats: connect: %s", strerror(errno));
  const char req[] = "GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n";
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1))
    die("GET /stats: write: %s", strerror(errno));
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      die("GET /stats: read: %s", strerror(errno));
    if (r == 0 || (len += (size_t)r) == sizeof buf - 1)
      break;
  }
  close(fd);
  buf[len] = 0;
  const char *body = strstr(buf, "\r\n\r\n");
  if (strncmp(buf, "HTTP/1.1 200", 12) != 0 || !body)
    die("GET /stats: bad response: %.200s", buf);
  srv_stats s = {json_num(body, "open"),      json_num(body, "opened"),
                 json_num(body, "published"), json_num(body, "deliveries"),
                 json_num(body, "drops"),     json_num(body, "errors"),
                 json_num(body, "heap"),      json_num(body, "rss_kb")};
  return s;
}

/* ---- connection slots -------------------------------------------------- */

enum {
  S_IDLE,       /* no socket; reconnects at reconnect_at */
  S_CONNECTING, /* TCP connect, then the handshake */
  S_HANDSHAKE,
  S_OPEN,
  S_LEAVING, /* unsubscribing from everything, then a close frame */
  S_CLOSING, /* our close frame is out; waiting for the server's and EOF */
  S_GOT_CLOSE,
  S_HANDLE_CLOSING /* uv_close in progress */
};

/* Per topic, as seen in the received stream: the server has us subscribed
 * in T_SUB and T_UNSUBP (between the two acks). */
enum { T_NONE, T_SUBP, T_SUB, T_UNSUBP };

typedef struct {
  char *p;
  size_t len, cap;
} buf;

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  int idx, state, writing;
  buf out, wbuf, in;
  char accept[32];
  uint8_t *tstate;  /* per topic */
  uint64_t *next;   /* per topic: next sequence number expected */
  int nsub;         /* topics in T_SUBP or T_SUB */
  int acks_pending; /* sub/unsub commands without their ack */
  long pubs_pending;
  uint64_t end_at, reconnect_at;
  uint64_t drops; /* the server's dropped count for us, last reported */
  uint64_t gaps;  /* missing messages seen on this connection */
  int graceful;   /* the close was the leave path: everything accounted */
} slot;

static uv_loop_t *loop;
static slot *slots;
static struct sockaddr_in srv_addr;
static uv_timer_t tick_timer;

enum { P_WARM, P_RUN, P_DRAIN, P_IDLE_WAIT, P_DONE };
static int phase;
static uint64_t phase_start, run_start, run_end, last_stats, last_progress;
static double connect_tokens, pub_tokens;
static int connect_cursor;
static srv_stats st_base, st_final;
static long long heap_peak, rss_peak, rss_base;

static void buf_add(buf *b, const void *p, size_t len) {
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + len)
      cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, len);
  b->len += len;
}

static void hard_close(slot *s);

/* ---- output ------------------------------------------------------------ */

static void on_write(uv_write_t *req, int status);

static void flush(slot *s) {
  if (s->writing || !s->out.len || s->state == S_HANDLE_CLOSING ||
      s->state == S_IDLE)
    return;
  uv_buf_t b = uv_buf_init(s->out.p, (unsigned)s->out.len);
  int r = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
  if (r == (int)s->out.len) {
    s->out.len = 0;
    return;
  }
  if (r < 0 && r != UV_EAGAIN) {
    n.errors++;
    fail_msg(s->idx, "write: %s", uv_strerror(r));
    hard_close(s);
    return;
  }
  if (r < 0)
    r = 0;
  buf t = s->wbuf;
  s->wbuf = s->out;
  s->out = t;
  s->out.len = 0;
  b = uv_buf_init(s->wbuf.p + r, (unsigned)(s->wbuf.len - (size_t)r));
  s->writing = 1;
  r = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, on_write);
  if (r) {
    s->writing = 0;
    n.errors++;
    fail_msg(s->idx, "uv_write: %s", uv_strerror(r));
    hard_close(s);
  }
}

static void on_write(uv_write_t *req, int status) {
  slot *s = req->data;
  s->writing = 0;
  s->wbuf.len = 0;
  if (s->state == S_HANDLE_CLOSING)
    return;
  if (status < 0) {
    n.errors++;
    fail_msg(s->idx, "write: %s", uv_strerror(status));
    hard_close(s);
    return;
  }
  flush(s);
}

/* One masked frame with FIN set. */
static void put_frame(slot *s, int op, const char *data, size_t len) {
  uint8_t h[14];
  size_t hl = 2;
  h[0] = (uint8_t)(0x80 | op);
  if (len < 126) {
    h[1] = (uint8_t)(0x80 | len);
  } else {
    h[1] = 0x80 | 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    hl = 4;
  }
  uint32_t m = (uint32_t)rng();
  memcpy(h + hl, &m, 4);
  const uint8_t *mask = h + hl;
  hl += 4;
  buf_add(&s->out, h, hl);
  char *d = s->out.p + s->out.len;
  buf_add(&s->out, data, len);
  for (size_t i = 0; i < len; i++)
    d[i] = (char)(d[i] ^ mask[i & 3]);
}

static void send_text(slot *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void send_text(slot *s, const char *fmt, ...) {
  char m[MAX_PAYLOAD + 64];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  put_frame(s, 1, m, (size_t)len);
}

static void send_close(slot *s) {
  const char code[2] = {(char)(1000 >> 8), (char)(1000 & 0xff)};
  put_frame(s, 8, code, 2);
  s->state = S_CLOSING;
}

/* ---- payloads: self-checking, so corruption shows --------------------- */

static size_t make_payload(char *p) {
  int len = rnd(MAX_PAYLOAD - 8);
  int hl = snprintf(p, 16, "%d:", len);
  for (int i = 0; i < len; i++)
    p[hl + i] = (char)('a' + (i * 7 + len) % 26);
  return (size_t)(hl + len);
}

static int payload_ok(const char *p, size_t size) {
  char *e;
  long len = strtol(p, &e, 10);
  if (e == p || (size_t)(e - p) >= size || *e != ':' ||
      (size_t)(e + 1 - p) + (size_t)len != size)
    return 0;
  for (long i = 0; i < len; i++)
    if (e[1 + i] != (char)('a' + (i * 7 + len) % 26))
      return 0;
  return 1;
}

/* ---- commands ----------------------------------------------------------- */

static void subscribe(slot *s, int k) {
  s->tstate[k] = T_SUBP;
  s->nsub++;
  s->acks_pending++;
  send_text(s, "sub %d", k);
}

static void unsubscribe(slot *s, int k) {
  s->tstate[k] = T_UNSUBP;
  s->nsub--;
  s->acks_pending++;
  send_text(s, "unsub %d", k);
}

static void publish(slot *s, int k, char mode) {
  char p[MAX_PAYLOAD];
  size_t len = make_payload(p);
  send_text(s, "pub %d %c %.*s", k, mode, (int)len, p);
  s->pubs_pending++;
  n.pubs_sent++;
}

/* The leave path: unsubscribe from every topic held; once every ack is in
 * (each checked the window was complete), send the close frame. */
static void leave_step(slot *s) {
  for (int k = 0; k < opt.topics; k++)
    if (s->tstate[k] == T_SUB)
      unsubscribe(s, k);
  if (s->acks_pending == 0)
    send_close(s);
}

static void start_leaving(slot *s) {
  s->state = S_LEAVING;
  s->graceful = 1;
  leave_step(s);
  flush(s);
}

/* ---- incoming messages ----------------------------------------------------
 */

/* A message numbered `seq` on topic k (own: our 'w' publish, whose "sent"
 * reply stands in for it). In order means exactly next[k]. */
static void check_seq(slot *s, int k, uint64_t seq, int own) {
  if (s->tstate[k] != T_SUB && s->tstate[k] != T_UNSUBP) {
    n.unexpected++;
    fail_msg(s->idx, "message %" PRIu64 " on topic %d while not subscribed",
             seq, k);
    return;
  }
  if (seq < s->next[k]) {
    n.dups++;
    fail_msg(s->idx,
             "topic %d: got %" PRIu64 " after %" PRIu64
             " (duplicate or reordered)",
             k, seq, s->next[k] - 1);
    return;
  }
  if (seq > s->next[k]) {
    n.gap_events++;
    n.gap_msgs += seq - s->next[k];
    s->gaps += seq - s->next[k];
    fail_msg(s->idx, "topic %d: got %" PRIu64 ", expected %" PRIu64 " (gap)", k,
             seq, s->next[k]);
  }
  s->next[k] = seq + 1;
  if (own)
    n.own++;
  else
    n.verified++;
}

static void on_text(slot *s, const char *m, size_t len) {
  char line[MAX_PAYLOAD + 96];
  if (len >= sizeof line)
    goto bad;
  memcpy(line, m, len);
  line[len] = 0;
  int k, off = 0;
  unsigned long long seq, d;
  long pid;
  char mode;
  if (sscanf(line, "msg %d %llu %ld %n", &k, &seq, &pid, &off) == 3 && off) {
    if (k < 0 || k >= opt.topics)
      goto bad;
    n.msgs++;
    if (!payload_ok(line + off, len - (size_t)off)) {
      n.corrupt++;
      fail_msg(s->idx, "corrupt message '%s'", line);
    }
    check_seq(s, k, seq, 0);
  } else if (sscanf(line, "sent %d %llu %c %llu", &k, &seq, &mode, &d) == 4) {
    if (k < 0 || k >= opt.topics || s->pubs_pending <= 0)
      goto bad;
    s->pubs_pending--;
    s->drops = d;
    n.pubs_acked++;
    int held = s->tstate[k] == T_SUB || s->tstate[k] == T_UNSUBP;
    if (mode == 'w' && held) {
      check_seq(s, k, seq, 1);
    } else if (mode == 'a' && held) {
      /* tl_app_publish reaches the sender too, before this reply. */
      if (s->next[k] != seq + 1) {
        n.gap_events++;
        n.gap_msgs++;
        s->gaps++;
        fail_msg(s->idx,
                 "topic %d: own app publish %llu not received "
                 "(next %" PRIu64 ")",
                 k, seq, s->next[k]);
      } else {
        n.app_own++;
      }
    }
  } else if (sscanf(line, "ack sub %d %llu %llu", &k, &seq, &d) == 3) {
    if (k < 0 || k >= opt.topics || s->tstate[k] != T_SUBP)
      goto bad;
    s->drops = d;
    s->acks_pending--;
    s->tstate[k] = T_SUB;
    s->next[k] = seq + 1;
    if (s->state == S_LEAVING)
      leave_step(s);
  } else if (sscanf(line, "ack unsub %d %llu %llu", &k, &seq, &d) == 3) {
    if (k < 0 || k >= opt.topics || s->tstate[k] != T_UNSUBP)
      goto bad;
    s->drops = d;
    s->acks_pending--;
    s->tstate[k] = T_NONE;
    if (s->next[k] < seq + 1) {
      /* Published to the topic before we left it, never received. */
      n.tail_missing += seq + 1 - s->next[k];
      s->gaps += seq + 1 - s->next[k];
      fail_msg(s->idx, "topic %d: left at %llu, last received %" PRIu64, k, seq,
               s->next[k] - 1);
    } else if (s->next[k] > seq + 1) {
      n.dups++;
      fail_msg(s->idx, "topic %d: received %" PRIu64 " past the unsub ack %llu",
               k, s->next[k] - 1, seq);
    } else {
      n.windows++;
    }
    if (s->state == S_LEAVING)
      leave_step(s);
  } else {
    goto bad;
  }
  return;
bad:
  n.unexpected++;
  fail_msg(s->idx, "unexpected message '%.*s'", (int)(len > 120 ? 120 : len),
           m);
}

/* ---- frames ---------------------------------------------------------------
 */

/* Parses whole frames from s->in; returns -1 after closing the slot. */
static int parse_frames(slot *s) {
  size_t pos = 0;
  while (s->in.len - pos >= 2) {
    const uint8_t *h = (const uint8_t *)s->in.p + pos;
    size_t avail = s->in.len - pos, hl = 2;
    uint64_t len = h[1] & 127;
    if (h[1] & 0x80 || (h[0] & 0x70) || !(h[0] & 0x80)) {
      n.errors++;
      fail_msg(s->idx, "bad frame header %02x %02x (masked, RSV or not FIN)",
               h[0], h[1]);
      hard_close(s);
      return -1;
    }
    if (len == 126) {
      if (avail < 4)
        break;
      len = (uint64_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (len == 127) {
      if (avail < 10)
        break;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | h[2 + i];
      hl = 10;
    }
    if (avail - hl < len)
      break;
    const char *p = (const char *)h + hl;
    int op = h[0] & 15;
    pos += hl + (size_t)len;
    if (op == 1) {
      if (s->state == S_GOT_CLOSE) {
        n.errors++;
        fail_msg(s->idx, "text frame after the close frame");
      }
      on_text(s, p, (size_t)len);
    } else if (op == 8) {
      if (s->state != S_CLOSING) {
        n.errors++;
        fail_msg(s->idx, "server closed the connection (state %d, code %d)",
                 s->state, len >= 2 ? (uint8_t)p[0] << 8 | (uint8_t)p[1] : 0);
        hard_close(s);
        return -1;
      }
      s->state = S_GOT_CLOSE; /* the server closes TCP next */
    } else if (op == 9) {
      put_frame(s, 10, p, (size_t)len);
    } else if (op != 10) {
      n.errors++;
      fail_msg(s->idx, "unexpected opcode %d", op);
      hard_close(s);
      return -1;
    }
  }
  memmove(s->in.p, s->in.p + pos, s->in.len - pos);
  s->in.len -= pos;
  return 0;
}

/* ---- connection life ---------------------------------------------------- */

static void slot_reset(slot *s) {
  memset(s->tstate, 0, (size_t)opt.topics);
  s->nsub = s->acks_pending = 0;
  s->pubs_pending = 0;
  s->out.len = s->wbuf.len = s->in.len = 0;
  s->writing = 0;
  s->drops = s->gaps = 0;
  s->graceful = 0;
}

static void on_closed(uv_handle_t *h) {
  slot *s = h->data;
  if (s->gaps) {
    if (s->drops)
      n.excused += s->gaps;
  }
  s->state = S_IDLE;
  s->reconnect_at = uv_now(loop) + (uint64_t)rnd(1000);
  slot_reset(s);
}

static void close_slot(slot *s, int reset) {
  if (s->state == S_HANDLE_CLOSING || s->state == S_IDLE)
    return;
  if (s->state >= S_OPEN)
    n.open_now--;
  s->state = S_HANDLE_CLOSING;
  if (reset && uv_tcp_close_reset(&s->tcp, on_closed) == 0)
    return;
  uv_close((uv_handle_t *)&s->tcp, on_closed);
}

static void hard_close(slot *s) {
  close_slot(s, 1);
}

static void on_opened(slot *s) {
  n.opened++;
  if (++n.open_now > n.peak_open)
    n.peak_open = n.open_now;
  s->state = S_OPEN;
  uint64_t now = uv_now(loop);
  if (phase == P_WARM) {
    /* Warm-up: touch every topic once (the server's topic table reaches
     * its size), publish to each, leave. */
    for (int k = s->idx; k < opt.topics; k += opt.warm) {
      subscribe(s, k);
      publish(s, k, 'a');
    }
    start_leaving(s);
    return;
  }
  if (phase != P_RUN) {
    start_leaving(s);
    return;
  }
  double life = -log(1.0 - rnd01()) * opt.lifetime * 1000.0;
  s->end_at = now + 200 + (uint64_t)life;
  subscribe(s, rnd(opt.topics));
  flush(s);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  slot *s = st->data;
  if (nread == 0 || s->state == S_HANDLE_CLOSING)
    return;
  if (nread < 0) {
    if (nread == UV_EOF && s->state == S_GOT_CLOSE) {
      if (s->graceful && s->pubs_pending) {
        n.sent_missing += (uint64_t)s->pubs_pending;
        fail_msg(s->idx, "%ld publishes without a reply", s->pubs_pending);
      }
      close_slot(s, 0);
      return;
    }
    n.errors++;
    fail_msg(s->idx, "read in state %d: %s", s->state, uv_strerror((int)nread));
    hard_close(s);
    return;
  }
  buf_add(&s->in, b->base, (size_t)nread);
  if (s->state == S_HANDSHAKE) {
    char *end = memmem(s->in.p, s->in.len, "\r\n\r\n", 4);
    if (!end) {
      if (s->in.len > 8192) {
        n.errors++;
        fail_msg(s->idx, "handshake response too long");
        hard_close(s);
      }
      return;
    }
    size_t hl = (size_t)(end + 4 - s->in.p);
    char hdr[8193];
    memcpy(hdr, s->in.p, hl);
    hdr[hl] = 0;
    char want[64];
    snprintf(want, sizeof want, "\r\nSec-WebSocket-Accept: %s\r\n", s->accept);
    if (strncmp(hdr, "HTTP/1.1 101 ", 13) != 0 || !strcasestr(hdr, want)) {
      n.errors++;
      fail_msg(s->idx, "handshake failed: %.200s", hdr);
      hard_close(s);
      return;
    }
    memmove(s->in.p, s->in.p + hl, s->in.len - hl);
    s->in.len -= hl;
    on_opened(s);
  }
  if (parse_frames(s) == 0)
    flush(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  static char rbuf[256 * 1024];
  *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_connect(uv_connect_t *req, int status) {
  slot *s = req->data;
  if (s->state == S_HANDLE_CLOSING)
    return;
  if (status < 0) {
    n.errors++;
    fail_msg(s->idx, "connect: %s", uv_strerror(status));
    hard_close(s);
    return;
  }
  uint8_t key[16], digest[20];
  char key64[32], cat[96];
  for (int i = 0; i < 16; i++)
    key[i] = (uint8_t)rng();
  EVP_EncodeBlock((unsigned char *)key64, key, 16);
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key64);
  SHA1((const unsigned char *)cat, strlen(cat), digest);
  EVP_EncodeBlock((unsigned char *)s->accept, digest, 20);
  char r[512];
  int len = snprintf(r, sizeof r,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     opt.port, key64);
  buf_add(&s->out, r, (size_t)len);
  s->state = S_HANDSHAKE;
  int e = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
  if (e) {
    n.errors++;
    fail_msg(s->idx, "read_start: %s", uv_strerror(e));
    hard_close(s);
    return;
  }
  flush(s);
}

static void start_connect(slot *s) {
  int e = uv_tcp_init_ex(loop, &s->tcp, AF_INET);
  if (e)
    die("uv_tcp_init: %s", uv_strerror(e));
  s->tcp.data = s->creq.data = s->wreq.data = s;
  s->state = S_CONNECTING;
  n.connects++;
  if (opt.srcaddrs > 0) {
    /* Spread the connections over 127.0.0.1..N so each address has its
     * own ephemeral port range; the port is chosen at connect time. */
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr =
        htonl(0x7f000001u + (uint32_t)(s->idx % opt.srcaddrs));
    e = uv_tcp_bind(&s->tcp, (struct sockaddr *)&src, 0);
    if (e) {
      n.errors++;
      fail_msg(s->idx, "bind: %s", uv_strerror(e));
      close_slot(s, 0);
      return;
    }
  }
  e = uv_tcp_connect(&s->creq, &s->tcp, (struct sockaddr *)&srv_addr,
                     on_connect);
  if (e) {
    n.errors++;
    fail_msg(s->idx, "connect: %s", uv_strerror(e));
    close_slot(s, 0);
  }
}

/* ---- the random phase ------------------------------------------------- */

static int random_held(slot *s) {
  int pick = rnd(s->nsub > 0 ? s->nsub : 1), seen = 0;
  for (int k = 0; k < opt.topics; k++)
    if (s->tstate[k] == T_SUB && seen++ == pick)
      return k;
  return -1;
}

static void act(slot *s, uint64_t now, double dt) {
  if (now >= s->end_at) {
    double r = rnd01();
    if (r < 0.5) {
      n.leave_closes++;
      start_leaving(s);
    } else if (r < 0.75) {
      n.frame_closes++;
      send_close(s);
      flush(s);
    } else {
      n.resets++;
      close_slot(s, 1);
    }
    return;
  }
  if (rnd01() >= dt * 1000.0 / TOGGLE_MEAN_MS)
    return;
  int want_sub = s->nsub == 0 || (s->nsub < SUB_MAX && rnd(2));
  if (want_sub) {
    int k = rnd(opt.topics);
    if (s->tstate[k] == T_NONE)
      subscribe(s, k);
  } else {
    int k = random_held(s);
    if (k >= 0)
      unsubscribe(s, k);
  }
  flush(s);
}

static void publish_some(double count) {
  pub_tokens += count;
  while (pub_tokens >= 1) {
    pub_tokens -= 1;
    for (int tries = 0; tries < 8; tries++) {
      slot *s = &slots[rnd(opt.conns)];
      if (s->state != S_OPEN)
        continue;
      /* Half to a topic the publisher holds (tl_ws_publish must skip it),
       * half anywhere. */
      int k = rnd(2) ? random_held(s) : -1;
      if (k < 0)
        k = rnd(opt.topics);
      publish(s, k, rnd(10) < 7 ? 'w' : 'a');
      flush(s);
      break;
    }
  }
}

static int all_idle(int upto) {
  for (int i = 0; i < upto; i++)
    if (slots[i].state != S_IDLE)
      return 0;
  return 1;
}

static void sample_stats(uint64_t now) {
  srv_stats t = get_stats();
  if (t.heap > heap_peak)
    heap_peak = t.heap;
  if (t.rss_kb > rss_peak)
    rss_peak = t.rss_kb;
  if (now - last_progress >= 10000) {
    last_progress = now;
    fprintf(stderr,
            "soak_client: %5.0fs open %" PRIu64 " opened %" PRIu64
            " pubs %" PRIu64 " verified %" PRIu64 " gaps %" PRIu64
            " heap %lld KiB rss %lld KiB\n",
            (double)(now - run_start) / 1000, n.open_now, n.opened, n.pubs_sent,
            n.verified, n.gap_msgs, t.heap / 1024, t.rss_kb);
  }
}

static void wait_server_idle(void) {
  uint64_t t0 = uv_now(loop);
  for (;;) {
    srv_stats t = get_stats();
    if (t.open == 0)
      return;
    uv_update_time(loop);
    if (uv_now(loop) - t0 > IDLE_LIMIT_MS)
      die("server still reports %lld open connections", t.open);
    usleep(50000);
  }
}

static void on_tick(uv_timer_t *t) {
  static uint64_t last_tick;
  uv_update_time(loop);
  uint64_t now = uv_now(loop);
  /* Rates follow the time that passed (a tick can come late). */
  double dt = last_tick ? (double)(now - last_tick) / 1000.0 : 0;
  last_tick = now;
  switch (phase) {
  case P_WARM:
    if (connect_cursor < opt.warm) {
      for (; connect_cursor < opt.warm; connect_cursor++)
        start_connect(&slots[connect_cursor]);
      return;
    }
    if (!all_idle(opt.warm))
      return;
    wait_server_idle();
    st_base = get_stats();
    heap_peak = st_base.heap;
    rss_base = rss_peak = st_base.rss_kb;
    phase = P_RUN;
    uv_update_time(loop);
    run_start = last_stats = last_progress = uv_now(loop);
    run_end = run_start + (uint64_t)opt.seconds * 1000;
    connect_cursor = 0;
    return;
  case P_RUN:
    if (now >= run_end) {
      phase = P_DRAIN;
      phase_start = now;
      for (int i = 0; i < opt.conns; i++)
        if (slots[i].state == S_OPEN)
          start_leaving(&slots[i]);
      return;
    }
    connect_tokens += opt.connrate * dt;
    if (connect_tokens > opt.connrate)
      connect_tokens = opt.connrate;
    for (int i = 0; i < opt.conns && connect_tokens >= 1; i++) {
      slot *s = &slots[(connect_cursor + i) % opt.conns];
      if (s->state == S_IDLE && s->reconnect_at <= now) {
        connect_tokens -= 1;
        start_connect(s);
        connect_cursor = (int)(s - slots + 1) % opt.conns;
      }
    }
    for (int i = 0; i < opt.conns; i++)
      if (slots[i].state == S_OPEN)
        act(&slots[i], now, dt);
    publish_some(opt.pubrate * dt);
    break;
  case P_DRAIN:
    if (all_idle(opt.conns)) {
      wait_server_idle();
      st_final = get_stats();
      phase = P_DONE;
      uv_timer_stop(t);
      return;
    }
    if (now - phase_start > DRAIN_LIMIT_MS) {
      int left = 0;
      for (int i = 0; i < opt.conns; i++)
        if (slots[i].state != S_IDLE) {
          if (left++ < 5)
            fail_msg(i, "still in state %d after the drain", slots[i].state);
          close_slot(&slots[i], 1);
        }
      n.errors += (uint64_t)left;
      phase = P_IDLE_WAIT;
    }
    break;
  case P_IDLE_WAIT:
    if (all_idle(opt.conns)) {
      wait_server_idle();
      st_final = get_stats();
      phase = P_DONE;
      uv_timer_stop(t);
    }
    return;
  }
  if (now - last_stats >= STATS_MS) {
    last_stats = now;
    sample_stats(now);
  }
}

/* ---- main ------------------------------------------------------------ */

static long num(const char *s, long lo, long hi, const char *what) {
  char *e;
  long v = strtol(s, &e, 10);
  if (e == s || *e || v < lo || v > hi)
    die("%s must be in [%ld, %ld]", what, lo, hi);
  return v;
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "c:t:k:p:r:l:s:m:w:")) != -1) {
    switch (c) {
    case 'c': opt.conns = (int)num(optarg, 1, 1000000, "-c"); break;
    case 't': opt.seconds = (int)num(optarg, 1, 86400, "-t"); break;
    case 'k': opt.topics = (int)num(optarg, 1, 100000, "-k"); break;
    case 'p': opt.pubrate = (double)num(optarg, 0, 1000000, "-p"); break;
    case 'r': opt.connrate = (double)num(optarg, 1, 1000000, "-r"); break;
    case 'l': opt.lifetime = (double)num(optarg, 1, 86400, "-l"); break;
    case 's': opt.srcaddrs = (int)num(optarg, 0, 254, "-s"); break;
    case 'm': opt.slack_kb = num(optarg, 0, 1L << 30, "-m"); break;
    case 'w': opt.warm = (int)num(optarg, 1, 100000, "-w"); break;
    default: die("usage: soak_client [options] PORT (see the source)");
    }
  }
  if (optind != argc - 1)
    die("usage: soak_client [options] PORT");
  opt.port = (int)num(argv[optind], 1, 65535, "PORT");
  if (opt.srcaddrs < 0)
    opt.srcaddrs = opt.conns > 20000 ? opt.conns / 10000 + 1 : 0;
  if (opt.slack_kb < 0)
    opt.slack_kb = 64 + opt.conns / 64;
  if (opt.warm > opt.conns)
    opt.warm = opt.conns;
  signal(SIGPIPE, SIG_IGN);
  uint64_t seed;
  uv_random(NULL, NULL, &seed, sizeof seed, 0, NULL);
  rng_state = seed | 1;

  loop = uv_default_loop();
  uv_ip4_addr("127.0.0.1", opt.port, &srv_addr);
  slots = calloc((size_t)opt.conns, sizeof *slots);
  if (!slots)
    die("out of memory");
  for (int i = 0; i < opt.conns; i++) {
    slots[i].idx = i;
    slots[i].tstate = calloc((size_t)opt.topics, 1);
    slots[i].next = calloc((size_t)opt.topics, sizeof(uint64_t));
    if (!slots[i].tstate || !slots[i].next)
      die("out of memory");
  }
  printf("soak: %d connections, %d s, %d topics, %.0f publishes/s, "
         "%.0f connects/s, mean lifetime %.0f s, %d source addresses, "
         "seed %" PRIu64 "\n",
         opt.conns, opt.seconds, opt.topics, opt.pubrate, opt.connrate,
         opt.lifetime, opt.srcaddrs, seed);
  fflush(stdout);

  uint64_t t0 = uv_hrtime();
  phase = P_WARM;
  phase_start = uv_now(loop);
  uv_timer_init(loop, &tick_timer);
  uv_timer_start(&tick_timer, on_tick, 0, TICK_MS);
  uv_run(loop, UV_RUN_DEFAULT);
  double elapsed = (double)(uv_hrtime() - t0) / 1e9;
  double run_secs = (double)(uv_now(loop) - run_start) / 1000;

  long long grown = st_final.heap - st_base.heap;
  long long slack = opt.slack_kb * 1024;
  uint64_t unexcused = n.gap_msgs + n.tail_missing - n.excused;
  if (st_final.drops == 0)
    unexcused = n.gap_msgs + n.tail_missing; /* no drop anywhere */
  printf("connections: %" PRIu64 " opened (%" PRIu64 " attempts), peak %" PRIu64
         " concurrent; closes: %" PRIu64 " leave, %" PRIu64
         " close frame, %" PRIu64 " reset\n",
         n.opened, n.connects, n.peak_open, n.leave_closes, n.frame_closes,
         n.resets);
  printf("messages: %" PRIu64 " published (%" PRIu64 " replies), server "
         "counted %lld publishes and %lld deliveries\n",
         n.pubs_sent, n.pubs_acked, st_final.published, st_final.deliveries);
  printf("received: %" PRIu64 " messages, %" PRIu64
         " verified in order, %" PRIu64 " own skipped, %" PRIu64
         " own app echoes, %" PRIu64 " complete windows\n",
         n.msgs, n.verified, n.own, n.app_own, n.windows);
  printf("failures: gaps %" PRIu64 " msgs in %" PRIu64 " events, tail "
         "missing %" PRIu64 ", excused by drops %" PRIu64 ", duplicates/"
         "reorders %" PRIu64 ", unexpected %" PRIu64 ", corrupt %" PRIu64
         ", replies missing %" PRIu64 ", connection errors %" PRIu64 "\n",
         n.gap_msgs, n.gap_events, n.tail_missing, n.excused, n.dups,
         n.unexpected, n.corrupt, n.sent_missing, n.errors);
  printf("server: drops %lld, errors %lld\n", st_final.drops, st_final.errors);
  printf("heap: baseline %lld, peak %lld, final %lld bytes (%+lld; slack %lld)"
         "; rss baseline %lld KiB, peak %lld KiB, final %lld KiB\n",
         st_base.heap, heap_peak, st_final.heap, grown, slack, rss_base,
         rss_peak, st_final.rss_kb);
  printf("time: %.1f s in all, %.1f s from the first connection to the end "
         "of the drain\n",
         elapsed, run_secs);

  int bad = 0;
#define CHECK(cond, what)                                                      \
  if (!(cond)) {                                                               \
    printf("FAIL: %s\n", what);                                                \
    bad = 1;                                                                   \
  }
  CHECK(phase == P_DONE, "the run did not finish");
  CHECK(unexcused == 0, "messages missing without a reported drop");
  CHECK(n.dups == 0, "duplicate or reordered messages");
  CHECK(n.unexpected == 0, "unexpected messages");
  CHECK(n.corrupt == 0, "corrupt payloads");
  CHECK(n.sent_missing == 0, "publishes without a reply");
  CHECK(n.errors == 0, "connection errors");
  CHECK(st_final.errors == 0, "the server counted errors");
  CHECK(n.opened > 0 && n.verified > 0, "nothing was exchanged");
  CHECK(n.windows > 0, "no subscription window was checked to its end");
  CHECK(st_final.published >= (long long)n.pubs_acked &&
            st_final.published <= (long long)n.pubs_sent,
        "the server's publish count is outside [replies, sent]");
  CHECK(grown <= slack, "heap did not return to the baseline");
  printf("%s\n", bad ? "RESULT: FAIL" : "RESULT: PASS");
  return bad;
}
