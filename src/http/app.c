/* The app: options, the root router, and the server that runs them. */
#include <stdlib.h>
#include <string.h>

#include "app/timer.h"
#include "http/http.h"
#include "ws/wsconn.h"

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

static unsigned min_u(unsigned a, unsigned b) {
  return a < b ? a : b;
}

tl__pmd_shared *tl__app_pmd(tl_app *app) {
  if (!app->pmd)
    app->pmd = calloc(1, sizeof *app->pmd);
  return app->pmd;
}

static void after_flush(void *owner) {
  tl__pubsub_after_flush(owner);
}

tl_app *tl_app_new(const tl_app_config *options) {
  tl_app *app = calloc(1, sizeof *app);
  if (!app)
    return NULL;
  if (options)
    app->opt = *options;
  apply_defaults(&app->opt);
  app->root = tl_router_new();
  if (!app->root || tl__server_init(&app->srv, app) != 0) {
    free(app->root);
    free(app);
    return NULL;
  }
  app->root->app = app;
  tl__pubsub_init(&app->pubsub);
  tl__http_settings_init(&app->settings);
  const tl_app_config *o = &app->opt;
  /* Timeouts are checked by one sweep; a quarter of the shortest timeout
   * keeps them within 25% of their setting, and at most once a second. */
  unsigned shortest = min_u(o->header_timeout_ms, o->keepalive_timeout_ms);
  shortest = min_u(shortest, o->send_timeout_ms);
  unsigned tick = shortest / 4;
  if (tick < 10)
    tick = 10;
  if (tick > 1000)
    tick = 1000;
  app->srv.cfg = (tl__server_config){
      .max_connections = o->max_connections,
      .backlog = o->backlog,
      .shutdown_timeout_ms = o->shutdown_timeout_ms,
      .send_timeout_ms = o->send_timeout_ms,
      .tick_ms = tick,
      .no_signal_handlers = o->no_signal_handlers != 0,
  };
  app->srv.factory = tl__hconn_new;
  app->srv.after_flush = after_flush;
  app->srv.on_stop = tl__app_begin_stop;
  return app;
}

void tl_app_free(tl_app *app) {
  if (!app || app->srv.running)
    return;
  /* Timers started after the last run (or without one) are closed here;
   * closing the loop runs their close callbacks. */
  tl__app_timers_close(app);
  tl__server_close(&app->srv);
  tl__app_stop_hooks_free(app);
  tl__pubsub_free(&app->pubsub);
  if (app->pmd) {
    tl__pmd_shared_free(app->pmd);
    free(app->pmd);
  }
  tl__router_free_compiled(app);
  tl__router_destroy(app->root, true);
  free(app);
}

static void on_listen(tl__server *s) {
  tl_app *app = s->owner;
  if (app->opt.on_listen)
    app->opt.on_listen(app, app->srv.listen_host, s->port);
}

int tl_app_listen(tl_app *app, const char *host, int port) {
  if (!app)
    return TL_EINVAL;
  if (app->srv.running)
    return TL_ESTATE;
  int err = tl__router_compile(app);
  if (err)
    return err;
  err = tl__server_run(&app->srv, host, port, on_listen);
  if (err == 0) {
    /* The loop ended (timers do not keep it alive): the timers still
     * running are stopped and freed, as include/talon/timer.h promises,
     * so nothing of this run is left for the next one. One turn without
     * waiting runs their close callbacks. */
    tl__app_timers_close(app);
    uv_run(&app->srv.loop, UV_RUN_NOWAIT);
  }
  return err;
}

void tl_app_stop(tl_app *app) {
  if (app)
    tl__server_stop(&app->srv);
}

int tl_app_port(const tl_app *app) {
  return app->srv.port;
}

struct uv_loop_s *tl_app_loop(tl_app *app) {
  return &app->srv.loop;
}

void tl_app_set_data(tl_app *app, void *data) {
  app->data = data;
}

void *tl_app_data(const tl_app *app) {
  return app->data;
}

tl_router *tl_app_router(tl_app *app) {
  return app->root;
}

int tl_app_use(tl_app *app, tl_middleware mw) {
  return tl_router_use(app->root, mw);
}

int tl_app_mount(tl_app *app, const char *prefix, tl_router *child) {
  return tl_router_mount(app->root, prefix, child);
}

int tl_app_route(tl_app *app, const char *method, const char *pattern,
                 tl_handler handler, const tl_middleware *mw, size_t nmw) {
  return tl_router_route(app->root, method, pattern, handler, mw, nmw);
}

/* The app's shorthands are the root router's. */
#define SHORTHAND(fn)                                                          \
  int tl_app_##fn(tl_app *app, const char *p, tl_handler h) {                  \
    return tl_router_##fn(app->root, p, h);                                    \
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
  return tl_router_ws(app->root, pattern, h, data_size);
}

int tl_app_ws_observe(tl_app *app, const tl_ws_observer *obs) {
  if (!app || !obs)
    return TL_EINVAL;
  if (app->nobservers == sizeof app->observers / sizeof app->observers[0])
    return TL_ENOMEM;
  app->observers[app->nobservers++] = *obs;
  return 0;
}

void tl_app_not_found(tl_app *app, tl_handler handler) {
  app->not_found = handler;
}
