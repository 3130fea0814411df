/* The HTTP/1.1 connection: llhttp glue and input management.
 *
 * Input lives in one of two places. During a read callback the bytes are
 * in the server's receive buffer and requests are parsed there with no
 * copy: tl_req keeps offsets relative to `h->msg`, the start of the current
 * message. Whatever must outlive the callback (a partial head, a body in
 * progress, a request whose response is deferred, pipelined bytes behind
 * it) is copied into `h->in`, and later reads are appended there until it
 * empties again. Offsets make moving the message a matter of updating
 * `h->msg`.
 *
 * A head split across reads is not parsed piecemeal: we keep its bytes,
 * reset the parser and parse the whole head again once its blank line has
 * arrived. That keeps every header a contiguous span (so values can be
 * NUL-terminated in place) at the price of scanning a split head twice.
 *
 * Each message complete pauses llhttp, so the request is dispatched outside
 * the parser and a deferred response simply stops the parse loop; the
 * loop resumes where it stopped once the response is done, which keeps
 * pipelined responses in order.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

static tl__hconn *H(llhttp_t *p) {
  return p->data;
}

static int fail(tl__hconn *h, int status, const char *reason) {
  h->err_status = status;
  h->err_reason = reason;
  return -1;
}

/* Checks the head size so far; `end` is one past the latest head byte. */
static int check_head(tl__hconn *h, const char *end) {
  if ((size_t)(end - h->msg) > h->http->opt->max_header_bytes)
    return fail(h, 431, "Request Header Fields Too Large");
  return 0;
}

/* ---- Framing ------------------------------------------------------------
 *
 * Compiled without strict mode (as a system llhttp 8 may be), llhttp takes
 * any two bytes after a chunk's data for its CRLF, and any byte after the
 * CR that ends a chunk size line, the trailers or the head for the LF.
 * `3\r\nabcXY0\r\n\r\n` is then a whole chunked body, and whatever follows a
 * request the next one, where a front end sees other boundaries: request
 * smuggling. The bundled llhttp is compiled strict; these checks hold the
 * framing either way. A CRLF is checked where its bytes are: in the buffer
 * llhttp has now, among the last bytes of the one before (h->tail), or,
 * after chunk data, in the next one (h->crlf_due). */

/* The byte at `off` from the start of the buffer llhttp has; negative
 * offsets reach the previous buffer's tail. -1 if that is not known. */
static int byte_at(const tl__hconn *h, ptrdiff_t off) {
  if (off >= 0)
    return off < h->xend - h->xbeg ? (unsigned char)h->xbeg[off] : -1;
  if (-off > h->ntail)
    return -1;
  return (unsigned char)h->tail[sizeof h->tail + off];
}

/* Whether the two bytes before `p` (in the buffer llhttp has, or at its
 * very end) are a CRLF. */
static bool crlf_before(const tl__hconn *h, const char *p) {
  ptrdiff_t off = p - h->xbeg;
  return byte_at(h, off - 2) == '\r' && byte_at(h, off - 1) == '\n';
}

/* Checks the due bytes of the CRLF after chunk data against [p, end). */
static int check_due(tl__hconn *h, const char *p, const char *end) {
  for (; h->crlf_due && p < end; p++, h->crlf_due--)
    if (*p != "\r\n"[2 - h->crlf_due])
      return fail(h, 400, "Bad Request");
  return 0;
}

/* Keeps the last bytes of those llhttp consumed, [p, p+n), for the checks
 * that look back from the start of the next buffer. */
static void keep_tail(tl__hconn *h, const char *p, size_t n) {
  const size_t cap = sizeof h->tail;
  if (n >= cap) {
    memcpy(h->tail, p + n - cap, cap);
    h->ntail = (uint8_t)cap;
    return;
  }
  memmove(h->tail, h->tail + n, cap - n);
  memcpy(h->tail + cap - n, p, n);
  h->ntail = (uint8_t)(h->ntail + n < cap ? h->ntail + n : cap);
}

/* The head ends with an empty line: after the line of its last span (the
 * last header, or the request line), a CRLF. llhttp checked every line
 * before it, so its first LF ends that line. */
static bool head_ends_right(const tl__hconn *h) {
  const tl_req *r = &h->req;
  uint32_t end = r->url_off + r->url_len;
  if (r->nhdrs) {
    const tl__hdr *hd = &r->hdrs[r->nhdrs - 1];
    /* An empty value may be reported at the start of the next line. */
    end = hd->value_len ? hd->value_off + hd->value_len
                        : hd->name_off + hd->name_len;
  }
  const char *p = h->msg + end;
  const char *lf = memchr(p, '\n', (size_t)(h->xend - p));
  return lf && crlf_before(h, lf + 3);
}

/* The header entries a connection block holds (hdr_store). */
static uint32_t hdrs_inline(const tl__http *http) {
  return http->opt->max_headers < TL__HDRS_INLINE ? http->opt->max_headers
                                                  : TL__HDRS_INLINE;
}

/* Back to the connection's own header entries. */
static void hdrs_shrink(tl__hconn *h) {
  if (h->req.hdrs != h->hdr_store) {
    free(h->req.hdrs);
    h->req.hdrs = h->hdr_store;
    h->hdr_cap = hdrs_inline(h->http);
  }
}

/* Room for max_headers entries, the lines so far copied. */
static int hdrs_grow(tl__hconn *h) {
  uint32_t max = h->http->opt->max_headers;
  tl__hdr *a = malloc(max * sizeof *a);
  if (!a)
    return -1;
  memcpy(a, h->req.hdrs, h->req.nhdrs * sizeof *a);
  h->req.hdrs = a;
  h->hdr_cap = max;
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  tl__hconn *h = H(p);
  tl_req *r = &h->req;
  hdrs_shrink(h);
  h->phase = TL__P_HEAD;
  h->ntail = 0;
  h->crlf_due = 0;
  h->chunk_line = 0;
  h->chunked = false;
  h->trailer_bytes = 0;
  r->nhdrs = 0;
  r->cur_hdr_state = 0;
  r->url_off = r->url_len = 0;
  r->body_off = r->body_len = 0;
  tl__conn_timeout(&h->conn, h->http->opt->header_timeout_ms);
  return 0;
}

/* Extends the span (*off, *len) with [at, at+len), which must follow it. */
static int extend(tl__hconn *h, uint32_t *off, uint32_t *len, const char *at,
                  size_t n, bool fresh) {
  uint32_t o = (uint32_t)(at - h->msg);
  if (fresh) {
    *off = o;
    *len = (uint32_t)n;
    return 0;
  }
  if (*off + *len != o)
    return fail(h, 400, "Bad Request");
  *len += (uint32_t)n;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  tl__hconn *h = H(p);
  tl_req *r = &h->req;
  if (extend(h, &r->url_off, &r->url_len, at, n, r->url_len == 0))
    return -1;
  if (r->url_len > h->http->opt->max_url_bytes)
    return fail(h, 414, "URI Too Long");
  return check_head(h, at + n);
}

/* A chunked body's trailer fields are parsed and dropped: they arrive
 * after the head was handed out as NUL-terminated spans, and their bytes
 * are not kept once read (see keep_input). Read as headers they would
 * also let a client add "headers" that a front end checking the head
 * never saw. They count against max_header_bytes. */
static int trailer(tl__hconn *h, size_t n) {
  h->trailer_bytes += n;
  if (h->trailer_bytes > h->http->opt->max_header_bytes)
    return fail(h, 431, "Request Header Fields Too Large");
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  tl__hconn *h = H(p);
  tl_req *r = &h->req;
  if (h->chunk_line == 2) { /* the first trailer */
    h->chunk_line = 0;
    if (!crlf_before(h, at))
      return fail(h, 400, "Bad Request");
  }
  if (h->phase == TL__P_BODY)
    return trailer(h, n);
  if (r->cur_hdr_state != 1) {
    if (r->nhdrs >= h->http->opt->max_headers)
      return fail(h, 431, "Request Header Fields Too Large");
    if (r->nhdrs == h->hdr_cap && hdrs_grow(h) != 0)
      return fail(h, 503, "Service Unavailable");
    tl__hdr *hd = &r->hdrs[r->nhdrs++];
    hd->value_off = UINT32_MAX;
    hd->value_len = 0;
    r->cur_hdr_state = 1;
    if (extend(h, &hd->name_off, &hd->name_len, at, n, true))
      return -1;
  } else if (extend(h, &r->hdrs[r->nhdrs - 1].name_off,
                    &r->hdrs[r->nhdrs - 1].name_len, at, n, false)) {
    return -1;
  }
  return check_head(h, at + n);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  tl__hconn *h = H(p);
  tl_req *r = &h->req;
  if (h->phase == TL__P_BODY)
    return trailer(h, n);
  tl__hdr *hd = &r->hdrs[r->nhdrs - 1];
  bool fresh = hd->value_off == UINT32_MAX;
  r->cur_hdr_state = 2;
  if (extend(h, &hd->value_off, &hd->value_len, at, n, fresh))
    return -1;
  return check_head(h, at + n);
}

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

/* RFC 9110 5.6.2 tchar: what a header name may be made of. llhttp lets
 * some others through; a name with a space or an empty name is a request
 * smuggling vector, so it gets 400. */
static int on_headers_complete(llhttp_t *p) {
  tl__hconn *h = H(p);
  tl_req *r = &h->req;
  const tl_app_config *o = h->http->opt;
  if (!head_ends_right(h))
    return fail(h, 400, "Bad Request");
  unsigned hosts = 0;
  const tl__hdr *expect_hd = NULL;
  r->upgrade_hdr = NULL;
  /* Trim and NUL-terminate every span in place: the byte after each is
   * part of the already-parsed head (':' , OWS, CR or a space). The
   * headers the server itself reads are found on the way (the length
   * first: most names differ in it). */
  for (uint32_t i = 0; i < r->nhdrs; i++) {
    tl__hdr *hd = &r->hdrs[i];
    const char *name = h->msg + hd->name_off;
    if (!tl_is_token(name, hd->name_len))
      return fail(h, 400, "Bad Request");
    h->msg[hd->name_off + hd->name_len] = '\0';
    if (hd->name_len == 4)
      hosts += tl_str_ieq(name, 4, "host");
    else if (hd->name_len == 6 && !expect_hd && tl_str_ieq(name, 6, "expect"))
      expect_hd = hd;
    else if (hd->name_len == 7 && !r->upgrade_hdr &&
             tl_str_ieq(name, 7, "upgrade"))
      r->upgrade_hdr = hd;
    if (hd->value_off == UINT32_MAX)
      continue;
    while (hd->value_len && is_ows(h->msg[hd->value_off]))
      hd->value_off++, hd->value_len--;
    while (hd->value_len && is_ows(h->msg[hd->value_off + hd->value_len - 1]))
      hd->value_len--;
    if (hd->value_len == 0) {
      /* llhttp may report an empty value at the start of the next line:
       * never write there. */
      hd->value_off = UINT32_MAX;
      continue;
    }
    h->msg[hd->value_off + hd->value_len] = '\0';
  }
  if (r->url_len == 0)
    return fail(h, 400, "Bad Request");
  h->msg[r->url_off + r->url_len] = '\0';
  r->method = p->method;
  r->version = p->http_major * 10 + p->http_minor;
  if (p->http_major != 1)
    return fail(h, 505, "HTTP Version Not Supported");
  /* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host; with none or
   * two, which authority the request is for (and the origin checks that
   * read Host) would be up to whoever reads it. */
  if (hosts > 1 || (hosts == 0 && r->version >= 11))
    return fail(h, 400, "Bad Request");
  /* From here on the request's head is whole and checked: an error page
   * for what follows (413, 417) gets the request (tl__res_send_error). */
  h->phase = TL__P_BODY;
  r->keep_alive = llhttp_should_keep_alive(p);
  bool chunked = (p->flags & F_CHUNKED) != 0;
  h->chunked = chunked;
  bool has_len = (p->flags & F_CONTENT_LENGTH) != 0;
  /* Routed now: the route decides the body's limit and whether it is
   * read before the chain runs or streamed to it. */
  tl__route_req(r);
  const tl__route *rt = r->route;
  h->body_limit = rt && rt->max_body ? rt->max_body : o->max_body_bytes;
  if (has_len && p->content_length > h->body_limit)
    return fail(h, 413, "Content Too Large");
  const char *expect = expect_hd ? tl__req_hdr_value(r, expect_hd) : NULL;
  if (expect) {
    if (!tl_str_ieq(expect, strlen(expect), "100-continue"))
      return fail(h, 417, "Expectation Failed");
    if (r->version >= 11 && (chunked || p->content_length > 0)) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      tl__conn_write(&h->conn, cont, sizeof cont - 1);
    }
  }
  /* A request asking to upgrade takes the ordinary path, whose end
   * hands the connection over (process, HPE_PAUSED_UPGRADE). */
  if (rt && rt->stream_body && (chunked || p->content_length > 0) &&
      !r->upgrade_hdr) {
    /* Dispatched at once (process); the body follows (stream_feed). */
    h->phase = TL__P_STREAM;
    h->bs.seen = 0;
    return HPE_PAUSED;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  tl__hconn *h = H(p);
  tl_req *r = &h->req;
  if (h->chunked) {
    /* A chunk's data follows its size line's CRLF; when it is all here
     * (nothing left of the chunk's length), a CRLF follows it. */
    if (h->chunk_line == 1 && !crlf_before(h, at))
      return fail(h, 400, "Bad Request");
    h->chunk_line = 0;
    if (p->content_length == 0) {
      h->crlf_due = 2;
      if (check_due(h, at + n, h->xend))
        return -1;
    }
  }
  if (h->phase == TL__P_STREAM) {
    /* One piece per llhttp_execute, de-chunked in place (the target is
     * always behind the source, in the same buffer). */
    h->bs.seen += n;
    if (h->bs.seen > h->body_limit)
      return fail(h, 413, "Content Too Large");
    if (h->bs.piece_len == 0)
      h->bs.piece = (char *)at;
    else if (h->bs.piece + h->bs.piece_len != at)
      memmove(h->bs.piece + h->bs.piece_len, at, n);
    h->bs.piece_len += n;
    return 0;
  }
  if (r->body_len + n > h->body_limit)
    return fail(h, 413, "Content Too Large");
  uint32_t off = (uint32_t)(at - h->msg);
  if (r->body_len == 0) {
    r->body_off = off;
  } else if (r->body_off + r->body_len != off) {
    /* De-chunk in place: the target is always behind the source. */
    memmove(h->msg + r->body_off + r->body_len, at, n);
  }
  r->body_len += (uint32_t)n;
  return 0;
}

/* A chunk announces its size first: refuse one that cannot fit before its
 * bytes arrive. */
static int on_chunk_header(llhttp_t *p) {
  tl__hconn *h = H(p);
  uint64_t have = h->phase == TL__P_STREAM ? h->bs.seen : h->req.body_len;
  if (have + p->content_length > h->body_limit)
    return fail(h, 413, "Content Too Large");
  h->chunk_line = p->content_length ? 1 : 2;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  tl__hconn *h = H(p);
  h->phase = TL__P_DISPATCH;
  return HPE_PAUSED;
}

void tl__http_settings_init(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_message_begin = on_message_begin;
  s->on_url = on_url;
  s->on_header_field = on_header_field;
  s->on_header_value = on_header_value;
  s->on_headers_complete = on_headers_complete;
  s->on_body = on_body;
  s->on_chunk_header = on_chunk_header;
  s->on_message_complete = on_message_complete;
}

static bool conn_done(const tl__hconn *h) {
  return (h->conn.flags & (TL__CONN_CLOSING | TL__CONN_ENDING)) != 0;
}

/* Between requests, whether the answers so far wait unread past
 * write_high_water. A client that pipelines without reading would
 * otherwise grow our output without bound: stop parsing and reading until
 * the output drains (on_drain), as TCP flow control intends. */
static bool output_backed_up(tl__hconn *h) {
  if (h->phase != TL__P_IDLE ||
      tl__conn_pending(&h->conn) <= h->http->opt->write_high_water)
    return false;
  h->out_paused = true;
  tl__conn_read_stop(&h->conn);
  return true;
}

static void response_done(tl__hconn *h);
static void stream_start(tl__hconn *h);

/* Whether the request line in `p` ends in a well-formed version of
 * another major than 1 ("HTTP/2.0", "HTTP/3.0"): that gets 505, where a
 * malformed one ("HTTP/1.x", "HTTX/1.1") gets 400. */
static bool other_major(const char *p, size_t n) {
  const char *eol = memchr(p, '\n', n);
  size_t len = eol ? (size_t)(eol - p) : n;
  if (len && p[len - 1] == '\r')
    len--;
  if (len < 9 || p[len - 9] != ' ')
    return false;
  const char *v = p + len - 8;
  return memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' &&
         v[5] != '1' && v[6] == '.' && v[7] >= '0' && v[7] <= '9';
}

/* Parses and dispatches what is available from parse_pos on. */
static void process(tl__hconn *h) {
  h->in_process = true;
  while (!conn_done(h) && h->phase != TL__P_DISPATCH &&
         h->parse_pos < h->avail && !output_backed_up(h)) {
    if (h->phase == TL__P_IDLE) {
      /* A new message starts here: offsets count from it. */
      h->msg += h->parse_pos;
      h->avail -= h->parse_pos;
      h->parse_pos = 0;
    }
    const char *start = h->msg + h->parse_pos;
    size_t len = h->avail - h->parse_pos;
    h->xbeg = start;
    h->xend = start + len;
    if (check_due(h, start, h->xend)) {
      tl__res_send_error(h, 400, "Bad Request");
      break;
    }
    llhttp_errno_t err = llhttp_execute(&h->parser, start, len);
    if (err == HPE_OK) {
      keep_tail(h, start, len);
      h->parse_pos = h->avail;
      break;
    }
    h->parse_pos += (size_t)(llhttp_get_error_pos(&h->parser) - start);
    if (err == HPE_PAUSED && h->phase == TL__P_STREAM) {
      llhttp_resume(&h->parser);
      stream_start(h); /* takes the rest of the input */
      break;
    }
    if (err == HPE_PAUSED) {
      /* A chunked body ends with the CRLF after the last chunk's line
       * or after its trailers. */
      const char *end = h->msg + h->parse_pos;
      if (h->chunked && (!crlf_before(h, end) ||
                         (h->chunk_line == 2 && !crlf_before(h, end - 2)))) {
        tl__res_send_error(h, 400, "Bad Request");
        break;
      }
      llhttp_resume(&h->parser);
      tl__dispatch(h);
      /* Answered within the call: on to the next request. Otherwise the
       * response is deferred (phase stays DISPATCH, the loop stops) and
       * on_wake picks up when it finishes. */
      if (!conn_done(h) && (h->res.flags & TL__R_FINISHED))
        response_done(h);
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE) {
      /* What follows is not HTTP; the response to the upgrade request
       * closes the connection (WebSocket routes take over here). */
      h->avail = h->parse_pos;
      break;
    }
    int status = h->err_status ? h->err_status : 400;
    const char *reason = h->err_reason ? h->err_reason : "Bad Request";
    if (err == HPE_INVALID_VERSION && other_major(h->msg, h->avail))
      err = HPE_PAUSED_H2_UPGRADE; /* answered alike */
    if (err == HPE_PAUSED_H2_UPGRADE) {
      /* The HTTP/2 connection preface ("PRI * HTTP/2.0 ... SM"): a client
       * speaking HTTP/2 with prior knowledge. */
      status = 505;
      reason = "HTTP Version Not Supported";
    }
    tl__res_send_error(h, status, reason);
    break;
  }
  h->in_process = false;
}

static int scan_head_end(const char *p, size_t from, size_t n) {
  for (size_t i = from; i < n; i++) {
    if (p[i] != '\n')
      continue;
    if (i + 1 < n && p[i + 1] == '\n')
      return 1;
    if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
      return 1;
  }
  return 0;
}

/* At the end of a read (or of a deferred response), keeps what is still
 * needed in h->in so the receive buffer can be reused. */
static void keep_input(tl__hconn *h) {
  if (conn_done(h) || h->phase == TL__P_STREAM)
    return; /* a streamed body keeps its own (stream_start) */
  if (h->phase == TL__P_IDLE) {
    h->msg += h->parse_pos;
    h->avail -= h->parse_pos;
    h->parse_pos = 0;
    if (h->avail == 0) {
      h->in.len = 0;
      h->msg = NULL;
      tl__buf_reset(&h->in, 16 * 1024);
      return;
    }
  }
  if (h->phase == TL__P_BODY) {
    /* llhttp consumed everything; only the head and the body so far are
     * needed, not the chunk framing behind them. */
    tl_req *r = &h->req;
    if (r->body_len > 0)
      h->avail = h->parse_pos = r->body_off + r->body_len;
  }
  if (h->phase == TL__P_HEAD) {
    /* Parse the whole head again once it is complete. */
    llhttp_reset(&h->parser);
    h->phase = TL__P_IDLE;
    h->reparse = true;
  }
  bool in_in =
      h->in.data && h->msg >= h->in.data && h->msg < h->in.data + h->in.cap;
  if (in_in) {
    if (h->msg != h->in.data)
      memmove(h->in.data, h->msg, h->avail);
    h->in.len = h->avail;
  } else {
    h->in.len = 0;
    if (tl__buf_append(&h->in, h->msg, h->avail)) {
      tl__conn_close(&h->conn);
      return;
    }
  }
  h->msg = h->in.data;
}

/* ---- Streamed bodies ----------------------------------------------------
 *
 * A request of a stream_body route is dispatched when its head is
 * complete (on_headers_complete pauses llhttp). Its head then stays in
 * h->in (msg), and the body is parsed where it arrives: llhttp_execute
 * collects the body bytes of its input into one piece, de-chunked in
 * place (on_body), handed to the reader once llhttp has returned, so a
 * reader never runs inside the parser. While no reader is set or the
 * reader paused, reading stops and what had arrived waits unparsed in
 * bs.held: memory stays at about one read, whatever the body's size.
 * When the message completes, the phase is DISPATCH as for any deferred
 * response, and pipelined bytes behind it wait in h->later. */

static void end_stream(tl__hconn *h, int err) {
  if (!h->bs.set || h->bs.ended)
    return;
  h->bs.ended = true;
  h->bs.end_due = false;
  if (h->bs.end)
    h->bs.end(&h->req, &h->res, err, h->bs.arg);
}

static void stream_reset(tl__hconn *h) {
  tl__buf_free(&h->bs.held);
  memset(&h->bs, 0, sizeof h->bs);
}

/* Hands the parsed piece to the reader. */
static void deliver(tl__hconn *h) {
  char *p = h->bs.piece;
  size_t n = h->bs.piece_len;
  h->bs.piece = NULL;
  h->bs.piece_len = 0;
  if (n == 0 || !h->bs.set || h->bs.ended || conn_done(h) ||
      (h->res.flags & TL__R_FINISHED))
    return;
  h->bs.in_cb = true;
  h->bs.resumed = false;
  int rc = h->bs.data(&h->req, &h->res, p, n, h->bs.arg);
  h->bs.in_cb = false;
  if (rc == TL_BODY_PAUSE && !h->bs.resumed && !conn_done(h)) {
    h->bs.paused = true;
    tl__conn_read_stop(&h->conn);
    tl__conn_timeout(&h->conn, 0); /* the app's turn: no timeout */
  }
}

/* The body went wrong: the reader is told, then the client gets `status`
 * unless the reader answered (or the head went out: then only a close
 * is honest). The connection closes after it (response_done). */
static void stream_fail(tl__hconn *h, int status, const char *reason,
                        int err) {
  tl_res *res = &h->res;
  tl__conn_read_stop(&h->conn);
  end_stream(h, err);
  if (conn_done(h))
    return;
  if (!(res->flags & TL__R_FINISHED)) {
    if (res->flags & TL__R_HEAD_SENT) {
      tl__conn_close(&h->conn);
      return;
    }
    char body[96];
    snprintf(body, sizeof body, "%d %s\n", status, reason);
    tl__buf_reset(&res->hdrs, 4096);
    res->flags &= ~(TL__R_HAS_CLEN | TL__R_HAS_CTYPE);
    res->flags |= TL__R_CLOSE;
    tl_res_status(res, status);
    tl_res_text(res, body);
  }
  tl__conn_wake(&h->conn);
}

static void stream_complete(tl__hconn *h, char *rest, size_t n) {
  /* on_message_complete made the phase DISPATCH. */
  if (n && tl__buf_append(&h->later, rest, n)) {
    tl__conn_close(&h->conn);
    return;
  }
  if (h->later.len > h->http->opt->max_header_bytes)
    tl__conn_read_stop(&h->conn);
  tl__conn_timeout(&h->conn, 0);
  if (h->bs.paused)
    h->bs.end_due = true;
  else
    end_stream(h, 0);
}

/* Parses body input [p, p+n) of a streamed request and hands it over. */
static void stream_feed(tl__hconn *h, char *p, size_t n) {
  while (n > 0 && h->phase == TL__P_STREAM && !conn_done(h) &&
         !(h->res.flags & TL__R_FINISHED)) {
    if (!h->bs.set || h->bs.paused) {
      /* Wait for the app (a reader, or its resume): no timeout. */
      tl__conn_read_stop(&h->conn);
      tl__conn_timeout(&h->conn, 0);
      if (tl__buf_append(&h->bs.held, p, n))
        tl__conn_close(&h->conn);
      return;
    }
    h->xbeg = p;
    h->xend = p + n;
    if (check_due(h, p, h->xend)) {
      stream_fail(h, 400, "Bad Request", TL_EINVAL);
      return;
    }
    llhttp_errno_t err = llhttp_execute(&h->parser, p, n);
    size_t used = n;
    if (err == HPE_PAUSED) { /* the message is complete */
      used = (size_t)(llhttp_get_error_pos(&h->parser) - p);
      const char *end = p + used;
      if (h->chunked && (!crlf_before(h, end) ||
                         (h->chunk_line == 2 && !crlf_before(h, end - 2)))) {
        stream_fail(h, 400, "Bad Request", TL_EINVAL);
        return;
      }
      llhttp_resume(&h->parser);
    } else if (err != HPE_OK) {
      int st = h->err_status ? h->err_status : 400;
      stream_fail(h, st, h->err_reason ? h->err_reason : "Bad Request",
                  st == 413 ? TL_ETOOBIG : TL_EINVAL);
      return;
    }
    keep_tail(h, p, used);
    p += used;
    n -= used;
    deliver(h);
    if (err == HPE_PAUSED && !conn_done(h)) {
      stream_complete(h, p, n);
      break;
    }
  }
  if (!conn_done(h) && (h->res.flags & TL__R_FINISHED))
    tl__conn_wake(&h->conn); /* on to response_done */
}

/* The head of a streamed request is [msg, msg + parse_pos), its body
 * follows up to avail: keep the head, dispatch, then feed the body. */
static void stream_start(tl__hconn *h) {
  size_t head = h->parse_pos;
  char *rest = h->msg + head;
  size_t nrest = h->avail - head;
  bool in_in =
      h->in.data && h->msg >= h->in.data && h->msg < h->in.data + h->in.cap;
  keep_tail(h, h->msg, head);
  if (!in_in) {
    h->in.len = 0;
    if (tl__buf_append(&h->in, h->msg, head)) {
      tl__conn_close(&h->conn);
      return;
    }
  } else if (h->msg != h->in.data) {
    memmove(h->in.data, h->msg, head); /* behind `rest`: no overlap */
  }
  h->msg = h->in.data;
  h->avail = h->parse_pos = head;
  tl__dispatch(h);
  if (!conn_done(h) && !(h->res.flags & TL__R_FINISHED)) {
    tl__conn_timeout(&h->conn, h->http->opt->header_timeout_ms);
    stream_feed(h, rest, nrest);
  }
  if (conn_done(h))
    return;
  h->in.len = head; /* the body bytes that followed it were taken */
  if (h->res.flags & TL__R_FINISHED)
    tl__conn_wake(&h->conn);
}

static void stream_input(tl__hconn *h, char *data, size_t len) {
  if (h->bs.set && !h->bs.paused)
    tl__conn_timeout(&h->conn, h->http->opt->header_timeout_ms);
  stream_feed(h, data, len);
}

/* From on_wake: what a reader waits for once it is set or resumed. */
static void stream_wake(tl__hconn *h) {
  if (!h->bs.set || h->bs.paused || h->bs.ended ||
      (h->res.flags & TL__R_FINISHED))
    return;
  if (h->bs.replay) { /* a buffered body, as one piece */
    h->bs.replay = false;
    tl_slice b = tl_req_body(&h->req);
    h->bs.piece = (char *)b.ptr;
    h->bs.piece_len = b.len;
    deliver(h);
    if (conn_done(h) || h->bs.paused) {
      h->bs.end_due = true;
      return;
    }
    end_stream(h, 0);
    return;
  }
  tl__conn_read_start(&h->conn);
  if (h->bs.end_due) {
    end_stream(h, 0);
    return;
  }
  if (h->phase != TL__P_STREAM)
    return;
  tl__conn_timeout(&h->conn, h->http->opt->header_timeout_ms);
  if (h->bs.held.len) {
    tl__buf held = h->bs.held;
    h->bs.held = (tl__buf){0};
    stream_feed(h, held.data, held.len);
    tl__buf_free(&held);
  }
}

int tl_req_body_stream(tl_req *req, tl_body_data_cb on_data,
                       tl_body_end_cb on_end, void *arg) {
  tl__hconn *h = req->h;
  if (!on_data)
    return TL_EINVAL;
  if (h->bs.set || (h->res.flags & TL__R_FINISHED) || conn_done(h) ||
      (req->route && req->route->up.run) ||
      (h->phase != TL__P_STREAM && h->phase != TL__P_DISPATCH))
    return TL_ESTATE;
  h->bs.set = true;
  h->bs.data = on_data;
  h->bs.end = on_end;
  h->bs.arg = arg;
  h->bs.replay = h->phase == TL__P_DISPATCH;
  if (!(h->res.flags & TL__R_DEFERRED))
    tl_res_defer(&h->res, NULL, NULL);
  tl__conn_wake(&h->conn);
  return 0;
}

int tl_req_body_resume(tl_req *req) {
  tl__hconn *h = req->h;
  if (h->bs.in_cb && !h->bs.paused) {
    h->bs.resumed = true;
    return 0;
  }
  if (!h->bs.paused)
    return TL_ESTATE;
  h->bs.paused = false;
  tl__conn_wake(&h->conn);
  return 0;
}

bool tl_req_body_pending(const tl_req *req) {
  return req->h->phase == TL__P_STREAM;
}

static void on_read(tl__conn *c, char *data, size_t len) {
  tl__hconn *h = (tl__hconn *)c;
  if (conn_done(h))
    return;
  if (h->out_paused) {
    /* Reading is stopped; keep what was already on its way. */
    if (tl__buf_append(&h->in, data, len))
      tl__conn_close(c);
    return;
  }
  if (h->phase == TL__P_DISPATCH) {
    /* A deferred response is in flight and its request sits in h->in,
     * which must not move: park pipelined bytes in h->later. Reading goes
     * on (so a disconnect is noticed) until a head's worth is parked. */
    if (tl__buf_append(&h->later, data, len)) {
      tl__conn_close(c);
      return;
    }
    if (h->later.len > h->http->opt->max_header_bytes)
      tl__conn_read_stop(c); /* resumes when the response is done */
    return;
  }
  if (h->phase == TL__P_STREAM) {
    stream_input(h, data, len);
    return;
  }
  size_t scan_from = 0;
  if (h->in.len > 0) {
    const tl_app_config *o = h->http->opt;
    uint64_t body = h->phase == TL__P_BODY ? h->body_limit : o->max_body_bytes;
    uint64_t limit = o->max_header_bytes + body + 64 * 1024;
    if (h->in.len + len > limit) {
      tl__res_send_error(h, h->phase == TL__P_BODY ? 413 : 431,
                         h->phase == TL__P_BODY
                             ? "Content Too Large"
                             : "Request Header Fields Too Large");
      return;
    }
    scan_from = h->in.len > 3 ? h->in.len - 3 : 0;
    if (tl__buf_append(&h->in, data, len)) {
      tl__conn_close(c);
      return;
    }
    h->msg = h->in.data;
    h->avail = h->in.len;
  } else {
    h->msg = data;
    h->avail = len;
    h->parse_pos = 0;
  }
  if (h->reparse) {
    if (!scan_head_end(h->msg, scan_from, h->avail)) {
      if (h->avail > h->http->opt->max_header_bytes)
        tl__res_send_error(h, 431, "Request Header Fields Too Large");
      return;
    }
    h->reparse = false;
    h->parse_pos = 0;
  }
  process(h);
  keep_input(h);
}

void tl__hconn_upgrade_release(tl__hconn *h) {
  if (h->up_release)
    h->up_release(h);
  h->up_pending = NULL;
  h->up_release = NULL;
  free(h->up_protocol);
  h->up_protocol = NULL;
}

/* The response is finished: reset the request state and wait for the
 * next request (or close). */
static void response_done(tl__hconn *h) {
  if (h->phase == TL__P_STREAM)
    h->res.flags |= TL__R_CLOSE; /* the rest of the body is not read */
  end_stream(h, h->bs.end_due ? 0 : TL_ECLOSED);
  stream_reset(h);
  if (h->up_pending) /* an upgrade answered without accepting */
    tl__hconn_upgrade_release(h);
  tl__req_reset(&h->req);
  tl__arena_reset(&h->arena);
  h->phase = TL__P_IDLE;
  bool close = (h->res.flags & TL__R_CLOSE) || h->shutting_down;
  tl__res_reset(&h->res);
  if (close) {
    tl__conn_end(&h->conn);
    return;
  }
  tl__conn_timeout(&h->conn, h->http->opt->keepalive_timeout_ms);
}

/* A response finished outside process() (deferred, or after tl_next):
 * the core calls this in the same loop turn, outside the user's
 * callback, so finishing never re-enters the parser. */
static void on_wake(tl__conn *c) {
  tl__hconn *h = (tl__hconn *)c;
  if (!conn_done(h))
    stream_wake(h);
  if (!conn_done(h) && h->phase == TL__P_STREAM &&
      (h->res.flags & TL__R_FINISHED)) {
    response_done(h); /* answered before the body ended: closes */
    return;
  }
  if (conn_done(h) || h->phase != TL__P_DISPATCH ||
      !(h->res.flags & TL__R_FINISHED))
    return;
  response_done(h);
  if (conn_done(h))
    return;
  /* Its request is at the start of h->in. Drop it, add what was parked
   * meanwhile, and parse on. */
  size_t rest = h->avail - h->parse_pos;
  if (rest)
    memmove(h->in.data, h->in.data + h->parse_pos, rest);
  h->in.len = rest;
  if (tl__buf_append(&h->in, h->later.data, h->later.len)) {
    tl__conn_close(&h->conn);
    return;
  }
  tl__buf_reset(&h->later, 4096);
  h->msg = h->in.data;
  h->avail = h->in.len;
  h->parse_pos = 0;
  tl__conn_read_start(&h->conn);
  process(h);
  keep_input(h);
}

static void on_eof(tl__conn *c, int status) {
  tl__hconn *h = (tl__hconn *)c;
  if (h->phase == TL__P_DISPATCH) {
    tl__conn_close(c); /* on_close tells a deferred response */
    return;
  }
  if (h->phase == TL__P_IDLE && !h->reparse && status == UV_EOF) {
    tl__conn_end(c); /* flush what is corked, then close */
    return;
  }
  tl__conn_close(c);
}

static void on_timeout(tl__conn *c) {
  tl__hconn *h = (tl__hconn *)c;
  if (h->phase == TL__P_DISPATCH)
    return;
  if (h->phase == TL__P_STREAM) {
    if (h->bs.set && !h->bs.paused)
      stream_fail(h, 408, "Request Timeout", TL_EAGAIN);
    return;
  }
  if ((h->phase == TL__P_IDLE && !h->reparse && h->in.len == 0) ||
      h->out_paused) {
    /* A connection is not idle while our output waits for the client:
     * as for a response still being produced, the send timeout decides
     * about a client that takes none of it, measured by the core the same
     * way (the peer taking bytes, not our own queue, which shrinks only
     * when a whole write is done). Once the client has taken everything,
     * it is idle from then on. */
    const tl_app_config *o = h->http->opt;
    uint64_t now = tl__server_now(c->srv), taken_at;
    uint64_t until = tl__conn_output_waits(c, &taken_at)
                         ? taken_at + o->send_timeout_ms
                         : taken_at + o->keepalive_timeout_ms;
    if (until > now) {
      unsigned ms = o->keepalive_timeout_ms;
      tl__conn_timeout(c, until - now < ms ? (unsigned)(until - now) : ms);
      return;
    }
    tl__conn_close(c); /* idle keep-alive, or no progress */
    return;
  }
  tl__res_send_error(h, 408, "Request Timeout");
}

static void on_shutdown(tl__conn *c) {
  tl__hconn *h = (tl__hconn *)c;
  h->shutting_down = true;
  if (h->phase == TL__P_DISPATCH || h->phase == TL__P_BODY ||
      h->phase == TL__P_STREAM)
    return; /* finishes, then closes */
  tl__conn_end(c);
}

static void on_drain(tl__conn *c) {
  tl__hconn *h = (tl__hconn *)c;
  tl__res_on_drain(h);
  if (!h->out_paused || conn_done(h))
    return;
  /* The answers went out: parse the requests that waited, read again. */
  h->out_paused = false;
  tl__conn_read_start(c);
  if (h->phase != TL__P_IDLE || h->in.len == 0)
    return;
  h->msg = h->in.data;
  h->avail = h->in.len;
  h->parse_pos = 0;
  process(h);
  keep_input(h);
}

static void on_close(tl__conn *c) {
  tl__hconn *h = (tl__hconn *)c;
  end_stream(h, TL_ECLOSED); /* the client left mid-body */
  if ((h->phase == TL__P_DISPATCH || h->phase == TL__P_STREAM) &&
      !(h->res.flags & TL__R_FINISHED))
    tl__res_abort(h);
  stream_reset(h);
  tl__hconn_upgrade_release(h);
  tl__req_reset(&h->req);
  hdrs_shrink(h);
  tl__res_reset(&h->res);
  tl__buf_free(&h->res.hdrs);
  tl__arena_free(&h->arena);
  tl__buf_free(&h->in);
  tl__buf_free(&h->later);
}

static const tl__conn_proto http_proto = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_wake = on_wake,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
};

tl__conn *tl__hconn_new(tl__server *srv, void *arg) {
  tl__http *http = arg;
  tl__hconn *h = calloc(1, sizeof *h + hdrs_inline(http) * sizeof(tl__hdr));
  if (!h)
    return NULL;
  h->hdr_cap = hdrs_inline(http);
  h->http = http;
  h->conn.proto = &http_proto;
  h->conn.srv = srv;
  llhttp_init(&h->parser, HTTP_REQUEST, &http->settings);
  h->parser.data = h;
  h->req.h = h;
  h->req.hdrs = h->hdr_store;
  tl__res_init(&h->res, h);
  tl__conn_timeout(&h->conn, http->opt->header_timeout_ms);
  return &h->conn;
}
