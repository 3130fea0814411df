/* Test server for the cookies, session and CSRF middleware.
 *
 *   cookies_test_server [PORT]
 *
 * Layout (each prefix is a router with its own middleware):
 *   /plain/...  no middleware at all
 *   /c/...      cookies (secrets NEW, OLD) + session (defaults), ws routes
 *   /old/...    cookies (secret OLD only): signs with the old secret
 *   /other/...  cookies (an unrelated secret)
 *   /lim/...    cookies with max_cookies 3, max_bytes 40
 *   /nosecret/  cookies without secrets + session
 *   /short/...  cookies + session "short.sid": idle 1 s, absolute 3 s,
 *               3 sessions at most, 256 data bytes
 *   /f/...      cookies + session + csrf (defaults)
 *   /f2/...     cookies + session + csrf (header X-XSRF-TOKEN, field tok,
 *               session key xsrf)
 *   /misconf/session  route-level session without cookies
 *   /misconf/csrf     route-level cookies + csrf without session
 */
#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "cookies_test_server"
#include "test_server.h"
#include <talon/mw/cookies.h>
#include <talon/mw/csrf.h>
#include <talon/mw/session.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_NEW "secret-new-0123456789abcdef"
#define SECRET_OLD "secret-old-0123456789abcdef"

static void fail(tl_res *res, int status, int err) {
  char buf[128];
  snprintf(buf, sizeof buf, "error %s\n", tl_err_name(err));
  tl_res_status(res, status);
  tl_res_text(res, buf);
}

static void reply(tl_res *res, int status, const char *text) {
  tl_res_status(res, status);
  tl_res_text(res, text);
}

/* ---- cookies ---------------------------------------------------------- */

static void h_cookie(tl_req *req, tl_res *res) {
  const char *name = tl_req_query(req, "name");
  const char *v = tl_req_cookie(req, name ? name : "");
  if (!v) {
    reply(res, 404, "absent");
    return;
  }
  reply(res, 200, v);
}

static void h_signed(tl_req *req, tl_res *res) {
  const char *name = tl_req_query(req, "name");
  const char *v = tl_req_signed_cookie(req, name ? name : "");
  if (!v) {
    reply(res, 404, "absent");
    return;
  }
  reply(res, 200, v);
}

/* Attributes from the query: path, domain, max_age, expires, secure,
 * httponly, samesite (lax/strict/none/unset/other: 99). */
static tl_cookie_attrs attrs_from_query(tl_req *req) {
  tl_cookie_attrs a = {0};
  const char *q;
  a.path = tl_req_query(req, "path");
  a.domain = tl_req_query(req, "domain");
  if ((q = tl_req_query(req, "max_age")))
    a.max_age = strtoll(q, NULL, 10);
  if ((q = tl_req_query(req, "expires")))
    a.expires = (time_t)strtoll(q, NULL, 10);
  a.secure = tl_req_query(req, "secure") != NULL;
  a.http_only = tl_req_query(req, "httponly") != NULL;
  if ((q = tl_req_query(req, "samesite"))) {
    if (strcmp(q, "lax") == 0)
      a.same_site = TL_SAMESITE_LAX;
    else if (strcmp(q, "strict") == 0)
      a.same_site = TL_SAMESITE_STRICT;
    else if (strcmp(q, "none") == 0)
      a.same_site = TL_SAMESITE_NONE;
    else
      a.same_site = (tl_same_site)99;
  }
  return a;
}

static void h_set(tl_req *req, tl_res *res) {
  tl_cookie_attrs a = attrs_from_query(req);
  int rc = tl_res_cookie(res, tl_req_query(req, "name"),
                         tl_req_query(req, "value"), &a);
  if (rc < 0) {
    fail(res, 400, rc);
    return;
  }
  reply(res, 200, "ok");
}

static void h_set_signed(tl_req *req, tl_res *res) {
  tl_cookie_attrs a = attrs_from_query(req);
  int rc = tl_res_cookie_signed(res, tl_req_query(req, "name"),
                                tl_req_query(req, "value"), &a);
  if (rc < 0) {
    fail(res, 400, rc);
    return;
  }
  reply(res, 200, "ok");
}

static void h_clear(tl_req *req, tl_res *res) {
  tl_cookie_attrs a = attrs_from_query(req);
  int rc = tl_res_clear_cookie(res, tl_req_query(req, "name"), &a);
  if (rc < 0) {
    fail(res, 400, rc);
    return;
  }
  reply(res, 200, "ok");
}

/* ---- session ---------------------------------------------------------- */

static struct tl_session *session_or_fail(tl_req *req, tl_res *res) {
  struct tl_session *s = tl_req_session(req);
  if (!s)
    reply(res, 500, "no session");
  return s;
}

static void h_sess_set(tl_req *req, tl_res *res) {
  struct tl_session *s = session_or_fail(req, res);
  if (!s)
    return;
  const char *k = tl_req_query(req, "key"), *v = tl_req_query(req, "value");
  int rc = tl_session_set(s, k, v);
  if (rc < 0) {
    fail(res, rc == TL_ETOOBIG ? 413 : rc == TL_EINVAL ? 400 : 500, rc);
    return;
  }
  reply(res, 200, tl_session_id(s));
}

static void h_sess_get(tl_req *req, tl_res *res) {
  struct tl_session *s = session_or_fail(req, res);
  if (!s)
    return;
  const char *k = tl_req_query(req, "key");
  const char *v = tl_session_get(s, k ? k : "");
  if (!v) {
    reply(res, 404, "absent");
    return;
  }
  reply(res, 200, v);
}

static void h_sess_id(tl_req *req, tl_res *res) {
  struct tl_session *s = session_or_fail(req, res);
  if (!s)
    return;
  const char *id = tl_session_id(s);
  reply(res, id ? 200 : 404, id ? id : "none");
}

static void h_sess_del(tl_req *req, tl_res *res) {
  struct tl_session *s = session_or_fail(req, res);
  if (!s)
    return;
  const char *k = tl_req_query(req, "key");
  int rc = tl_session_del(s, k);
  if (rc < 0) {
    fail(res, 400, rc);
    return;
  }
  reply(res, 200, "ok");
}

static void h_sess_regen(tl_req *req, tl_res *res) {
  int rc = tl_session_regenerate(req, res);
  if (rc < 0) {
    fail(res, 500, rc);
    return;
  }
  reply(res, 200, tl_session_id(tl_req_session(req)));
}

/* A typical login: regenerate, then write. */
static void h_login(tl_req *req, tl_res *res) {
  const char *user = tl_req_query(req, "user");
  int rc = tl_session_regenerate(req, res);
  if (rc == 0)
    rc = tl_session_set(tl_req_session(req), "user", user ? user : "");
  if (rc < 0) {
    fail(res, 500, rc);
    return;
  }
  reply(res, 200, tl_session_id(tl_req_session(req)));
}

static void h_sess_destroy(tl_req *req, tl_res *res) {
  int rc = tl_session_destroy(req, res);
  if (rc < 0) {
    fail(res, 500, rc);
    return;
  }
  reply(res, 200, "bye");
}

/* Destroy, then write again in the same request: a new session. */
static void h_sess_destroy_set(tl_req *req, tl_res *res) {
  int rc = tl_session_destroy(req, res);
  if (rc == 0)
    rc = tl_session_set(tl_req_session(req), "fresh", "1");
  if (rc < 0) {
    fail(res, 500, rc);
    return;
  }
  reply(res, 200, tl_session_id(tl_req_session(req)));
}

/* Writes after the head went out: the session cannot be created. */
static void h_sess_late(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/plain"); /* see reject_401 */
  tl_res_write(res, "x", 1);
  int rc = tl_session_set(tl_req_session(req), "late", "1");
  char buf[64];
  snprintf(buf, sizeof buf, " %s", rc < 0 ? tl_err_name(rc) : "ok");
  tl_res_end(res, buf, strlen(buf));
}

/* ---- WebSocket --------------------------------------------------------------
 */

/* The rejection carries a header: a response with no header at all trips
 * a core UBSan report (memcpy from NULL in write_head, reported). */
static void reject_401(tl_res *res) {
  tl_res_status(res, 401);
  tl_res_header(res, "WWW-Authenticate", "Cookie");
}

typedef struct ws_user {
  char who[128];
} ws_user;

static int up_cookie(tl_req *req, tl_res *res, void *data) {
  const char *v = tl_req_cookie(req, "user");
  if (!v) {
    reject_401(res);
    return TL_REJECT;
  }
  snprintf(((ws_user *)data)->who, sizeof(ws_user), "cookie:%s", v);
  return TL_ACCEPT;
}

static int up_signed(tl_req *req, tl_res *res, void *data) {
  const char *v = tl_req_signed_cookie(req, "auth");
  if (!v) {
    reject_401(res);
    return TL_REJECT;
  }
  snprintf(((ws_user *)data)->who, sizeof(ws_user), "signed:%s", v);
  return TL_ACCEPT;
}

static int up_session(tl_req *req, tl_res *res, void *data) {
  struct tl_session *s = tl_req_session(req);
  const char *v = s ? tl_session_get(s, "user") : NULL;
  if (tl_req_query(req, "mark") && s)
    tl_session_set(s, "ws", "upgraded"); /* cookie rides on the 101 */
  if (!v) {
    reject_401(res);
    return TL_REJECT;
  }
  snprintf(((ws_user *)data)->who, sizeof(ws_user), "session:%s", v);
  return TL_ACCEPT;
}

static void ws_open(tl_ws *ws) {
  tl_ws_send_text(ws, ((ws_user *)tl_ws_data(ws))->who);
}

static const tl_ws_handlers ws_cookie = {.upgrade = up_cookie, .open = ws_open};
static const tl_ws_handlers ws_signed = {.upgrade = up_signed, .open = ws_open};
static const tl_ws_handlers ws_session = {.upgrade = up_session,
                                          .open = ws_open};

/* ---- CSRF ------------------------------------------------------------------
 */

static void h_token(tl_req *req, tl_res *res) {
  const char *t = tl_csrf_token(req);
  if (!t) {
    reply(res, 500, "no token");
    return;
  }
  reply(res, 200, t);
}

static void h_form(tl_req *req, tl_res *res) {
  char html[512];
  const char *t = tl_csrf_token(req);
  snprintf(html, sizeof html,
           "<form method=\"post\" action=\"/f/submit\">"
           "<input type=\"hidden\" name=\"_csrf\" value=\"%s\">"
           "<input name=\"msg\"></form>",
           t ? t : "");
  tl_res_header(res, "Content-Type", "text/html; charset=utf-8");
  reply(res, 200, html);
}

static void h_submit(tl_req *req, tl_res *res) {
  char buf[64];
  snprintf(buf, sizeof buf, "accepted %s", tl_req_method(req));
  reply(res, 200, buf);
}

/* ---- plain (no middleware)
 * --------------------------------------------------- */

static void h_plain_session(tl_req *req, tl_res *res) {
  reply(res, 200, tl_req_session(req) ? "session" : "no session");
}

static void h_plain_csrf(tl_req *req, tl_res *res) {
  reply(res, 200, tl_csrf_token(req) ? "token" : "no token");
}

/* ---- main ------------------------------------------------------------------
 */

static int cookie_routes(tl_router *r) {
  CHECK(tl_router_get(r, "/cookie", h_cookie));
  CHECK(tl_router_get(r, "/signed", h_signed));
  CHECK(tl_router_get(r, "/set", h_set));
  CHECK(tl_router_get(r, "/set_signed", h_set_signed));
  CHECK(tl_router_get(r, "/clear", h_clear));
  return 0;
}

static int session_routes(tl_router *r) {
  CHECK(tl_router_post(r, "/session/set", h_sess_set));
  CHECK(tl_router_get(r, "/session/get", h_sess_get));
  CHECK(tl_router_get(r, "/session/id", h_sess_id));
  CHECK(tl_router_post(r, "/session/del", h_sess_del));
  CHECK(tl_router_post(r, "/session/regenerate", h_sess_regen));
  CHECK(tl_router_post(r, "/session/destroy", h_sess_destroy));
  CHECK(tl_router_post(r, "/session/destroy_set", h_sess_destroy_set));
  CHECK(tl_router_post(r, "/session/late", h_sess_late));
  CHECK(tl_router_post(r, "/login", h_login));
  return 0;
}

static int csrf_routes(tl_router *r) {
  CHECK(tl_router_get(r, "/token", h_token));
  CHECK(tl_router_get(r, "/form", h_form));
  CHECK(tl_router_all(r, "/submit", h_submit));
  CHECK(tl_router_get(r, "/session/get", h_sess_get));
  CHECK(tl_router_post(r, "/session/set", h_sess_set));
  return 0;
}

static tl_router *router_with(tl_app *app, const char *prefix,
                              const tl_middleware *mw, size_t n) {
  tl_router *r = tl_router_new();
  if (!r)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (tl_router_use(r, mw[i]) < 0)
      return NULL;
  if (tl_app_mount(app, prefix, r) < 0)
    return NULL;
  return r;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  tl_app *app = tl_app_new(
      &(tl_app_config){.on_listen = on_listen, .shutdown_timeout_ms = 2000});
  if (!app)
    return 1;
  static const char *const both[] = {SECRET_NEW, SECRET_OLD, NULL};
  static const char *const old_only[] = {SECRET_OLD, NULL};
  static const char *const other[] = {"an-unrelated-secret-0123456789", NULL};
  tl_cookies_options co = {.secrets = both};

  /* A secret that is too short is refused. */
  static const char *const weak[] = {"short", NULL};
  tl_middleware bad = tl_cookies(&(tl_cookies_options){.secrets = weak});
  if (bad.fn != NULL || tl_app_use(app, bad) != TL_EINVAL) {
    fprintf(stderr, "weak secret accepted\n");
    return 1;
  }

  /* /plain: nothing. */
  CHECK(tl_app_get(app, "/plain/cookie", h_cookie));
  CHECK(tl_app_get(app, "/plain/signed", h_signed));
  CHECK(tl_app_get(app, "/plain/set", h_set));
  CHECK(tl_app_get(app, "/plain/set_signed", h_set_signed));
  CHECK(tl_app_get(app, "/plain/session", h_plain_session));
  CHECK(tl_app_get(app, "/plain/csrf", h_plain_csrf));

  tl_router *r;
  tl_middleware c_mw[] = {tl_cookies(&co), tl_session(NULL)};
  if (!(r = router_with(app, "/c", c_mw, 2)) || cookie_routes(r) ||
      session_routes(r))
    return 1;
  CHECK(tl_router_ws(r, "/ws/cookie", &ws_cookie, sizeof(ws_user)));
  CHECK(tl_router_ws(r, "/ws/signed", &ws_signed, sizeof(ws_user)));
  CHECK(tl_router_ws(r, "/ws/session", &ws_session, sizeof(ws_user)));

  tl_middleware old_mw[] = {
      tl_cookies(&(tl_cookies_options){.secrets = old_only})};
  if (!(r = router_with(app, "/old", old_mw, 1)) || cookie_routes(r))
    return 1;
  tl_middleware other_mw[] = {
      tl_cookies(&(tl_cookies_options){.secrets = other})};
  if (!(r = router_with(app, "/other", other_mw, 1)) || cookie_routes(r))
    return 1;
  tl_middleware lim_mw[] = {
      tl_cookies(&(tl_cookies_options){.max_cookies = 3, .max_bytes = 40})};
  if (!(r = router_with(app, "/lim", lim_mw, 1)) || cookie_routes(r))
    return 1;
  tl_middleware nosecret_mw[] = {tl_cookies(NULL), tl_session(NULL)};
  if (!(r = router_with(app, "/nosecret", nosecret_mw, 2)) ||
      cookie_routes(r) || session_routes(r))
    return 1;

  tl_middleware short_mw[] = {tl_cookies(&co),
                              tl_session(&(tl_session_options){
                                  .cookie_name = "short.sid",
                                  .idle_timeout_s = 1,
                                  .absolute_timeout_s = 3,
                                  .max_sessions = 3,
                                  .max_data_bytes = 256,
                                  .cookie_secure = true,
                                  .same_site = TL_SAMESITE_STRICT,
                                  .cookie_max_age = 600,
                              })};
  if (!(r = router_with(app, "/short", short_mw, 2)) || session_routes(r))
    return 1;

  tl_middleware f_mw[] = {tl_cookies(&co), tl_session(NULL), tl_csrf(NULL)};
  if (!(r = router_with(app, "/f", f_mw, 3)) || csrf_routes(r))
    return 1;
  tl_middleware f2_mw[] = {
      tl_cookies(&co), tl_session(NULL),
      tl_csrf(&(tl_csrf_options){.header_name = "X-XSRF-TOKEN",
                                 .field_name = "tok",
                                 .session_key = "xsrf"})};
  if (!(r = router_with(app, "/f2", f2_mw, 3)) || csrf_routes(r))
    return 1;

  tl_middleware mis1[] = {tl_session(NULL)};
  CHECK(tl_app_route(app, "GET", "/misconf/session", h_sess_id, mis1, 1));
  tl_middleware mis2[] = {tl_cookies(&co), tl_csrf(NULL)};
  CHECK(tl_app_route(app, "POST", "/misconf/csrf", h_submit, mis2, 2));

  int err = tl_app_listen(app, "127.0.0.1", port);
  if (err)
    fprintf(stderr, "listen: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
