/* tl_ws_connect: which loop a client socket goes to (ws/client.c does
 * the rest). */
#include <stdlib.h>

#include "app/app.h"
#include "ws/client.h"

/* A tl_app_call from a foreign thread: the socket starts on the worker
 * that runs this. */
static void start_here(tl_app *app, void *arg) {
  tl__worker *w = tl__app_here(app);
  tl__wsc_start(arg, &w->srv);
}

int tl_ws_connect(tl_app *app, const char *url, const tl_ws_handlers *h,
                  size_t data_size, const tl_ws_client_options *options) {
  if (!app)
    return TL_EINVAL;
  /* A stopping app takes no new socket (and a failure callback that
   * reconnects does not recurse on the shutdown's failures). */
  if (atomic_load(&app->running) && atomic_load(&app->stopping))
    return TL_ESTATE;
  int err = 0;
  tl_ws *ws = tl__wsc_new(url, h, data_size, options, &err);
  if (!ws)
    return err;
  tl__worker *w = *tl__app_current();
  if (w && w->app == app) {
    tl__wsc_start(ws, &w->srv);
    return 0;
  }
  if (!atomic_load(&app->running)) {
    /* Before the loops run: worker 0 starts it (listen_on). */
    *tl__wsc_next(ws) = app->connects;
    app->connects = ws;
    return 0;
  }
  err = tl_app_call(app, 0, start_here, ws);
  if (err)
    tl__wsc_discard(ws);
  return err;
}
