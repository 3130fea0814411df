/* Responses: the head is built straight into the connection's cork
 * buffer, so a whole response usually costs one copy of the body and no
 * allocation. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"

/* Files up to this size are copied into the cork buffer; larger ones go
 * out with sendfile(2). */
#define SMALL_FILE (64 * 1024)

const char *tl__status_reason(int s) {
  switch (s) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 422: return "Unprocessable Content";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

void tl__res_init(tl_res *res, tl__hconn *h) {
  res->h = h;
  res->status = 200;
  res->file_fd = -1;
}

void tl__res_reset(tl_res *res) {
  if (res->file_fd >= 0)
    close(res->file_fd);
  res->file_fd = -1;
  res->status = 200;
  /* Until the next request is dispatched, calls on the old response are
   * refused (TL_ESTATE) instead of answering a request twice. */
  res->flags = TL__R_FINISHED;
  res->drain_cb = NULL;
  res->abort_cb = NULL;
  res->hooks = NULL;
  res->body_bytes = 0;
  res->filter = NULL;
  res->filter_ctx = NULL;
  res->filter_state = 0;
  tl__buf_free(&res->fbuf);
  tl__buf_reset(&res->hdrs, 4096);
}

static const char *date_now(tl__http *app) {
  time_t now = time(NULL);
  if (now != app->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(app->date, sizeof app->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    app->date_sec = now;
  }
  return app->date;
}

static char *put(char *p, const char *s, size_t n) {
  if (n) /* s may be NULL when n is 0 (no headers yet) */
    memcpy(p, s, n);
  return p + n;
}
#define PUTS(p, lit) put(p, lit, sizeof lit - 1)

static char *put_u64(char *p, uint64_t v) {
  char tmp[24];
  int i = 0;
  do {
    tmp[i++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (i)
    *p++ = tmp[--i];
  return p;
}

static bool status_has_body(int s) {
  return !(s < 200 || s == 204 || s == 304);
}

/* Writes the head. `clen` >= 0: Content-Length; -1: chunked; -2: no
 * framing header (unframed stream or a status without body). */
static int write_head(tl_res *res, int64_t clen) {
  tl__hconn *h = res->h;
  tl__conn *c = &h->conn;
  const char *reason = NULL;
  size_t rlen = 0;
  if (res->status != 200) {
    reason = tl__status_reason(res->status);
    rlen = strlen(reason);
  }
  tl__buf *o = tl__conn_cork(c, 128 + rlen + res->hdrs.len);
  if (!o)
    return TL_ENOMEM;
  char *p = o->data + o->len;
  if (!reason) { /* the usual one, whole */
    p = PUTS(p, "HTTP/1.1 200 OK\r\n");
  } else {
    p = PUTS(p, "HTTP/1.1 ");
    p = put_u64(p, (uint64_t)res->status);
    *p++ = ' ';
    p = put(p, reason, rlen);
    p = PUTS(p, "\r\n");
  }
  p = put(p, res->hdrs.data, res->hdrs.len);
  p = PUTS(p, "Date: ");
  p = put(p, date_now(h->http), 29);
  p = PUTS(p, "\r\n");
  if (clen >= 0) {
    p = PUTS(p, "Content-Length: ");
    p = put_u64(p, (uint64_t)clen);
    p = PUTS(p, "\r\n");
  } else if (clen == -1) {
    p = PUTS(p, "Transfer-Encoding: chunked\r\n");
  }
  /* A body still streaming in is not read past an answer: close. */
  if (h->shutting_down || h->phase == TL__P_STREAM)
    res->flags |= TL__R_CLOSE;
  if (res->flags & TL__R_CLOSE)
    p = PUTS(p, "Connection: close\r\n");
  else if (h->req.version == 10)
    p = PUTS(p, "Connection: keep-alive\r\n");
  p = PUTS(p, "\r\n");
  o->len = (size_t)(p - o->data);
  res->flags |= TL__R_HEAD_SENT;
  tl__conn_mark_dirty(c);
  return 0;
}

static void run_hooks(tl_res *res);

/* Whether `res` answers a request for an upgrade route. */
static bool upgrade_request(const tl_res *res) {
  const tl_req *r = &res->h->req;
  return r->ws_upgrade && r->route && r->route->up.run;
}

static void count(tl_res *res) {
  int c = res->status / 100;
  tl__http *http = res->h->http;
  tl__count(&http->cnt.responses[c >= 1 && c <= 5 ? c : 0], 1);
  if (res->status != 101 && upgrade_request(res))
    tl__count(&http->cnt.upgrades_refused, 1);
}

static void finish(tl_res *res) {
  count(res);
  res->flags |= TL__R_FINISHED;
  res->flags &= ~TL__R_DEFERRED;
  if (res->hooks)
    run_hooks(res);
  /* Only marked here: the connection moves on once the callback that
   * finished has returned, at once when that is dispatch, else from the
   * loop (on_wake in conn.c). */
  if (!res->h->in_process)
    tl__conn_wake(&res->h->conn);
}

static int check_open(const tl_res *res) {
  if (res->flags & TL__R_FINISHED)
    return TL_ESTATE;
  if (res->h->conn.flags & TL__CONN_CLOSING)
    return TL_ECLOSED;
  return 0;
}

int tl_res_status(tl_res *res, int status) {
  if (status < 100 || status > 999)
    return TL_EINVAL;
  if (res->flags & TL__R_HEAD_SENT)
    return TL_ESTATE;
  res->status = status;
  return 0;
}

int tl_res_get_status(const tl_res *res) {
  return res->status;
}

/* Sets the lengths of a header's name and value in *nl and *vl; false
 * when the name is NULL, empty or holds ':', CR or LF, or the value is
 * NULL or holds CR or LF (one pass over each). */
static bool header_text(const char *name, const char *value, size_t *nl,
                        size_t *vl) {
  if (!name || !value || !*name)
    return false;
  *nl = strcspn(name, ":\r\n");
  *vl = strcspn(value, "\r\n");
  return name[*nl] == '\0' && value[*vl] == '\0';
}

/* The flag a header named `name` (`nl` bytes) sets, or 0. */
static unsigned header_flag(const char *name, size_t nl) {
  /* The usual spelling first: one memcmp. */
  if (nl == 12 && (!memcmp(name, "Content-Type", 12) ||
                   tl_str_ieq(name, nl, "content-type")))
    return TL__R_HAS_CTYPE;
  if (nl == 14 && (!memcmp(name, "Content-Length", 14) ||
                   tl_str_ieq(name, nl, "content-length")))
    return TL__R_HAS_CLEN;
  return 0;
}

/* Appends "name: value\r\n" (lengths checked by header_text). */
static int append_header(tl_res *res, const char *name, size_t nl,
                         const char *value, size_t vl) {
  int err = tl__buf_reserve(&res->hdrs, nl + vl + 4);
  if (err)
    return err;
  char *p = res->hdrs.data + res->hdrs.len;
  memcpy(p, name, nl);
  p += nl;
  *p++ = ':';
  *p++ = ' ';
  memcpy(p, value, vl);
  p += vl;
  *p++ = '\r';
  *p++ = '\n';
  res->hdrs.len = (size_t)(p - res->hdrs.data);
  res->flags |= header_flag(name, nl);
  return 0;
}

int tl_res_header(tl_res *res, const char *name, const char *value) {
  size_t nl, vl;
  if (!header_text(name, value, &nl, &vl))
    return TL_EINVAL;
  if (res->flags & (TL__R_HEAD_SENT | TL__R_FINISHED))
    return TL_ESTATE;
  return append_header(res, name, nl, value, vl);
}

int tl_res_headerf(tl_res *res, const char *name, const char *fmt, ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0)
    return TL_EINVAL;
  if ((size_t)n < sizeof small)
    return tl_res_header(res, name, small);
  char *big = malloc((size_t)n + 1);
  if (!big)
    return TL_ENOMEM;
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  int err = tl_res_header(res, name, big);
  free(big);
  return err;
}

/* A line of a header block ("Name: value\r\n"): where it starts, where
 * its colon is, and where the next line starts. */
typedef struct hline {
  size_t start, colon, end;
} hline;

/* The next line named `name` in `b` at or after *at (*at moves past it):
 * true with *l set, false when none is left. */
static bool find_line(const tl__buf *b, size_t *at, const char *name,
                      hline *l) {
  while (*at < b->len) {
    const char *p = b->data + *at, *e = b->data + b->len;
    const char *colon = memchr(p, ':', (size_t)(e - p));
    const char *lf = memchr(p, '\n', (size_t)(e - p));
    if (!colon || !lf)
      break;
    size_t start = *at;
    *at = (size_t)(lf + 1 - b->data);
    if (colon < lf && tl_str_ieq(p, (size_t)(colon - p), name)) {
      *l = (hline){start, (size_t)(colon - b->data), *at};
      return true;
    }
  }
  *at = b->len;
  return false;
}

/* Removes every header line named `name` from `b`; returns how many. */
static int remove_lines(tl__buf *b, const char *name) {
  int n = 0;
  size_t at = 0;
  hline l;
  while (find_line(b, &at, name, &l)) {
    memmove(b->data + l.start, b->data + l.end, b->len - l.end);
    b->len -= l.end - l.start;
    at = l.start;
    n++;
  }
  return n;
}

int tl_res_remove_header(tl_res *res, const char *name) {
  if (!name || !*name)
    return TL_EINVAL;
  if (res->flags & (TL__R_HEAD_SENT | TL__R_FINISHED))
    return TL_ESTATE;
  int n = remove_lines(&res->hdrs, name);
  if (n)
    res->flags &= ~header_flag(name, strlen(name));
  return n;
}

int tl_res_set_header(tl_res *res, const char *name, const char *value) {
  size_t nl, vl;
  if (!header_text(name, value, &nl, &vl))
    return TL_EINVAL;
  if (res->flags & (TL__R_HEAD_SENT | TL__R_FINISHED))
    return TL_ESTATE;
  /* Room first, so that a failure leaves the old lines in place. */
  int err = tl__buf_reserve(&res->hdrs, nl + vl + 4);
  if (err)
    return err;
  if (remove_lines(&res->hdrs, name))
    res->flags &= ~header_flag(name, nl);
  return append_header(res, name, nl, value, vl);
}

const char *tl_res_get_header(tl_res *res, const char *name) {
  size_t at = 0;
  hline l;
  if (!name || !*name || !find_line(&res->hdrs, &at, name, &l))
    return NULL;
  const char *v = res->hdrs.data + l.colon + 1;
  const char *cr = res->hdrs.data + l.end - 2; /* the line ends "\r\n" */
  while (v < cr && *v == ' ')
    v++;
  return tl__arena_strndup(&res->h->arena, v, (size_t)(cr - v));
}

bool tl_res_has_header(const tl_res *res, const char *name) {
  size_t at = 0;
  hline l;
  return find_line(&res->hdrs, &at, name, &l);
}

/* Runs a filter's begin once; true when it engaged. */
static bool filter_begin(tl_res *res, int64_t body_len) {
  if (!res->filter || res->filter_state)
    return res->filter_state == 1;
  bool engage = !(res->flags & TL__R_NO_BODY) && status_has_body(res->status) &&
                res->filter->begin(res, res->filter_ctx, body_len) == 1;
  res->filter_state = engage ? 1 : 2;
  return engage;
}

int tl_res_send(tl_res *res, const void *body, size_t len) {
  int err = check_open(res);
  if (err)
    return err;
  if (res->flags & TL__R_HEAD_SENT)
    return TL_ESTATE;
  if (filter_begin(res, (int64_t)len)) {
    /* The whole body is known: filter it into a buffer first, so the
     * response still carries a Content-Length. */
    res->flags |= TL__R_COLLECT;
    err = res->filter->data(res, res->filter_ctx, body, len, true);
    res->flags &= ~TL__R_COLLECT;
    if (err) {
      tl__buf_free(&res->fbuf);
      tl__conn_close(&res->h->conn);
      return err;
    }
    err = write_head(res, (int64_t)res->fbuf.len);
    if (!err)
      err = tl__conn_write(&res->h->conn, res->fbuf.data, res->fbuf.len);
    res->body_bytes += res->fbuf.len;
    tl__buf_free(&res->fbuf);
    if (err)
      res->flags |= TL__R_CLOSE;
    finish(res);
    return err;
  }
  bool has_body = status_has_body(res->status);
  err = write_head(res, has_body ? (int64_t)len : -2);
  if (!err && has_body && !(res->flags & TL__R_NO_BODY)) {
    err = tl__conn_write(&res->h->conn, body, len);
    res->body_bytes += len;
  }
  if (err) {
    res->flags |= TL__R_CLOSE;
    finish(res);
    return err;
  }
  finish(res);
  return 0;
}

int tl_res_send_buffer(tl_res *res, const void *body, size_t len,
                       tl_res_free_cb free_cb, void *arg) {
  int err = check_open(res);
  if (!err && (res->flags & TL__R_HEAD_SENT))
    err = TL_ESTATE;
  bool has_body =
      status_has_body(res->status) && !(res->flags & TL__R_NO_BODY);
  if (err || !has_body || len == 0 || filter_begin(res, (int64_t)len)) {
    /* Nothing to keep the buffer for: no body goes out, or a filter
     * makes its own copy. */
    if (!err)
      err = tl_res_send(res, body, len);
    if (free_cb)
      free_cb((void *)body, arg);
    return err;
  }
  tl__shared *blk = tl__shared_wrap(body, len, free_cb, arg);
  if (!blk) {
    if (free_cb)
      free_cb((void *)body, arg);
    return TL_ENOMEM;
  }
  tl__conn *c = &res->h->conn;
  err = write_head(res, (int64_t)len);
  /* The queue references the block in pieces libuv can count; the
   * caller's free function runs when the last one is written, or
   * dropped with the connection. */
  for (size_t off = 0; !err && off < len;) {
    size_t piece = len - off < ((size_t)1 << 30) ? len - off : (size_t)1 << 30;
    err = tl__conn_write_shared(c, blk, off, piece);
    off += piece;
  }
  res->body_bytes += len;
  tl__shared_unref(blk);
  if (err)
    res->flags |= TL__R_CLOSE;
  finish(res);
  return err;
}

static int send_typed(tl_res *res, const char *type, const char *s) {
  if (!(res->flags & TL__R_HAS_CTYPE) && !(res->flags & TL__R_HEAD_SENT))
    tl_res_header(res, "Content-Type", type);
  return tl_res_send(res, s, s ? strlen(s) : 0);
}

int tl_res_text(tl_res *res, const char *text) {
  return send_typed(res, "text/plain; charset=utf-8", text);
}

int tl_res_json(tl_res *res, const char *json) {
  return send_typed(res, "application/json", json);
}

int tl_res_redirect(tl_res *res, int status, const char *location) {
  if (status == 0)
    status = 302;
  if (status != 301 && status != 302 && status != 303 && status != 307 &&
      status != 308)
    return TL_EINVAL;
  int err = tl_res_status(res, status);
  if (!err)
    err = tl_res_header(res, "Location", location);
  if (err)
    return err;
  return tl_res_send(res, NULL, 0);
}

static int stream_head(tl_res *res) {
  if (res->flags & TL__R_HEAD_SENT)
    return 0;
  int64_t framing;
  bool filtered = filter_begin(res, -1);
  if (!status_has_body(res->status) ||
      ((res->flags & TL__R_HAS_CLEN) && !filtered)) {
    framing = -2;
  } else if (res->h->req.version >= 11) {
    framing = -1;
    res->flags |= TL__R_CHUNKED;
  } else {
    framing = -2;
    res->flags |= TL__R_CLOSE; /* HTTP/1.0: the end is the close */
  }
  if (res->flags & TL__R_NO_BODY)
    res->flags &= ~TL__R_CHUNKED;
  return write_head(res, framing);
}

/* Frames and queues body bytes (after any filter). */
static int raw_data(tl_res *res, const void *data, size_t len) {
  tl__conn *c = &res->h->conn;
  if (len == 0 || (res->flags & TL__R_NO_BODY) || !status_has_body(res->status))
    return 0;
  res->body_bytes += len;
  if (!(res->flags & TL__R_CHUNKED))
    return tl__conn_write(c, data, len);
  char hdr[24];
  int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
  int err = tl__conn_write(c, hdr, (size_t)n);
  if (!err)
    err = tl__conn_write(c, data, len);
  if (!err)
    err = tl__conn_write(c, "\r\n", 2);
  return err;
}

static int stream_data(tl_res *res, const void *data, size_t len, bool last) {
  if (res->filter_state == 1)
    return res->filter->data(res, res->filter_ctx, data, len, last);
  return raw_data(res, data, len);
}

int tl_res_filter_out(tl_res *res, const void *data, size_t len) {
  if (res->filter_state != 1)
    return TL_ESTATE;
  if (res->flags & TL__R_COLLECT)
    return tl__buf_append(&res->fbuf, data, len);
  return raw_data(res, data, len);
}

int tl_res_set_filter(tl_res *res, const tl_res_filter *filter, void *ctx) {
  if (!filter || !filter->begin || !filter->data)
    return TL_EINVAL;
  if (res->flags & (TL__R_HEAD_SENT | TL__R_FINISHED))
    return TL_ESTATE;
  if (res->filter)
    return TL_EEXIST;
  res->filter = filter;
  res->filter_ctx = ctx;
  return 0;
}

int tl_res_write(tl_res *res, const void *data, size_t len) {
  int err = check_open(res);
  if (!err)
    err = stream_head(res);
  if (!err)
    err = stream_data(res, data, len, false);
  if (err)
    return err;
  if (tl__conn_pending(&res->h->conn) > res->h->http->opt->write_high_water) {
    res->flags |= TL__R_WANT_DRAIN;
    return TL_SEND_BACKPRESSURE;
  }
  return len >= INT_MAX ? INT_MAX - 1 : (int)len;
}

int tl_res_end(tl_res *res, const void *data, size_t len) {
  int err = check_open(res);
  if (err)
    return err;
  if (!(res->flags & TL__R_HEAD_SENT))
    return tl_res_send(res, data, len);
  err = stream_data(res, data, len, true);
  if (!err && (res->flags & TL__R_CHUNKED))
    err = tl__conn_write(&res->h->conn, "0\r\n\r\n", 5);
  if (err)
    res->flags |= TL__R_CLOSE;
  finish(res);
  return err;
}

/* Sends the rest of a file body. Waits for the drain callback whenever
 * the socket is full; see tl__res_on_drain. */
static void file_pump(tl_res *res) {
  int rc = tl__conn_send_file(&res->h->conn, res->file_fd, &res->file_off,
                              res->file_end);
  if (rc != 0)
    return; /* TL_EAGAIN: on_drain resumes; else the connection closed */
  close(res->file_fd);
  res->file_fd = -1;
  res->flags &= ~TL__R_FILE;
  finish(res);
}

int tl_res_send_file_range(tl_res *res, const char *path, int64_t offset,
                           int64_t length) {
  int err = check_open(res);
  if (err)
    return err;
  if (res->flags & TL__R_HEAD_SENT)
    return TL_ESTATE;
  if (offset < 0 || length < -1)
    return TL_EINVAL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT || errno == ENOTDIR ? TL_ENOENT : -errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return TL_ENOENT;
  }
  if (length == -1)
    length = st.st_size > offset ? st.st_size - offset : 0;
  if (offset > st.st_size || length > st.st_size - offset) {
    close(fd);
    return TL_EINVAL;
  }
  bool has_body = status_has_body(res->status);
  bool body = !(res->flags & TL__R_NO_BODY) && has_body;
  if (!body || length <= SMALL_FILE) {
    size_t size = (size_t)length;
    err = write_head(res, has_body ? length : -2);
    if (!err && body && size > 0) {
      tl__buf *o = tl__conn_cork(&res->h->conn, size);
      err = o ? 0 : TL_ENOMEM;
      if (o) {
        ssize_t r = pread(fd, o->data + o->len, size, (off_t)offset);
        if (r == (ssize_t)size) {
          o->len += size;
          res->body_bytes += size;
        } else {
          err = TL_EIO;
        }
      }
    }
    close(fd);
    if (err) {
      tl__conn_close(&res->h->conn);
      return err;
    }
    finish(res);
    return 0;
  }
  err = write_head(res, length);
  if (err) {
    close(fd);
    return err;
  }
  res->file_fd = fd;
  res->file_off = offset;
  res->file_end = offset + length;
  res->body_bytes += (uint64_t)length;
  res->flags |= TL__R_FILE | TL__R_DEFERRED;
  file_pump(res);
  return 0;
}

int tl_res_send_file(tl_res *res, const char *path) {
  return tl_res_send_file_range(res, path, 0, -1);
}

int tl_res_on_finish(tl_res *res, tl_res_finish_cb cb, void *arg) {
  if (!cb)
    return TL_EINVAL;
  if (res->flags & TL__R_FINISHED)
    return TL_ESTATE;
  tl__finish_hook *hk = tl__arena_alloc(&res->h->arena, sizeof *hk);
  if (!hk)
    return TL_ENOMEM;
  hk->cb = cb;
  hk->arg = arg;
  hk->next = res->hooks;
  res->hooks = hk;
  return 0;
}

/* Runs the finish hooks once, in registration order. */
static void run_hooks(tl_res *res) {
  tl__finish_hook *hk = res->hooks, *rev = NULL;
  res->hooks = NULL;
  while (hk) {
    tl__finish_hook *next = hk->next;
    hk->next = rev;
    rev = hk;
    hk = next;
  }
  for (; rev; rev = rev->next)
    rev->cb(res, rev->arg);
}

void tl__res_upgraded(tl_res *res) {
  res->status = 101;
  count(res);
  res->flags |= TL__R_FINISHED;
  res->flags &= ~TL__R_DEFERRED;
  res->abort_cb = NULL;
  if (res->hooks)
    run_hooks(res);
}

uint64_t tl_res_body_bytes(const tl_res *res) {
  return res->body_bytes;
}

bool tl_res_aborted(const tl_res *res) {
  return (res->flags & TL__R_ABORTED) != 0;
}

size_t tl_res_buffered_amount(const tl_res *res) {
  return tl__conn_pending(&res->h->conn);
}

void tl_res_on_drain(tl_res *res, tl_res_drain_cb cb, void *arg) {
  res->drain_cb = cb;
  res->drain_arg = arg;
}

void tl__res_on_drain(tl__hconn *h) {
  tl_res *res = &h->res;
  if ((h->phase != TL__P_DISPATCH && h->phase != TL__P_STREAM) ||
      (res->flags & TL__R_FINISHED))
    return;
  if (res->flags & TL__R_FILE) {
    file_pump(res);
    return;
  }
  if ((res->flags & TL__R_WANT_DRAIN) && res->drain_cb) {
    res->flags &= ~TL__R_WANT_DRAIN;
    res->drain_cb(res, res->drain_arg);
  }
}

void tl_res_defer(tl_res *res, tl_res_abort_cb on_abort, void *arg) {
  if (res->flags & TL__R_FINISHED)
    return;
  res->flags |= TL__R_DEFERRED;
  res->abort_cb = on_abort;
  res->abort_arg = arg;
}

void tl__res_abort(tl__hconn *h) {
  tl_res *res = &h->res;
  tl_res_abort_cb cb = res->abort_cb;
  res->abort_cb = NULL;
  res->flags |= TL__R_FINISHED | TL__R_ABORTED;
  tl__count(&h->http->cnt.aborted, 1);
  if (upgrade_request(res))
    tl__count(&h->http->cnt.upgrades_refused, 1);
  if (cb)
    cb(res, res->abort_arg);
  if (res->hooks)
    run_hooks(res);
}

bool tl_res_finished(const tl_res *res) {
  return (res->flags & TL__R_FINISHED) != 0;
}

bool tl_res_head_sent(const tl_res *res) {
  return (res->flags & TL__R_HEAD_SENT) != 0;
}

void tl_res_close_after(tl_res *res) {
  res->flags |= TL__R_CLOSE;
}

tl_req *tl_res_req(const tl_res *res) {
  return &res->h->req;
}
