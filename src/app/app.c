/* The app: options, lifecycle (listen, stop, signals through the
 * server) and the wiring of the layers; see app.h. */
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/timer.h"

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

static void after_flush(void *owner) {
  tl_app *app = owner;
  tl__pubsub_after_flush(&app->pubsub);
}

/* A closing socket leaves its topics (after its close handler ran). */
static void ws_closed(tl_ws *ws) {
  tl__pubsub_leave_all(ws);
}

tl_app *tl_app_new(const tl_app_config *options) {
  tl_app *app = calloc(1, sizeof *app);
  if (!app)
    return NULL;
  if (options)
    app->opt = *options;
  apply_defaults(&app->opt);
  if (tl__http_init(&app->http, &app->opt, app) != 0 ||
      tl__server_init(&app->srv, app) != 0) {
    tl__http_free(&app->http);
    free(app);
    return NULL;
  }
  app->ws.app = app;
  app->ws.above = &app->pubsub;
  app->ws.on_closed = ws_closed;
  app->http.upgrade_ctx = &app->ws;
  tl__pubsub_init(&app->pubsub, &app->ws);
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
  app->srv.factory_arg = &app->http;
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
  tl__wsctx_free(&app->ws);
  tl__http_free(&app->http);
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
  int err = tl__router_compile(&app->http);
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
  return app->http.root;
}

int tl_app_use(tl_app *app, tl_middleware mw) {
  return tl_router_use(app->http.root, mw);
}

int tl_app_mount(tl_app *app, const char *prefix, tl_router *child) {
  return tl_router_mount(app->http.root, prefix, child);
}

int tl_app_route(tl_app *app, const char *method, const char *pattern,
                 tl_handler handler, const tl_middleware *mw, size_t nmw) {
  return tl_router_route(app->http.root, method, pattern, handler, mw, nmw);
}

/* The app's shorthands are the root router's. */
#define SHORTHAND(fn)                                                          \
  int tl_app_##fn(tl_app *app, const char *p, tl_handler h) {                  \
    return tl_router_##fn(app->http.root, p, h);                               \
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
  return tl_router_ws(app->http.root, pattern, h, data_size);
}

int tl_app_ws_route(tl_app *app, const char *pattern, const tl_ws_handlers *h,
                    size_t data_size, const tl_middleware *mw, size_t nmw) {
  return tl_router_ws_route(app->http.root, pattern, h, data_size, mw, nmw);
}

bool tl_app_stopping(const tl_app *app) {
  return app->srv.running && app->srv.stopping;
}

size_t tl_app_ws_count(const tl_app *app) {
  return app->ws.nopen;
}

int tl_app_ws_observe(tl_app *app, const tl_ws_observer *obs) {
  if (!app)
    return TL_EINVAL;
  return tl__wsctx_observe(&app->ws, obs);
}

int tl_app_use_error(tl_app *app, tl_error_middleware mw) {
  return app ? tl_router_use_error(app->http.root, mw) : TL_EINVAL;
}

void tl_app_not_found(tl_app *app, tl_handler handler) {
  app->http.not_found = handler;
}

int tl_app_publish(tl_app *app, const char *topic, const void *data, size_t len,
                   tl_opcode op) {
  return tl__pubsub_publish(&app->pubsub, topic, data, len, op, NULL);
}

size_t tl_app_subscriber_count(const tl_app *app, const char *topic) {
  return tl__pubsub_count(&app->pubsub, topic);
}
