/* talon — a metrics endpoint: the app's counters (talon/stats.h) in the
 * Prometheus text format (version 0.0.4), for a scraper.
 *
 *   tl_app_use(app, tl_metrics(NULL));        // GET /metrics
 *   tl_app_use(app, tl_metrics(&(tl_metrics_options){
 *       .path = "/internal/metrics", .prefix = "chat_"}));
 *
 * Answers GET and HEAD on exactly `path` (the query string aside) and
 * passes every other request on. Use it at app level, before middleware
 * that should not see scrapes (a logger), or on a router behind an
 * authentication middleware: the counters say how busy the server is.
 *
 * Metrics (with the default prefix "talon_"): connections and websockets
 * (gauges); http_responses_total{class="1xx".."5xx","other"},
 * http_responses_aborted_total, bytes_received_total, bytes_sent_total,
 * ws_messages_received_total, ws_messages_sent_total,
 * ws_messages_dropped_total, ws_upgrades_refused_total,
 * pubsub_publishes_total (counters). A scrape sees the counts up to the
 * request before it.
 */
#ifndef TALON_MW_METRICS_H
#define TALON_MW_METRICS_H

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_metrics_options {
  /* The path served ["/metrics"]; must start with '/'. Copied. */
  const char *path;
  /* Prefix of every metric name ["talon_"]: letters, digits and '_'
   * (the first not a digit), or ":" . Copied. */
  const char *prefix;
} tl_metrics_options;

/* The middleware (`opts` copied; NULL: defaults). On a bad option or out
 * of memory, fn is NULL and error is TL_EINVAL or TL_ENOMEM: tl_app_use
 * then returns that error. */
TL_EXTERN tl_middleware tl_metrics(const tl_metrics_options *opts);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_METRICS_H */
