/* The server's own messages (tl_app_on_log) and middleware attach.
 *
 * The hooks are added on the setting-up thread, before the workers start
 * (also by a middleware's attach, which tl_app_listen runs before it
 * starts them), and only read while they run: no lock. */
#include <stdlib.h>

#include "app/app.h"

int tl_app_on_log(tl_app *app, tl_app_log_fn fn, void *arg) {
  if (!app || !fn)
    return TL_EINVAL;
  if (app->log_fixed)
    return TL_ESTATE;
  for (size_t i = 0; i < app->nlog_hooks; i++)
    if (app->log_hooks[i].fn == fn && app->log_hooks[i].arg == arg)
      return 0;
  tl__log_hook *h =
      realloc(app->log_hooks, (app->nlog_hooks + 1) * sizeof *h);
  if (!h)
    return TL_ENOMEM;
  h[app->nlog_hooks++] = (tl__log_hook){fn, arg};
  app->log_hooks = h;
  return 0;
}

void tl__app_log(void *worker, const char *line) {
  tl_app *app = ((tl__worker *)worker)->app;
  for (size_t i = 0; i < app->nlog_hooks; i++)
    app->log_hooks[i].fn(app->log_hooks[i].arg, line);
}

static int attach_one(const tl_middleware *mw, void *app) {
  return mw->attach ? mw->attach(mw->ctx, app) : 0;
}

int tl__app_attach(tl_app *app) {
  int err = tl__router_each_mw(app->workers[0].http.root, attach_one, app);
  app->log_fixed = true;
  return err;
}

void tl__app_log_unfix(tl_app *app) {
  app->log_fixed = false;
}

void tl__app_log_free(tl_app *app) {
  free(app->log_hooks);
  app->log_hooks = NULL;
  app->nlog_hooks = 0;
}
