/* talon — rate limiting with a token bucket per client.
 *
 *   tl_rate_limit_options o = {.rate = 5, .burst = 20};
 *   tl_app_use(app, tl_rate_limit(&o));
 *
 * Each client key (by default the peer's IP address) has a bucket of
 * `burst` tokens that refills at `rate` tokens per second. A request takes
 * one token; with none left it is answered 429 Too Many Requests with
 * Retry-After (whole seconds until a token is back, rounded up) and a
 * short text body, and does not reach later middleware or the handler.
 *
 * Memory is bounded: at most `max_keys` buckets are kept, in a hash table
 * with a secret random hash seed (so clients cannot force collisions).
 * When it is full, the least recently used bucket is evicted: that client
 * starts again with a full bucket, so pick `max_keys` above the number of
 * clients active within burst/rate seconds. Time comes from the monotonic
 * clock (tl_hrtime), so wall-clock jumps change nothing.
 *
 * Workers: one table serves the whole app, under a mutex, so a client is
 * counted once whatever worker its connections land on (the limit is
 * app-wide, not per worker). The key callback runs on the request's
 * worker thread, concurrently with itself on other workers.
 *
 * Behind a reverse proxy every request has the proxy's address: give a
 * `key` callback that reads the client from a header the proxy sets.
 * IPv6 clients usually own a whole /64: a key callback can limit by
 * prefix.
 */
#ifndef TALON_MW_RATELIMIT_H
#define TALON_MW_RATELIMIT_H

#include <stdint.h>

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Size of the key buffer handed to a key callback (longest key + NUL). */
#define TL_RATE_LIMIT_KEY_MAX 128

/* Writes the client key for `req` as a NUL-terminated string into `buf`
 * of `size` bytes (TL_RATE_LIMIT_KEY_MAX; longer keys must be truncated
 * by the callback). Returns 0 to count the request against that key, 1 to
 * let it through uncounted (e.g. a trusted health checker), or a negative
 * TL_E* code, which the middleware returns (talon answers 500). `arg` is
 * tl_rate_limit_options.key_arg. */
typedef int (*tl_rate_limit_key_fn)(tl_req *req, char *buf, size_t size,
                                    void *arg);

/* Which rate-limit headers go on every counted response (allowed or
 * limited): Limit (the burst), Remaining (whole tokens left) and Reset
 * (seconds until the bucket is full again), as in the IETF httpapi
 * RateLimit header draft. */
enum {
  TL_RATE_LIMIT_HEADERS_NONE = 0, /* none, only Retry-After on 429 */
  TL_RATE_LIMIT_HEADERS_IETF,     /* RateLimit-Limit/-Remaining/-Reset */
  TL_RATE_LIMIT_HEADERS_X         /* X-RateLimit-Limit/-Remaining/-Reset */
};

/* Options for tl_rate_limit(). A zero field means the default, in
 * brackets. */
typedef struct tl_rate_limit_options {
  /* Tokens added per second (may be fractional: 0.5 is one per 2 s). [10] */
  double rate;
  /* Bucket size: requests allowed at once after a quiet period.
   * [ceil(rate), at least 1] */
  unsigned burst;
  /* Most buckets kept, 1 to 16777216. [10000] */
  size_t max_keys;
  /* Client key; borrowed, like `key_arg`, for the middleware's lifetime.
   * [NULL: tl_req_remote_address(); a request whose address cannot be
   * read counts against the shared key "unknown"; every client of a unix
   * socket listener against "unix:" (behind a proxy there, key on what
   * the proxy says, e.g. X-Forwarded-For)] */
  tl_rate_limit_key_fn key;
  void *key_arg;
  /* TL_RATE_LIMIT_HEADERS_*. [NONE] */
  int headers;
  /* The 429 body, copied. ["Too Many Requests\n"] */
  const char *message;
} tl_rate_limit_options;

/* A rate-limit middleware with `opts` (NULL: defaults) copied. Ownership
 * of its context passes to whoever installs it. Returns a value whose fn
 * is NULL on out of memory or invalid options (negative or non-finite
 * rate, max_keys over the limit, unknown headers value); then tl_app_use
 * returns TL_EINVAL. All bucket memory is freed with the app. */
TL_EXTERN tl_middleware tl_rate_limit(const tl_rate_limit_options *opts);

/* Counters of one rate limiter. */
typedef struct tl_rate_limit_stats {
  size_t keys;        /* buckets held now (never above max_keys) */
  size_t max_keys;    /* the configured bound */
  uint64_t allowed;   /* requests let through */
  uint64_t limited;   /* requests answered 429 */
  uint64_t evicted;   /* buckets dropped to make room */
} tl_rate_limit_stats;

/* Fill `out` with the counters of the rate limiter `mw` (a value returned
 * by tl_rate_limit(), possibly already installed: its ctx stays valid
 * until the app is freed). Any thread (the counters are read under the
 * limiter's lock, summed over all workers). Returns 0, or
 * TL_EINVAL if `mw` is not a rate limiter or `out` is NULL. */
TL_EXTERN int tl_rate_limit_stats_get(const tl_middleware *mw,
                                      tl_rate_limit_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_RATELIMIT_H */
