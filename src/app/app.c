/* The app: options, creation, the routes' registration; see app.h. The
 * workers, listening and stopping are worker.c. */
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "ws/client.h"
#include "app/timer.h"
#include "pubsub/hub.h"

static void apply_defaults(tl_app_config *o) {
  if (!o->max_header_bytes)
    o->max_header_bytes = 16384;
  if (!o->max_url_bytes)
    o->max_url_bytes = 8192;
  if (!o->max_body_bytes)
    o->max_body_bytes = 1024 * 1024;
  if (!o->max_headers)
    o->max_headers = 100;
  if (o->max_headers > 256)
    o->max_headers = 256;
  if (!o->header_timeout_ms)
    o->header_timeout_ms = 10000;
  if (!o->keepalive_timeout_ms)
    o->keepalive_timeout_ms = 5000;
  if (!o->shutdown_timeout_ms)
    o->shutdown_timeout_ms = 5000;
  if (!o->max_connections)
    o->max_connections = 10000;
  if (!o->backlog)
    o->backlog = 511;
  if (!o->write_high_water)
    o->write_high_water = 64 * 1024;
  if (!o->send_timeout_ms)
    o->send_timeout_ms = 30000;
}

static unsigned resolve_workers(int n) {
  if (n == 0)
    return 1;
  if (n < 0)
    n = (int)uv_available_parallelism();
  return n > TL_WORKERS_MAX ? TL_WORKERS_MAX : n < 1 ? 1 : (unsigned)n;
}

tl_app *tl_app_new(const tl_app_config *options) {
  tl_app *app = calloc(1, sizeof *app);
  if (!app)
    return NULL;
  if (options)
    app->opt = *options;
  apply_defaults(&app->opt);
  app->nworkers = resolve_workers(app->opt.workers);
  app->workers = calloc(app->nworkers, sizeof *app->workers);
  if (!app->workers || uv_sem_init(&app->started, 0) != 0) {
    free(app->workers);
    free(app);
    return NULL;
  }
  if (tl__http_init(&app->workers[0].http, &app->opt, app) != 0)
    goto fail;
  if (app->nworkers > 1 && !(app->hub = tl__hub_new(app->nworkers)))
    goto fail;
  for (unsigned i = 0; i < app->nworkers; i++) {
    if (tl__worker_init(app, &app->workers[i], i) != 0) {
      /* The ones before are whole; this one cleaned up after itself. */
      for (unsigned j = 0; j < i; j++)
        tl__worker_free(&app->workers[j]);
      tl__http_free(&app->workers[0].http);
      tl__hub_free(app->hub);
      uv_sem_destroy(&app->started);
      free(app->workers);
      free(app);
      return NULL;
    }
  }
  return app;
fail:
  tl__http_free(&app->workers[0].http);
  uv_sem_destroy(&app->started);
  free(app->workers);
  free(app);
  return NULL;
}

static void connects_free(tl_app *app) {
  while (app->connects) {
    tl_ws *ws = app->connects;
    app->connects = *tl__wsc_next(ws);
    tl__wsc_discard(ws);
  }
}

void tl_app_free(tl_app *app) {
  if (!app || atomic_load(&app->running))
    return;
  for (unsigned i = 0; i < app->nworkers; i++)
    tl__worker_free(&app->workers[i]);
  if (app->has_backend && app->backend.free)
    app->backend.free(app->backend.ctx);
  tl__app_stop_hooks_free(app);
  tl__app_log_free(app);
  tl__app_listeners_free(app);
  connects_free(app);
  tl__http_free(&app->workers[0].http);
  tl__hub_free(app->hub);
  uv_sem_destroy(&app->started);
  free(app->workers);
  free(app);
}

int tl_app_set_pubsub_backend(tl_app *app, const tl_pubsub_backend *backend) {
  if (!app || !backend)
    return TL_EINVAL;
  if (atomic_load(&app->running) || app->has_backend)
    return TL_ESTATE;
  app->backend = *backend;
  app->has_backend = true;
  for (unsigned i = 0; i < app->nworkers; i++)
    tl__worker_use_backend(&app->workers[i]);
  return 0;
}

void tl_app_set_data(tl_app *app, void *data) {
  app->data = data;
}

void *tl_app_data(const tl_app *app) {
  return app->data;
}

/* Routes are registered on worker 0's HTTP state before listen; the
 * other workers share them from there. */
static tl__http *routes(tl_app *app) {
  return &app->workers[0].http;
}

tl_router *tl_app_router(tl_app *app) {
  return routes(app)->root;
}

int tl_app_use(tl_app *app, tl_middleware mw) {
  return tl_router_use(routes(app)->root, mw);
}

int tl_app_mount(tl_app *app, const char *prefix, tl_router *child) {
  return tl_router_mount(routes(app)->root, prefix, child);
}

int tl_app_route(tl_app *app, const char *method, const char *pattern,
                 tl_handler handler, const tl_middleware *mw, size_t nmw) {
  return tl_router_route(routes(app)->root, method, pattern, handler, mw, nmw);
}

int tl_app_route_opts(tl_app *app, const char *method, const char *pattern,
                      tl_handler handler, const tl_middleware *mw, size_t nmw,
                      const tl_route_options *opts) {
  return tl_router_route_opts(routes(app)->root, method, pattern, handler, mw,
                              nmw, opts);
}

/* The app's shorthands are the root router's. */
#define SHORTHAND(fn)                                                          \
  int tl_app_##fn(tl_app *app, const char *p, tl_handler h) {                  \
    return tl_router_##fn(routes(app)->root, p, h);                               \
  }
SHORTHAND(get)
SHORTHAND(post)
SHORTHAND(put)
SHORTHAND(patch)
SHORTHAND(delete)
SHORTHAND(options)
SHORTHAND(head)
SHORTHAND(all)

int tl_app_ws(tl_app *app, const char *pattern, const tl_ws_handlers *h,
              size_t data_size) {
  return tl_router_ws(routes(app)->root, pattern, h, data_size);
}

int tl_app_ws_route(tl_app *app, const char *pattern, const tl_ws_handlers *h,
                    size_t data_size, const tl_middleware *mw, size_t nmw) {
  return tl_router_ws_route(routes(app)->root, pattern, h, data_size, mw, nmw);
}

bool tl_app_stopping(const tl_app *app) {
  return atomic_load(&app->running) && atomic_load(&app->stopping);
}

int tl_app_ws_observe(tl_app *app, const tl_ws_observer *obs) {
  if (!app)
    return TL_EINVAL;
  /* Before listen on worker 0's list (the others copy it at listen),
   * afterwards on the calling worker's own. */
  return tl__wsctx_observe(&tl__app_here(app)->ws, obs);
}

int tl_app_use_error(tl_app *app, tl_error_middleware mw) {
  return app ? tl_router_use_error(routes(app)->root, mw) : TL_EINVAL;
}

void tl_app_not_found(tl_app *app, tl_handler handler) {
  routes(app)->not_found = handler;
}
