/* fanout_probe: the ceiling that bench/chat.sh measures talon's fan-out
 * against. It speaks the same chat protocol as bench/chat_server.c (any
 * path upgrades, ?name=NAME names the client, "ready" once CLIENTS_COUNT
 * clients are in, every message M from NAME goes to every client as
 * "NAME: M"), with nothing but what that work needs: one thread, epoll,
 * level-triggered, no framework. Each loop turn it reads every readable
 * socket, appends one server frame per message received to a single turn
 * buffer, and then writes that one buffer to every subscriber: one
 * write(2) per subscriber per turn, the frames built once. A subscriber
 * whose socket does not take the whole buffer keeps the rest (and later
 * turns' buffers) in a queue of its own, written on EPOLLOUT, so nothing
 * is lost or reordered. It does what a WebSocket server must for these
 * clients (RFC 6455 handshake, masked client frames, fragments, ping,
 * close) and no more: it is a measuring stick, not a server.
 *
 * Usage: fanout_probe [PORT]   (or PORT=...; HOST=... default 127.0.0.1;
 * CLIENTS_COUNT=... default 16). Prints "probe: listening on
 * http://HOST:PORT". Build: gcc -O2 -o fanout_probe bench/fanout_probe.c
 * -lcrypto (bench/chat.sh does). Linux only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NAME_MAX_LEN 64
#define HS_MAX 8192

typedef struct {
  char *p;
  size_t len, cap, off; /* off: bytes already consumed from the front */
} buf;

typedef struct conn {
  int fd;
  int open;  /* handshake done */
  int dying; /* closed this turn: skipped, freed after the turn */
  char name[NAME_MAX_LEN + 2 + 1]; /* "NAME: " */
  size_t name_len;                 /* with ": " */
  buf in;                          /* bytes read, not yet parsed */
  buf out;                         /* bytes the socket has not taken yet */
  buf msg;                         /* a fragmented message so far */
  int msg_op;
  struct conn *next_dead;
} conn;

static int ep, clients_count = 16, remaining;
static conn **conns; /* open subscribers */
static size_t nconns, cap_conns;
static conn *dead;
static buf turn; /* this turn's frames, for everyone */
static long long ready_at_ms = -1;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void reserve(buf *b, size_t more) {
  if (b->off && b->off == b->len)
    b->off = b->len = 0;
  if (b->len + more <= b->cap)
    return;
  if (b->off) { /* slide before growing */
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    if (b->len + more <= b->cap)
      return;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more)
    cap *= 2;
  if (!(b->p = realloc(b->p, cap)))
    die("realloc");
  b->cap = cap;
}

static void append(buf *b, const void *d, size_t n) {
  reserve(b, n);
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A server frame header (FIN, unmasked) for `len` payload bytes. */
static void frame(buf *b, int op, const void *a, size_t alen, const void *p,
                  size_t plen) {
  size_t len = alen + plen;
  uint8_t h[10];
  size_t hl;
  h[0] = (uint8_t)(0x80 | op);
  if (len < 126) {
    h[1] = (uint8_t)len;
    hl = 2;
  } else if (len < 65536) {
    h[1] = 126;
    h[2] = (uint8_t)(len >> 8);
    h[3] = (uint8_t)len;
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++)
      h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    hl = 10;
  }
  reserve(b, hl + len);
  memcpy(b->p + b->len, h, hl);
  memcpy(b->p + b->len + hl, a, alen);
  memcpy(b->p + b->len + hl + alen, p, plen);
  b->len += hl + len;
}

static void kill_conn(conn *c) {
  if (c->dying)
    return;
  c->dying = 1;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->open) {
    for (size_t i = 0; i < nconns; i++)
      if (conns[i] == c) {
        conns[i] = conns[--nconns];
        break;
      }
    remaining++;
  }
  c->next_dead = dead;
  dead = c;
}

static void want_out(conn *c, int on) {
  struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0),
                           .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what `c` has queued; 0 or -1 (closed). */
static int flush_out(conn *c) {
  while (c->out.len > c->out.off) {
    ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
    if (n < 0) {
      if (errno == EAGAIN)
        return 0;
      if (errno == EINTR)
        continue;
      kill_conn(c);
      return -1;
    }
    c->out.off += (size_t)n;
  }
  c->out.off = c->out.len = 0;
  want_out(c, 0);
  return 0;
}

/* Sends bytes to one socket at once (handshake, pong, close): queued
 * behind what it has not taken yet. */
static void send_to(conn *c, const void *d, size_t n) {
  int was_empty = c->out.len == c->out.off;
  append(&c->out, d, n);
  if (was_empty && flush_out(c) == 0 && c->out.len > c->out.off)
    want_out(c, 1);
}

static int handshake(conn *c) {
  char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4);
  if (!end)
    return c->in.len > HS_MAX ? -1 : 0;
  *end = '\0';
  const char *key = NULL;
  size_t key_len = 0;
  for (char *line = strstr(c->in.p, "\r\n"); line && line < end;) {
    line += 2;
    char *eol = strstr(line, "\r\n");
    if (!eol)
      eol = end;
    if ((size_t)(eol - line) > 18 &&
        strncasecmp(line, "Sec-WebSocket-Key:", 18) == 0) {
      key = line + 18;
      while (*key == ' ')
        key++;
      key_len = (size_t)(eol - key);
      while (key_len && key[key_len - 1] == ' ')
        key_len--;
    }
    line = eol;
  }
  if (!key || key_len > 64)
    return -1;
  /* The name from ?name=..., else "Client #N". */
  char *q = strstr(c->in.p, "name="), *sp = strchr(c->in.p, ' ');
  char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
  int n;
  if (q && sp2 && q < sp2 && q[5] != ' ')
    n = snprintf(c->name, NAME_MAX_LEN + 1, "%.*s",
                 (int)strcspn(q + 5, " &"), q + 5);
  else
    n = snprintf(c->name, NAME_MAX_LEN + 1, "Client #%zu", nconns);
  c->name_len = (size_t)n > NAME_MAX_LEN ? NAME_MAX_LEN : (size_t)n;
  memcpy(c->name + c->name_len, ": ", 2);
  c->name_len += 2;

  char cat[64 + 36];
  memcpy(cat, key, key_len);
  memcpy(cat + key_len, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  unsigned char sha[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)cat, key_len + 36, sha);
  char acc[32];
  EVP_EncodeBlock((unsigned char *)acc, sha, SHA_DIGEST_LENGTH);
  char resp[256];
  int rl = snprintf(resp, sizeof resp,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                    acc);
  c->in.off = (size_t)(end + 4 - c->in.p);
  c->open = 1;
  send_to(c, resp, (size_t)rl);
  if (c->dying)
    return -1;
  if (nconns == cap_conns) {
    cap_conns = cap_conns ? cap_conns * 2 : 64;
    if (!(conns = realloc(conns, cap_conns * sizeof *conns)))
      die("realloc");
  }
  conns[nconns++] = c;
  if (--remaining == 0) {
    printf("probe: all %d clients connected\n", clients_count);
    fflush(stdout);
    ready_at_ms = now_ms() + 100; /* as chat_server: "ready" 100 ms later */
  }
  return 0;
}

/* Parses the complete frames in c->in; the messages go to `turn`. */
static int frames(conn *c) {
  for (;;) {
    uint8_t *p = (uint8_t *)c->in.p + c->in.off;
    size_t have = c->in.len - c->in.off;
    if (have < 2)
      return 0;
    int fin = p[0] & 0x80, op = p[0] & 0x0f;
    if (!(p[1] & 0x80))
      return -1; /* clients mask */
    uint64_t len = p[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
      if (have < 4)
        return 0;
      len = (uint64_t)p[2] << 8 | p[3];
      hl = 4;
    } else if (len == 127) {
      if (have < 10)
        return 0;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | p[2 + i];
      hl = 10;
    }
    if (len > (64u << 20))
      return -1;
    if (have < hl + 4 + len)
      return 0;
    const uint8_t *mask = p + hl;
    uint8_t *pl = p + hl + 4;
    for (uint64_t i = 0; i < len; i++)
      pl[i] ^= mask[i & 3];
    c->in.off += hl + 4 + (size_t)len;
    if (op == 8) { /* close: echo the code, then hang up */
      uint8_t h[2] = {0x88, 0};
      send_to(c, h, 2);
      return -1;
    }
    if (op == 9) { /* ping */
      buf f = {0};
      frame(&f, 10, "", 0, pl, (size_t)len);
      send_to(c, f.p, f.len);
      free(f.p);
      continue;
    }
    if (op == 10)
      continue;
    if (op == 0 || !fin) { /* a fragment */
      if (op)
        c->msg_op = op;
      append(&c->msg, pl, (size_t)len);
      if (!fin)
        continue;
      frame(&turn, c->msg_op, c->name, c->name_len, c->msg.p, c->msg.len);
      c->msg.len = 0;
      continue;
    }
    frame(&turn, op, c->name, c->name_len, pl, (size_t)len);
  }
}

static void on_readable(conn *c) {
  reserve(&c->in, 65536);
  ssize_t n = read(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    kill_conn(c);
    return;
  }
  c->in.len += (size_t)n;
  if (!c->open && handshake(c) != 0) {
    kill_conn(c);
    return;
  }
  if (c->open && frames(c) != 0)
    kill_conn(c);
}

/* The turn's one buffer to every subscriber. */
static void fan_out(void) {
  for (size_t i = 0; i < nconns; i++) {
    conn *c = conns[i];
    if (c->out.len > c->out.off) { /* still behind: queue */
      append(&c->out, turn.p, turn.len);
      continue;
    }
    size_t off = 0;
    while (off < turn.len) {
      ssize_t n = write(c->fd, turn.p + off, turn.len - off);
      if (n < 0) {
        if (errno == EINTR)
          continue;
        if (errno != EAGAIN) {
          kill_conn(c);
          i--; /* kill_conn moved the last subscriber here */
        } else {
          append(&c->out, turn.p + off, turn.len - off);
          want_out(c, 1);
        }
        break;
      }
      off += (size_t)n;
    }
  }
  turn.len = 0;
}

int main(int argc, char **argv) {
  const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
  const char *host = getenv("HOST");
  const char *count_s = getenv("CLIENTS_COUNT");
  int port = port_s ? atoi(port_s) : 3000;
  if (!host || !*host)
    host = "127.0.0.1";
  if (count_s && atoi(count_s) > 0)
    clients_count = atoi(count_s);
  remaining = clients_count;

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "probe: HOST must be an IPv4 address\n");
    return 1;
  }
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 1024))
    die("bind/listen");
  if ((ep = epoll_create1(0)) < 0)
    die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
  printf("probe: waiting for %d clients; listening on http://%s:%d\n",
         clients_count, host, port);
  fflush(stdout);

  struct epoll_event evs[512];
  for (;;) {
    int timeout = -1;
    if (ready_at_ms >= 0) {
      long long left = ready_at_ms - now_ms();
      timeout = left > 0 ? (int)left : 0;
    }
    int n = epoll_wait(ep, evs, 512, timeout);
    if (n < 0 && errno != EINTR)
      die("epoll_wait");
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (!c) { /* the listener */
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *nc = calloc(1, sizeof *nc);
          if (!nc)
            die("calloc");
          nc->fd = fd;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      if (c->dying)
        continue;
      if (evs[i].events & EPOLLOUT)
        flush_out(c);
      if (!c->dying && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        on_readable(c);
    }
    if (ready_at_ms >= 0 && now_ms() >= ready_at_ms) {
      ready_at_ms = -1;
      printf("probe: publishing \"ready\" to %zu subscriber(s)\n", nconns);
      fflush(stdout);
      frame(&turn, 1, "", 0, "ready", 5);
    }
    if (turn.len)
      fan_out();
    while (dead) {
      conn *c = dead;
      dead = c->next_dead;
      free(c->in.p);
      free(c->out.p);
      free(c->msg.p);
      free(c);
    }
  }
}
