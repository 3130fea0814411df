/* The listening test server (tests/listen/): one app on the listeners
 * given on the command line, each an address, a name, "unix:/path",
 * "fd:N" or "systemd[:NAME]" (include/talon/app.h), plain or TLS.
 *
 *   listen_server [--workers N] [--mode OCTAL] [--static DIR]
 *                 [--send-timeout MS] [--cert PEM --key PEM] [--tls] HOST PORT
 *                 [[--tls] HOST PORT]...
 *
 * The first HOST PORT is tl_app_listen's own (tl_app_listen_tls with
 * --tls), the others are added with tl_app_add_listener. Once listening
 * it prints "listen_server: listener I HOST port P" for each and
 * "listen_server: ready"; a failed listen prints "listen_server: listen:
 * NAME: MESSAGE" (tl_err_name, tl_strerror) and exits 1.
 *
 *   GET  /           "hello"
 *   GET  /who        {"worker":W,"remote":"ADDR","tls":B}
 *   GET  /env        the socket activation variables as this process sees
 *                    them now (null when unset)
 *   GET  /big?n=N    N bytes of a pattern
 *   POST /echo       the body back
 *   /static/...      files of DIR (sendfile on plain sockets)
 *   ws   /ws         echo
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw/static.h>

#define TEST_SERVER_NAME "listen_server"
#define TEST_SERVER_OWN_ON_LISTEN
#include "test_server.h" /* test_big, test_echo */

#define MAX_LISTENERS 16

typedef struct listener {
  const char *host;
  int port;
  bool tls;
} listener;

static listener g_listeners[MAX_LISTENERS];
static size_t g_n;

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello");
}

static void who(tl_req *req, tl_res *res) {
  char remote[128] = "", body[256];
  int err = tl_req_remote_address(req, remote, sizeof remote);
  snprintf(body, sizeof body, "{\"worker\":%d,\"remote\":\"%s\",\"tls\":%s}",
           tl_app_worker(tl_req_app(req)), err ? tl_err_name(err) : remote,
           tl_req_is_tls(req) ? "true" : "false");
  tl_res_json(res, body);
}

static void env_entry(char *buf, size_t size, const char *name, bool last) {
  const char *v = getenv(name);
  size_t n = strlen(buf);
  if (v)
    snprintf(buf + n, size - n, "\"%s\":\"%s\"%s", name, v, last ? "" : ",");
  else
    snprintf(buf + n, size - n, "\"%s\":null%s", name, last ? "" : ",");
}

static void env(tl_req *req, tl_res *res) {
  char body[512] = "{";
  env_entry(body, sizeof body, "LISTEN_PID", false);
  env_entry(body, sizeof body, "LISTEN_FDS", false);
  env_entry(body, sizeof body, "LISTEN_FDNAMES", true);
  strncat(body, "}", sizeof body - strlen(body) - 1);
  tl_res_json(res, body);
}

static void ws_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_send(ws, data, len, op);
}

static const tl_ws_handlers echo_ws = {
    .message = ws_message,
    .max_payload = 16 << 20,
};

static void on_listen(tl_app *app, const char *host, int port) {
  for (size_t i = 0; i < g_n; i++)
    printf("listen_server: listener %zu %s port %d\n", i, g_listeners[i].host,
           tl_app_listener_port(app, i));
  printf("listen_server: ready\n");
  fflush(stdout);
}

static int usage(void) {
  fprintf(stderr, "usage: listen_server [--workers N] [--mode OCTAL] "
                  "[--static DIR] [--send-timeout MS] [--cert PEM --key PEM] "
                  "[--tls] HOST PORT "
                  "...\n");
  return 2;
}

int main(int argc, char **argv) {
  int workers = 1;
  unsigned mode = 0, send_timeout = 0;
  const char *static_dir = NULL, *cert = NULL, *key = NULL;
  bool tls_next = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--workers") == 0 && i + 1 < argc)
      workers = atoi(argv[++i]);
    else if (strcmp(a, "--mode") == 0 && i + 1 < argc)
      mode = (unsigned)strtoul(argv[++i], NULL, 8);
    else if (strcmp(a, "--send-timeout") == 0 && i + 1 < argc)
      send_timeout = (unsigned)atoi(argv[++i]);
    else if (strcmp(a, "--static") == 0 && i + 1 < argc)
      static_dir = argv[++i];
    else if (strcmp(a, "--cert") == 0 && i + 1 < argc)
      cert = argv[++i];
    else if (strcmp(a, "--key") == 0 && i + 1 < argc)
      key = argv[++i];
    else if (strcmp(a, "--tls") == 0)
      tls_next = true;
    else if (i + 1 < argc && g_n < MAX_LISTENERS) {
      g_listeners[g_n++] =
          (listener){.host = a, .port = atoi(argv[i + 1]), .tls = tls_next};
      tls_next = false;
      i++;
    } else {
      return usage();
    }
  }
  if (g_n == 0)
    return usage();
  tl_tls *tls = NULL;
  if (cert) {
    char err[256];
    tls = tl_tls_new(
        &(tl_tls_config){.cert = {.cert_file = cert, .key_file = key}}, err,
        sizeof err);
    if (!tls) {
      fprintf(stderr, "listen_server: TLS: %s\n", err);
      return 1;
    }
  }
  tl_app *app = tl_app_new(&(tl_app_config){.workers = workers,
                                            .unix_mode = mode,
                                            .send_timeout_ms = send_timeout,
                                            .on_listen = on_listen,
                                            .max_body_bytes = 16 << 20});
  if (!app)
    return 1;
  if (static_dir)
    tl_app_use(
        app, tl_static(static_dir, &(tl_static_options){.prefix = "/static"}));
  tl_app_get(app, "/", hello);
  tl_app_get(app, "/who", who);
  tl_app_get(app, "/env", env);
  tl_app_get(app, "/big", test_big);
  tl_app_post(app, "/echo", test_echo);
  tl_app_ws(app, "/ws", &echo_ws, 0);
  int rc = 0;
  for (size_t i = 1; !rc && i < g_n; i++)
    rc = tl_app_add_listener(app, g_listeners[i].host, g_listeners[i].port,
                             g_listeners[i].tls ? tls : NULL);
  if (!rc && g_listeners[0].tls)
    rc = tls ? tl_app_listen_tls(app, g_listeners[0].host, g_listeners[0].port,
                                 tls)
             : TL_EINVAL;
  else if (!rc)
    rc = tl_app_listen(app, g_listeners[0].host, g_listeners[0].port);
  if (rc)
    fprintf(stderr, "listen_server: listen: %s: %s\n", tl_err_name(rc),
            tl_strerror(rc));
  tl_app_free(app);
  tl_tls_free(tls);
  return rc ? 1 : 0;
}
