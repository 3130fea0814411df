/* The WebSocket client's test driver: one client socket (tl_ws_connect)
 * on an app that does not listen (tl_app_run), a script of commands read
 * whole from stdin before it connects, and every event printed to stdout
 * as one JSON line, for the pytest files of tests/wsclient.
 *
 *   wsc_probe [options] URL < script
 *
 * Options: -H 'Name: value', -s PROTO (repeatable), --no-check, --ca FILE,
 * --deflate shared|dedicated, --window BITS (compress_window_bits),
 * --server-window BITS (server_max_window_bits), --max-payload N,
 * --connect-ms N, --handshake-ms N, --idle-s N, --workers N (the connect is
 * made on the last worker's thread through tl_app_call), --backpressure N
 * (max_backpressure), --data TEXT (the context block's start), --listen
 * (tl_app_listen on 127.0.0.1, port 0, instead of tl_app_run: a server
 * and a client in one app), --from-thread (the connect is made on a
 * thread of the program's own while the loop runs).
 *
 * Commands, run in order once the socket is open (one per line):
 *   text S | binary HEX | big N (N bytes i % 251, binary) | ping S | pong S
 *   close CODE [REASON] | close0 | terminate | await N (until N messages
 *   in all have arrived) | sleep MS | sub TOPIC | unsub TOPIC
 *   apppub TOPIC S (tl_app_publish to the app's local topic)
 *   flood N SIZE (N binary sends of SIZE bytes: counts of the results)
 *   awaitdrain | stats | pause | resume | quit (tl_app_stop)
 * Events: open, message (text: data; binary: len and sum), ping, pong,
 * close, error, fail (reason, code, status, message, headers), drain,
 * flood, stats, send (rc of a text/binary/ping), data (the context's
 * text at open). The program stops after close or fail.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define MAX_CMDS 256
#define MAX_LIST 16

typedef struct ctxdata {
  char text[64];
} ctxdata;

static tl_app *app;
static tl_ws *sock;
static char *cmds[MAX_CMDS];
static int ncmds, pc;
static uint64_t nmessages, await_n;
static bool awaiting, awaiting_drain, waiting_timer;
static const char *url;
static tl_ws_handlers handlers;
static tl_ws_client_options copts;
static int workers = 1;
static bool listen_too, from_thread;

static void json_str(const char *p, size_t n) {
  putchar('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void run(void);

static void on_timer(tl_timer *t, void *arg) {
  waiting_timer = false;
  run();
}

static int hexval(char c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

static void send_rc(int rc) {
  printf("{\"ev\":\"send\",\"rc\":%d}\n", rc == TL_WS_BACKPRESSURE ? -1 : rc);
}

/* Runs commands until one waits or the script ends. */
static void run(void) {
  while (sock && pc < ncmds && !awaiting && !awaiting_drain && !waiting_timer) {
    char *c = cmds[pc++];
    char *arg = strchr(c, ' ');
    arg = arg ? arg + 1 : c + strlen(c);
    if (!strncmp(c, "text ", 5) || !strcmp(c, "text")) {
      send_rc(tl_ws_send(sock, arg, strlen(arg), TL_WS_TEXT));
    } else if (!strncmp(c, "binary", 6)) {
      size_t n = strlen(arg) / 2;
      unsigned char *b = malloc(n + 1);
      for (size_t i = 0; i < n; i++)
        b[i] =
            (unsigned char)(hexval(arg[2 * i]) << 4 | hexval(arg[2 * i + 1]));
      send_rc(tl_ws_send(sock, b, n, TL_WS_BINARY));
      free(b);
    } else if (!strncmp(c, "big ", 4)) {
      size_t n = strtoul(arg, NULL, 10);
      unsigned char *b = malloc(n ? n : 1);
      for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i % 251);
      send_rc(tl_ws_send(sock, b, n, TL_WS_BINARY));
      free(b);
    } else if (!strncmp(c, "ping", 4)) {
      send_rc(tl_ws_ping(sock, arg, strlen(arg)));
    } else if (!strncmp(c, "pong", 4)) {
      send_rc(tl_ws_pong(sock, arg, strlen(arg)));
    } else if (!strncmp(c, "close ", 6)) {
      int code = atoi(arg);
      char *reason = strchr(arg, ' ');
      int rc = tl_ws_close(sock, code, reason ? reason + 1 : NULL);
      printf("{\"ev\":\"closing\",\"rc\":%d}\n", rc);
    } else if (!strcmp(c, "close0")) {
      printf("{\"ev\":\"closing\",\"rc\":%d}\n", tl_ws_close(sock, 0, NULL));
    } else if (!strcmp(c, "terminate")) {
      tl_ws_terminate(sock);
    } else if (!strncmp(c, "await ", 6)) {
      await_n = strtoull(arg, NULL, 10);
      awaiting = nmessages < await_n;
    } else if (!strncmp(c, "sleep ", 6)) {
      waiting_timer = true;
      tl_timer_start(app, strtoull(arg, NULL, 10), 0, on_timer, NULL);
    } else if (!strncmp(c, "sub ", 4)) {
      printf("{\"ev\":\"sub\",\"rc\":%d}\n", tl_ws_subscribe(sock, arg));
    } else if (!strncmp(c, "unsub ", 6)) {
      printf("{\"ev\":\"unsub\",\"rc\":%d}\n", tl_ws_unsubscribe(sock, arg));
    } else if (!strncmp(c, "apppub ", 7)) {
      char *sp = strchr(arg, ' ');
      *sp = '\0';
      int rc = tl_app_publish(app, arg, sp + 1, strlen(sp + 1), TL_WS_TEXT);
      printf("{\"ev\":\"apppub\",\"rc\":%d}\n",
             rc == TL_WS_BACKPRESSURE ? -1 : rc);
    } else if (!strncmp(c, "flood ", 6)) {
      unsigned long n = 0, size = 0;
      sscanf(arg, "%lu %lu", &n, &size);
      char *b = calloc(1, size ? size : 1);
      unsigned long ok = 0, bp = 0, dropped = 0;
      for (unsigned long i = 0; i < n && sock; i++) {
        int rc = tl_ws_send(sock, b, size, TL_WS_BINARY);
        if (rc == TL_WS_BACKPRESSURE)
          bp++;
        else if (rc > 0)
          ok++;
        else
          dropped++;
      }
      free(b);
      printf("{\"ev\":\"flood\",\"ok\":%lu,\"backpressure\":%lu,"
             "\"dropped\":%lu,\"buffered\":%zu}\n",
             ok, bp, dropped, sock ? tl_ws_buffered_amount(sock) : 0);
    } else if (!strcmp(c, "awaitdrain")) {
      awaiting_drain = tl_ws_buffered_amount(sock) > 0;
    } else if (!strcmp(c, "stats")) {
      tl_ws_stats s;
      tl_ws_get_stats(sock, &s);
      printf("{\"ev\":\"stats\",\"messages_in\":%llu,\"messages_out\":%llu,"
             "\"bytes_in\":%llu,\"bytes_out\":%llu,\"ws_count\":%zu,"
             "\"client\":%s}\n",
             (unsigned long long)s.messages_in,
             (unsigned long long)s.messages_out, (unsigned long long)s.bytes_in,
             (unsigned long long)s.bytes_out, tl_app_ws_count(app),
             tl_ws_is_client(sock) ? "true" : "false");
    } else if (!strcmp(c, "pause")) {
      tl_ws_pause(sock);
    } else if (!strcmp(c, "resume")) {
      tl_ws_resume(sock);
    } else if (!strcmp(c, "quit")) {
      tl_app_stop(app);
    } else {
      printf("{\"ev\":\"bad-command\",\"cmd\":");
      json_str(c, strlen(c));
      printf("}\n");
    }
    fflush(stdout);
  }
  fflush(stdout);
}

static void on_open(tl_ws *ws) {
  sock = ws;
  const char *p = tl_ws_protocol(ws);
  printf("{\"ev\":\"open\",\"worker\":%d,\"protocol\":", tl_app_worker(app));
  if (p)
    json_str(p, strlen(p));
  else
    printf("null");
  ctxdata *d = tl_ws_data(ws);
  printf(",\"data\":");
  json_str(d->text, strlen(d->text));
  printf("}\n");
  fflush(stdout);
  run();
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  nmessages++;
  if (op == TL_WS_TEXT) {
    printf("{\"ev\":\"message\",\"op\":\"text\",\"len\":%zu,\"data\":", len);
    json_str(data, len);
    printf("}\n");
  } else {
    uint32_t sum = 0;
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
      sum = sum * 31 + p[i];
    printf("{\"ev\":\"message\",\"op\":\"binary\",\"len\":%zu,\"sum\":%u,"
           "\"head\":\"",
           len, sum);
    for (size_t i = 0; i < len && i < 16; i++)
      printf("%02x", p[i]);
    printf("\"}\n");
  }
  fflush(stdout);
  if (awaiting && nmessages >= await_n) {
    awaiting = false;
    run();
  }
}

static void on_control(const char *what, const void *data, size_t len) {
  printf("{\"ev\":\"%s\",\"data\":", what);
  json_str(data, len);
  printf("}\n");
  fflush(stdout);
}
static void on_ping(tl_ws *ws, const void *d, size_t n) {
  on_control("ping", d, n);
}
static void on_pong(tl_ws *ws, const void *d, size_t n) {
  on_control("pong", d, n);
}

static void on_drain(tl_ws *ws) {
  printf("{\"ev\":\"drain\",\"buffered\":%zu}\n", tl_ws_buffered_amount(ws));
  fflush(stdout);
  if (awaiting_drain) {
    awaiting_drain = false;
    run();
  }
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  printf("{\"ev\":\"close\",\"code\":%d,\"reason\":", code);
  json_str(reason, len);
  printf("}\n");
  fflush(stdout);
  sock = NULL;
  tl_app_stop(app);
}

static void on_error(tl_ws *ws, int err) {
  printf("{\"ev\":\"error\",\"err\":\"%s\"}\n", tl_err_name(err));
  fflush(stdout);
}

static void on_dropped(tl_ws *ws, const void *d, size_t n, tl_opcode op) {
  /* counted by flood */
}

static void on_fail(tl_app *a, const tl_ws_connect_failure *f, void *data) {
  printf("{\"ev\":\"fail\",\"reason\":\"%s\",\"code\":\"%s\",\"status\":%d,"
         "\"message\":",
         tl_ws_fail_reason_name(f->reason), f->code ? tl_err_name(f->code) : "",
         f->status);
  json_str(f->message, strlen(f->message));
  printf(",\"headers\":[");
  for (size_t i = 0; i < f->nheaders; i++) {
    printf("%s[", i ? "," : "");
    json_str(f->headers[i].name, strlen(f->headers[i].name));
    putchar(',');
    json_str(f->headers[i].value, strlen(f->headers[i].value));
    putchar(']');
  }
  printf("],\"data\":");
  const ctxdata *d = data;
  json_str(d->text, strlen(d->text));
  printf("}\n");
  fflush(stdout);
  tl_app_stop(a);
}

static void connect_here(tl_app *a, void *arg) {
  int rc = tl_ws_connect(a, url, &handlers, sizeof(ctxdata), &copts);
  if (rc) {
    printf("{\"ev\":\"connect-error\",\"rc\":\"%s\"}\n", tl_err_name(rc));
    fflush(stdout);
    tl_app_stop(a);
  }
}

static void *thread_connect(void *arg) {
  connect_here(app, NULL); /* not a worker: handed to worker 0 */
  return NULL;
}

/* On the loop: a thread of ours makes the connect. */
static void start_thread(tl_timer *t, void *arg) {
  pthread_t th;
  if (pthread_create(&th, NULL, thread_connect, NULL) == 0)
    pthread_detach(th);
}

int main(int argc, char **argv) {
  static const char *headers[MAX_LIST + 1], *protos[MAX_LIST + 1];
  static ctxdata init;
  int nh = 0, np = 0;
  handlers = (tl_ws_handlers){
      .open = on_open,
      .message = on_message,
      .close = on_close,
      .error = on_error,
      .ping = on_ping,
      .pong = on_pong,
      .drain = on_drain,
      .dropped = on_dropped,
  };
  copts = (tl_ws_client_options){
      .headers = headers, .protocols = protos, .on_fail = on_fail};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-H") && v && nh < MAX_LIST) {
      headers[nh++] = v;
      i++;
    } else if (!strcmp(a, "-s") && v && np < MAX_LIST) {
      protos[np++] = v;
      i++;
    } else if (!strcmp(a, "--no-check")) {
      copts.tls_insecure_skip_verify = true;
    } else if (!strcmp(a, "--ca") && v) {
      copts.ca_file = v;
      i++;
    } else if (!strcmp(a, "--deflate") && v) {
      handlers.compression =
          !strcmp(v, "dedicated")
              ? TL_DEDICATED_COMPRESSOR | TL_DEDICATED_DECOMPRESSOR
              : TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR;
      i++;
    } else if (!strcmp(a, "--server-window") && v) {
      copts.server_max_window_bits = atoi(v);
      i++;
    } else if (!strcmp(a, "--window") && v) {
      handlers.compress_window_bits = atoi(v);
      i++;
    } else if (!strcmp(a, "--max-payload") && v) {
      handlers.max_payload = strtoull(v, NULL, 10);
      i++;
    } else if (!strcmp(a, "--connect-ms") && v) {
      copts.connect_timeout_ms = (unsigned)atoi(v);
      i++;
    } else if (!strcmp(a, "--handshake-ms") && v) {
      copts.handshake_timeout_ms = (unsigned)atoi(v);
      i++;
    } else if (!strcmp(a, "--idle-s") && v) {
      handlers.idle_timeout_s = (unsigned)atoi(v);
      i++;
    } else if (!strcmp(a, "--backpressure") && v) {
      handlers.max_backpressure = strtoull(v, NULL, 10);
      i++;
    } else if (!strcmp(a, "--workers") && v) {
      workers = atoi(v);
      i++;
    } else if (!strcmp(a, "--listen")) {
      listen_too = true;
    } else if (!strcmp(a, "--from-thread")) {
      from_thread = true;
    } else if (!strcmp(a, "--data") && v) {
      snprintf(init.text, sizeof init.text, "%s", v);
      copts.data = &init;
      i++;
    } else if (a[0] != '-' && !url) {
      url = a;
    } else {
      fprintf(stderr, "wsc_probe: bad argument %s\n", a);
      return 2;
    }
  }
  if (!url)
    return 2;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while (ncmds < MAX_CMDS && (n = getline(&line, &cap, stdin)) >= 0) {
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
      line[--n] = '\0';
    if (n > 0)
      cmds[ncmds++] = strdup(line);
  }
  free(line);
  app = tl_app_new(&(tl_app_config){.workers = workers});
  int rc = 0;
  if (from_thread) {
    tl_timer_start(app, 50, 0, start_thread, NULL);
  } else if (workers > 1) {
    /* On a worker's thread: the socket lives on that worker. */
    rc = tl_app_call(app, (unsigned)workers - 1, connect_here, NULL);
  } else {
    rc = tl_ws_connect(app, url, &handlers, sizeof(ctxdata), &copts);
  }
  if (rc) {
    printf("{\"ev\":\"connect-error\",\"rc\":\"%s\"}\n", tl_err_name(rc));
    tl_app_free(app);
    for (int i = 0; i < ncmds; i++)
      free(cmds[i]);
    return 0;
  }
  rc = listen_too ? tl_app_listen(app, "127.0.0.1", 0) : tl_app_run(app);
  if (rc)
    printf("{\"ev\":\"run-error\",\"rc\":\"%s\"}\n", tl_err_name(rc));
  tl_app_free(app);
  for (int i = 0; i < ncmds; i++)
    free(cmds[i]);
  return 0;
}
