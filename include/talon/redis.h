/* talon — topics shared between processes through Redis (libtalon_redis,
 * built when hiredis is found; link it after libtalon).
 *
 *   tl_redis *r;
 *   tl_redis_attach(app, &(tl_redis_options){.url = getenv("REDIS_URL")}, &r);
 *   tl_app_listen(app, "0.0.0.0", 3000);   // publishes now cross processes
 *
 * Built on the backend seam of talon/cluster.h, nothing private. Every
 * process (node) has an id of 16 random bytes. A publish is delivered to
 * this process's subscribers at once, as without Redis, and sent to Redis
 * once (PUBLISH to PREFIX + topic, tagged with the node id and opcode);
 * what arrives from Redis from another node is delivered to this
 * process's subscribers like a local publish (built once, batched per
 * loop turn); a node drops its own messages. The process SUBSCRIBEs to a
 * topic's channel only while it has subscribers of that topic (on any
 * worker). Per publisher, order is kept end to end. Binary-safe.
 *
 * The bridge runs on worker 0's loop with two connections (one to publish,
 * one subscribed). When Redis goes away, local delivery goes on; the
 * bridge reconnects with backoff (reconnect_min_ms doubling up to
 * reconnect_max_ms) and subscribes again to every active topic; publishes
 * made meanwhile wait in a buffer of max_buffer_bytes, then are dropped
 * and counted (tl_redis_get_stats). The same bound applies to publishes
 * sent and not yet acknowledged by a slow Redis. A Redis that answers
 * garbage or closes mid-reply is a lost connection, nothing worse.
 *
 * Subscriber counts: tl_app_subscriber_count() stays this process's count
 * (all its workers); other nodes' subscribers are not counted.
 */
#ifndef TALON_REDIS_H
#define TALON_REDIS_H

#include "cluster.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_redis tl_redis;

typedef struct tl_redis_options {
  /* redis://[:PASSWORD@]HOST[:PORT][/DB] (HOST an IPv4 or IPv6 literal or
   * a name; PORT 6379); NULL or "" is an error. Copied. */
  const char *url;
  /* Overrides the URL's password when set. */
  const char *password;
  /* Channel prefix ["talon:"]: a topic T is the channel PREFIX T. */
  const char *prefix;
  /* Bytes of publishes that may wait for Redis (down, or slow to
   * acknowledge) [8 MiB]; beyond, publishes are dropped and counted. */
  size_t max_buffer_bytes;
  /* Reconnect backoff [100 ms doubling to 5000 ms]. */
  unsigned reconnect_min_ms, reconnect_max_ms;
  /* Redis unreachable when the app starts: 0 makes tl_app_listen() fail
   * (a libuv error: UV_ECONNREFUSED, UV_ETIMEDOUT...); 1 starts anyway,
   * local only, and keeps trying. */
  int start_without_redis;
  /* Connect timeout at start [2000 ms]. */
  unsigned connect_timeout_ms;
} tl_redis_options;

enum { /* tl_redis_stats.state */
       TL_REDIS_IDLE,        /* the app is not listening */
       TL_REDIS_CONNECTING,  /* first connection under way */
       TL_REDIS_UP,          /* both connections ready */
       TL_REDIS_DOWN         /* lost; reconnecting with backoff */
};

typedef struct tl_redis_stats {
  uint64_t forwarded;  /* publishes Redis acknowledged */
  uint64_t received;   /* messages from other nodes delivered here */
  uint64_t own;        /* messages of this node that came back, dropped */
  uint64_t dropped;    /* publishes lost: buffer full, or lost in flight */
  uint64_t malformed;  /* messages on our channels not in talon's format */
  uint64_t reconnects; /* connections established again after a loss */
  size_t buffered;     /* bytes waiting for Redis now */
  size_t channels;     /* channels subscribed now */
  int state;           /* TL_REDIS_* */
} tl_redis_stats;

/* Install the Redis bridge on `app` (before tl_app_listen; one per app).
 * It connects when the app listens. `*out` (may be NULL) receives the
 * bridge, owned by the app (freed by tl_app_free). Returns 0, TL_EINVAL
 * (bad options or URL), TL_ESTATE (listening, or a backend is installed),
 * TL_ENOMEM. */
TL_EXTERN int tl_redis_attach(tl_app *app, const tl_redis_options *options,
                              tl_redis **out);

/* A snapshot of the bridge's counters; any thread. 0 or TL_EINVAL. */
TL_EXTERN int tl_redis_get_stats(const tl_redis *r, tl_redis_stats *out);

/* This node's id as 32 hex digits and a NUL into `buf` (33 bytes). */
TL_EXTERN void tl_redis_node_id(const tl_redis *r, char buf[33]);

#ifdef __cplusplus
}
#endif
#endif /* TALON_REDIS_H */
