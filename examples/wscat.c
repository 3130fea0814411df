/* wscat: a command-line WebSocket client on talon's client (like Node's
 * wscat).
 *
 *   wscat ws://127.0.0.1:3000/chat/lobby
 *   wscat -H 'Authorization: Bearer x' -s chat wss://example.com/socket
 *   wscat --no-check wss://localhost:3443/echo     # self-signed server
 *
 * Each message received is printed on its own line on stdout; each line
 * read from stdin is sent as a text message. At the end of stdin wscat
 * closes with 1000 and exits 0 once the server answered (what arrived
 * before the server's close frame is printed first). A failed connect
 * exits 1 with the reason on stderr; a close by the server with a code
 * other than 1000/1001/1005 exits 3; a usage error exits 2.
 *
 * Options:
 *   -H, --header 'Name: value'   extra request header (repeatable)
 *   -s, --subprotocol NAME       offer a subprotocol (repeatable)
 *   --no-check                   do not verify the server's certificate
 *                                (DANGEROUS: development only)
 *   --ca FILE                    verify against this CA file (PEM)
 *   --deflate                    offer permessage-deflate
 *   -w, --wait SECONDS           at the end of stdin, wait this long
 *                                before closing (0: close at once)
 *   -P, --show-ping-pong         print pings and pongs received
 *   --slash                      lines starting with / are commands:
 *                                /ping [data], /pong [data],
 *                                /close [code [reason]], /binary text
 *   -v, --verbose                say on stderr when connected and closed
 *
 * It uses only the public API: tl_app_run (no listening port),
 * tl_ws_connect, and a thread that reads stdin and hands each line to the
 * loop with tl_app_call.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define MAX_LIST 32

typedef struct line {
  struct line *next;
  size_t len;
  bool eof; /* stdin ended */
  char text[];
} line;

typedef struct wscat {
  tl_app *app;
  tl_ws *ws;    /* while open */
  line *queued; /* lines read before the socket opened */
  line **tail;
  bool opened, closing, eof_seen, slash, show_pings, verbose;
  unsigned wait_s;
  int exit_code;
  /* The reader thread stops handing lines over once the loop is done. */
  pthread_mutex_t lock;
  bool loop_done;
} wscat;

static wscat g; /* one per process: the callbacks below find it here */

static void usage(void) {
  fprintf(
      stderr,
      "usage: wscat [-H 'Name: value'] [-s proto] [--no-check] [--ca file]\n"
      "             [--deflate] [-w seconds] [-P] [--slash] [-v] URL\n");
}

static void finish(int code) {
  g.exit_code = code;
  tl_app_stop(g.app);
}

/* ---- sending what was typed ----------------------------------------- */

static void close_now(void) {
  if (!g.ws || g.closing)
    return;
  g.closing = true;
  tl_ws_close(g.ws, 1000, NULL);
}

static void on_wait_done(tl_timer *t, void *arg) {
  close_now();
}

static void slash_command(const char *t) {
  if (strncmp(t, "/ping", 5) == 0) {
    const char *d = t[5] == ' ' ? t + 6 : "";
    tl_ws_ping(g.ws, d, strlen(d));
  } else if (strncmp(t, "/pong", 5) == 0) {
    const char *d = t[5] == ' ' ? t + 6 : "";
    tl_ws_pong(g.ws, d, strlen(d));
  } else if (strncmp(t, "/close", 6) == 0) {
    int code = 1000;
    char reason[124] = "";
    if (t[6] == ' ')
      sscanf(t + 7, "%d %123[^\n]", &code, reason);
    g.closing = true;
    if (tl_ws_close(g.ws, code, reason[0] ? reason : NULL) != 0)
      fprintf(stderr, "wscat: cannot close with %d\n", code);
  } else if (strncmp(t, "/binary ", 8) == 0) {
    tl_ws_send(g.ws, t + 8, strlen(t + 8), TL_WS_BINARY);
  } else {
    fprintf(stderr, "wscat: unknown command %s\n", t);
  }
}

static void use_line(line *l) {
  if (l->eof) {
    g.eof_seen = true;
    if (g.wait_s)
      tl_timer_start(g.app, (uint64_t)g.wait_s * 1000, 0, on_wait_done, NULL);
    else
      close_now();
  } else if (!g.closing) {
    if (g.slash && l->text[0] == '/')
      slash_command(l->text);
    else
      tl_ws_send(g.ws, l->text, l->len, TL_WS_TEXT);
  }
  free(l);
}

/* On the loop (tl_app_call): a line from the reader. */
static void on_line(tl_app *app, void *arg) {
  line *l = arg;
  if (g.opened && g.ws) {
    use_line(l);
  } else if (!g.opened) {
    l->next = NULL;
    *g.tail = l;
    g.tail = &l->next;
  } else {
    free(l); /* closed already */
  }
}

static void *reader(void *arg) {
  char *buf = NULL;
  size_t cap = 0;
  for (;;) {
    ssize_t n = getline(&buf, &cap, stdin);
    size_t len = n > 0 ? (size_t)n : 0;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
      len--;
    line *l = malloc(sizeof *l + len + 1);
    if (!l)
      break;
    l->len = len;
    l->eof = n < 0;
    memcpy(l->text, n > 0 ? buf : "", len);
    l->text[len] = '\0';
    pthread_mutex_lock(&g.lock);
    bool done = g.loop_done;
    if (!done && tl_app_call(g.app, 0, on_line, l) != 0)
      done = true;
    pthread_mutex_unlock(&g.lock);
    if (done) {
      free(l);
      break;
    }
    if (n < 0)
      break;
  }
  free(buf);
  return NULL;
}

/* ---- the socket ------------------------------------------------------- */

static void on_open(tl_ws *ws) {
  g.ws = ws;
  g.opened = true;
  if (g.verbose) {
    const char *p = tl_ws_protocol(ws);
    fprintf(stderr, "wscat: connected%s%s\n", p ? ", subprotocol " : "",
            p ? p : "");
  }
  while (g.queued && g.ws) {
    line *l = g.queued;
    g.queued = l->next;
    if (!g.queued)
      g.tail = &g.queued;
    use_line(l);
  }
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  fwrite(data, 1, len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

static void on_ping(tl_ws *ws, const void *data, size_t len) {
  if (g.show_pings) {
    printf("< ping: %.*s\n", (int)len, (const char *)data);
    fflush(stdout);
  }
}

static void on_pong(tl_ws *ws, const void *data, size_t len) {
  if (g.show_pings) {
    printf("< pong: %.*s\n", (int)len, (const char *)data);
    fflush(stdout);
  }
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  g.ws = NULL;
  bool normal = code == 1000 || code == 1001 || code == 1005;
  if (g.verbose || !normal)
    fprintf(stderr, "wscat: closed with %d%s%.*s\n", code, len ? ": " : "",
            (int)len, reason);
  /* A close this side asked for (the end of stdin or /close) is normal
   * whatever code went out. */
  finish(normal || g.closing ? 0 : 3);
}

static void on_error(tl_ws *ws, int err) {
  fprintf(stderr, "wscat: %s\n", tl_strerror(err));
}

static void on_fail(tl_app *app, const tl_ws_connect_failure *f, void *data) {
  fprintf(stderr, "wscat: cannot connect to %s: %s\n", f->url, f->message);
  if (f->reason == TL_WS_FAIL_STATUS) {
    for (size_t i = 0; i < f->nheaders; i++)
      fprintf(stderr, "  %s: %s\n", f->headers[i].name, f->headers[i].value);
  }
  finish(1);
}

int main(int argc, char **argv) {
  const char *headers[MAX_LIST + 1] = {0}, *protos[MAX_LIST + 1] = {0};
  size_t nh = 0, np = 0;
  const char *url = NULL, *ca = NULL;
  bool no_check = false, deflate = false;
  g.tail = &g.queued;
  pthread_mutex_init(&g.lock, NULL);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool more = i + 1 < argc;
    if ((!strcmp(a, "-H") || !strcmp(a, "--header")) && more && nh < MAX_LIST) {
      headers[nh++] = argv[++i];
    } else if ((!strcmp(a, "-s") || !strcmp(a, "--subprotocol")) && more &&
               np < MAX_LIST) {
      protos[np++] = argv[++i];
    } else if (!strcmp(a, "--no-check")) {
      no_check = true;
    } else if (!strcmp(a, "--ca") && more) {
      ca = argv[++i];
    } else if (!strcmp(a, "--deflate")) {
      deflate = true;
    } else if ((!strcmp(a, "-w") || !strcmp(a, "--wait")) && more) {
      g.wait_s = (unsigned)strtoul(argv[++i], NULL, 10);
    } else if (!strcmp(a, "-P") || !strcmp(a, "--show-ping-pong")) {
      g.show_pings = true;
    } else if (!strcmp(a, "--slash")) {
      g.slash = true;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      g.verbose = true;
    } else if (a[0] != '-' && !url) {
      url = a;
    } else {
      usage();
      return 2;
    }
  }
  if (!url) {
    usage();
    return 2;
  }
  /* The app runs only the client: no listener, no port. */
  g.app = tl_app_new(NULL);
  if (!g.app) {
    fprintf(stderr, "wscat: out of memory\n");
    return 1;
  }
  tl_ws_handlers h = {
      .open = on_open,
      .message = on_message,
      .close = on_close,
      .error = on_error,
      .ping = on_ping,
      .pong = on_pong,
      .idle_timeout_s = TL_WS_NO_TIMEOUT,
      .compression = deflate ? TL_SHARED_COMPRESSOR | TL_SHARED_DECOMPRESSOR
                             : TL_NO_COMPRESSION,
  };
  tl_ws_client_options o = {
      .headers = headers,
      .protocols = protos,
      .ca_file = ca,
      .tls_insecure_skip_verify = no_check,
      .on_fail = on_fail,
  };
  int err = tl_ws_connect(g.app, url, &h, 0, &o);
  if (err) {
    fprintf(stderr, "wscat: %s: %s\n", url,
            err == TL_EINVAL ? "not a ws:// or wss:// URL, or a bad option"
                             : tl_strerror(err));
    tl_app_free(g.app);
    return 2;
  }
  pthread_t th;
  if (pthread_create(&th, NULL, reader, NULL) != 0) {
    fprintf(stderr, "wscat: cannot start the stdin reader\n");
    return 1;
  }
  pthread_detach(th);
  err = tl_app_run(g.app);
  pthread_mutex_lock(&g.lock);
  g.loop_done = true;
  pthread_mutex_unlock(&g.lock);
  if (err) {
    fprintf(stderr, "wscat: %s\n", tl_strerror(err));
    return 1;
  }
  /* The reader may still wait on stdin: the app stays (it is not used
   * again), the process ends. */
  while (g.queued) {
    line *l = g.queued;
    g.queued = l->next;
    free(l);
  }
  return g.exit_code;
}
