/* The app's counters (talon/stats.h): each layer keeps plain counters in
 * its per-loop state; reading sums them. */
#include <string.h>

#include "app/app.h"

void tl_app_get_stats(const tl_app *app, tl_app_stats *out) {
  memset(out, 0, sizeof *out);
  const tl__server *s = &app->srv;
  out->connections = s->conns_open;
  out->bytes_in = s->bytes_in;
  out->bytes_out = s->bytes_out;
  const tl__http *h = &app->http;
  for (int i = 0; i < 6; i++)
    out->responses[i] = h->responses[i];
  out->responses_aborted = h->responses_aborted;
  const tl__wsctx *w = &app->ws;
  out->websockets = w->nopen;
  out->ws_messages_in = w->messages_in;
  out->ws_messages_out = w->messages_out;
  out->ws_dropped = w->dropped;
  out->ws_upgrades_refused = h->upgrades_refused;
  out->publishes = app->pubsub.publishes;
}
