/* Routers hold route definitions, middleware and mounts until the app
 * starts listening; then tl__router_compile flattens them into the app's
 * route tree, each route with its chain of router and route middleware. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define GROW(arr, n, cap)                                                      \
  ((n) < (cap) ? 0 : grow((void **)&(arr), &(cap), sizeof *(arr)))

static int grow(void **arr, size_t *cap, size_t elem) {
  size_t ncap = *cap ? *cap * 2 : 4;
  void *p = realloc(*arr, ncap * elem);
  if (!p)
    return TL_ENOMEM;
  *arr = p;
  *cap = ncap;
  return 0;
}

tl_router *tl_router_new(void) {
  return calloc(1, sizeof(tl_router));
}

static void free_mw(tl_middleware *mw, size_t n, bool run_free) {
  for (size_t i = 0; run_free && i < n; i++)
    if (mw[i].free)
      mw[i].free(mw[i].ctx);
  free(mw);
}

void tl__router_destroy(tl_router *r, bool run_mw_free) {
  if (!r)
    return;
  for (size_t i = 0; i < r->nroutes; i++) {
    free(r->routes[i].pattern);
    if (r->routes[i].up.free)
      r->routes[i].up.free(r->routes[i].up.data);
    free_mw(r->routes[i].mw, r->routes[i].nmw, run_mw_free);
  }
  free(r->routes);
  free_mw(r->mw, r->nmw, run_mw_free);
  for (size_t i = 0; run_mw_free && i < r->nemw; i++)
    if (r->emw[i].free)
      r->emw[i].free(r->emw[i].ctx);
  free(r->emw);
  for (size_t i = 0; i < r->nmounts; i++) {
    free(r->mounts[i].prefix);
    tl__router_destroy(r->mounts[i].child, run_mw_free);
  }
  free(r->mounts);
  free(r);
}

void tl_router_free(tl_router *router) {
  if (router && !router->mounted && !router->owner)
    tl__router_destroy(router, true);
}

static bool frozen(const tl_router *r) {
  return r->owner && r->owner->compiled_ok;
}

/* Adds a route of `slot`: an HTTP handler, or (TL__M_UPGRADE) an upgrade
 * entry whose data passes to the router on success. */
static int add_route(tl_router *r, int slot, const char *pattern,
                     tl_handler handler, const tl__upgrade *up,
                     const tl_middleware *mw, size_t nmw,
                     const tl_route_options *opts) {
  if (!r || !pattern || pattern[0] != '/' || (nmw && !mw))
    return TL_EINVAL;
  if (frozen(r))
    return TL_ESTATE;
  for (size_t i = 0; i < nmw; i++)
    if (!mw[i].fn)
      return mw[i].error < 0 ? mw[i].error : TL_EINVAL;
  /* Validate the pattern (and catch duplicates) early with a scratch
   * tree holding this router's routes of the same slot. */
  tl__rtree *t = tl__rtree_new();
  if (!t)
    return TL_ENOMEM;
  int err = 0;
  for (size_t i = 0; i < r->nroutes && !err; i++)
    if (r->routes[i].slot == slot)
      err = tl__rtree_add(t, slot, r->routes[i].pattern,
                          strlen(r->routes[i].pattern), r);
  if (!err)
    err = tl__rtree_add(t, slot, pattern, strlen(pattern), r);
  tl__rtree_free(t);
  if (err)
    return err;
  if (GROW(r->routes, r->nroutes, r->cap_routes))
    return TL_ENOMEM;
  tl__route_def *d = &r->routes[r->nroutes];
  d->slot = slot;
  d->handler = handler;
  d->up = up ? *up : (tl__upgrade){0};
  d->opts = opts ? *opts : (tl_route_options){0};
  d->pattern = strdup(pattern);
  d->nmw = nmw;
  d->mw = nmw ? malloc(nmw * sizeof *mw) : NULL;
  if (!d->pattern || (nmw && !d->mw)) {
    free(d->pattern);
    free(d->mw);
    return TL_ENOMEM;
  }
  if (nmw)
    memcpy(d->mw, mw, nmw * sizeof *mw);
  r->nroutes++;
  return 0;
}

int tl_router_route_opts(tl_router *r, const char *method,
                         const char *pattern, tl_handler handler,
                         const tl_middleware *mw, size_t nmw,
                         const tl_route_options *opts) {
  int slot = method ? tl__rtree_method_slot(method) : -1;
  if (slot < 0 || slot == TL__M_UPGRADE || !handler)
    return TL_EINVAL;
  /* A buffered body is held in memory and counted in 32 bits. */
  if (opts && !opts->stream_body && opts->max_body_bytes > TL__MAX_BUFFERED)
    return TL_EINVAL;
  return add_route(r, slot, pattern, handler, NULL, mw, nmw, opts);
}

int tl_router_route(tl_router *r, const char *method, const char *pattern,
                    tl_handler handler, const tl_middleware *mw, size_t nmw) {
  return tl_router_route_opts(r, method, pattern, handler, mw, nmw, NULL);
}

int tl__router_add_upgrade(tl_router *r, const char *pattern,
                           const tl__upgrade *up, const tl_middleware *mw,
                           size_t nmw) {
  if (!up || !up->run)
    return TL_EINVAL;
  return add_route(r, TL__M_UPGRADE, pattern, NULL, up, mw, nmw, NULL);
}

#define SHORTHAND(fn, m)                                                       \
  int tl_router_##fn(tl_router *r, const char *p, tl_handler h) {              \
    return tl_router_route(r, m, p, h, NULL, 0);                               \
  }
SHORTHAND(get, "GET")
SHORTHAND(post, "POST")
SHORTHAND(put, "PUT")
SHORTHAND(patch, "PATCH")
SHORTHAND(delete, "DELETE")
SHORTHAND(options, "OPTIONS")
SHORTHAND(head, "HEAD")
SHORTHAND(all, "*")

int tl_router_use(tl_router *r, tl_middleware mw) {
  if (!r)
    return TL_EINVAL;
  if (!mw.fn) /* a constructor that failed says why */
    return mw.error < 0 ? mw.error : TL_EINVAL;
  if (frozen(r))
    return TL_ESTATE;
  if (GROW(r->mw, r->nmw, r->cap_mw))
    return TL_ENOMEM;
  r->mw[r->nmw++] = mw;
  return 0;
}

static bool contains(const tl_router *r, const tl_router *x) {
  if (r == x)
    return true;
  for (size_t i = 0; i < r->nmounts; i++)
    if (contains(r->mounts[i].child, x))
      return true;
  return false;
}

int tl_router_mount(tl_router *parent, const char *prefix, tl_router *child) {
  if (!parent || !child || !prefix || prefix[0] != '/')
    return TL_EINVAL;
  size_t n = strlen(prefix);
  if ((n > 1 && prefix[n - 1] == '/') || strpbrk(prefix, ":*") ||
      child->mounted || child->owner || contains(child, parent))
    return TL_EINVAL;
  if (frozen(parent))
    return TL_ESTATE;
  if (GROW(parent->mounts, parent->nmounts, parent->cap_mounts))
    return TL_ENOMEM;
  /* "/" as a prefix means no prefix. */
  char *p = strdup(n == 1 ? "" : prefix);
  if (!p)
    return TL_ENOMEM;
  parent->mounts[parent->nmounts++] = (tl__mount){p, child};
  child->mounted = true;
  return 0;
}

/* ---- compilation ------------------------------------------------------ */

typedef struct chain_ctx {
  const tl_middleware **stack; /* router middleware on the way down */
  size_t depth, cap;
} chain_ctx;

static int compile_router(tl__http *http, tl_router *r, const char *prefix,
                          chain_ctx *cc, bool is_root) {
  size_t base = cc->depth;
  /* The root router's middleware is app-level and runs separately. */
  if (!is_root) {
    for (size_t i = 0; i < r->nmw; i++) {
      if (GROW(cc->stack, cc->depth, cc->cap))
        return TL_ENOMEM;
      cc->stack[cc->depth++] = &r->mw[i];
    }
  }
  r->owner = http;
  int err = 0;
  size_t plen = strlen(prefix);
  for (size_t i = 0; i < r->nroutes && !err; i++) {
    tl__route_def *d = &r->routes[i];
    size_t dlen = strlen(d->pattern);
    /* A sub-router's "/" is the prefix itself. */
    if (plen && dlen == 1)
      dlen = 0;
    char *full = malloc(plen + dlen + 1);
    size_t nchain = cc->depth + d->nmw;
    tl__route *rt = calloc(1, sizeof *rt + nchain * sizeof(void *));
    if (!full || !rt) {
      free(full);
      free(rt);
      return TL_ENOMEM;
    }
    memcpy(full, prefix, plen);
    memcpy(full + plen, d->pattern, dlen);
    full[plen + dlen] = '\0';
    rt->handler = d->handler;
    rt->up = d->up;
    rt->max_body = d->opts.max_body_bytes;
    rt->stream_body = d->opts.stream_body != 0;
    rt->router = r;
    rt->chain = (const tl_middleware **)(rt + 1);
    rt->nchain = nchain;
    for (size_t k = 0; k < cc->depth; k++)
      rt->chain[k] = cc->stack[k];
    for (size_t k = 0; k < d->nmw; k++)
      rt->chain[cc->depth + k] = &d->mw[k];
    rt->next_alloc = http->compiled;
    http->compiled = rt;
    err = tl__rtree_add(http->tree, d->slot, full, plen + dlen, rt);
    free(full);
  }
  for (size_t i = 0; i < r->nmounts && !err; i++) {
    size_t mlen = strlen(r->mounts[i].prefix);
    char *np = malloc(plen + mlen + 1);
    if (!np)
      return TL_ENOMEM;
    memcpy(np, prefix, plen);
    memcpy(np + plen, r->mounts[i].prefix, mlen + 1);
    r->mounts[i].child->parent = r;
    err = compile_router(http, r->mounts[i].child, np, cc, false);
    free(np);
  }
  cc->depth = base;
  return err;
}

int tl__router_each_mw(tl_router *r,
                       int (*fn)(const tl_middleware *mw, void *arg),
                       void *arg) {
  int err = 0;
  for (size_t i = 0; i < r->nmw && !err; i++)
    err = fn(&r->mw[i], arg);
  for (size_t i = 0; i < r->nroutes && !err; i++)
    for (size_t k = 0; k < r->routes[i].nmw && !err; k++)
      err = fn(&r->routes[i].mw[k], arg);
  for (size_t i = 0; i < r->nmounts && !err; i++)
    err = tl__router_each_mw(r->mounts[i].child, fn, arg);
  return err;
}

void tl__router_free_compiled(tl__http *http) {
  while (http->compiled) {
    tl__route *next = http->compiled->next_alloc;
    free(http->compiled);
    http->compiled = next;
  }
  tl__rtree_free(http->tree);
  http->tree = NULL;
  http->compiled_ok = false;
}

int tl__router_compile(tl__http *http) {
  tl__router_free_compiled(http);
  http->tree = tl__rtree_new();
  if (!http->tree)
    return TL_ENOMEM;
  chain_ctx cc = {0};
  int err = compile_router(http, http->root, "", &cc, true);
  free(cc.stack);
  if (err) {
    tl__router_free_compiled(http);
    return err;
  }
  http->compiled_ok = true;
  return 0;
}
