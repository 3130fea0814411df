/* talon — server-wide counters, for metrics (the tl_metrics middleware
 * serves them in the Prometheus text format: talon/mw/metrics.h).
 *
 *   tl_app_stats st;
 *   tl_app_get_stats(app, &st);
 *   printf("%llu open sockets\n", (unsigned long long)st.websockets);
 *
 * Gauges say how things are now; every other field counts up from
 * tl_app_new() (never reset). Each worker counts what it handles in its
 * own state (an addition per event, no lock, nothing shared); reading
 * sums the workers.
 */
#ifndef TALON_STATS_H
#define TALON_STATS_H

#include "app.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_app_stats {
  /* Gauges. */
  uint64_t connections; /* TCP connections open (HTTP and WebSocket) */
  uint64_t websockets;  /* WebSockets open (as tl_app_ws_count) */
  /* HTTP: responses finished (sent in full, or given to the kernel), by
   * status class: [1] 1xx (a 101 is an upgrade), [2] 2xx ... [5] 5xx;
   * [0] any other status. Error pages count with their status; requests
   * that could not be read too (400, 408, 413, 431...). */
  uint64_t responses[6];
  /* Responses the client left before their end (not in `responses`). */
  uint64_t responses_aborted;
  /* Bytes read from sockets, and handed to them (HTTP and WebSocket,
   * heads and framing included; sendfile bodies too). */
  uint64_t bytes_in, bytes_out;
  /* WebSocket messages: whole messages received (after reassembly and
   * inflation), messages queued to sockets (each subscriber a publish
   * reached counts one), messages dropped for backpressure (sends and
   * publishes over max_backpressure). */
  uint64_t ws_messages_in, ws_messages_out, ws_dropped;
  /* Upgrade requests on ws routes answered without a 101 (counted by the
   * HTTP layer, whoever answered): bad handshake (400, 426), origin (403),
   * the upgrade handler or a middleware refusing, no memory (503); and
   * the client leaving while the upgrade was undecided (TL_PENDING). */
  uint64_t ws_upgrades_refused;
  /* Publishes (tl_ws_publish, and tl_app_publish made in the app's
   * callbacks or before listening), whatever they reached. A publish
   * from a thread of yours while workers run is not counted. */
  uint64_t publishes;
} tl_app_stats;

/* Fill `out` with the app's counters now: the sum over its workers. Any
 * thread; with several workers running, the others' counters are read as
 * they are at that moment (each is exact on its own). */
TL_EXTERN void tl_app_get_stats(const tl_app *app, tl_app_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TALON_STATS_H */
