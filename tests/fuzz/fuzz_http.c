/* libFuzzer target for the whole HTTP request path: bytes on a socket,
 * through llhttp, the connection and dispatch code, the router, app,
 * router and route middleware (request id, security headers, cookies,
 * compression, CORS, body parsers), handlers, and the WebSocket upgrade,
 * frame parser, permessage-deflate and pub/sub behind it.
 *
 * The first call builds a real app with the public API and runs
 * tl_app_listen() on 127.0.0.1, port 0, in a background thread; an atexit
 * hook stops it (tl_app_stop, join, tl_app_free) so LeakSanitizer sees a
 * clean exit. Limits are small so that inputs reach the 413/414/431
 * answers, and timeouts short so that a stuck input costs little.
 *
 * Each input is one TCP connection:
 *   byte 0 bits 0-1: 0/3 write the rest at once; 1 write it in pieces of
 *     (byte 1 & 31) + 1 bytes with a short pause between them (the server
 *     sees separate reads); 2 one write per line;
 *   byte 0 bit 2: reset the connection (SO_LINGER 0) right after writing
 *     instead of reading the answer (the client-went-away paths);
 *   byte 1: piece size (mode 1);
 *   rest: what the client sends.
 * After writing, the client half-closes (shutdown SHUT_WR) and reads until
 * the server closes.
 *
 * Checks (what talon promises to any client):
 *  - the server closes a half-closed connection within a few seconds
 *    (header and keep-alive timeouts are 1 s here);
 *  - the answer is a sequence of well-formed HTTP/1.1 responses: status
 *    line "HTTP/1.1 NNN ...", header lines "token: value" without bare CR
 *    or LF (no header injection from decoded input), framed by
 *    Content-Length or chunked encoding so that each next response starts
 *    where the previous one ends (HEAD and 1xx/204/304 without a body);
 *  - after a 101, the server's WebSocket frames are unmasked, with valid
 *    opcodes, RSV1 only when permessage-deflate was agreed, and control
 *    frames short and unfragmented;
 *  - handlers check the contracts of the accessors they call.
 * The harness is a plain LLVMFuzzerTestOneInput, usable with other
 * libFuzzer-compatible drivers (e.g. AFL++'s). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <talon.h>
#include <talon/mw.h>
#include <uv.h>

/* ---- the app ------------------------------------------------------------ */

static tl_app *app;
static pthread_t app_thread;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int port;
static char upload_dir[64];

static const char *const secrets[] = {"fuzz-http-secret-0123456789abcdef",
                                      NULL};

__attribute__((noreturn)) static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

/* Contract of tl_res_header for a value from the client: refused exactly
 * when it holds CR or LF. */
static void header_from_input(tl_res *res, const char *name, const char *v) {
  if (!v)
    return;
  int rc = tl_res_header(res, name, v);
  bool bad = strpbrk(v, "\r\n") != NULL;
  if ((bad && rc != TL_EINVAL) || (!bad && rc != 0 && rc != TL_ENOMEM))
    fail("tl_res_header: wrong answer for a value from the client");
}

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello\n");
}

static void user(tl_req *req, tl_res *res) {
  const char *id = tl_req_param(req, "id");
  const char *q = tl_req_query(req, "q");
  const char *sid = tl_req_cookie(req, "sid");
  const char *sig = tl_req_signed_cookie(req, "auth");
  const char *rid = tl_req_id(req);
  if (!id)
    fail("route parameter missing");
  header_from_input(res, "X-Query", q);
  header_from_input(res, "X-Param", id);
  int rc = tl_res_cookie(res, "last", id, &(tl_cookie_attrs){.path = "/"});
  if (rc != 0 && rc != TL_EINVAL && rc != TL_ETOOBIG && rc != TL_ENOMEM)
    fail("tl_res_cookie: unexpected error");
  if (sid && tl_res_cookie_signed(res, "auth", sid, NULL) == TL_ESTATE)
    fail("tl_res_cookie_signed: cookies middleware did not run");
  char buf[600];
  snprintf(buf, sizeof buf, "id=%.100s q=%.100s sid=%.100s auth=%.100s rid=%.60s\n",
           id, q ? q : "-", sid ? sid : "-", sig ? sig : "-",
           rid ? rid : "-");
  tl_res_text(res, buf);
}

static void posts(tl_req *req, tl_res *res) {
  json_t *o = json_pack("{s:s?, s:s?, s:s?}", "id", tl_req_param(req, "id"),
                        "post", tl_req_param(req, "post"), "path",
                        tl_req_path(req));
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  if (s)
    tl_res_json(res, s);
  else
    tl_res_status(res, 500);
  free(s);
  json_decref(o);
}

static void files(tl_req *req, tl_res *res) {
  const char *rest = tl_req_param(req, "*");
  if (!rest)
    fail("wildcard parameter missing");
  tl_res_text(res, rest);
}

static void items(tl_req *req, tl_res *res) {
  json_t *j = tl_req_json(req);
  tl_res_status(res, j ? 201 : 204);
  if (j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    tl_res_json(res, s ? s : "null");
    free(s);
  }
}

static void form(tl_req *req, tl_res *res) {
  char buf[256];
  size_t nf = tl_req_file_count(req);
  for (size_t i = 0; i < nf; i++) {
    const tl_upload *u = tl_req_file_at(req, i);
    struct stat st;
    if (!u || stat(u->path, &st) != 0 || (uint64_t)st.st_size != u->size)
      fail("upload file missing or of the wrong size");
  }
  const char *a = tl_req_form(req, "a");
  snprintf(buf, sizeof buf, "fields=%zu files=%zu a=%.64s\n",
           tl_req_form_count(req, NULL), nf, a ? a : "-");
  tl_res_text(res, buf);
}

static void echo(tl_req *req, tl_res *res) {
  tl_slice b = tl_req_body(req);
  const char *ct = tl_req_header(req, "content-type");
  header_from_input(res, "Content-Type", ct ? ct : "text/plain");
  tl_res_send(res, b.ptr, b.len);
}

static void stream(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain");
  for (int i = 0; i < 3; i++)
    if (tl_res_write(res, "chunk of a streamed body\n", 25) < 0)
      return;
  tl_res_end(res, "end\n", 4);
}

static void big(tl_req *req, tl_res *res) {
  static char text[20000];
  if (!text[0])
    for (size_t i = 0; i < sizeof text; i++)
      text[i] = "abcdefghij\n"[i % 11];
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_send(res, text, sizeof text);
}

/* A deferred answer from a 1 ms timer; the abort callback stops it. */
typedef struct later {
  uv_timer_t t;
  tl_res *res;
} later;

static void later_closed(uv_handle_t *h) {
  free(h->data);
}

static void later_fire(uv_timer_t *t) {
  later *l = t->data;
  if (l->res)
    tl_res_text(l->res, "later\n");
  uv_close((uv_handle_t *)t, later_closed);
}

static void later_abort(tl_res *res, void *arg) {
  later *l = arg;
  l->res = NULL;
}

static void deferred(tl_req *req, tl_res *res) {
  later *l = calloc(1, sizeof *l);
  if (!l) {
    tl_res_status(res, 500);
    return;
  }
  l->res = res;
  l->t.data = l;
  uv_timer_init(tl_app_loop(tl_req_app(req)), &l->t);
  uv_timer_start(&l->t, later_fire, 1, 0);
  tl_res_defer(res, later_abort, l);
}

static void redirect(tl_req *req, tl_res *res) {
  const char *to = tl_req_query(req, "to");
  int rc = tl_res_redirect(res, 302, to ? to : "/");
  if (rc == TL_EINVAL)
    tl_res_status(res, 400); /* CR/LF in the target: refused */
}

static void api_pair(tl_req *req, tl_res *res) {
  char buf[300];
  snprintf(buf, sizeof buf, "%.100s/%.100s %s\n", tl_req_param(req, "a"),
           tl_req_param(req, "b"), tl_req_method(req));
  tl_res_text(res, buf);
}

static void api_any(tl_req *req, tl_res *res) {
  tl_res_status(res, 202);
  tl_res_header(res, "Content-Type", "text/plain");
  tl_res_end(res, tl_req_method(req), strlen(tl_req_method(req)));
}

static void ws_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  const char *p = data;
  if (len > 4 && memcmp(p, "sub ", 4) == 0) {
    char topic[64];
    snprintf(topic, sizeof topic, "%.*s", (int)(len - 4), p + 4);
    tl_ws_subscribe(ws, topic);
  } else if (len > 4 && memcmp(p, "pub ", 4) == 0) {
    tl_ws_publish(ws, "room", p + 4, len - 4, op);
    tl_app_publish(tl_ws_app(ws), "room", p, len, op);
  } else if (len == 5 && memcmp(p, "close", 5) == 0) {
    tl_ws_close(ws, 1000, "bye");
  } else if (len == 4 && memcmp(p, "ping", 4) == 0) {
    tl_ws_ping(ws, "p", 1);
  } else {
    tl_ws_send(ws, data, len, op);
  }
}

static void ws_open(tl_ws *ws) {
  tl_ws_subscribe(ws, "room");
}

static int ws_upgrade(tl_req *req, tl_res *res, void *data) {
  if (tl_req_query(req, "deny")) {
    tl_res_status(res, 401);
    return TL_REJECT;
  }
  if (tl_ws_protocol_offered(req, "chat"))
    tl_ws_select_protocol(res, "chat");
  return TL_ACCEPT;
}

static void on_listen(tl_app *a, const char *host, int p) {
  pthread_mutex_lock(&mu);
  port = p;
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

static void *run_app(void *arg) {
  int rc = tl_app_listen(app, "127.0.0.1", 0);
  if (rc != 0) {
    fprintf(stderr, "fuzz_http: tl_app_listen: %s\n", tl_strerror(rc));
    abort();
  }
  return NULL;
}

static void stop_app(void) {
  tl_app_stop(app);
  pthread_join(app_thread, NULL);
  tl_app_free(app);
  rmdir(upload_dir);
}

#define CHECK(x)                                                               \
  do {                                                                         \
    if ((x) != 0)                                                              \
      fail("setting up the app: " #x);                                         \
  } while (0)

static void start_app(void) {
  tl_app_config cfg = {.max_header_bytes = 2048,
                       .max_url_bytes = 256,
                       .max_body_bytes = 4096,
                       /* past the 32 entries a connection holds */
                       .max_headers = 40,
                       .header_timeout_ms = 1000,
                       .keepalive_timeout_ms = 1000,
                       .shutdown_timeout_ms = 200,
                       .max_connections = 64,
                       .no_signal_handlers = 1,
                       .on_listen = on_listen};
  app = tl_app_new(&cfg);
  if (!app)
    fail("tl_app_new");
  snprintf(upload_dir, sizeof upload_dir, "%s/talon-fuzz-http-XXXXXX",
           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (!mkdtemp(upload_dir))
    fail("mkdtemp");

  CHECK(tl_app_use(app, tl_request_id(NULL)));
  CHECK(tl_app_use(app, tl_security_headers(NULL)));
  CHECK(tl_app_use(app, tl_cookies(&(tl_cookies_options){.secrets = secrets})));
  CHECK(tl_app_use(app, tl_compress(&(tl_compress_options){.threshold = 64})));

  CHECK(tl_app_get(app, "/", hello));
  CHECK(tl_app_get(app, "/users/:id", user));
  CHECK(tl_app_get(app, "/users/:id/posts/:post", posts));
  CHECK(tl_app_get(app, "/files/*", files));
  tl_middleware jmw[] = {tl_body_json(&(tl_body_json_options){.max_depth = 8})};
  CHECK(tl_app_route(app, "POST", "/items", items, jmw, 1));
  tl_middleware fmw[] = {
      tl_body_urlencoded(NULL),
      tl_body_multipart(&(tl_body_multipart_options){
          .dir = upload_dir, .max_files = 3, .max_file_bytes = 2048})};
  CHECK(tl_app_route(app, "POST", "/form", form, fmw, 2));
  CHECK(tl_app_post(app, "/echo", echo));
  CHECK(tl_app_put(app, "/echo", echo));
  CHECK(tl_app_get(app, "/stream", stream));
  CHECK(tl_app_get(app, "/big", big));
  CHECK(tl_app_get(app, "/defer", deferred));
  CHECK(tl_app_get(app, "/redirect", redirect));

  tl_router *api = tl_router_new();
  if (!api)
    fail("tl_router_new");
  CHECK(tl_router_use(api, tl_cors(NULL)));
  CHECK(tl_router_get(api, "/v1/:a/:b", api_pair));
  CHECK(tl_router_put(api, "/thing", api_any));
  CHECK(tl_router_delete(api, "/thing/:id", api_any));
  CHECK(tl_router_all(api, "/any", api_any));
  CHECK(tl_app_mount(app, "/api", api));

  static const tl_ws_handlers wsh = {
      .upgrade = ws_upgrade,
      .open = ws_open,
      .message = ws_message,
      .max_payload = 4096,
      .idle_timeout_s = 2,
      .compression = TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR,
      .compress_threshold = 16};
  CHECK(tl_app_ws(app, "/ws", &wsh, 16));
  static const tl_ws_handlers plain = {
      .message = ws_message,
      .max_payload = 256,
      .idle_timeout_s = 2,
      .compression = TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR};
  CHECK(tl_app_ws(app, "/chat", &plain, 0));

  if (pthread_create(&app_thread, NULL, run_app, NULL) != 0)
    fail("pthread_create");
  pthread_mutex_lock(&mu);
  while (!port)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  if (tl_app_port(app) != port)
    fail("tl_app_port disagrees with on_listen");
  atexit(stop_app);
}

/* ---- the client ----------------------------------------------------------- */

static int connect_app(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    fail("socket");
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    fail("connect");
  return fd;
}

/* Writes everything; false if the server closed first (it may answer an
 * error and close before reading all of it). */
static bool write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    p += w;
    n -= (size_t)w;
  }
  return true;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define MAX_ANSWER (4u << 20)
/* How long the server may take to close a connection the client has
 * half-closed: its timeouts here are 1 s, so 8 s means it never will. */
#define CLOSE_DEADLINE_MS 8000

/* Reads until EOF. Returns the bytes; *reset tells whether the
 * connection ended with an error (then the tail may be missing). */
static char *read_all(int fd, size_t *len, bool *reset) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf)
    fail("malloc");
  *reset = false;
  int64_t deadline = now_ms() + CLOSE_DEADLINE_MS;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0)
      fail("the server did not close a half-closed connection");
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int pr = poll(&pfd, 1, (int)left);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      continue;
    if (n == cap) {
      if (cap >= MAX_ANSWER)
        fail("answer larger than 4 MiB");
      cap *= 2;
      buf = realloc(buf, cap);
      if (!buf)
        fail("realloc");
    }
    ssize_t r = recv(fd, buf + n, cap - n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      *reset = true;
      break;
    }
    if (r == 0)
      break;
    n += (size_t)r;
  }
  *len = n;
  return buf;
}

/* ---- checking the answer --------------------------------------------------- */

static bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *find(const char *p, const char *e, const char *s) {
  return memmem(p, (size_t)(e - p), s, strlen(s));
}

/* The value of header `name` in the head [p, e) (first line skipped), or
 * NULL; its length in *len. */
static const char *head_value(const char *p, const char *e, const char *name,
                              size_t *len) {
  size_t nl = strlen(name);
  const char *line = find(p, e, "\r\n");
  if (!line)
    return NULL; /* a status line alone */
  line += 2;
  while (line < e) {
    const char *eol = find(line, e, "\r\n");
    if (!eol)
      eol = e;
    if ((size_t)(eol - line) > nl && line[nl] == ':' &&
        strncasecmp(line, name, nl) == 0) {
      const char *v = line + nl + 1;
      while (v < eol && *v == ' ')
        v++;
      *len = (size_t)(eol - v);
      return v;
    }
    line = eol + 2;
  }
  return NULL;
}

/* Checks one head [p, e) (without the final empty line's CRLF pair).
 * Returns the status. */
static int check_head(const char *p, const char *e) {
  if (e - p < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0 || p[9] < '1' ||
      p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
      (e - p > 12 && p[12] != ' '))
    fail("malformed status line");
  int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  const char *line = find(p, e, "\r\n");
  if (!line) {
    if (memchr(p, '\r', (size_t)(e - p)) || memchr(p, '\n', (size_t)(e - p)))
      fail("bare CR or LF in the status line");
    return status;
  }
  if (memchr(p, '\n', (size_t)(line - p)) || memchr(p, '\r', (size_t)(line - p)))
    fail("bare CR or LF in the status line");
  line += 2;
  while (line < e) {
    const char *eol = find(line, e, "\r\n");
    if (!eol)
      eol = e;
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (!colon || colon == line)
      fail("response header line without a name");
    for (const char *c = line; c < colon; c++)
      if (!is_tchar((unsigned char)*c))
        fail("response header name is not a token");
    for (const char *c = colon; c < eol; c++)
      if (*c == '\r' || *c == '\n' || *c == '\0')
        fail("CR, LF or NUL in a response header value");
    line = eol + 2;
  }
  return status;
}

/* Server-to-client WebSocket frames after a 101. */
static void check_frames(const char *p, const char *e, bool pmd) {
  bool in_msg = false;
  while (p < e) {
    if (e - p < 2)
      return; /* cut short: the connection may have been reset */
    uint8_t b0 = (uint8_t)p[0], b1 = (uint8_t)p[1];
    int op = b0 & 15;
    bool fin = b0 & 0x80, rsv1 = b0 & 0x40;
    if (b0 & 0x30)
      fail("server frame with RSV2 or RSV3");
    if (b1 & 0x80)
      fail("masked server frame");
    uint64_t len = b1 & 127;
    size_t hl = 2;
    if (len == 126) {
      if (e - p < 4)
        return;
      len = (uint64_t)(uint8_t)p[2] << 8 | (uint8_t)p[3];
      hl = 4;
    } else if (len == 127) {
      if (e - p < 10)
        return;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = len << 8 | (uint8_t)p[2 + i];
      hl = 10;
    }
    if (op >= 8) {
      if (op != 8 && op != 9 && op != 10)
        fail("server frame with a reserved control opcode");
      if (!fin || len > 125 || rsv1)
        fail("fragmented, long or compressed server control frame");
    } else if (op == 0) {
      if (!in_msg || rsv1)
        fail("server continuation frame out of place");
      in_msg = !fin;
    } else if (op == 1 || op == 2) {
      if (in_msg)
        fail("server data frame inside a fragmented message");
      if (rsv1 && !pmd)
        fail("server frame with RSV1 without permessage-deflate");
      in_msg = !fin;
    } else {
      fail("server frame with a reserved data opcode");
    }
    if ((uint64_t)(e - p) - hl < len)
      return; /* cut short */
    p += hl + len;
  }
}

/* Skips a chunked body at p; returns its end, or NULL if cut short. */
static const char *skip_chunked(const char *p, const char *e) {
  for (;;) {
    const char *eol = find(p, e, "\r\n");
    if (!eol)
      return NULL;
    char *end;
    unsigned long long n = strtoull(p, &end, 16);
    if (end == p || (end != eol && *end != ';'))
      fail("malformed chunk size");
    p = eol + 2;
    if (n == 0) {
      /* No trailers from talon: the empty line follows. */
      if (e - p < 2)
        return NULL;
      if (p[0] != '\r' || p[1] != '\n')
        fail("chunked body does not end with an empty line");
      return p + 2;
    }
    if ((unsigned long long)(e - p) < n + 2)
      return NULL;
    if (p[n] != '\r' || p[n + 1] != '\n')
      fail("chunk data not followed by CRLF");
    p += n + 2;
  }
}

/* Whether [p, e) starts with "HTTP/1.1 " (or, shorter, a prefix of it:
 * the end of what was read). */
static bool starts_http(const char *p, const char *e) {
  size_t n = (size_t)(e - p) < 9 ? (size_t)(e - p) : 9;
  return memcmp(p, "HTTP/1.1 ", n) == 0;
}

static void check_answer(const char *p, size_t n, bool reset) {
  const char *e = p + n;
  while (p < e) {
    if (!starts_http(p, e))
      fail("a response does not start with HTTP/1.1");
    const char *hend = find(p, e, "\r\n\r\n");
    if (!hend) {
      if (!reset)
        fail("a response head without its end");
      return; /* a head cut short by a reset */
    }
    int status = check_head(p, hend);
    const char *body = hend + 4;
    if (status == 101) {
      size_t vl;
      const char *ext = head_value(p, hend, "Sec-WebSocket-Extensions", &vl);
      check_frames(body, e, ext && find(ext, ext + vl, "permessage-deflate"));
      return;
    }
    size_t vl;
    const char *te = head_value(p, hend, "Transfer-Encoding", &vl);
    const char *cl = head_value(p, hend, "Content-Length", &vl);
    if (te && cl)
      fail("both Transfer-Encoding and Content-Length");
    const char *next;
    if ((status >= 100 && status < 200) || status == 204 || status == 304) {
      next = body;
    } else if (te) {
      if (vl != 7 || strncasecmp(te, "chunked", 7) != 0)
        fail("a transfer coding other than chunked");
      next = skip_chunked(body, e);
      if (!next)
        return;
    } else if (cl) {
      unsigned long long len = strtoull(cl, NULL, 10);
      /* A HEAD answer has the length but no body. */
      if ((unsigned long long)(e - body) >= len && starts_http(body + len, e))
        next = body + len;
      else if (starts_http(body, e))
        next = body;
      else if ((unsigned long long)(e - body) < len)
        return; /* cut short */
      else
        fail("Content-Length does not match the body");
    } else {
      return; /* an unframed HTTP/1.0 body runs to the close */
    }
    p = next;
  }
}

/* ---- the target --------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, start_app);
  if (size < 2)
    return 0;
  int mode = data[0] & 3;
  bool rst = data[0] & 4;
  size_t piece = (size_t)(data[1] & 31) + 1;
  data += 2;
  size -= 2;

  int fd = connect_app();
  bool ok = true;
  if (mode == 1) {
    int pieces = 0;
    for (size_t off = 0; ok && off < size;) {
      size_t len = size - off < piece ? size - off : piece;
      if (++pieces == 16)
        len = size - off; /* bounded pauses: the rest at once */
      ok = write_all(fd, data + off, len);
      off += len;
      if (off < size)
        usleep(100);
    }
  } else if (mode == 2) {
    for (size_t off = 0; ok && off < size;) {
      const uint8_t *nl = memchr(data + off, '\n', size - off);
      size_t len = nl ? (size_t)(nl - (data + off)) + 1 : size - off;
      ok = write_all(fd, data + off, len);
      off += len;
      if (off < size)
        usleep(50);
    }
  } else {
    ok = write_all(fd, data, size);
  }
  if (rst) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
    return 0;
  }
  shutdown(fd, SHUT_WR);
  size_t n;
  bool reset;
  char *answer = read_all(fd, &n, &reset);
  close(fd);
  if (getenv("FUZZ_HTTP_SHOW")) /* to look at what the server answered */
  {
    fprintf(stderr, "---- %zu bytes%s\n", n, reset ? " (reset)" : "");
    fwrite(answer, 1, n, stderr);
    fprintf(stderr, "\n----\n");
  }
  check_answer(answer, n, reset || !ok);
  free(answer);
  return 0;
}
