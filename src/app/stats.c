/* The app's counters (talon/stats.h): each layer of each worker keeps
 * plain counters in its per-loop state (written by that worker only,
 * tl__count); reading sums them over the workers. */
#include <string.h>

#include "app/app.h"

void tl_app_get_stats(const tl_app *app, tl_app_stats *out) {
  memset(out, 0, sizeof *out);
  for (unsigned i = 0; i < app->nworkers; i++) {
    const tl__worker *w = &app->workers[i];
    out->connections += tl__count_read(&w->srv.conns_open);
    out->bytes_in += tl__count_read(&w->srv.bytes_in);
    out->bytes_out += tl__count_read(&w->srv.bytes_out);
    for (int c = 0; c < 6; c++)
      out->responses[c] += tl__count_read(&w->http.cnt.responses[c]);
    out->responses_aborted += tl__count_read(&w->http.cnt.aborted);
    out->ws_upgrades_refused += tl__count_read(&w->http.cnt.upgrades_refused);
    out->websockets += tl__count_read(&w->ws.nopen);
    out->ws_messages_in += tl__count_read(&w->ws.messages_in);
    out->ws_messages_out += tl__count_read(&w->ws.messages_out);
    out->ws_dropped += tl__count_read(&w->ws.dropped);
    out->publishes += tl__count_read(&w->pubsub.publishes);
  }
}

size_t tl_app_ws_count(const tl_app *app) {
  uint64_t n = 0;
  for (unsigned i = 0; i < app->nworkers; i++)
    n += tl__count_read(&app->workers[i].ws.nopen);
  return (size_t)n;
}
