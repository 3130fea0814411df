/* The TLS test server: one app with a plain and a TLS listener, routes
 * for the pytest suite in this folder (tests/tls/).
 *
 *   tls_server [STATIC_DIR]
 *
 * Environment: TLS_CERT, TLS_KEY (required), TLS_SNI ("name=cert:key"
 * entries separated by ';'), TLS_CLIENT_CA (+ TLS_CLIENT_REQUIRED=1),
 * TLS_HANDSHAKE_MS, WORKERS (loops, each with both listeners). Prints
 * "tls_server: listening on http://H:P" and "tls_server: listening on
 * https://H:P". SIGHUP (or POST /reload) reloads the certificates.
 *
 *   GET  /            "hello"
 *   GET  /info        the TLS of the request, as JSON
 *   POST /echo        the body back
 *   GET  /big?n=N     N bytes of a pattern
 *   POST /reload      tl_tls_reload, "ok" or the error (500)
 *   /static/...       files of STATIC_DIR (sendfile, or read and encrypt)
 *   ws   /ws          echo (permessage-deflate offered)
 *   ws   /chat        every message published to topic "room", to all
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <talon.h>
#include <talon/mw/logger.h>
#include <talon/mw/security.h>
#include <talon/mw/static.h>

#define TEST_SERVER_NAME "tls_server"
#define TEST_SERVER_OWN_ON_LISTEN
#include "test_server.h" /* test_big, test_echo */

static tl_tls *g_tls;

static void hello(tl_req *req, tl_res *res) {
  tl_res_text(res, "hello");
}

static void info(tl_req *req, tl_res *res) {
  tl_tls_info i;
  char body[1024];
  if (tl_req_tls_info(req, &i) != 0) {
    tl_res_json(res, "{\"tls\":false}");
    return;
  }
  const char *sni = tl_req_server_name(req);
  snprintf(body, sizeof body,
           "{\"tls\":%s,\"version\":\"%s\",\"cipher\":\"%s\",\"sni\":\"%s\","
           "\"alpn\":\"%s\",\"resumed\":%s,\"client_verified\":%s,"
           "\"client_subject\":\"%s\"}",
           tl_req_is_tls(req) ? "true" : "false", i.version, i.cipher,
           sni ? sni : "", i.alpn ? i.alpn : "", i.resumed ? "true" : "false",
           i.client_verified ? "true" : "false", i.client_subject);
  tl_res_json(res, body);
}

static void reload(tl_req *req, tl_res *res) {
  char err[256];
  if (tl_tls_reload(g_tls, err, sizeof err) != 0) {
    tl_res_status(res, 500);
    tl_res_text(res, err);
    return;
  }
  tl_res_text(res, "ok");
}

static void on_hup(uv_signal_t *h, int sig) {
  char err[256];
  if (tl_tls_reload(g_tls, err, sizeof err) != 0)
    fprintf(stderr, "tls_server: reload failed: %s\n", err);
  else
    fprintf(stderr, "tls_server: reloaded\n");
}

static uv_signal_t g_hup;

static void on_stop(tl_app *app, void *arg) {
  if (tl_app_worker(app) == 0) /* the handle is on worker 0's loop */
    uv_close((uv_handle_t *)&g_hup, NULL);
}

static void ws_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_send(ws, data, len, op);
}

static void chat_open(tl_ws *ws) {
  tl_ws_subscribe(ws, "room");
}

static void chat_message(tl_ws *ws, const void *data, size_t len,
                         tl_opcode op) {
  tl_ws_publish(ws, "room", data, len, op);
}

static const tl_ws_handlers echo_ws = {
    .message = ws_message,
    .compression = TL_SHARED_COMPRESSOR,
    .max_payload = 8 << 20,
};

static const tl_ws_handlers chat_ws = {
    .open = chat_open,
    .message = chat_message,
    .publish_to_self = 1,
    .compression = TL_SHARED_COMPRESSOR,
};

static void on_listen(tl_app *app, const char *host, int port) {
  printf("tls_server: listening on http://%s:%d\n", host, port);
  printf("tls_server: listening on https://%s:%d\n", host,
         tl_app_listener_port(app, 1));
  fflush(stdout);
}

/* TLS_SNI: "name=cert:key;name2=cert2:key2". */
static size_t parse_sni(char *spec, tl_tls_cert *certs, const char **names,
                        size_t max) {
  size_t n = 0;
  for (char *save = NULL, *e = strtok_r(spec, ";", &save); e && n < max;
       e = strtok_r(NULL, ";", &save)) {
    char *eq = strchr(e, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!colon)
      continue;
    *eq = *colon = '\0';
    names[2 * n] = e;
    names[2 * n + 1] = NULL;
    certs[n] = (tl_tls_cert){
        .cert_file = eq + 1, .key_file = colon + 1, .names = &names[2 * n]};
    n++;
  }
  return n;
}

int main(int argc, char **argv) {
  const char *cert = getenv("TLS_CERT"), *key = getenv("TLS_KEY");
  if (!cert || !key) {
    fprintf(stderr, "tls_server: TLS_CERT and TLS_KEY are required\n");
    return 2;
  }
  tl_tls_cert sni[8];
  const char *names[16];
  char *sni_env = getenv("TLS_SNI") ? strdup(getenv("TLS_SNI")) : NULL;
  size_t nsni = sni_env ? parse_sni(sni_env, sni, names, 8) : 0;
  const char *hs = getenv("TLS_HANDSHAKE_MS");
  const char *req_client = getenv("TLS_CLIENT_REQUIRED");
  char err[256];
  g_tls = tl_tls_new(
      &(tl_tls_config){
          .cert = {.cert_file = cert,
                   .key_file = key,
                   .chain_file = getenv("TLS_CHAIN")},
          .sni = sni,
          .nsni = nsni,
          .client_ca_file = getenv("TLS_CLIENT_CA"),
          .client_cert_required = req_client && *req_client == '1',
          .handshake_timeout_ms = hs ? (unsigned)atoi(hs) : 0,
      },
      err, sizeof err);
  free(sni_env);
  if (!g_tls) {
    fprintf(stderr, "tls_server: %s\n", err);
    return 1;
  }
  const char *workers = getenv("WORKERS");
  tl_app *app = tl_app_new(&(tl_app_config){
      .workers = workers ? (unsigned)atoi(workers) : 0,
      .on_listen = on_listen,
      .max_body_bytes = 32 << 20,
      .header_timeout_ms = 3000,
  });
  if (!app)
    return 1;
  /* The TLS log (failed handshakes, timeouts, plain HTTP) reaches the
   * logger through tl_app_on_log; the tests read it from stderr. */
  const char *fmt = getenv("LOG_FORMAT");
  tl_app_use(app, tl_logger(&(tl_logger_options){
                      .file = stderr,
                      .format = fmt && !strcmp(fmt, "json") ? TL_LOG_JSON
                                                            : TL_LOG_COMBINED}));
  tl_app_use(app, tl_security_headers(
                      &(tl_security_headers_options){.hsts_max_age = 600}));
  if (argc > 1)
    tl_app_use(app,
               tl_static(argv[1], &(tl_static_options){.prefix = "/static"}));
  tl_app_get(app, "/", hello);
  tl_app_get(app, "/info", info);
  tl_app_post(app, "/echo", test_echo);
  tl_app_get(app, "/big", test_big);
  tl_app_post(app, "/reload", reload);
  tl_app_ws(app, "/ws", &echo_ws, 0);
  tl_app_ws(app, "/chat", &chat_ws, 0);
  uv_signal_init(tl_app_loop(app), &g_hup);
  uv_signal_start(&g_hup, on_hup, SIGHUP);
  uv_unref((uv_handle_t *)&g_hup);
  tl_app_on_stop(app, on_stop, NULL);
  int rc = tl_app_add_listener(app, "127.0.0.1", 0, g_tls);
  if (!rc)
    rc = tl_app_listen(app, "127.0.0.1", 0);
  if (rc)
    fprintf(stderr, "tls_server: %s\n", tl_strerror(rc));
  tl_app_free(app);
  tl_tls_free(g_tls);
  return rc ? 1 : 0;
}
