/* talon — the test client's sockets and HTTP requests (contract in
 * include/talon/test.h): blocking sockets with poll(2) for deadlines, and
 * a small HTTP/1.1 reader (Content-Length, chunked, until close). */
#include "testkit.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- sockets with deadlines --------------------------------------------- */

static int wait_fd(int fd, short ev, uint64_t deadline) {
  for (;;) {
    uint64_t now = tl__t_now_ms();
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

int tl__t_dial(tl_test *t, tl__t_conn *c) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->deadline = tl__t_now_ms() + t->timeout_ms;
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

void tl__t_hang_up(tl__t_conn *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
  c->len = c->pos = c->cap = 0;
}

int tl__t_send_all(tl__t_conn *c, const void *p, size_t n) {
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
ssize_t tl__t_fill(tl__t_conn *c) {
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
int tl__t_need(tl__t_conn *c, size_t n) {
  while (c->len - c->pos < n) {
    ssize_t r = tl__t_fill(c);
    if (r == 0)
      return TL_ECLOSED;
    if (r < 0)
      return (int)r;
  }
  return 0;
}

/* ---- requests ------------------------------------------------------------ */

void tl__t_sb_add(tl__t_sbuf *b, const void *p, size_t n) {
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

void tl__t_sb_str(tl__t_sbuf *b, const char *s) {
  tl__t_sb_add(b, s, strlen(s));
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
int tl__t_build_head(tl_test *t, tl__t_sbuf *b, const char *method,
                      const char *target, const char *const *headers) {
  if (!method || !target || bad_line(method) || bad_line(target))
    return TL_EINVAL;
  for (const char *const *h = headers; h && *h; h++)
    if (bad_line(*h) || !strchr(*h, ':'))
      return TL_EINVAL;
  tl__t_sb_str(b, method);
  tl__t_sb_str(b, " ");
  tl__t_sb_str(b, target);
  tl__t_sb_str(b, " HTTP/1.1\r\n");
  if (!has_header(headers, "host")) {
    char host[96];
    snprintf(host, sizeof host, "Host: %s:%d\r\n", t->host, t->port);
    tl__t_sb_str(b, host);
  }
  for (const char *const *h = headers; h && *h; h++) {
    tl__t_sb_str(b, *h);
    tl__t_sb_str(b, "\r\n");
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
int tl__t_read_head(tl__t_conn *c, tl_test_response *res) {
  for (;;) {
    char *end;
    size_t scanned = 0;
    for (;;) {
      end = memmem(c->buf ? c->buf + c->pos : "", c->len - c->pos, "\r\n\r\n",
                   4);
      if (end)
        break;
      if (c->len - c->pos > TL__T_MAX_HEAD)
        return TL_EIO;
      scanned = c->len - c->pos;
      int err = tl__t_need(c, scanned + 1);
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
static int take(tl__t_conn *c, tl__t_sbuf *body, size_t n) {
  tl__t_sb_add(body, c->buf + c->pos, n);
  c->pos += n;
  return body->oom ? TL_ENOMEM : 0;
}

static int read_line(tl__t_conn *c, char *out, size_t size) {
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
    int err = tl__t_need(c, c->len - c->pos + 1);
    if (err)
      return err;
  }
}

int tl__t_read_body(tl__t_conn *c, const char *method, tl_test_response *res) {
  tl__t_sbuf body = {0};
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
        if (!have && (err = tl__t_need(c, 1)))
          break;
        have = c->len - c->pos;
        size_t k = have < n ? have : (size_t)n;
        err = take(c, &body, k);
        n -= k;
      }
      if (!err && !(err = tl__t_need(c, 2))) {
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
      if (c->len == c->pos && (err = tl__t_need(c, 1)))
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
      ssize_t r = tl__t_fill(c);
      if (r == 0)
        break;
      if (r < 0) {
        err = (int)r;
        break;
      }
    }
  }
  if (!err && !body.p)
    tl__t_sb_add(&body, "", 0);
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
  tl__t_sbuf b = {0};
  int err = tl__t_build_head(t, &b, method, target, headers);
  if (!err) {
    bool needs_len = len || strcmp(method, "POST") == 0 ||
                     strcmp(method, "PUT") == 0 ||
                     strcmp(method, "PATCH") == 0;
    if (needs_len && !has_header(headers, "content-length") &&
        !has_header(headers, "transfer-encoding")) {
      char cl[48];
      snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", len);
      tl__t_sb_str(&b, cl);
    }
    if (!has_header(headers, "connection"))
      tl__t_sb_str(&b, "Connection: close\r\n");
    tl__t_sb_str(&b, "\r\n");
    if (b.oom)
      err = TL_ENOMEM;
  }
  tl__t_conn c;
  c.fd = -1;
  c.buf = NULL;
  if (!err)
    err = tl__t_dial(t, &c);
  if (!err)
    err = tl__t_send_all(&c, b.p, b.len);
  free(b.p);
  if (!err && len)
    err = tl__t_send_all(&c, body, len);
  if (err == TL_ECLOSED)
    err = 0; /* the server may answer (413) before taking the body */
  if (!err)
    err = tl__t_read_head(&c, res);
  if (!err)
    err = tl__t_read_body(&c, method, res);
  tl__t_hang_up(&c);
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
