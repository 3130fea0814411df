/* The test server of tests/errors: error middleware (talon/error.h),
 * tl_res_fail, replacing and removing response headers, and the answers
 * to requests that cannot be read (parse errors, the HTTP/2 preface).
 *
 *   errors_test_server PORT hooked|plain
 *
 * "hooked" installs error middleware at app level and on the /api
 * router; "plain" installs none, so talon's own pages answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SERVER_NAME "errors_test_server"
#include "test_server.h"

/* ---- handlers ----------------------------------------------------------- */

static void ok(tl_req *req, tl_res *res) {
  tl_res_text(res, "ok\n");
}

/* Fails with the status in the path; the header set first must not reach
 * the error page. */
static void fail_status(tl_req *req, tl_res *res) {
  tl_res_header(res, "X-Before-Fail", "1");
  int rc = tl_res_fail(res, atoi(tl_req_param(req, "status")), TL_EIO);
  if (rc != 0) { /* an invalid status: say so */
    tl_res_status(res, 200);
    tl_res_text(res, tl_err_name(rc));
  }
}

static void fail_500(tl_req *req, tl_res *res) {
  tl_res_fail(res, 500, 0);
}

static void later_cb(tl_timer *t, void *arg) {
  tl_res_fail(arg, 503, TL_EAGAIN);
}

/* A deferred response that fails from a timer. */
static void fail_later(tl_req *req, tl_res *res) {
  tl_res_defer(res, NULL, NULL);
  tl_timer_start(tl_req_app(req), 10, 0, later_cb, res);
}

/* Streams a part of the body, then fails: too late for a page. */
static void stream_fail(tl_req *req, tl_res *res) {
  tl_res_write(res, "partial", 7);
  tl_res_fail(res, 500, 0);
}

static void never(tl_req *req, tl_res *res) {
  tl_res_text(res, "handler ran\n");
}

static int mw_code(tl_req *req, tl_res *res, void *ctx) {
  return TL_EIO; /* a negative return: 500 with that code */
}

static int mw_fail(tl_req *req, tl_res *res, void *ctx) {
  tl_res_fail(res, 403, 0);
  return TL_NEXT; /* ignored: the request failed */
}

static void post_only(tl_req *req, tl_res *res) {
  tl_res_text(res, "posted\n");
}

/* Header replacement and removal; the body reports the return values. */
static void headers(tl_req *req, tl_res *res) {
  tl_res_header(res, "X-A", "1");
  tl_res_header(res, "x-a", "2");
  tl_res_header(res, "X-B", "keep?");
  tl_res_header(res, "X-C", "c");
  int set = tl_res_set_header(res, "X-A", "3");
  int removed_b = tl_res_remove_header(res, "x-b");
  int removed_none = tl_res_remove_header(res, "X-None");
  int bad = tl_res_set_header(res, "X-Bad", "a\r\nInjected: 1");
  tl_res_header(res, "Content-Type", "text/html");
  int ctype = tl_res_set_header(res, "Content-Type", "application/json");
  char body[256];
  snprintf(body, sizeof body,
           "{\"set\":%d,\"removed_b\":%d,\"removed_none\":%d,\"bad\":\"%s\","
           "\"ctype\":%d,\"get_a\":\"%s\",\"has_b\":%s}",
           set, removed_b, removed_none, tl_err_name(bad), ctype,
           tl_res_get_header(res, "X-A"),
           tl_res_has_header(res, "X-B") ? "true" : "false");
  tl_res_send(res, body, strlen(body));
}

/* Content-Length set, then removed: talon frames the body itself. */
static void remove_clen(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Length", "999");
  int n = tl_res_remove_header(res, "content-length");
  tl_res_write(res, n == 1 ? "chunked" : "wrong", n == 1 ? 7 : 5);
  tl_res_end(res, NULL, 0);
}

/* After the head went out, headers cannot change. */
static void late_header(tl_req *req, tl_res *res) {
  tl_res_write(res, "x", 1);
  char body[128];
  snprintf(body, sizeof body, "|%s|%s",
           tl_err_name(tl_res_set_header(res, "X-Late", "1")),
           tl_err_name(tl_res_remove_header(res, "X-Late")));
  tl_res_end(res, body, strlen(body));
}

/* ---- error middleware --------------------------------------------------- */

/* App level, first: marks that it saw the error and passes it on. */
static int err_mark(tl_req *req, tl_res *res, const tl_error *e, void *ctx) {
  tl_res_header(res, "X-Error-Seen", "app");
  return TL_NEXT;
}

typedef struct {
  tl_res *res;
  tl_timer *timer;
  int status;
} deferred_page;

static long page_aborts;

static void page_later(tl_timer *t, void *arg) {
  deferred_page *d = arg;
  char body[64];
  snprintf(body, sizeof body, "late page %d\n", d->status);
  tl_res_text(d->res, body);
  free(d);
}

/* The client left, or the request could not be read (no deferring
 * then): the page will not be sent. */
static void page_abort(tl_res *res, void *arg) {
  deferred_page *d = arg;
  tl_timer_stop(d->timer);
  free(d);
  page_aborts++;
}

static void counts(tl_req *req, tl_res *res) {
  char body[64];
  snprintf(body, sizeof body, "{\"page_aborts\":%ld}", page_aborts);
  tl_res_json(res, body);
}

/* App level, second: the app's page. Requests whose path starts with
 * "/pass" are left to talon's default page. */
static int err_page(tl_req *req, tl_res *res, const tl_error *e, void *ctx) {
  const char *path = req ? tl_req_path(req) : "";
  if (strncmp(path, "/pass", 5) == 0)
    return TL_NEXT;
  if (strncmp(path, "/deferpage", 10) == 0) {
    deferred_page *d = malloc(sizeof *d);
    if (!d)
      return TL_NEXT;
    d->res = res;
    d->status = e->status;
    d->timer = tl_timer_start(tl_req_app(req), 10, 0, page_later, d);
    tl_res_defer(res, page_abort, d);
    return TL_DONE;
  }
  if (strncmp(path, "/teapot", 7) == 0) {
    tl_res_status(res, 418); /* an error middleware may change the status */
    return TL_DONE;          /* answered with what was set: empty body */
  }
  if (strncmp(path, "/again", 6) == 0) {
    tl_res_fail(res, 502, 0); /* failing inside the error page */
    return TL_DONE;
  }
  char body[512];
  snprintf(body, sizeof body, "<h1>%d %s</h1><p>code=%s req=%s %s</p>\n",
           e->status, e->message, e->code ? tl_err_name(e->code) : "0",
           req ? tl_req_method(req) : "none", req ? tl_req_path(req) : "-");
  tl_res_set_header(res, "Content-Type", "text/html; charset=utf-8");
  tl_res_send(res, body, strlen(body));
  return TL_DONE;
}

/* Router level (/api): JSON for client errors, server errors passed on to
 * the app's page. */
static int err_api(tl_req *req, tl_res *res, const tl_error *e, void *ctx) {
  if (e->status >= 500)
    return TL_NEXT;
  char body[128];
  snprintf(body, sizeof body, "{\"error\":%d,\"by\":\"api\"}", e->status);
  tl_res_json(res, body);
  return TL_DONE;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int hooked = argc > 2 && strcmp(argv[2], "hooked") == 0;
  tl_app_config cfg = {
      .on_listen = on_listen,
      .max_body_bytes = 1000,
      .max_header_bytes = 2048,
      .header_timeout_ms = 500,
  };
  tl_app *app = tl_app_new(&cfg);
  if (!app)
    return 1;
  CHECK(tl_app_get(app, "/ok", ok));
  CHECK(tl_app_get(app, "/counts", counts));
  CHECK(tl_app_get(app, "/fail/:status", fail_status));
  CHECK(tl_app_get(app, "/pass/fail/:status", fail_status));
  CHECK(tl_app_get(app, "/deferpage/fail/:status", fail_status));
  CHECK(tl_app_get(app, "/teapot", fail_500));
  CHECK(tl_app_get(app, "/again", fail_500));
  CHECK(tl_app_get(app, "/fail-later", fail_later));
  CHECK(tl_app_get(app, "/stream-fail", stream_fail));
  tl_middleware code = {.fn = mw_code}, failer = {.fn = mw_fail};
  CHECK(tl_app_route(app, "GET", "/mw-code", never, &code, 1));
  CHECK(tl_app_route(app, "GET", "/mw-fail", never, &failer, 1));
  CHECK(tl_app_post(app, "/post-only", post_only));
  CHECK(tl_app_post(app, "/body", post_only));
  CHECK(tl_app_post(app, "/deferpage/body", post_only));
  CHECK(tl_app_get(app, "/headers", headers));
  CHECK(tl_app_get(app, "/remove-clen", remove_clen));
  CHECK(tl_app_get(app, "/late-header", late_header));

  tl_router *api = tl_router_new();
  CHECK(tl_router_get(api, "/fail/:status", fail_status));
  CHECK(tl_router_post(api, "/post-only", post_only));
  if (hooked)
    CHECK(tl_router_use_error(api, (tl_error_middleware){.fn = err_api}));
  CHECK(tl_app_mount(app, "/api", api));
  if (hooked) {
    CHECK(tl_app_use_error(app, (tl_error_middleware){.fn = err_mark}));
    CHECK(tl_app_use_error(app, (tl_error_middleware){.fn = err_page}));
  }
  if (tl_app_use_error(app, (tl_error_middleware){0}) != TL_EINVAL) {
    fprintf(stderr, "tl_app_use_error took a NULL fn\n");
    return 1;
  }
  int err = tl_app_listen(app, "127.0.0.1", port);
  if (!err && tl_app_use_error(app, (tl_error_middleware){.fn = err_page}) !=
                  TL_ESTATE) {
    fprintf(stderr, "tl_app_use_error after listen was not refused\n");
    err = 1;
  }
  tl_app_free(app);
  return err ? 1 : 0;
}
