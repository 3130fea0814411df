/* Test server for the CORS, security-headers, request-id and rate-limit
 * middleware. Usage: mw_http_test_server [PORT] [MODE]
 *   MODE "routes" (default): each middleware configuration on its own
 *        routes (route-level middleware), see main().
 *   MODE "app": app-level CORS (origin list, credentials), request id and
 *        security headers, for paths without routes or OPTIONS routes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "mw_http_test_server"
#include "test_server.h"
#include <talon/mw/cors.h>
#include <talon/mw/ratelimit.h>
#include <talon/mw/requestid.h>
#include <talon/mw/security.h>

static tl_middleware g_rl_ip, g_rl_key, g_rl_many, g_rl_x;

static void h_ok(tl_req *req, tl_res *res) {
  (void)req;
  tl_res_header(res, "X-Handler", "yes");
  tl_res_text(res, "ok\n");
}

/* The request's id, so tests see what the handler saw. */
static void h_id(tl_req *req, tl_res *res) {
  const char *id = tl_req_id(req);
  tl_res_text(res, id ? id : "(none)");
}

static void h_stats(tl_req *req, tl_res *res) {
  const char *name = tl_req_query(req, "name");
  const tl_middleware *mw = NULL;
  if (name && strcmp(name, "ip") == 0)
    mw = &g_rl_ip;
  else if (name && strcmp(name, "key") == 0)
    mw = &g_rl_key;
  else if (name && strcmp(name, "many") == 0)
    mw = &g_rl_many;
  else if (name && strcmp(name, "x") == 0)
    mw = &g_rl_x;
  tl_rate_limit_stats st;
  if (!mw || tl_rate_limit_stats_get(mw, &st) != 0) {
    tl_res_status(res, 404);
    tl_res_text(res, "no such limiter\n");
    return;
  }
  char buf[256];
  snprintf(buf, sizeof buf,
           "{\"keys\":%zu,\"max_keys\":%zu,\"allowed\":%llu,"
           "\"limited\":%llu,\"evicted\":%llu}",
           st.keys, st.max_keys, (unsigned long long)st.allowed,
           (unsigned long long)st.limited, (unsigned long long)st.evicted);
  tl_res_json(res, buf);
}

/* Key from the X-Client header; requests without it are exempt. */
static int key_from_header(tl_req *req, char *buf, size_t size, void *arg) {
  (void)arg;
  const char *c = tl_req_header(req, "X-Client");
  if (!c)
    return 1;
  if (strcmp(c, "fail") == 0)
    return TL_EIO;
  snprintf(buf, size, "%s", c);
  return 0;
}

static bool allow_trusted(const char *origin, void *arg) {
  const char *suffix = arg;
  size_t n = strlen(origin), s = strlen(suffix);
  return strncmp(origin, "https://", 8) == 0 && n > 8 + s &&
         strcmp(origin + n - s, suffix) == 0;
}

/* Sets X-Frame-Options before the security middleware runs: it must not
 * be duplicated. */
static int mw_preset_frame(tl_req *req, tl_res *res, void *ctx) {
  (void)req;
  (void)ctx;
  tl_res_header(res, "X-Frame-Options", "SAMEORIGIN");
  return TL_NEXT;
}

static int route1(tl_app *app, const char *method, const char *path,
                  tl_handler h, tl_middleware mw) {
  return tl_app_route(app, method, path, h, &mw, 1);
}

/* Constructors must refuse bad options with fn == NULL, and tl_app_use
 * must then say TL_EINVAL. */
static int check_refusals(tl_app *app) {
  tl_security_headers_options bad_frame = {.frame_options = 7};
  tl_security_headers_options bad_csp = {.csp = "a\r\nSet-Cookie: x=1"};
  tl_cors_options bad_cors = {.exposed_headers = "X-A\r\nX-B: 1"};
  tl_request_id_options bad_hdr = {.header = "X Request Id"};
  tl_request_id_options bad_len = {.max_length = 5000};
  tl_rate_limit_options bad_rate = {.rate = -1};
  tl_rate_limit_options bad_keys = {.max_keys = (size_t)1 << 30};
  tl_middleware all[] = {
      tl_security_headers(&bad_frame),
      tl_security_headers(&bad_csp),
      tl_cors(&bad_cors),
      tl_request_id(&bad_hdr),
      tl_request_id(&bad_len),
      tl_rate_limit(&bad_rate),
      tl_rate_limit(&bad_keys),
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (all[i].fn != NULL || tl_app_use(app, all[i]) != TL_EINVAL) {
      fprintf(stderr, "refusal %zu not refused\n", i);
      return 1;
    }
  }
  tl_rate_limit_stats st;
  if (tl_rate_limit_stats_get(&all[0], &st) != TL_EINVAL)
    return 1;
  return 0;
}

static int setup_routes(tl_app *app) {
  /* Security headers. */
  tl_security_headers_options custom = {
      .frame_options = TL_FRAME_SAMEORIGIN,
      .referrer_policy = "strict-origin-when-cross-origin",
      .csp = TL_CSP_STRICT,
      .coop = "same-origin",
      .corp = "same-site",
      .hsts_max_age = 31536000,
      .hsts_include_subdomains = true,
      .trust_proxy = true,
  };
  tl_security_headers_options off = {
      .frame_options = TL_FRAME_OFF,
      .referrer_policy = "",
      .no_nosniff = true,
      .csp = "default-src 'none'",
      .csp_report_only = true,
      .hsts_max_age = 600, /* no trust_proxy: never sent */
  };
  CHECK(route1(app, "GET", "/sec/default", h_ok, tl_security_headers(NULL)));
  CHECK(route1(app, "GET", "/sec/custom", h_ok, tl_security_headers(&custom)));
  CHECK(route1(app, "GET", "/sec/off", h_ok, tl_security_headers(&off)));
  tl_middleware pre[2] = {
      {.fn = mw_preset_frame, .name = "preset"},
      tl_security_headers(NULL),
  };
  CHECK(tl_app_route(app, "GET", "/sec/preset", h_ok, pre, 2));

  /* Request ids. */
  tl_request_id_options hex = {.format = TL_REQUEST_ID_HEX,
                               .header = "X-Trace-Id",
                               .ignore_incoming = true};
  tl_request_id_options short_ids = {.max_length = 16, .no_echo = true};
  CHECK(route1(app, "GET", "/id", h_id, tl_request_id(NULL)));
  CHECK(route1(app, "GET", "/id/hex", h_id, tl_request_id(&hex)));
  CHECK(route1(app, "GET", "/id/short", h_id, tl_request_id(&short_ids)));
  CHECK(route1(app, "GET", "/id/none", h_id,
               (tl_middleware){.fn = mw_preset_frame}));
  tl_middleware two[2] = {tl_request_id(NULL), tl_request_id(&hex)};
  CHECK(tl_app_route(app, "GET", "/id/two", h_id, two, 2));

  /* Rate limits. The handles are kept for the stats route: their ctx
   * stays valid until the app is freed. */
  tl_rate_limit_options ip = {.rate = 1, .burst = 3};
  tl_rate_limit_options key = {.rate = 2,
                               .burst = 2,
                               .key = key_from_header,
                               .headers = TL_RATE_LIMIT_HEADERS_IETF};
  tl_rate_limit_options many = {
      .rate = 0.001, .burst = 1, .max_keys = 1000, .key = key_from_header};
  tl_rate_limit_options x = {.rate = 0.25,
                             .burst = 1,
                             .key = key_from_header,
                             .headers = TL_RATE_LIMIT_HEADERS_X,
                             .message = "slow down\n"};
  g_rl_ip = tl_rate_limit(&ip);
  g_rl_key = tl_rate_limit(&key);
  g_rl_many = tl_rate_limit(&many);
  g_rl_x = tl_rate_limit(&x);
  CHECK(route1(app, "*", "/rl/ip", h_ok, g_rl_ip));
  CHECK(route1(app, "GET", "/rl/key", h_ok, g_rl_key));
  CHECK(route1(app, "GET", "/rl/many", h_ok, g_rl_many));
  CHECK(route1(app, "GET", "/rl/x", h_ok, g_rl_x));
  CHECK(tl_app_get(app, "/rl/stats", h_stats));

  /* CORS, on "*" routes so preflights (OPTIONS) reach the route. */
  static const char *const list[] = {"https://a.example",
                                     "https://b.example:8443", NULL};
  static const char *const star[] = {"*", NULL};
  tl_cors_options o_list = {
      .origins = list, .exposed_headers = "X-Total, X-Page", .max_age = 600};
  tl_cors_options o_anycred = {.origins = star, .credentials = true};
  tl_cors_options o_cb = {.allow = allow_trusted,
                          .allow_arg = ".trusted.test",
                          .credentials = true,
                          .methods = "GET,POST",
                          .allowed_headers = "Content-Type, X-Token"};
  CHECK(route1(app, "*", "/cors/list", h_ok, tl_cors(&o_list)));
  CHECK(route1(app, "*", "/cors/any", h_ok, tl_cors(NULL)));
  CHECK(route1(app, "*", "/cors/anycred", h_ok, tl_cors(&o_anycred)));
  CHECK(route1(app, "*", "/cors/cb", h_ok, tl_cors(&o_cb)));
  return 0;
}

static int setup_app(tl_app *app) {
  static const char *const list[] = {"https://a.example", NULL};
  tl_cors_options o = {.origins = list, .credentials = true};
  CHECK(tl_app_use(app, tl_request_id(NULL)));
  CHECK(tl_app_use(app, tl_security_headers(NULL)));
  CHECK(tl_app_use(app, tl_cors(&o)));
  CHECK(tl_app_get(app, "/only-get", h_ok));
  CHECK(tl_app_post(app, "/only-post", h_ok));
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  const char *mode = argc > 2 ? argv[2] : "routes";
  tl_app_config cfg = {.on_listen = on_listen};
  tl_app *app = tl_app_new(&cfg);
  if (!app)
    return 1;
  int rc = check_refusals(app);
  if (!rc)
    rc = strcmp(mode, "app") == 0 ? setup_app(app) : setup_routes(app);
  if (!rc) {
    int err = tl_app_listen(app, "127.0.0.1", port);
    if (err) {
      fprintf(stderr, "listen: %s\n", tl_strerror(err));
      rc = 1;
    }
  }
  tl_app_free(app);
  return rc;
}
