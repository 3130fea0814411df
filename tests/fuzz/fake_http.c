/* The fake request and response of fake_http.h. Only what the fuzzed
 * middleware calls is implemented; the contracts followed are those of
 * include/talon/http.h. */
#include "fake_http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct hdr {
  char *name, *value;
} hdr;

typedef struct local {
  const char *key;
  void *value;
  void (*free_fn)(void *);
} local;

typedef struct hook {
  tl_res_finish_cb cb;
  void *arg;
} hook;

struct tl_res {
  tl_req *req;
  int status;
  int finished;
  hdr *h;
  size_t nh;
  hook *hooks;
  size_t nhooks;
};

struct tl_req {
  hdr *h;
  size_t nh;
  char *body;
  size_t body_len;
  void **mem; /* tl_req_alloc blocks */
  size_t nmem;
  local *locals;
  size_t nlocals;
  struct tl_res res;
};

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p)
    abort();
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *d = xrealloc(NULL, n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

tl_req *fake_req_new(void) {
  tl_req *req = calloc(1, sizeof *req);
  if (!req)
    abort();
  req->res.req = req;
  req->body = xrealloc(NULL, 0);
  return req;
}

void fake_req_add_header(tl_req *req, const char *name, const char *value,
                         size_t len) {
  req->h = xrealloc(req->h, (req->nh + 1) * sizeof *req->h);
  req->h[req->nh++] = (hdr){xstrndup(name, strlen(name)),
                            xstrndup(value, len)};
}

void fake_req_set_body(tl_req *req, const void *data, size_t len) {
  free(req->body);
  req->body = xrealloc(NULL, len);
  if (len)
    memcpy(req->body, data, len);
  req->body_len = len;
}

tl_res *fake_req_res(tl_req *req) {
  return &req->res;
}

void fake_req_end(tl_req *req) {
  tl_res *res = &req->res;
  res->finished = 1;
  for (size_t i = 0; i < res->nhooks; i++)
    res->hooks[i].cb(res, res->hooks[i].arg);
  for (size_t i = 0; i < req->nlocals; i++)
    if (req->locals[i].free_fn)
      req->locals[i].free_fn(req->locals[i].value);
  for (size_t i = 0; i < req->nmem; i++)
    free(req->mem[i]);
  for (size_t i = 0; i < req->nh; i++) {
    free(req->h[i].name);
    free(req->h[i].value);
  }
  for (size_t i = 0; i < res->nh; i++) {
    free(res->h[i].name);
    free(res->h[i].value);
  }
  free(res->h);
  free(res->hooks);
  free(req->h);
  free(req->body);
  free(req->mem);
  free(req->locals);
  free(req);
}

int fake_res_status(const tl_res *res) {
  return res->status;
}

int fake_res_finished(const tl_res *res) {
  return res->finished;
}

size_t fake_res_header_count(const tl_res *res, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < res->nh; i++)
    n += strcasecmp(res->h[i].name, name) == 0;
  return n;
}

const char *fake_res_header_at(const tl_res *res, const char *name,
                               size_t i) {
  for (size_t k = 0; k < res->nh; k++)
    if (strcasecmp(res->h[k].name, name) == 0 && i-- == 0)
      return res->h[k].value;
  return NULL;
}

/* ---- the public API the middleware calls ------------------------------ */

const char *tl_req_header_at(const tl_req *req, const char *name,
                             size_t index) {
  for (size_t i = 0; i < req->nh; i++)
    if (strcasecmp(req->h[i].name, name) == 0 && index-- == 0)
      return req->h[i].value;
  return NULL;
}

const char *tl_req_header(const tl_req *req, const char *name) {
  return tl_req_header_at(req, name, 0);
}

tl_slice tl_req_body(const tl_req *req) {
  return (tl_slice){req->body, req->body_len};
}

void *tl_req_alloc(tl_req *req, size_t size) {
  req->mem = xrealloc(req->mem, (req->nmem + 1) * sizeof *req->mem);
  void *p = malloc(size ? size : 1);
  if (p)
    req->mem[req->nmem++] = p;
  return p;
}

int tl_req_set(tl_req *req, const char *key, void *value,
               void (*free_fn)(void *)) {
  for (size_t i = 0; i < req->nlocals; i++)
    if (strcmp(req->locals[i].key, key) == 0) {
      if (req->locals[i].free_fn)
        req->locals[i].free_fn(req->locals[i].value);
      req->locals[i].value = value;
      req->locals[i].free_fn = free_fn;
      return 0;
    }
  req->locals =
      xrealloc(req->locals, (req->nlocals + 1) * sizeof *req->locals);
  req->locals[req->nlocals++] = (local){key, value, free_fn};
  return 0;
}

void *tl_req_get(const tl_req *req, const char *key) {
  for (size_t i = 0; i < req->nlocals; i++)
    if (strcmp(req->locals[i].key, key) == 0)
      return req->locals[i].value;
  return NULL;
}

int tl_res_status(tl_res *res, int status) {
  if (status < 100 || status > 999)
    return TL_EINVAL;
  if (res->finished)
    return TL_ESTATE;
  res->status = status;
  return 0;
}

int tl_res_header(tl_res *res, const char *name, const char *value) {
  if (res->finished)
    return TL_ESTATE;
  if (strpbrk(name, "\r\n") || strpbrk(value, "\r\n"))
    return TL_EINVAL;
  res->h = xrealloc(res->h, (res->nh + 1) * sizeof *res->h);
  res->h[res->nh++] = (hdr){xstrndup(name, strlen(name)),
                            xstrndup(value, strlen(value))};
  return 0;
}

int tl_res_text(tl_res *res, const char *text) {
  (void)text;
  if (res->finished)
    return TL_ESTATE;
  res->finished = 1;
  return 0;
}

int tl_res_on_finish(tl_res *res, tl_res_finish_cb cb, void *arg) {
  if (!cb)
    return TL_EINVAL;
  res->hooks = xrealloc(res->hooks, (res->nhooks + 1) * sizeof *res->hooks);
  res->hooks[res->nhooks++] = (hook){cb, arg};
  return 0;
}

bool tl_res_head_sent(const tl_res *res) {
  return res->finished;
}

tl_req *tl_res_req(const tl_res *res) {
  return res->req;
}

/* The fake request's body is always whole (fake_req_set_body), so the
 * streamed-body path of the middleware is never taken: these exist for
 * the link, and reaching one is a bug in the fuzz target. */
bool tl_req_body_pending(const tl_req *req) {
  (void)req;
  return false;
}

int tl_req_body_stream(tl_req *req, tl_body_data_cb on_data,
                       tl_body_end_cb on_end, void *arg) {
  (void)req, (void)on_data, (void)on_end, (void)arg;
  abort();
}

int tl_next(tl_req *req, tl_res *res) {
  (void)req, (void)res;
  abort();
}
