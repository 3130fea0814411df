/* talon — the test client (contract in include/talon/test.h).
 *
 * Written against the public API only, like the middleware: the app runs
 * on a thread of ours through tl_app_listen(); a one-shot timer started
 * before it (so on the app's loop, on the app's thread) reads the bound
 * port and wakes the caller; tl_app_stop(), safe from any thread, ends it.
 * The client side is plain blocking sockets with poll(2) for timeouts: a
 * small HTTP/1.1 reader (Content-Length, chunked, until close) and a
 * WebSocket client (masked frames, fragments joined, pings answered). */
#include <talon.h>
#include <talon/test.h>
#include <talon/timer.h>

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_START_TIMEOUT_MS 10000
#define MAX_HEAD (64 * 1024)

struct tl_test {
  tl_app *app;
  char host[64];
  unsigned timeout_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int port;  /* set once the app listens */
  bool done; /* tl_app_listen returned */
  int rc;    /* what it returned */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the app's thread --------------------------------------------------- */

/* On the app's loop: the listener is bound once the loop runs. */
static void on_loop_started(tl_timer *timer, void *arg) {
  tl_test *t = arg;
  int port = tl_app_port(t->app);
  if (port == 0) { /* not yet (a later layout of listen): look again */
    tl_timer_start(t->app, 1, 0, on_loop_started, t);
    return;
  }
  pthread_mutex_lock(&t->mu);
  t->port = port;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

static void *run_app(void *arg) {
  tl_test *t = arg;
  int rc = tl_app_listen(t->app, t->host, 0);
  pthread_mutex_lock(&t->mu);
  t->done = true;
  t->rc = rc;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void test_free(tl_test *t) {
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

int tl_test_start(tl_test **out, tl_app *app, const tl_test_options *opts) {
  if (!out || !app)
    return TL_EINVAL;
  *out = NULL;
  tl_test_options o = {0};
  if (opts)
    o = *opts;
  const char *host = o.host ? o.host : "127.0.0.1";
  if (strlen(host) >= 64)
    return TL_EINVAL;
  tl_test *t = calloc(1, sizeof *t);
  if (!t)
    return TL_ENOMEM;
  t->app = app;
  memcpy(t->host, host, strlen(host) + 1);
  t->timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
  unsigned start_ms =
      o.start_timeout_ms ? o.start_timeout_ms : DEFAULT_START_TIMEOUT_MS;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&t->mu, NULL);
  /* Started here, before the app's thread exists, so that it runs on the
   * app's loop from its first turn. */
  if (!tl_timer_start(app, 0, 0, on_loop_started, t)) {
    test_free(t);
    return TL_ENOMEM;
  }
  int err = pthread_create(&t->thread, NULL, run_app, t);
  if (err) {
    test_free(t);
    return -err;
  }
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += start_ms / 1000;
  until.tv_nsec += (long)(start_ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&t->mu);
  int w = 0;
  while (!t->port && !t->done && w != ETIMEDOUT)
    w = pthread_cond_timedwait(&t->cv, &t->mu, &until);
  bool up = t->port != 0 && !t->done;
  pthread_mutex_unlock(&t->mu);
  if (!up) {
    tl_app_stop(app);
    pthread_join(t->thread, NULL);
    int rc = t->done && t->rc ? t->rc : -ETIMEDOUT;
    test_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int tl_test_stop(tl_test *t) {
  if (!t)
    return 0;
  tl_app_stop(t->app);
  pthread_join(t->thread, NULL);
  int rc = t->rc;
  test_free(t);
  return rc;
}

int tl_test_port(const tl_test *t) {
  return t->port;
}

tl_app *tl_test_app(const tl_test *t) {
  return t->app;
}

/* ---- sockets with deadlines --------------------------------------------- */

typedef struct conn {
  int fd;
  uint64_t deadline;
  char *buf; /* bytes received, not yet consumed: [pos, len) */
  size_t len, pos, cap;
} conn;

static int wait_fd(int fd, short ev, uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ms();
    if (now >= deadline)
      return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = ev};
    int n = poll(&p, 1, (int)(deadline - now));
    if (n > 0)
      return 0;
    if (n == 0)
      return -ETIMEDOUT;
    if (errno != EINTR)
      return -errno;
  }
}

static int dial(tl_test *t, conn *c) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->deadline = now_ms() + t->timeout_ms;
  char port[16];
  snprintf(port, sizeof port, "%d", t->port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
  struct addrinfo *ai;
  if (getaddrinfo(t->host, port, &hints, &ai) != 0)
    return TL_EINVAL;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int err = fd < 0 ? -errno : 0;
  if (!err && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
    err = -errno;
  freeaddrinfo(ai);
  if (err) {
    if (fd >= 0)
      close(fd);
    return err;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->fd = fd;
  return 0;
}

static void hang_up(conn *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
  c->len = c->pos = c->cap = 0;
}

static int send_all(conn *c, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      b += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return errno == EPIPE || errno == ECONNRESET ? TL_ECLOSED : -errno;
    int err = wait_fd(c->fd, POLLOUT, c->deadline);
    if (err)
      return err;
  }
  return 0;
}

/* Receives more bytes. Returns >0, 0 at the peer's end, or an error. */
static ssize_t fill(conn *c) {
  if (c->pos == c->len)
    c->pos = c->len = 0;
  if (c->cap - c->len < 16384) {
    if (c->pos) {
      memmove(c->buf, c->buf + c->pos, c->len - c->pos);
      c->len -= c->pos;
      c->pos = 0;
    }
    if (c->cap - c->len < 16384) {
      size_t cap = c->cap ? c->cap * 2 : 65536;
      char *nb = realloc(c->buf, cap);
      if (!nb)
        return TL_ENOMEM;
      c->buf = nb;
      c->cap = cap;
    }
  }
  for (;;) {
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
    if (n > 0) {
      c->len += (size_t)n;
      return n;
    }
    if (n == 0)
      return 0;
    if (errno == EINTR)
      continue;
    if (errno == ECONNRESET)
      return 0;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno;
    int err = wait_fd(c->fd, POLLIN, c->deadline);
    if (err)
      return err;
  }
}

/* Makes `n` bytes available at c->buf + c->pos. 0, TL_ECLOSED or an
 * error. */
static int need(conn *c, size_t n) {
  while (c->len - c->pos < n) {
    ssize_t r = fill(c);
    if (r == 0)
      return TL_ECLOSED;
    if (r < 0)
      return (int)r;
  }
  return 0;
}

/* ---- requests ------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  bool oom;
} sbuf;

static void sb_add(sbuf *b, const void *p, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 512;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
      b->oom = true;
      return;
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
  sb_add(b, s, strlen(s));
}

static bool has_header(const char *const *headers, const char *name) {
  size_t n = strlen(name);
  for (; headers && *headers; headers++)
    if (strncasecmp(*headers, name, n) == 0 && (*headers)[n] == ':')
      return true;
  return false;
}

static bool bad_line(const char *s) {
  return strchr(s, '\r') || strchr(s, '\n');
}

/* The request head (without the final CRLF). */
static int build_head(tl_test *t, sbuf *b, const char *method,
                      const char *target, const char *const *headers) {
  if (!method || !target || bad_line(method) || bad_line(target))
    return TL_EINVAL;
  for (const char *const *h = headers; h && *h; h++)
    if (bad_line(*h) || !strchr(*h, ':'))
      return TL_EINVAL;
  sb_str(b, method);
  sb_str(b, " ");
  sb_str(b, target);
  sb_str(b, " HTTP/1.1\r\n");
  if (!has_header(headers, "host")) {
    char host[96];
    snprintf(host, sizeof host, "Host: %s:%d\r\n", t->host, t->port);
    sb_str(b, host);
  }
  for (const char *const *h = headers; h && *h; h++) {
    sb_str(b, *h);
    sb_str(b, "\r\n");
  }
  return 0;
}

void tl_test_response_free(tl_test_response *res) {
  if (!res)
    return;
  for (size_t i = 0; i < res->nheaders; i++) {
    free((char *)res->headers[i].name);
    free((char *)res->headers[i].value);
  }
  free(res->headers);
  free(res->body);
  memset(res, 0, sizeof *res);
}

const char *tl_test_header_get(const tl_test_response *res,
                               const char *name) {
  for (size_t i = 0; res && name && i < res->nheaders; i++)
    if (strcasecmp(res->headers[i].name, name) == 0)
      return res->headers[i].value;
  return NULL;
}

static char *dup_trim(const char *p, size_t n) {
  while (n && (*p == ' ' || *p == '\t'))
    p++, n--;
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
    n--;
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

/* Reads a head (skipping 1xx answers) into `res`. */
static int read_head(conn *c, tl_test_response *res) {
  for (;;) {
    char *end;
    size_t scanned = 0;
    for (;;) {
      end = memmem(c->buf ? c->buf + c->pos : "", c->len - c->pos, "\r\n\r\n",
                   4);
      if (end)
        break;
      if (c->len - c->pos > MAX_HEAD)
        return TL_EIO;
      scanned = c->len - c->pos;
      int err = need(c, scanned + 1);
      if (err)
        return err;
    }
    char *p = c->buf + c->pos;
    size_t hlen = (size_t)(end - p);
    c->pos += hlen + 4;
    int status = 0;
    if (hlen < 12 || strncmp(p, "HTTP/1.", 7) != 0 ||
        sscanf(p + 9, "%3d", &status) != 1)
      return TL_EIO;
    if (status >= 100 && status < 200 && status != 101)
      continue; /* 100 Continue and the like */
    res->status = status;
    char *line = memchr(p, '\n', hlen);
    while (line && line < end) {
      char *ls = line + 1;
      char *le = memchr(ls, '\r', (size_t)(end + 2 - ls));
      if (!le || le <= ls)
        break;
      char *colon = memchr(ls, ':', (size_t)(le - ls));
      if (colon) {
        if (res->nheaders % 16 == 0) {
          tl_test_header *h = realloc(
              res->headers, (res->nheaders + 16) * sizeof *res->headers);
          if (!h)
            return TL_ENOMEM;
          res->headers = h;
        }
        tl_test_header *h = &res->headers[res->nheaders];
        h->name = dup_trim(ls, (size_t)(colon - ls));
        h->value = dup_trim(colon + 1, (size_t)(le - colon - 1));
        if (!h->name || !h->value) {
          free((char *)h->name);
          free((char *)h->value);
          return TL_ENOMEM;
        }
        res->nheaders++;
      }
      line = memchr(le, '\n', (size_t)(end + 2 - le));
    }
    return 0;
  }
}

/* Takes `n` available bytes into the body. */
static int take(conn *c, sbuf *body, size_t n) {
  sb_add(body, c->buf + c->pos, n);
  c->pos += n;
  return body->oom ? TL_ENOMEM : 0;
}

static int read_line(conn *c, char *out, size_t size) {
  for (;;) {
    char *p = c->buf ? c->buf + c->pos : NULL;
    char *lf = p ? memchr(p, '\n', c->len - c->pos) : NULL;
    if (lf) {
      size_t n = (size_t)(lf - p);
      if (n >= size)
        return TL_EIO;
      memcpy(out, p, n);
      out[n] = '\0';
      if (n && out[n - 1] == '\r')
        out[n - 1] = '\0';
      c->pos += n + 1;
      return 0;
    }
    if (c->len - c->pos > 4096)
      return TL_EIO;
    int err = need(c, c->len - c->pos + 1);
    if (err)
      return err;
  }
}

static int read_body(conn *c, const char *method, tl_test_response *res) {
  sbuf body = {0};
  int err = 0;
  const char *te = tl_test_header_get(res, "transfer-encoding");
  const char *cl = tl_test_header_get(res, "content-length");
  bool none = strcmp(method, "HEAD") == 0 || res->status == 204 ||
              res->status == 304 || res->status == 101;
  if (none) {
    /* no body */
  } else if (te && strcasestr(te, "chunked")) {
    for (;;) {
      char line[128];
      if ((err = read_line(c, line, sizeof line)))
        break;
      char *endp;
      unsigned long long n = strtoull(line, &endp, 16);
      if (endp == line) {
        err = TL_EIO;
        break;
      }
      if (n == 0) { /* trailers up to an empty line */
        do
          err = read_line(c, line, sizeof line);
        while (!err && line[0]);
        break;
      }
      while (!err && n) {
        size_t have = c->len - c->pos;
        if (!have && (err = need(c, 1)))
          break;
        have = c->len - c->pos;
        size_t k = have < n ? have : (size_t)n;
        err = take(c, &body, k);
        n -= k;
      }
      if (!err && !(err = need(c, 2))) {
        if (memcmp(c->buf + c->pos, "\r\n", 2) != 0)
          err = TL_EIO;
        c->pos += 2;
      }
      if (err)
        break;
    }
  } else if (cl) {
    unsigned long long n = strtoull(cl, NULL, 10);
    while (!err && n) {
      if (c->len == c->pos && (err = need(c, 1)))
        break;
      size_t have = c->len - c->pos;
      size_t k = have < n ? have : (size_t)n;
      err = take(c, &body, k);
      n -= k;
    }
  } else {
    for (;;) { /* until the server closes */
      if (c->len > c->pos && (err = take(c, &body, c->len - c->pos)))
        break;
      ssize_t r = fill(c);
      if (r == 0)
        break;
      if (r < 0) {
        err = (int)r;
        break;
      }
    }
  }
  if (!err && !body.p)
    sb_add(&body, "", 0);
  if (body.oom)
    err = TL_ENOMEM;
  if (err) {
    free(body.p);
    return err;
  }
  res->body = body.p;
  res->body_len = body.len;
  return 0;
}

int tl_test_request(tl_test *t, const char *method, const char *target,
                    const char *const *headers, const void *body, size_t len,
                    tl_test_response *res) {
  if (!t || !res || (len && !body))
    return TL_EINVAL;
  memset(res, 0, sizeof *res);
  sbuf b = {0};
  int err = build_head(t, &b, method, target, headers);
  if (!err) {
    bool needs_len = len || strcmp(method, "POST") == 0 ||
                     strcmp(method, "PUT") == 0 ||
                     strcmp(method, "PATCH") == 0;
    if (needs_len && !has_header(headers, "content-length") &&
        !has_header(headers, "transfer-encoding")) {
      char cl[48];
      snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", len);
      sb_str(&b, cl);
    }
    if (!has_header(headers, "connection"))
      sb_str(&b, "Connection: close\r\n");
    sb_str(&b, "\r\n");
    if (b.oom)
      err = TL_ENOMEM;
  }
  conn c;
  c.fd = -1;
  c.buf = NULL;
  if (!err)
    err = dial(t, &c);
  if (!err)
    err = send_all(&c, b.p, b.len);
  free(b.p);
  if (!err && len)
    err = send_all(&c, body, len);
  if (err == TL_ECLOSED)
    err = 0; /* the server may answer (413) before taking the body */
  if (!err)
    err = read_head(&c, res);
  if (!err)
    err = read_body(&c, method, res);
  hang_up(&c);
  if (err)
    tl_test_response_free(res);
  return err;
}

int tl_test_get(tl_test *t, const char *target, tl_test_response *res) {
  return tl_test_request(t, "GET", target, NULL, NULL, 0, res);
}

int tl_test_post(tl_test *t, const char *target, const char *type,
                 const char *body, tl_test_response *res) {
  char ct[256];
  const char *h[2] = {NULL, NULL};
  if (type) {
    if ((size_t)snprintf(ct, sizeof ct, "Content-Type: %s", type) >=
        sizeof ct)
      return TL_EINVAL;
    h[0] = ct;
  }
  return tl_test_request(t, "POST", target, h, body, body ? strlen(body) : 0,
                         res);
}

/* ---- WebSocket ----------------------------------------------------------- */

struct tl_test_ws {
  unsigned timeout_ms; /* the tl_test's (which may be stopped first) */
  conn c;
  int close_code; /* 0 while open */
  char close_reason[124];
  bool sent_close;
  unsigned pongs;
  char *protocol;
  sbuf frag; /* a fragmented message so far */
  int frag_op;
};

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int tl_test_ws_open(tl_test *t, const char *target, const char *const *headers,
                    tl_test_ws **out, tl_test_response *refused) {
  if (!t || !out)
    return TL_EINVAL;
  *out = NULL;
  if (refused)
    memset(refused, 0, sizeof *refused);
  unsigned char raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
    return -errno;
  char key[32];
  EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
  sbuf b = {0};
  int err = build_head(t, &b, "GET", target, headers);
  if (err) {
    free(b.p);
    return err;
  }
  sb_str(&b, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
  sb_str(&b, key);
  sb_str(&b, "\r\n\r\n");
  if (b.oom) {
    free(b.p);
    return TL_ENOMEM;
  }
  tl_test_ws *ws = calloc(1, sizeof *ws);
  if (!ws) {
    free(b.p);
    return TL_ENOMEM;
  }
  ws->timeout_ms = t->timeout_ms;
  ws->c.fd = -1;
  tl_test_response res = {0};
  err = dial(t, &ws->c);
  if (!err)
    err = send_all(&ws->c, b.p, b.len);
  free(b.p);
  if (!err)
    err = read_head(&ws->c, &res);
  if (!err && res.status != 101) {
    err = read_body(&ws->c, "GET", &res);
    if (!err && refused) {
      *refused = res;
      memset(&res, 0, sizeof res);
    }
    if (!err)
      err = TL_ESTATE;
  }
  if (!err) {
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char src[96], want[32];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(src, sizeof src, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)src, strlen(src), sha);
    EVP_EncodeBlock((unsigned char *)want, sha, sizeof sha);
    const char *got = tl_test_header_get(&res, "sec-websocket-accept");
    if (!got || strcmp(got, want) != 0)
      err = TL_EIO;
    const char *proto = tl_test_header_get(&res, "sec-websocket-protocol");
    if (!err && proto && !(ws->protocol = strdup(proto)))
      err = TL_ENOMEM;
  }
  tl_test_response_free(&res);
  if (err) {
    tl_test_ws_free(ws);
    return err;
  }
  *out = ws;
  return 0;
}

static int send_frame(tl_test_ws *ws, int op, const void *data, size_t len) {
  if (ws->c.fd < 0 || ws->close_code)
    return TL_ECLOSED;
  unsigned char hdr[14];
  size_t h = 0;
  hdr[h++] = (unsigned char)(0x80 | op);
  if (len < 126) {
    hdr[h++] = (unsigned char)(0x80 | len);
  } else if (len < 65536) {
    hdr[h++] = 0x80 | 126;
    hdr[h++] = (unsigned char)(len >> 8);
    hdr[h++] = (unsigned char)len;
  } else {
    hdr[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      hdr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  unsigned char mask[4];
  if (getrandom(mask, 4, 0) != 4)
    return -errno;
  memcpy(hdr + h, mask, 4);
  h += 4;
  unsigned char *frame = malloc(h + len);
  if (!frame)
    return TL_ENOMEM;
  memcpy(frame, hdr, h);
  const unsigned char *d = data;
  for (size_t i = 0; i < len; i++)
    frame[h + i] = d[i] ^ mask[i & 3];
  /* A send has its own deadline; a pong sent from inside a receive must
   * not move the receive's. */
  uint64_t recv_deadline = ws->c.deadline;
  ws->c.deadline = now_ms() + ws->timeout_ms;
  int err = send_all(&ws->c, frame, h + len);
  ws->c.deadline = recv_deadline;
  free(frame);
  return err;
}

int tl_test_ws_send(tl_test_ws *ws, tl_opcode op, const void *data,
                    size_t len) {
  if (!ws || (len && !data) ||
      (op != TL_WS_TEXT && op != TL_WS_BINARY && op != TL_WS_PING &&
       op != TL_WS_PONG) ||
      ((op == TL_WS_PING || op == TL_WS_PONG) && len > 125))
    return TL_EINVAL;
  return send_frame(ws, op, data, len);
}

int tl_test_ws_send_text(tl_test_ws *ws, const char *text) {
  if (!text)
    return TL_EINVAL;
  return tl_test_ws_send(ws, TL_WS_TEXT, text, strlen(text));
}

/* The server closed (frame or end): answer a close frame, stop. */
static int closed(tl_test_ws *ws, int code, const char *reason, size_t rlen) {
  ws->close_code = code;
  if (rlen >= sizeof ws->close_reason)
    rlen = sizeof ws->close_reason - 1;
  memcpy(ws->close_reason, reason, rlen);
  ws->close_reason[rlen] = '\0';
  return TL_ECLOSED;
}

/* Reads frames until a whole data message (0), the close (TL_ECLOSED),
 * the deadline or an error. */
static int next_message(tl_test_ws *ws, tl_test_msg *msg) {
  conn *c = &ws->c;
  if (ws->close_code)
    return TL_ECLOSED;
  for (;;) {
    int err = need(c, 2);
    if (err == TL_ECLOSED)
      return closed(ws, 1006, "", 0);
    if (err)
      return err;
    unsigned char *p = (unsigned char *)c->buf + c->pos;
    bool fin = p[0] & 0x80;
    int op = p[0] & 0x0f;
    if ((p[0] & 0x70) || (p[1] & 0x80))
      return TL_EIO; /* no extension was agreed; servers do not mask */
    uint64_t len = p[1] & 0x7f;
    size_t h = 2;
    if (len == 126)
      h = 4;
    else if (len == 127)
      h = 10;
    if ((err = need(c, h)))
      return err == TL_ECLOSED ? closed(ws, 1006, "", 0) : err;
    p = (unsigned char *)c->buf + c->pos;
    if (h == 4)
      len = (uint64_t)p[2] << 8 | p[3];
    else if (h == 10)
      for (int i = 0; i < 8; i++)
        len = (len << 8) | p[2 + i];
    if (len > ((uint64_t)1 << 31))
      return TL_EIO;
    if ((err = need(c, h + (size_t)len)))
      return err == TL_ECLOSED ? closed(ws, 1006, "", 0) : err;
    char *data = c->buf + c->pos + h;
    c->pos += h + (size_t)len;
    if (op == TL_WS_PING) {
      if ((err = send_frame(ws, TL_WS_PONG, data, (size_t)len)) &&
          err != TL_ECLOSED)
        return err;
      continue;
    }
    if (op == TL_WS_PONG) {
      ws->pongs++;
      continue;
    }
    if (op == TL_WS_CLOSE) {
      int code = len >= 2 ? ((unsigned char)data[0] << 8 |
                             (unsigned char)data[1])
                          : 1005;
      if (!ws->sent_close) {
        ws->sent_close = true;
        send_frame(ws, TL_WS_CLOSE, data, len >= 2 ? 2 : 0);
      }
      return closed(ws, code, len > 2 ? data + 2 : "",
                    len > 2 ? (size_t)len - 2 : 0);
    }
    if (op == TL_WS_TEXT || op == TL_WS_BINARY) {
      if (ws->frag_op)
        return TL_EIO;
      ws->frag_op = op;
    } else if (op != 0 || !ws->frag_op) {
      return TL_EIO;
    }
    sb_add(&ws->frag, data, (size_t)len);
    if (ws->frag.oom)
      return TL_ENOMEM;
    if (!fin)
      continue;
    if (!ws->frag.p)
      sb_add(&ws->frag, "", 0);
    msg->op = (tl_opcode)ws->frag_op;
    msg->data = ws->frag.p;
    msg->len = ws->frag.len;
    memset(&ws->frag, 0, sizeof ws->frag);
    ws->frag_op = 0;
    return 0;
  }
}

int tl_test_ws_recv(tl_test_ws *ws, tl_test_msg *msg, unsigned timeout_ms) {
  if (!ws || !msg)
    return TL_EINVAL;
  memset(msg, 0, sizeof *msg);
  ws->c.deadline = now_ms() + timeout_ms;
  return next_message(ws, msg);
}

void tl_test_msg_free(tl_test_msg *msg) {
  if (!msg)
    return;
  free(msg->data);
  memset(msg, 0, sizeof *msg);
}

int tl_test_ws_wait_close(tl_test_ws *ws, unsigned timeout_ms) {
  if (!ws)
    return TL_EINVAL;
  ws->c.deadline = now_ms() + timeout_ms;
  for (;;) {
    tl_test_msg m = {0};
    int err = next_message(ws, &m);
    tl_test_msg_free(&m);
    if (err == TL_ECLOSED)
      return 0;
    if (err)
      return err;
  }
}

int tl_test_ws_close(tl_test_ws *ws, int code, const char *reason) {
  if (!ws)
    return TL_EINVAL;
  if (ws->close_code)
    return 0;
  unsigned char payload[125];
  size_t n = 0;
  if (code) {
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
      return TL_EINVAL;
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason ? reason : "", rl);
    n = 2 + rl;
  }
  int err = send_frame(ws, TL_WS_CLOSE, payload, n);
  if (err)
    return err;
  ws->sent_close = true;
  return tl_test_ws_wait_close(ws, ws->timeout_ms);
}

int tl_test_ws_close_code(const tl_test_ws *ws) {
  return ws->close_code;
}

const char *tl_test_ws_close_reason(const tl_test_ws *ws) {
  return ws->close_reason;
}

unsigned tl_test_ws_pongs(const tl_test_ws *ws) {
  return ws->pongs;
}

const char *tl_test_ws_protocol(const tl_test_ws *ws) {
  return ws->protocol;
}

void tl_test_ws_free(tl_test_ws *ws) {
  if (!ws)
    return;
  hang_up(&ws->c);
  free(ws->frag.p);
  free(ws->protocol);
  free(ws);
}
