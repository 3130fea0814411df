/* CORS middleware; the contract is in include/talon/mw/cors.h. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/cors.h>

#define DEFAULT_METHODS "GET,HEAD,PUT,PATCH,POST,DELETE"
/* Longest Origin or Access-Control-Request-Headers value we act on. Real
 * origins are short; anything longer is treated as absent/not allowed. */
#define MAX_ORIGIN 1024
#define MAX_REQ_HEADERS 2048

typedef struct cors {
  char **origins; /* NULL-terminated copies, or NULL */
  size_t norigins;
  bool any; /* "*" listed, or nothing configured */
  tl_cors_allow_fn allow;
  void *allow_arg;
  char *methods;
  char *allowed_headers; /* NULL: reflect */
  char *exposed_headers; /* NULL: none */
  bool credentials;
  unsigned max_age;
  /* Whether the answer depends on the Origin (anything but a literal "*"
   * answer), i.e. whether Vary: Origin is needed. */
  bool varies;
} cors;

static void cors_free(void *p) {
  cors *c = p;
  if (!c)
    return;
  for (size_t i = 0; i < c->norigins; i++)
    free(c->origins[i]);
  free(c->origins);
  free(c->methods);
  free(c->allowed_headers);
  free(c->exposed_headers);
  free(c);
}

static bool bad_text(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n')
      return true;
  return false;
}

/* A copy of `s` (NULL stays NULL); sets *fail on a failed copy or on text
 * that could never be a header value. */
static char *copy_opt(const char *s, bool *fail) {
  if (!s)
    return NULL;
  char *d = NULL;
  if (bad_text(s) || !(d = strdup(s)))
    *fail = true;
  return d;
}

/* An origin we are willing to compare or reflect: printable ASCII without
 * spaces or commas (a comma would smuggle a list), bounded length. */
static bool origin_ok(const char *o) {
  size_t n = 0;
  for (; o[n]; n++) {
    unsigned char ch = (unsigned char)o[n];
    if (ch <= 0x20 || ch >= 0x7f || ch == ',' || n >= MAX_ORIGIN)
      return false;
  }
  return n > 0;
}

/* Whether `s` is a comma-separated list of header names (tokens), the only
 * shape of Access-Control-Request-Headers we reflect. */
static bool header_list_ok(const char *s) {
  if (strlen(s) > MAX_REQ_HEADERS)
    return false;
  const char *item;
  size_t len;
  bool any = false;
  while (tl_token_list_next(&s, &item, &len)) {
    if (!tl_is_token(item, len))
      return false;
    any = true;
  }
  return any;
}

static bool origin_allowed(const cors *c, const char *origin) {
  if (!origin_ok(origin))
    return false;
  for (size_t i = 0; i < c->norigins; i++)
    if (strcasecmp(c->origins[i], origin) == 0)
      return true;
  if (c->any)
    /* With credentials the origin is reflected; never hand credentialed
     * access to the opaque origin of sandboxed frames and file: pages. */
    return !(c->credentials && strcmp(origin, "null") == 0);
  if (c->allow && !c->origins)
    return c->allow(origin, c->allow_arg);
  return false;
}

/* Access-Control-Allow-Origin (+ Credentials) for an allowed origin. */
static int allow_origin(const cors *c, tl_res *res, const char *origin) {
  int err;
  if (c->any && !c->credentials)
    err = tl_res_header(res, "Access-Control-Allow-Origin", "*");
  else
    err = tl_res_header(res, "Access-Control-Allow-Origin", origin);
  if (!err && c->credentials)
    err = tl_res_header(res, "Access-Control-Allow-Credentials", "true");
  return err;
}

static int preflight(const cors *c, tl_req *req, tl_res *res,
                     const char *origin) {
  int err = 0;
  if (c->varies)
    err = tl_res_header(res, "Vary", "Origin");
  if (!err && !c->allowed_headers)
    err = tl_res_header(res, "Vary", "Access-Control-Request-Headers");
  if (err)
    return err;
  if (!origin_allowed(c, origin)) {
    /* Refused: a clear status for the browser's network panel, and no
     * CORS headers, so the actual request is never sent. */
    tl_res_status(res, 403);
    tl_res_text(res, "CORS origin not allowed\n");
    return TL_DONE;
  }
  err = allow_origin(c, res, origin);
  if (!err)
    err = tl_res_header(res, "Access-Control-Allow-Methods", c->methods);
  if (!err) {
    const char *h = c->allowed_headers;
    if (!h) {
      h = tl_req_header(req, "Access-Control-Request-Headers");
      if (h && !header_list_ok(h))
        h = NULL;
    }
    if (h && *h)
      err = tl_res_header(res, "Access-Control-Allow-Headers", h);
  }
  if (!err && c->max_age)
    err = tl_res_headerf(res, "Access-Control-Max-Age", "%u", c->max_age);
  if (err)
    return err;
  tl_res_status(res, 204);
  tl_res_send(res, NULL, 0);
  return TL_DONE;
}

static int cors_run(tl_req *req, tl_res *res, void *ctx) {
  const cors *c = ctx;
  const char *origin = tl_req_header(req, "Origin");
  if (origin && strcmp(tl_req_method(req), "OPTIONS") == 0 &&
      tl_req_header(req, "Access-Control-Request-Method"))
    return preflight(c, req, res, origin);
  int err = 0;
  if (c->varies)
    err = tl_res_header(res, "Vary", "Origin");
  if (!err && origin && origin_allowed(c, origin)) {
    err = allow_origin(c, res, origin);
    if (!err && c->exposed_headers)
      err = tl_res_header(res, "Access-Control-Expose-Headers",
                          c->exposed_headers);
  }
  return err ? err : TL_NEXT;
}

tl_middleware tl_cors(const tl_cors_options *opts) {
  static const tl_cors_options defaults;
  tl_middleware mw = {.name = "cors"};
  if (!opts)
    opts = &defaults;
  cors *c = calloc(1, sizeof *c);
  if (!c) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  bool fail = false;
  if (opts->origins) {
    size_t n = 0;
    while (opts->origins[n])
      n++;
    c->origins = calloc(n + 1, sizeof *c->origins);
    if (!c->origins)
      fail = true;
    for (size_t i = 0; i < n && !fail; i++) {
      if (strcmp(opts->origins[i], "*") == 0) {
        c->any = true;
        continue;
      }
      c->origins[c->norigins] = copy_opt(opts->origins[i], &fail);
      if (c->origins[c->norigins])
        c->norigins++;
    }
  } else if (opts->allow) {
    c->allow = opts->allow;
    c->allow_arg = opts->allow_arg;
  } else {
    c->any = true;
  }
  c->methods = copy_opt(opts->methods ? opts->methods : DEFAULT_METHODS, &fail);
  c->allowed_headers = copy_opt(opts->allowed_headers, &fail);
  c->exposed_headers = copy_opt(opts->exposed_headers, &fail);
  c->credentials = opts->credentials;
  c->max_age = opts->max_age;
  c->varies = !(c->any && !c->credentials && c->norigins == 0);
  if (fail) {
    cors_free(c);
    return mw;
  }
  mw.fn = cors_run;
  mw.ctx = c;
  mw.free = cors_free;
  return mw;
}
