/* The HTTP layer of an app: its routes and parser settings. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int tl__http_init(tl__http *http, const tl_app_config *opt, tl_app *app) {
  memset(http, 0, sizeof *http);
  http->opt = opt;
  http->app = app;
  http->root = tl_router_new();
  if (!http->root)
    return TL_ENOMEM;
  http->root->owner = http; /* the app's own: tl_router_free leaves it */
  tl__http_settings_init(&http->settings);
  return 0;
}

void tl__http_free(tl__http *http) {
  tl__router_free_compiled(http);
  tl__router_destroy(http->root, true);
  http->root = NULL;
}
