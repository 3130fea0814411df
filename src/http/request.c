/* Request accessors. Strings are slices of the message, NUL-terminated in
 * place when the head completed, or copies in the request's arena. */
#include <string.h>
#include <uv.h>

#include "http/http.h"

const char *tl_req_method(const tl_req *req) {
  return llhttp_method_name((llhttp_method_t)req->method);
}

const char *tl_req_target(const tl_req *req) {
  return req->h->msg + req->url_off;
}

size_t tl__req_path_len(const tl_req *req, const char **q) {
  const char *u = req->h->msg + req->url_off;
  const char *mark = memchr(u, '?', req->url_len);
  if (q)
    *q = mark;
  return mark ? (size_t)(mark - u) : req->url_len;
}

const char *tl_req_path(tl_req *req) {
  if (req->path)
    return req->path;
  const char *q;
  const char *u = req->h->msg + req->url_off;
  size_t n = tl__req_path_len(req, &q);
  if (!q && !memchr(u, '%', n))
    return u; /* already NUL-terminated; not cached: the message may move */
  char *p = tl__arena_alloc(&req->h->arena, n + 1);
  if (!p)
    return "";
  tl_pct_decode(p, n + 1, u, n, 0, NULL);
  req->path = p;
  return p;
}

const char *tl_req_query_string(const tl_req *req) {
  const char *q;
  const char *u = req->h->msg + req->url_off;
  size_t n = tl__req_path_len(req, &q);
  return q ? q + 1 : u + n; /* u + n is the terminating NUL */
}

const char *tl_req_query(tl_req *req, const char *name) {
  const char *qs = tl_req_query_string(req);
  tl_slice val;
  if (!tl_form_find(qs, strlen(qs), name, &val))
    return NULL;
  char *p = tl__arena_alloc(&req->h->arena, val.len + 1);
  if (!p)
    return NULL;
  tl_pct_decode(p, val.len + 1, val.ptr, val.len, TL_PCT_FORM, NULL);
  return p;
}

const char *tl_req_param(tl_req *req, const char *name) {
  if (!name)
    return NULL;
  for (size_t i = 0; i < req->nparams; i++) {
    tl__param *pm = &req->params[i];
    if (strcmp(pm->name, name) != 0)
      continue;
    if (!pm->decoded) {
      char *p = tl__arena_alloc(&req->h->arena, pm->len + 1);
      if (!p)
        return NULL;
      tl_pct_decode(p, pm->len + 1, req->h->msg + pm->off, pm->len, 0, NULL);
      pm->decoded = p;
    }
    return pm->decoded;
  }
  return NULL;
}

const char *tl__req_hdr_value(const tl_req *req, const tl__hdr *hd) {
  return hd->value_off == UINT32_MAX ? "" : req->h->msg + hd->value_off;
}

const char *tl_req_header_at(const tl_req *req, const char *name,
                             size_t index) {
  if (!name)
    return NULL;
  size_t n = strlen(name);
  for (uint32_t i = 0; i < req->nhdrs; i++) {
    const tl__hdr *hd = &req->hdrs[i];
    /* The length check first: most names differ in it. */
    if (hd->name_len == n &&
        tl_str_ieq(req->h->msg + hd->name_off, hd->name_len, name) &&
        index-- == 0)
      return tl__req_hdr_value(req, hd);
  }
  return NULL;
}

const char *tl_req_header(const tl_req *req, const char *name) {
  return tl_req_header_at(req, name, 0);
}

size_t tl_req_header_count(const tl_req *req) {
  return req->nhdrs;
}

int tl_req_header_get(const tl_req *req, size_t i, tl_slice *name,
                      tl_slice *value) {
  if (i >= req->nhdrs)
    return TL_ENOENT;
  const tl__hdr *hd = &req->hdrs[i];
  if (name)
    *name = (tl_slice){req->h->msg + hd->name_off, hd->name_len};
  if (value)
    *value = (tl_slice){tl__req_hdr_value(req, hd), hd->value_len};
  return 0;
}

tl_slice tl_req_body(const tl_req *req) {
  if (req->body_len == 0)
    return (tl_slice){"", 0};
  return (tl_slice){req->h->msg + req->body_off, req->body_len};
}

int tl_req_version(const tl_req *req) {
  return req->version;
}

int tl_req_remote_address(const tl_req *req, char *buf, size_t size) {
  return tl__conn_peer_name(&req->h->conn, buf, size);
}

tl_app *tl_req_app(const tl_req *req) {
  return req->h->http->app;
}

void *tl_req_alloc(tl_req *req, size_t size) {
  return tl__arena_alloc(&req->h->arena, size);
}

int tl_req_set(tl_req *req, const char *key, void *value,
               void (*free_fn)(void *)) {
  if (!key)
    return TL_EINVAL;
  for (size_t i = 0; i < req->nlocals; i++) {
    tl__local *l = &req->locals[i];
    if (strcmp(l->key, key) == 0) {
      if (l->free_fn && l->value != value)
        l->free_fn(l->value);
      l->value = value;
      l->free_fn = free_fn;
      return 0;
    }
  }
  if (req->nlocals == req->cap_locals) {
    size_t cap = req->cap_locals ? req->cap_locals * 2 : 8;
    tl__local *n = tl__arena_alloc(&req->h->arena, cap * sizeof *n);
    if (!n)
      return TL_ENOMEM;
    if (req->nlocals)
      memcpy(n, req->locals, req->nlocals * sizeof *n);
    req->locals = n;
    req->cap_locals = cap;
  }
  req->locals[req->nlocals++] = (tl__local){key, value, free_fn};
  return 0;
}

void *tl_req_get(const tl_req *req, const char *key) {
  if (!key)
    return NULL;
  for (size_t i = 0; i < req->nlocals; i++)
    if (strcmp(req->locals[i].key, key) == 0)
      return req->locals[i].value;
  return NULL;
}
