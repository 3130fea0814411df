/* The WebSocket client: URL, dial, TLS, the opening handshake from the
 * client's side (RFC 6455 4.1), then the socket is handed to ws.c.
 *
 * The socket's block holds, after the user's context, the client's
 * state: its own route (the handlers, copied with defaults, so that
 * ws.c finds them where a server socket's are) and the handshake. Until
 * the 101 arrives the core talks to this file's protocol (hs_proto);
 * tl__ws_start then switches it to ws.c's. A failure before that calls
 * the user's on_fail once and closes the connection; nothing else of the
 * handlers runs. */
#include "ws/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "core/dial.h"
#include "core/tls.h"
#include "talon/util.h"
#include "ws/handshake.h"

#define DEFAULT_CONNECT_MS 10000
#define DEFAULT_HANDSHAKE_MS 10000
/* The longest response head read: a server that sends more without the
 * blank line fails the handshake. */
#define MAX_HEAD (16 * 1024)
#define MAX_HEADERS 100

typedef struct tl__wsc {
  tl__wsroute route; /* the socket's own */
  tl_ws *next;       /* the app's list of sockets waiting to start */
  tl__dial *dial;    /* while connecting */
  char *url;         /* as given */
  char *host;        /* for the resolver and TLS: no brackets */
  int port;
  bool tls;
  bool verify;
  bool offered_pmd;
  bool told; /* on_fail ran, or the socket opened */
  bool connected;
  char *ca_file;
  char *offered_protocols; /* "a, b" or NULL */
  char *protocol;          /* the server's choice */
  char accept[29];         /* the Sec-WebSocket-Accept expected */
  tl__buf request;         /* the request head */
  tl__buf head;            /* the response head so far */
  unsigned connect_ms, handshake_ms;
  int server_bits; /* server_max_window_bits asked for; 0: none */
  void (*on_fail)(tl_app *app, const tl_ws_connect_failure *f, void *data);
} tl__wsc;

static tl__wsc *state_of(const tl_ws *ws) {
  /* The route is the state's first member (ws->route points at it). */
  return (tl__wsc *)(void *)ws->route;
}

bool tl_ws_is_client(const tl_ws *ws) {
  return ws->route->client;
}

const char *tl_ws_protocol(const tl_ws *ws) {
  return ws->route->client ? state_of(ws)->protocol : NULL;
}

const char *tl_ws_fail_reason_name(tl_ws_fail_reason r) {
  switch (r) {
  case TL_WS_FAIL_DNS: return "dns";
  case TL_WS_FAIL_CONNECT: return "connect";
  case TL_WS_FAIL_TIMEOUT: return "timeout";
  case TL_WS_FAIL_TLS: return "tls";
  case TL_WS_FAIL_STATUS: return "status";
  case TL_WS_FAIL_ACCEPT: return "accept";
  case TL_WS_FAIL_EXTENSION: return "extension";
  case TL_WS_FAIL_SUBPROTOCOL: return "subprotocol";
  case TL_WS_FAIL_RESPONSE: return "response";
  case TL_WS_FAIL_CLOSED: return "closed";
  case TL_WS_FAIL_SHUTDOWN: return "shutdown";
  case TL_WS_FAIL_NOMEM: return "nomem";
  }
  return "unknown";
}

/* ---- the URL and the request --------------------------------------------- */

typedef struct url_parts {
  bool tls;
  const char *host; /* without brackets */
  size_t host_len;
  const char *authority; /* host[:port] as written, for Host */
  size_t authority_len;
  int port;
  const char *path; /* from '/' or '?'; "" means "/" */
} url_parts;

static bool starts_with_ci(const char *s, const char *prefix) {
  return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int parse_url(const char *url, url_parts *u) {
  memset(u, 0, sizeof *u);
  const char *p;
  if (starts_with_ci(url, "ws://")) {
    p = url + 5;
  } else if (starts_with_ci(url, "wss://")) {
    p = url + 6;
    u->tls = true;
  } else {
    return TL_EINVAL;
  }
  u->port = u->tls ? 443 : 80;
  u->authority = p;
  const char *end = p + strcspn(p, "/?#");
  if (*end == '#')
    return TL_EINVAL; /* fragments are not allowed (RFC 6455 3) */
  u->authority_len = (size_t)(end - p);
  if (memchr(p, '@', u->authority_len))
    return TL_EINVAL; /* no user info */
  const char *port = NULL;
  if (*p == '[') {
    const char *rb = memchr(p, ']', (size_t)(end - p));
    if (!rb)
      return TL_EINVAL;
    u->host = p + 1;
    u->host_len = (size_t)(rb - p - 1);
    if (rb + 1 < end) {
      if (rb[1] != ':')
        return TL_EINVAL;
      port = rb + 2;
    }
  } else {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    u->host = p;
    u->host_len = (size_t)((colon ? colon : end) - p);
    if (colon)
      port = colon + 1;
  }
  if (u->host_len == 0 || u->host_len > 253)
    return TL_EINVAL;
  for (size_t i = 0; i < u->host_len; i++) {
    unsigned char c = (unsigned char)u->host[i];
    if (c <= ' ' || c >= 0x7f)
      return TL_EINVAL;
  }
  if (port) {
    if (port == end)
      return TL_EINVAL;
    long v = 0;
    for (const char *q = port; q < end; q++) {
      if (*q < '0' || *q > '9' || (v = v * 10 + (*q - '0')) > 65535)
        return TL_EINVAL;
    }
    if (v == 0)
      return TL_EINVAL;
    u->port = (int)v;
  }
  u->path = end;
  for (const char *q = end; *q; q++) {
    unsigned char c = (unsigned char)*q;
    if (c <= ' ' || c == 0x7f || c == '#')
      return TL_EINVAL;
  }
  return 0;
}

static bool header_ok(const char *h) {
  const char *colon = strchr(h, ':');
  if (!colon || colon == h || strpbrk(h, "\r\n"))
    return false;
  for (const char *p = h; p < colon; p++)
    if (*p <= ' ' || *p >= 0x7f)
      return false;
  return true;
}

static bool token_ok(const char *t) {
  if (!*t)
    return false;
  for (const char *p = t; *p; p++)
    if (*p <= ' ' || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
      return false;
  return true;
}

/* A random Sec-WebSocket-Key (base64 of 16 bytes from the OS) and the
 * answer it expects. */
static int make_key(char key[25], char accept[29]) {
  unsigned char raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
    return TL_EIO;
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < 15; i += 3) {
    uint32_t v =
        (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
    key[o++] = b64[v >> 18 & 63];
    key[o++] = b64[v >> 12 & 63];
    key[o++] = b64[v >> 6 & 63];
    key[o++] = b64[v & 63];
  }
  key[o++] = b64[raw[15] >> 2];
  key[o++] = b64[(raw[15] & 3) << 4];
  key[o++] = '=';
  key[o++] = '=';
  key[o] = '\0';
  return tl__ws_accept_key(key, 24, accept);
}

static int add(tl__buf *b, const char *s) {
  return tl__buf_append(b, s, strlen(s));
}

/* The permessage-deflate offer the route's compression asks for. */
static int add_offer(tl__buf *b, const tl_ws_handlers *h, int server_bits) {
  char line[160];
  int c = h->compression;
  int bits = (c & TL_DEDICATED_COMPRESSOR) ? h->compress_window_bits : 15;
  snprintf(line, sizeof line,
           "Sec-WebSocket-Extensions: permessage-deflate%s%s; "
           "client_max_window_bits",
           (c & TL_DEDICATED_DECOMPRESSOR) ? ""
                                           : "; server_no_context_takeover",
           (c & TL_DEDICATED_COMPRESSOR) ? "" : "; client_no_context_takeover");
  int err = add(b, line);
  if (!err && bits < 15) {
    snprintf(line, sizeof line, "=%d", bits);
    err = add(b, line);
  }
  if (!err && server_bits) {
    snprintf(line, sizeof line, "; server_max_window_bits=%d", server_bits);
    err = add(b, line);
  }
  return err ? err : add(b, "\r\n");
}

static int build_request(tl__wsc *st, const url_parts *u, const char *key,
                         const tl_ws_client_options *o) {
  tl__buf *b = &st->request;
  int err = add(b, "GET ");
  if (!err && *u->path != '/')
    err = add(b, "/");
  if (!err)
    err = add(b, u->path);
  if (!err)
    err = add(b, " HTTP/1.1\r\nHost: ");
  if (!err)
    err = tl__buf_append(b, u->authority, u->authority_len);
  if (!err)
    err = add(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
  if (!err)
    err = add(b, key);
  if (!err)
    err = add(b, "\r\n");
  if (!err && st->offered_protocols) {
    err = add(b, "Sec-WebSocket-Protocol: ");
    if (!err)
      err = add(b, st->offered_protocols);
    if (!err)
      err = add(b, "\r\n");
  }
  if (!err && st->offered_pmd)
    err = add_offer(b, &st->route.h, st->server_bits);
  for (const char *const *h = o->headers; !err && h && *h; h++) {
    err = add(b, *h);
    if (!err)
      err = add(b, "\r\n");
  }
  return err ? err : add(b, "\r\n");
}

/* Frees what the state owns (not the block). */
static void state_free(tl__wsc *st) {
  free(st->url);
  free(st->host);
  free(st->ca_file);
  free(st->offered_protocols);
  free(st->protocol);
  tl__buf_free(&st->request);
  tl__buf_free(&st->head);
  st->url = st->host = st->ca_file = st->offered_protocols = NULL;
  st->protocol = NULL;
}

/* ws.c calls this when an opened client socket closes. */
static void release(tl_ws *ws) {
  state_free(state_of(ws));
}

static int check_options(const tl_ws_client_options *o) {
  for (const char *const *h = o->headers; h && *h; h++)
    if (!header_ok(*h))
      return TL_EINVAL;
  for (const char *const *p = o->protocols; p && *p; p++)
    if (!token_ok(*p))
      return TL_EINVAL;
  if (o->server_max_window_bits &&
      (o->server_max_window_bits < 8 || o->server_max_window_bits > 15))
    return TL_EINVAL;
  return 0;
}

static int join_protocols(tl__wsc *st, const char *const *list) {
  if (!list || !*list)
    return 0;
  tl__buf b = {0};
  int err = 0;
  for (const char *const *p = list; !err && *p; p++) {
    if (p != list)
      err = add(&b, ", ");
    if (!err)
      err = add(&b, *p);
  }
  if (!err)
    err = tl__buf_append(&b, "", 1);
  if (err) {
    tl__buf_free(&b);
    return err;
  }
  st->offered_protocols = b.data;
  return 0;
}

tl_ws *tl__wsc_new(const char *url, const tl_ws_handlers *h, size_t data_size,
                   const tl_ws_client_options *options, int *err) {
  static const tl_ws_client_options none = {0};
  const tl_ws_client_options *o = options ? options : &none;
  url_parts u;
  *err = TL_EINVAL;
  if (!url || !h || parse_url(url, &u) != 0 || check_options(o) != 0)
    return NULL;
  *err = TL_ENOMEM;
  void *extra = NULL;
  tl_ws *ws = tl__ws_alloc(data_size, sizeof(tl__wsc), &extra);
  if (!ws)
    return NULL;
  tl__wsc *st = extra;
  tl__wsroute_init(&st->route, h, data_size);
  st->route.client = true;
  st->route.release = release;
  ws->route = &st->route;
  if (o->data && data_size)
    memcpy(ws->data, o->data, data_size);
  st->tls = u.tls;
  st->port = u.port;
  st->verify = !o->tls_insecure_skip_verify;
  st->offered_pmd = h->compression != TL_NO_COMPRESSION;
  st->connect_ms =
      o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
  st->handshake_ms =
      o->handshake_timeout_ms ? o->handshake_timeout_ms : DEFAULT_HANDSHAKE_MS;
  st->on_fail = o->on_fail;
  st->server_bits = st->offered_pmd ? o->server_max_window_bits : 0;
  char key[25];
  int e = 0;
  if (!(st->url = strdup(url)) || !(st->host = strndup(u.host, u.host_len)) ||
      (o->ca_file && !(st->ca_file = strdup(o->ca_file))) ||
      (e = join_protocols(st, o->protocols)) != 0 ||
      (e = make_key(key, st->accept)) != 0 ||
      (e = build_request(st, &u, key, o)) != 0) {
    *err = e ? e : TL_ENOMEM;
    tl__wsc_discard(ws);
    return NULL;
  }
  *err = 0;
  return ws;
}

void tl__wsc_discard(tl_ws *ws) {
  state_free(state_of(ws));
  free(ws);
}

tl_ws **tl__wsc_next(tl_ws *ws) {
  return &state_of(ws)->next;
}

/* ---- failing --------------------------------------------------------- */

typedef struct response {
  int status;
  const char *reason;
  tl_ws_header headers[MAX_HEADERS];
  size_t n;
} response;

/* Tells the user (once) and closes the connection. */
static void report(tl_ws *ws, tl_ws_fail_reason why, int code,
                   const char *message, const response *r) {
  tl__wsc *st = state_of(ws);
  if (!st->told) {
    st->told = true;
    if (st->on_fail) {
      tl_ws_connect_failure f = {
          .reason = why,
          .code = code,
          .status = r ? r->status : 0,
          .message = message,
          .url = st->url,
          .headers = r ? r->headers : NULL,
          .nheaders = r ? r->n : 0,
      };
      st->on_fail(tl__ws_ctx(ws)->app, &f,
                  ws->route->data_size ? ws->data : NULL);
    }
  }
  tl__conn_close(&ws->conn);
}

static void report_uv(tl_ws *ws, tl_ws_fail_reason why, int code) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s (%s)", tl_strerror(code), tl_err_name(code));
  report(ws, why, code, msg, NULL);
}

/* ---- the response ----------------------------------------------------- */

/* Splits the head (NUL-terminated, ending in the blank line) in place.
 * False when it is not an HTTP/1.x response. */
static bool parse_head(char *head, response *r) {
  memset(r, 0, sizeof *r);
  char *line = head, *eol = strstr(line, "\r\n");
  if (!eol || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ')
    return false;
  *eol = '\0';
  char *s = line + 9;
  if (s[0] < '1' || s[0] > '5' || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
      s[2] > '9' || (s[3] != ' ' && s[3] != '\0'))
    return false;
  r->status = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
  r->reason = s[3] ? s + 4 : "";
  for (line = eol + 2; *line && !(line[0] == '\r' && line[1] == '\n');) {
    eol = strstr(line, "\r\n");
    if (!eol)
      return false;
    *eol = '\0';
    char *colon = strchr(line, ':');
    if (!colon || colon == line || r->n == MAX_HEADERS)
      return false;
    *colon = '\0';
    char *v = colon + 1, *ve = eol;
    while (*v == ' ' || *v == '\t')
      v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
      *--ve = '\0';
    r->headers[r->n++] = (tl_ws_header){line, v};
    line = eol + 2;
  }
  return true;
}

/* The value of header `name`, several joined by ", " into `tmp`; NULL
 * when absent (or when the joined values do not fit, which a `tmp` of
 * MAX_HEAD bytes rules out). */
static const char *get(const response *r, const char *name, char *tmp,
                       size_t size) {
  const char *one = NULL;
  size_t used = 0, count = 0;
  for (size_t i = 0; i < r->n; i++) {
    if (strcasecmp(r->headers[i].name, name) != 0)
      continue;
    const char *v = r->headers[i].value;
    one = v;
    int k = snprintf(tmp + used, size - used, "%s%s", count ? ", " : "", v);
    if (k < 0 || (size_t)k >= size - used)
      return NULL;
    used += (size_t)k;
    count++;
  }
  return count > 1 ? tmp : one;
}

/* Checks a 101 and takes what it agreed. 0, or a failure reason with
 * `msg` filled. */
static int check_101(tl_ws *ws, const response *r, char *msg, size_t size) {
  tl__wsc *st = state_of(ws);
  char tmp[MAX_HEAD]; /* any header's values joined fit: the head does */
  const char *v = get(r, "upgrade", tmp, sizeof tmp);
  if (!v || !tl_token_list_has(v, "websocket")) {
    snprintf(msg, size, "the 101 has no Upgrade: websocket");
    return TL_WS_FAIL_ACCEPT;
  }
  v = get(r, "connection", tmp, sizeof tmp);
  if (!v || !tl_token_list_has(v, "upgrade")) {
    snprintf(msg, size, "the 101 has no Connection: Upgrade");
    return TL_WS_FAIL_ACCEPT;
  }
  v = get(r, "sec-websocket-accept", tmp, sizeof tmp);
  if (!v || strcmp(v, st->accept) != 0) {
    snprintf(msg, size, "bad Sec-WebSocket-Accept: %s", v ? v : "(none)");
    return TL_WS_FAIL_ACCEPT;
  }
  v = get(r, "sec-websocket-protocol", tmp, sizeof tmp);
  if (v) {
    if (!st->offered_protocols || strchr(v, ',') ||
        !tl__ws_protocol_listed(st->offered_protocols, v)) {
      snprintf(msg, size, "the server chose a subprotocol not offered: %.200s",
               v);
      return TL_WS_FAIL_SUBPROTOCOL;
    }
    if (!(st->protocol = strdup(v))) {
      snprintf(msg, size, "out of memory");
      return TL_WS_FAIL_NOMEM;
    }
  }
  v = get(r, "sec-websocket-extensions", tmp, sizeof tmp);
  if (v) {
    tl__pmd_agreed ag;
    int c = st->route.h.compression;
    int bits =
        (c & TL_DEDICATED_COMPRESSOR) ? st->route.h.compress_window_bits : 15;
    if (!st->offered_pmd ||
        !tl__pmd_client_accept(v, strlen(v), bits,
                               !(c & TL_DEDICATED_COMPRESSOR), st->server_bits,
                               &ag)) {
      snprintf(msg, size,
               "the server answered an extension not offered: %.200s", v);
      return TL_WS_FAIL_EXTENSION;
    }
    if (!(ws->pmd = calloc(1, sizeof *ws->pmd))) {
      snprintf(msg, size, "out of memory");
      return TL_WS_FAIL_NOMEM;
    }
    ws->pmd->agreed = ag;
    /* A server that keeps its compression context needs a decompressor
     * that keeps it too: this socket's route is its own. */
    if (!ag.client_no_takeover)
      st->route.h.compression |= TL_DEDICATED_DECOMPRESSOR;
  }
  return 0;
}

/* The head is complete (its last byte at head->data[end - 1]). */
static void on_head(tl_ws *ws, size_t end) {
  tl__wsc *st = state_of(ws);
  tl__buf *b = &st->head;
  /* Frames the server sent right behind its 101. */
  tl__buf pre = {0};
  if (b->len > end && tl__buf_append(&pre, b->data + end, b->len - end)) {
    report(ws, TL_WS_FAIL_NOMEM, TL_ENOMEM, "out of memory", NULL);
    return;
  }
  b->data[end - 2] = '\0'; /* the head keeps one CRLF after its last line */
  b->len = end - 1;
  response r;
  char msg[320];
  if (!parse_head(b->data, &r)) {
    report(ws, TL_WS_FAIL_RESPONSE, 0, "the response is not HTTP/1.1", NULL);
  } else if (r.status != 101) {
    snprintf(msg, sizeof msg, "HTTP %d %.200s", r.status, r.reason);
    report(ws, TL_WS_FAIL_STATUS, 0, msg, &r);
  } else {
    int why = check_101(ws, &r, msg, sizeof msg);
    if (why) {
      report(ws, (tl_ws_fail_reason)why, 0, msg, &r);
    } else {
      st->told = true;
      tl__buf_free(&st->head);
      tl__buf_free(&st->request);
      tl__ws_start(ws, NULL, pre.data, pre.len);
    }
  }
  tl__buf_free(&pre);
}

/* ---- the handshake's protocol ------------------------------------------ */

static void hs_read(tl__conn *c, char *data, size_t len) {
  tl_ws *ws = (tl_ws *)c;
  tl__wsc *st = state_of(ws);
  tl__buf *b = &st->head;
  size_t from = b->len > 3 ? b->len - 3 : 0;
  if (tl__buf_append(b, data, len)) {
    report(ws, TL_WS_FAIL_NOMEM, TL_ENOMEM, "out of memory", NULL);
    return;
  }
  for (size_t i = from; i + 4 <= b->len && i < MAX_HEAD; i++) {
    if (memcmp(b->data + i, "\r\n\r\n", 4) == 0) {
      on_head(ws, i + 4);
      return;
    }
  }
  if (b->len >= MAX_HEAD)
    report(ws, TL_WS_FAIL_RESPONSE, TL_ETOOBIG,
           "the response head passed 16 KiB", NULL);
}

static void hs_eof(tl__conn *c, int status) {
  tl_ws *ws = (tl_ws *)c;
  if (status == UV_EOF)
    report(ws, TL_WS_FAIL_CLOSED, status,
           "the server closed the connection during the handshake", NULL);
  else
    report_uv(ws, TL_WS_FAIL_CLOSED, status);
}

static void hs_timeout(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  tl__wsc *st = state_of(ws);
  char msg[96];
  if (st->connected)
    snprintf(msg, sizeof msg, "no WebSocket handshake within %u ms",
             st->handshake_ms);
  else
    snprintf(msg, sizeof msg, "no connection within %u ms", st->connect_ms);
  report(ws, TL_WS_FAIL_TIMEOUT, UV_ETIMEDOUT, msg, NULL);
}

static void hs_shutdown(tl__conn *c) {
  report((tl_ws *)c, TL_WS_FAIL_SHUTDOWN, TL_ECLOSED, "the app is stopping",
         NULL);
}

static void hs_close(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  tl__wsc *st = state_of(ws);
  if (st->dial) {
    tl__dial_cancel(st->dial);
    st->dial = NULL;
  }
  if (!st->told) {
    /* Closed by the core: a failed TLS handshake, or a write error. */
    st->told = true;
    if (c->tls && tl__tls_failed(c->tls)) {
      char msg[224];
      snprintf(msg, sizeof msg, "TLS: %s", tl__tls_error(c->tls));
      if (st->on_fail) {
        tl_ws_connect_failure f = {.reason = TL_WS_FAIL_TLS,
                                   .code = TL_EIO,
                                   .message = msg,
                                   .url = st->url};
        st->on_fail(tl__ws_ctx(ws)->app, &f,
                    ws->route->data_size ? ws->data : NULL);
      }
    } else if (st->on_fail) {
      int code = c->error ? c->error : TL_ECLOSED;
      tl_ws_connect_failure f = {.reason = TL_WS_FAIL_CLOSED,
                                 .code = code,
                                 .message = tl_strerror(code),
                                 .url = st->url};
      st->on_fail(tl__ws_ctx(ws)->app, &f,
                  ws->route->data_size ? ws->data : NULL);
    }
  }
  free(ws->pmd);
  ws->pmd = NULL;
  state_free(st);
}

static const tl__conn_proto hs_proto = {
    .on_read = hs_read,
    .on_eof = hs_eof,
    .on_timeout = hs_timeout,
    .on_shutdown = hs_shutdown,
    .on_close = hs_close,
};

/* The loop's TLS context for these trust settings, made on first use
 * and kept (tl__wsctx_free lets them go). A failed one is not kept: a CA
 * file that appears later is read then. */
static tl__tls_client_ctx *trust_of(tl__wsctx *ctx, const char *ca_file,
                                    bool verify, char *err, size_t errsize) {
  for (tl__wsc_trust *t = ctx->trust; t; t = t->next)
    if (t->verify == verify &&
        (!verify || (t->ca_file && ca_file ? strcmp(t->ca_file, ca_file) == 0
                                           : t->ca_file == ca_file)))
      return t->ctx;
  tl__wsc_trust *t = calloc(1, sizeof *t);
  if (!t || (ca_file && verify && !(t->ca_file = strdup(ca_file)))) {
    free(t);
    snprintf(err, errsize, "out of memory");
    return NULL;
  }
  if (!(t->ctx = tl__tls_client_ctx_new(ca_file, verify, err, errsize))) {
    free(t->ca_file);
    free(t);
    return NULL;
  }
  t->verify = verify;
  t->next = ctx->trust;
  ctx->trust = t;
  return t->ctx;
}

/* TCP is up: TLS if wss, the request, and wait for the answer. */
static void on_dialed(tl__conn *c, int status, bool dns) {
  tl_ws *ws = (tl_ws *)c;
  tl__wsc *st = state_of(ws);
  st->dial = NULL;
  if (status) {
    report_uv(ws, dns ? TL_WS_FAIL_DNS : TL_WS_FAIL_CONNECT, status);
    return;
  }
  st->connected = true;
  tl__conn_timeout(c, st->handshake_ms);
  if (tl__conn_write(c, st->request.data, st->request.len) != 0) {
    report(ws, TL_WS_FAIL_NOMEM, TL_ENOMEM, "out of memory", NULL);
    return;
  }
  if (st->tls) {
    char err[200];
    tl__tls_client_ctx *cc =
        trust_of(tl__ws_ctx(ws), st->ca_file, st->verify, err, sizeof err);
    tl__tls *t = cc ? tl__tls_new_client(cc, st->host, st->verify) : NULL;
    if (!t) {
      char msg[224];
      snprintf(msg, sizeof msg, "TLS: %s", cc ? "out of memory" : err);
      report(ws, TL_WS_FAIL_TLS, cc ? TL_ENOMEM : TL_EINVAL, msg, NULL);
      return;
    }
    if (tl__conn_tls_connect(c, t) != 0)
      return; /* closed: hs_close told why */
  }
  tl__conn_read_start(c);
}

void tl__wsc_start(tl_ws *ws, tl__server *srv) {
  tl__wsc *st = state_of(ws);
  ws->conn.srv = srv;
  ws->conn.proto = &hs_proto;
  int err = 0;
  st->dial =
      tl__dial_start(srv, &ws->conn, st->host, st->port, on_dialed, &err);
  /* Adopted either way: from here on the connection closes normally. */
  if (!st->dial) {
    report_uv(ws, err == TL_ENOMEM ? TL_WS_FAIL_NOMEM : TL_WS_FAIL_DNS, err);
    return;
  }
  tl__conn_timeout(&ws->conn, st->connect_ms);
  if (srv->stopping)
    hs_shutdown(&ws->conn);
}
