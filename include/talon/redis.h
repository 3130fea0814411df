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
 * (all its workers), exact and synchronous; other nodes' subscribers are
 * not in it. tl_redis_cluster_count() below asks for the count over every
 * node (each node keeps its own counts in Redis; see there for how stale).
 *
 * Commands: tl_redis_command() sends any Redis command from a worker on
 * that worker's own connection (opened at start, on the worker's loop, so
 * a round trip never blocks a loop) and calls back on the same thread.
 * The Redis session store (tl_redis_session_store) is built on it. A
 * process thus holds 2 + workers connections to Redis.
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
  /* Connect timeout at start [2000 ms]; it also bounds the wait for the
   * answers to the setup commands (AUTH, PING) at start and after each
   * reconnect: a Redis that accepts the connection and stays silent is
   * treated as unreachable (tl_app_listen fails with UV_ETIMEDOUT, or
   * local-only with start_without_redis). */
  unsigned connect_timeout_ms;
  /* A command of tl_redis_command() (so a session lookup) not answered
   * in this time fails with UV_ETIMEDOUT, and its connection is closed
   * (the next command opens another) [2000 ms]. A stop waits at most
   * this long for the replies to publishes already sent (a Redis that
   * went silent cannot hold tl_app_listen() from returning); what is
   * still unanswered then counts as dropped. */
  unsigned command_timeout_ms;
  /* Cluster-wide subscriber counts (tl_redis_cluster_count) [0: off].
   * When set, every node writes its own count of each topic it has
   * subscribers of into Redis this often (ms; one small script per topic
   * per period, on worker 0's command connection), and a node's count
   * older than three periods (a node that died) is not counted. */
  unsigned cluster_count_ms;
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
  uint64_t commands;       /* tl_redis_command()s answered by Redis */
  uint64_t command_errors; /* ... failed: lost, timed out, refused (a
                            * session write lost this way is counted
                            * here) */
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

/* ---- commands -------------------------------------------------------------
 *
 * Every worker has its own command connection to Redis (the same URL,
 * password and database as the bridge), opened on its loop when the app
 * starts and again on demand after a loss. Commands of one worker are
 * sent in the order they were made and answered in that order. */

enum { /* tl_redis_reply.type (the RESP2 types) */
       TL_REDIS_STRING = 1,
       TL_REDIS_ARRAY,
       TL_REDIS_INTEGER,
       TL_REDIS_NIL,
       TL_REDIS_STATUS, /* +OK and friends: str */
       TL_REDIS_ERROR   /* -ERR ...: str */
};

typedef struct tl_redis_reply {
  int type;               /* TL_REDIS_* */
  long long integer;      /* TL_REDIS_INTEGER */
  const char *str;        /* STRING, STATUS, ERROR (NUL-terminated too) */
  size_t len;             /* of str */
  size_t elements;        /* TL_REDIS_ARRAY */
  const struct tl_redis_reply *element; /* `elements` replies */
} tl_redis_reply;

/* The answer to a command: `status` 0 and `reply` (valid only during the
 * call; copy what you keep), or a negative code and `reply` NULL:
 * UV_ETIMEDOUT (no answer within command_timeout_ms), TL_EIO (the
 * connection was lost, or Redis refused it), TL_ECLOSED (the app is
 * stopping). A Redis error reply is status 0 with type TL_REDIS_ERROR. */
typedef void (*tl_redis_reply_cb)(tl_redis *r, int status,
                                  const tl_redis_reply *reply, void *arg);

/* Send the command `argv[0..argc-1]` (each `lens[i]` bytes, binary-safe;
 * `lens` NULL: NUL-terminated strings; all copied) on the calling
 * worker's connection. Call it on a worker's thread of the app while it
 * listens (a handler, a WebSocket callback, a timer, a reply callback).
 * `cb` (may be NULL: fire and forget) runs later on the same thread,
 * exactly once if this returns 0, never inside this call. A command made
 * while the connection is up is handed to the kernel before this returns,
 * so it reaches Redis before any answer this loop turn sends to a client
 * (a session written by a request is there before the client can use it
 * on another process). Returns 0; TL_EINVAL (NULL or empty
 * argument); TL_ESTATE (not on a worker's thread, or the app is not
 * listening); UV_ECONNREFUSED (Redis was unreachable less than
 * reconnect_min_ms ago: fails fast instead of piling up); TL_ENOMEM. */
TL_EXTERN int tl_redis_command(tl_redis *r, int argc, const char *const *argv,
                               const size_t *lens, tl_redis_reply_cb cb,
                               void *arg);

/* ---- state in Redis beside topics ----------------------------------------
 *
 * An app that keeps a topic's past in Redis (a chat room's history in a
 * list, say) and its present on the topic reads the past after
 * subscribing. A read made before this process's SUBSCRIBE is active at
 * Redis could miss a message published in between (published before the
 * subscription, stored after the read); tl_redis_await_subscription()
 * closes that gap. */

/* A status for the caller: 0 or a negative code. */
typedef void (*tl_redis_done_cb)(tl_redis *r, int status, void *arg);

/* Call `cb` on the calling worker's thread once this process's
 * subscription to `topic`'s channel is active at Redis: with status 0,
 * a command this worker sends from then on (tl_redis_command, inside the
 * callback or later) is processed by Redis after the SUBSCRIBE, so a
 * message published to the topic after that command reaches this
 * process. At once (a coming loop turn) when it is active already. Call it after subscribing a socket
 * (tl_ws_subscribe); `topic` is copied. Failures: TL_ENOENT (no
 * subscriber of the topic here any more), TL_EIO (the connection to
 * Redis is down or was lost first), TL_ECLOSED (the app is stopping).
 * `cb` runs exactly once if this returns 0. Returns 0, TL_EINVAL,
 * TL_ESTATE (not on a worker's thread) or TL_ENOMEM. */
TL_EXTERN int tl_redis_await_subscription(tl_redis *r, const char *topic,
                                          tl_redis_done_cb cb, void *arg);

/* ---- subscriber counts over every node ------------------------------------
 *
 * tl_app_subscriber_count() is this process's count (exact, at once).
 * PUBSUB NUMSUB would count Redis subscriptions, that is processes, not
 * sockets; so with cluster_count_ms set each node keeps its count of a
 * topic in the hash PREFIX "count:" TOPIC (field: its node id; value: the
 * count and Redis's time), and a query sums the fresh fields. */

/* The answer: `status` 0 and `count` (subscribers of the topic on every
 * node) and `version` (grows with every report any node makes for this
 * topic: of two answers, the one with the higher version is the newer
 * count), or a negative status (as tl_redis_reply_cb's). */
typedef void (*tl_redis_count_cb)(tl_redis *r, int status, long long count,
                                  long long version, void *arg);

/* Ask Redis for the number of subscribers of `topic` over every node. In
 * the same atomic step this node's own count is written first, so it is
 * exact for this node at the moment of the call; another node's part is
 * as of its last report: its last call of this function for the topic
 * or its periodic refresh, at most cluster_count_ms old (a node reports
 * 0 when its last subscriber of the topic leaves and when it stops; one
 * that died is dropped after 3 * cluster_count_ms). Call on a worker's thread; `cb`
 * runs later on it, exactly once if this returns 0. Returns 0,
 * TL_EINVAL, TL_ESTATE (cluster_count_ms is 0, or as tl_redis_command),
 * or tl_redis_command's errors. */
TL_EXTERN int tl_redis_cluster_count(tl_redis *r, const char *topic,
                                     tl_redis_count_cb cb, void *arg);

/* ---- sessions ---------------------------------------------------------- */

typedef struct tl_redis_session_options {
  /* Key prefix ["talon:sess:"]: a session is the string key PREFIX ID. */
  const char *prefix;
  /* A session unused this long is deleted by Redis (its key's TTL,
   * restarted by every request that reads it: GETEX ... EX) [1800 s]. */
  unsigned idle_timeout_s;
} tl_redis_session_options;

/* Fill `*out` with a session store (talon/mw/session.h, the asynchronous
 * form) that keeps sessions in Redis through tl_redis_command(), for
 * tl_session_options.store. Every process on the same Redis sees the same
 * sessions: a user signed in through one is signed in on all, and a
 * logout through one ends the session everywhere. Expiry is Redis's:
 * keys carry the idle timeout as TTL (the session options' idle and
 * absolute timeouts and max_sessions are not used). Redis unreachable or
 * not answering: a request that carries a session cookie is answered 503
 * (the session middleware's rule for a failing lookup), requests without
 * one are not affected. The store's ctx is freed by the session
 * middleware; `r` must outlive it (the app frees both). Returns 0,
 * TL_EINVAL, TL_ENOMEM. */
struct tl_session_store;
TL_EXTERN int tl_redis_session_store(tl_redis *r,
                                     const tl_redis_session_options *options,
                                     struct tl_session_store *out);

#ifdef __cplusplus
}
#endif
#endif /* TALON_REDIS_H */
