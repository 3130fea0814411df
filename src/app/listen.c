/* The app's listeners: the listen call's own and the ones added with
 * tl_app_add_listener, each plain or TLS (talon/tls.h). The list is data
 * the server opens, so that every worker can open the same one. */
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/tls.h"

/* Room for the listen call's own at [0]. */
static int ensure_first(tl_app *app) {
  if (app->listen)
    return 0;
  if (!(app->listen = calloc(1, sizeof *app->listen)))
    return TL_ENOMEM;
  app->nlisten = 1;
  return 0;
}

static int set_spec(tl__listen_spec *sp, const char *host, int port) {
  if (port < 0 || port > 65535)
    return TL_EINVAL;
  if (!host)
    host = "";
  size_t n = strlen(host);
  if (n >= sizeof sp->host)
    return TL_EINVAL;
  memcpy(sp->host, host, n + 1);
  sp->port = port;
  return 0;
}

int tl_app_add_listener(tl_app *app, const char *host, int port, tl_tls *tls) {
  if (!app)
    return TL_EINVAL;
  if (atomic_load(&app->running))
    return TL_ESTATE;
  int err = ensure_first(app);
  if (err)
    return err;
  tl__listen_spec sp = {0};
  if ((err = set_spec(&sp, host, port)))
    return err;
  tl__listen_spec *n = realloc(app->listen, (app->nlisten + 1) * sizeof *n);
  if (!n)
    return TL_ENOMEM;
  app->listen = n;
  sp.tls = tl__tls_ref(tls);
  n[app->nlisten++] = sp;
  return 0;
}

int tl__app_listen_prepare(tl_app *app, const char *host, int port,
                           tl_tls *tls) {
  int err = ensure_first(app);
  if (err)
    return err;
  tl__listen_spec *first = &app->listen[0];
  if ((err = set_spec(first, host, port)))
    return err;
  first->tls = tl__tls_ref(tls);
  return 0;
}

void tl__app_listen_done(tl_app *app) {
  tl_tls_free(app->listen[0].tls);
  app->listen[0].tls = NULL;
}

int tl_app_listener_port(const tl_app *app, size_t i) {
  return app ? tl__server_listener_port(&app->workers[0].srv, i) : 0;
}

void tl__app_listeners_free(tl_app *app) {
  for (size_t i = 0; i < app->nlisten; i++)
    tl_tls_free(app->listen[i].tls);
  free(app->listen);
  app->listen = NULL;
  app->nlisten = 0;
}
