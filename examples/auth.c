/* auth: logins with server-side sessions, and a WebSocket only for
 * logged-in users.
 *
 *   GET  /         the login form, or (logged in) a page that opens /ws
 *   POST /login    form fields user, password: on success a new session
 *                  (Set-Cookie tl.sid=...) and 303 to /me; else 401
 *   POST /logout   ends the session (the cookie is cleared), 303 to /
 *   GET  /me       who you are (JSON); 401 without a session
 *   /ws            WebSocket, logged-in users only: the upgrade checks the
 *                  session, then looks the account up asynchronously (a
 *                  simulated slow user service, LOOKUP_DELAY_MS [200]);
 *                  the socket greets you by name and echoes what you send
 *
 * Demo users (hard-coded; a real app stores salted password hashes, e.g.
 * with libsodium's crypto_pwhash, never passwords):
 *   alice / wonderland      bob / builder      mallory / letmein (locked:
 *   she can log in to the page, but the account check refuses her socket)
 *
 * Middleware: tl_cookies (with a secret: the session id travels in a
 * signed cookie), tl_session (in-memory store, HttpOnly SameSite=Lax
 * cookie) at app level, so the WebSocket upgrade sees the session too;
 * tl_body_urlencoded on POST /login only. The secret comes from
 * SESSION_SECRET (at least 16 bytes); without it a fixed demo secret is
 * used, so sessions survive restarts of the demo but are forgeable by
 * anyone who read this file: set it in production.
 *
 * A real app also wants CSRF protection on its form posts (tl_csrf; left
 * out here to keep the curl examples short; SameSite=Lax already keeps
 * other sites' forms from sending the cookie on POST).
 *
 * Usage: auth [PORT]   (or PORT=..., HOST=..., SESSION_SECRET=...)
 *   curl -i -c jar -d 'user=alice&password=wonderland' localhost:3000/login
 *   curl -b jar localhost:3000/me
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>

#include "common.h"

/* ---- the user table ------------------------------------------------------ */

typedef struct {
  const char *user, *password, *name;
  int locked; /* the slow check refuses the WebSocket */
} account;

static const account accounts[] = {
    {"alice", "wonderland", "Alice Liddell", 0},
    {"bob", "builder", "Bob the Builder", 0},
    {"mallory", "letmein", "Mallory", 1},
};

static const account *find_account(const char *user) {
  for (size_t i = 0; user && i < sizeof accounts / sizeof *accounts; i++)
    if (strcmp(accounts[i].user, user) == 0)
      return &accounts[i];
  return NULL;
}

/* Compares without an early exit, so the time taken does not tell how
 * many leading characters of a guess were right. */
static int same_secret(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++)
    diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
  return diff == 0 && lb != 0;
}

/* The logged-in user of this request (a string living until the response
 * finishes), or NULL. */
static const char *session_user(tl_req *req) {
  struct tl_session *s = tl_req_session(req);
  return s ? tl_session_get(s, "user") : NULL;
}

/* ---- pages --------------------------------------------------------------- */

static const char login_page[] =
    "<!doctype html><meta charset=utf-8><title>talon auth</title>\n"
    "<style>body{font:16px system-ui;margin:2em auto;max-width:30em}"
    "input{display:block;margin:.3em 0}</style>\n"
    "<h1>Log in</h1>\n"
    "<form method=post action=/login>\n"
    "<input name=user placeholder=user autocomplete=username autofocus>\n"
    "<input name=password type=password placeholder=password "
    "autocomplete=current-password>\n"
    "<button>log in</button></form>\n"
    "<p><small>Try alice / wonderland.</small></p>\n";

/* For a logged-in user: the WebSocket demo. */
static const char home_page[] =
    "<!doctype html><meta charset=utf-8><title>talon auth</title>\n"
    "<style>body{font:16px system-ui;margin:2em auto;max-width:30em}"
    "#log{white-space:pre-wrap;border:1px solid #ccc;padding:.5em;"
    "min-height:6em}</style>\n"
    "<p><a href=/me>/me</a> <form method=post action=/logout "
    "style=display:inline><button>log out</button></form></p>\n"
    "<form id=f><input id=m placeholder='say something'> <button>send"
    "</button></form><div id=log></div>\n"
    "<script>\n"
    "const log = document.getElementById('log');\n"
    "const say = t => { log.textContent += t + '\\n'; };\n"
    "say('checking your account...');\n"
    "const ws = new WebSocket(`ws://${location.host}/ws`);\n"
    "ws.onmessage = e => say(e.data);\n"
    "ws.onclose = e => say('closed ' + e.code);\n"
    "document.getElementById('f').onsubmit = e => { e.preventDefault();\n"
    "  const m = document.getElementById('m'); ws.send(m.value); m.value = ''; "
    "};\n"
    "</script>\n";

static void send_html(tl_res *res, int status, const char *html, size_t len) {
  tl_res_status(res, status);
  tl_res_header(res, "Content-Type", "text/html; charset=utf-8");
  tl_res_header(res, "Cache-Control", "no-store");
  tl_res_send(res, html, len);
}

static void index_page(tl_req *req, tl_res *res) {
  if (session_user(req))
    send_html(res, 200, home_page, sizeof home_page - 1);
  else
    send_html(res, 200, login_page, sizeof login_page - 1);
}

static void login(tl_req *req, tl_res *res) {
  const char *user = tl_req_form(req, "user");
  const char *password = tl_req_form(req, "password");
  const account *a = find_account(user);
  /* Compare against something even for unknown users: the answer takes
   * about as long either way. */
  int ok = same_secret(password ? password : "",
                       a ? a->password : "not-a-password") &&
           a != NULL;
  if (!ok) {
    send_html(res, 401, login_page, sizeof login_page - 1);
    return;
  }
  /* A new session id at every login (session fixation: an id planted
   * before the login is worthless afterwards), then the user in it. */
  int err = tl_session_regenerate(req, res);
  if (!err)
    err = tl_session_set(tl_req_session(req), "user", a->user);
  if (err) {
    tl_res_status(res, 500);
    tl_res_text(res, "cannot create a session\n");
    return;
  }
  tl_res_redirect(res, 303, "/me");
}

static void logout(tl_req *req, tl_res *res) {
  tl_session_destroy(req, res); /* store entry removed, cookie cleared */
  tl_res_redirect(res, 303, "/");
}

static void me(tl_req *req, tl_res *res) {
  const account *a = find_account(session_user(req));
  tl_res_header(res, "Cache-Control", "no-store");
  if (!a) {
    tl_res_status(res, 401);
    tl_res_json(res, "{\"error\":\"login required\"}");
    return;
  }
  char body[256]; /* the table's strings need no JSON escaping */
  snprintf(body, sizeof body, "{\"user\":\"%s\",\"name\":\"%s\"}", a->user,
           a->name);
  tl_res_json(res, body);
}

/* ---- the WebSocket ------------------------------------------------------- */

/* The per-connection context (talon allocates it zeroed before upgrade). */
typedef struct {
  char user[32];
  char name[64];
} conn;

/* A pending account check: a one-shot talon timer stands in for a slow
 * lookup (a database or an HTTP call). */
typedef struct {
  tl_timer *timer;
  tl_app *app;
  tl_res *res;
  conn *c;          /* the context block: valid until the upgrade ends */
  uint64_t started; /* tl_app_now() at the start, for the log */
} check;

static unsigned lookup_delay_ms = 200;

/* The client left while we were checking: drop the check. After this
 * returns, `res` and the context block are gone. */
static void check_abort(tl_res *res, void *arg) {
  check *k = arg;
  printf("auth: %s left during the account check\n", k->c->user);
  fflush(stdout); /* (the context block is still valid here) */
  tl_timer_stop(k->timer);
  free(k);
}

/* The "lookup" answered: accept or refuse the upgrade. The timer is
 * one-shot: talon frees it when this returns. */
static void check_done(tl_timer *t, void *arg) {
  check *k = arg;
  tl_res *res = k->res;
  conn *c = k->c;
  uint64_t took = tl_app_now(k->app) - k->started;
  const account *a = find_account(c->user);
  free(k);
  printf("auth: account check for %s: %s after %llu ms\n", c->user,
         a && !a->locked ? "ok" : "refused", (unsigned long long)took);
  fflush(stdout);
  if (!a || a->locked) {
    tl_res_status(res, 403);
    tl_res_text(res, "account locked\n");
    return;
  }
  snprintf(c->name, sizeof c->name, "%s", a->name);
  tl_ws_upgrade_accept(res); /* sends the 101; `open` runs inside */
}

static int ws_upgrade(tl_req *req, tl_res *res, void *data) {
  conn *c = data;
  const char *user = session_user(req); /* the session middleware ran */
  if (!user) {
    tl_res_status(res, 401);
    tl_res_text(res, "login required\n");
    return TL_REJECT;
  }
  /* Request strings die with this callback: copy what the check needs. */
  snprintf(c->user, sizeof c->user, "%s", user);
  check *k = calloc(1, sizeof *k);
  if (!k) {
    tl_res_status(res, 503);
    return TL_REJECT;
  }
  k->app = tl_req_app(req);
  k->res = res;
  k->c = c;
  k->started = tl_app_now(k->app);
  k->timer = tl_timer_start(k->app, lookup_delay_ms, 0, check_done, k);
  if (!k->timer) {
    free(k);
    tl_res_status(res, 503);
    return TL_REJECT;
  }
  tl_res_defer(res, check_abort, k);
  return TL_PENDING; /* decided in check_done */
}

static void ws_open(tl_ws *ws) {
  conn *c = tl_ws_data(ws);
  char hello[128];
  snprintf(hello, sizeof hello, "hello, %s", c->name);
  tl_ws_send_text(ws, hello);
}

static void ws_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  tl_ws_send(ws, data, len, op); /* echo */
}

/* A page on another site must not open a socket with our visitor's
 * cookie (cross-site WebSocket hijacking). The usual defence is the
 * route's allowed_origins list; this demo's own origin depends on the
 * host and port it runs on, so the upgrade is also allowed only from
 * pages of the host the request was sent to, checked here. */
static int same_origin(tl_req *req) {
  const char *origin = tl_req_header(req, "origin");
  const char *host = tl_req_header(req, "host");
  if (!origin)
    return 1; /* not a browser */
  return host && strncmp(origin, "http://", 7) == 0 &&
         strcmp(origin + 7, host) == 0;
}

static int ws_upgrade_checked(tl_req *req, tl_res *res, void *data) {
  if (!same_origin(req)) {
    tl_res_status(res, 403);
    tl_res_text(res, "cross-origin WebSocket refused\n");
    return TL_REJECT;
  }
  return ws_upgrade(req, res, data);
}

static const tl_ws_handlers ws_routes = {
    .upgrade = ws_upgrade_checked,
    .open = ws_open,
    .message = ws_message,
    .max_payload = 64 << 10,
    .idle_timeout_s = 300,
};

/* ---- setup --------------------------------------------------------------- */

static void on_listen(tl_app *app, const char *host, int port) {
  example_print_listening("auth", host, port);
}

int main(int argc, char **argv) {
  example_opts o;
  int rc = example_args(
      argc, argv, "auth",
      "  SESSION_SECRET  signs the session cookie, 16+ bytes [a demo one]\n"
      "  LOOKUP_DELAY_MS the simulated account check's delay [200]\n",
      &o);
  if (rc >= 0)
    return rc;
  const char *secret = getenv("SESSION_SECRET");
  if (!secret || !*secret)
    secret = "talon-auth-demo-secret-do-not-use";
  const char *delay = getenv("LOOKUP_DELAY_MS");
  if (delay && *delay)
    lookup_delay_ms = (unsigned)strtoul(delay, NULL, 10);

  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen, .workers = o.workers});
  if (!app)
    return 1;
  int redis_rc = example_redis(app, "auth");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }
  const char *secrets[] = {secret, NULL}; /* copied by tl_cookies */
  tl_middleware form[] = {tl_body_urlencoded(
      &(tl_body_urlencoded_options){.max_bytes = 4096, .max_fields = 8})};
  int err =
      tl_app_use(app, tl_cookies(&(tl_cookies_options){.secrets = secrets})) ||
      tl_app_use(app,
                 tl_session(&(tl_session_options){.idle_timeout_s = 3600})) ||
      tl_app_get(app, "/", index_page) ||
      tl_app_route(app, "POST", "/login", login, form, 1) ||
      tl_app_post(app, "/logout", logout) || tl_app_get(app, "/me", me) ||
      tl_app_ws(app, "/ws", &ws_routes, sizeof(conn));
  if (err)
    fprintf(stderr, "auth: cannot set up the app (is SESSION_SECRET at "
                    "least 16 bytes?)\n");
  else if ((err = tl_app_listen(app, o.host, o.port)))
    fprintf(stderr, "auth: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
