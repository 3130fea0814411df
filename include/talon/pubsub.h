/* talon — topic publish/subscribe for WebSocket routes.
 *
 *   static void open(tl_ws *ws)  { tl_ws_subscribe(ws, "room:lobby"); }
 *   static void message(tl_ws *ws, const void *p, size_t n, tl_opcode op) {
 *     tl_ws_publish(ws, "room:lobby", p, n, op);   // everyone but me
 *   }
 *   tl_app_publish(app, "room:lobby", "tick", 4, TL_WS_TEXT); // from a timer
 *
 * A publish builds its frame once; every subscriber's connection holds a
 * reference to that one buffer (no copy, also while queued). Messages to
 * one subscriber within one loop turn go out in one write, in the order
 * its direct sends and the publishes it receives happened. Each
 * subscriber's max_backpressure applies to published messages too:
 * over it the message is dropped for that subscriber (its `dropped`
 * handler is told and tl_ws_dropped_count() counts it) or the socket is
 * closed (close_on_backpressure_limit), and the others are unaffected.
 *
 * Topics are NUL-terminated byte strings of 1 to TL_TOPIC_MAX bytes. A
 * topic exists only while it has subscribers: publishing to a topic with
 * none costs a hash lookup.
 *
 * Lifetimes: a socket leaves all its topics when it closes, after its
 * `close` handler has run (so the handler can still list its topics and
 * publish a goodbye to them); the `subscription` handler is told of each.
 * Subscribing, unsubscribing and closing from inside handlers that run
 * during a publish (dropped, close, subscription) is safe: the publish
 * visits the subscribers it started with that are still subscribed.
 *
 * Workers (tl_app_config.workers > 1): topics span the workers. A publish
 * reaches the subscribers on every worker: those of the publishing worker
 * at once, the others' in their next loop turn (the frame, and its
 * compressed forms, built once and shared by reference, never copied per
 * worker), and only workers with subscribers to the topic get it. For one
 * subscriber, the messages of one publishing thread arrive in the order
 * they were published; messages of different workers may interleave.
 * Subscriber counts (tl_app_subscriber_count and the `subscription`
 * handler's) are the app's, over all workers, and exact.
 */
#ifndef TALON_PUBSUB_H
#define TALON_PUBSUB_H

#include "ws.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_TOPIC_MAX 1024

/* Subscribe `ws` to `topic` (copied). Subscribing twice is a no-op.
 * Returns 0; TL_EINVAL for an empty topic, TL_ETOOBIG for one longer than
 * TL_TOPIC_MAX; TL_ESTATE if the socket is closed; TL_ENOMEM. */
TL_EXTERN int tl_ws_subscribe(tl_ws *ws, const char *topic);

/* Leave `topic`. Returns 0, or TL_ENOENT if `ws` was not subscribed. */
TL_EXTERN int tl_ws_unsubscribe(tl_ws *ws, const char *topic);

/* Whether `ws` is subscribed to `topic` (false for an invalid topic). */
TL_EXTERN bool tl_ws_is_subscribed(const tl_ws *ws, const char *topic);

/* The socket's topics: how many, and the i-th (NUL-terminated, valid
 * until the socket leaves that topic; order changes as topics are left). */
TL_EXTERN size_t tl_ws_topic_count(const tl_ws *ws);
TL_EXTERN const char *tl_ws_topic_at(const tl_ws *ws, size_t i);

/* Publish to every subscriber of `topic` except `ws` itself (unless its
 * route sets publish_to_self). `data` is copied once into the shared
 * frame. Returns the frame's size in bytes when every copy was queued
 * without backpressure (copies for other workers count as queued: their
 * subscribers' backpressure shows there, in `dropped` and `drain`); TL_WS_BACKPRESSURE when at least one
 * subscriber is over its backlog (its copy was queued and its `drain` will
 * fire, or its copy was dropped) while some copy was queued;
 * TL_WS_DROPPED (0) when every copy was dropped or nobody (else) is
 * subscribed; TL_EINVAL for a bad opcode or an empty topic, TL_ETOOBIG for
 * a topic longer than TL_TOPIC_MAX; TL_ENOMEM. */
TL_EXTERN int tl_ws_publish(tl_ws *ws, const char *topic, const void *data,
                            size_t len, tl_opcode op);

/* tl_ws_publish() with an explicit compression choice (Bun's
 * publish(topic, msg, compress)): `compress` 1 sends the compressed frame
 * to every subscriber that negotiated permessage-deflate with a
 * context-free compressor (even under its compress_threshold), 0 sends it
 * uncompressed to all, -1 is tl_ws_publish()'s default (compressed for
 * those subscribers from their compress_threshold on). Subscribers whose
 * compressor keeps context get it uncompressed in every case. Returns like
 * tl_ws_publish(); TL_EINVAL for another `compress`. */
TL_EXTERN int tl_ws_publish_ex(tl_ws *ws, const char *topic, const void *data,
                               size_t len, tl_opcode op, int compress);

/* Publish to every subscriber of `topic`. Callable from any thread: on a
 * worker (timers, HTTP handlers) it publishes like tl_ws_publish(); from
 * another thread the frame is built once and handed to every worker with
 * subscribers (returns its size when it went to some, TL_WS_DROPPED when
 * nobody subscribes). Returns like tl_ws_publish(). */
TL_EXTERN int tl_app_publish(tl_app *app, const char *topic, const void *data,
                             size_t len, tl_opcode op);
/* tl_app_publish() with `compress` as in tl_ws_publish_ex(). */
TL_EXTERN int tl_app_publish_ex(tl_app *app, const char *topic,
                                const void *data, size_t len, tl_opcode op,
                                int compress);

/* Subscribers of `topic` on this app: on all its workers (exact), in O(1)
 * (a hash lookup; with workers under the topic table's lock). With one
 * worker call it on the app's thread; with several, from any thread.
 * With a pub/sub backend across processes (talon/cluster.h, the Redis
 * bridge) it stays this process's count: subscribers in other processes
 * are not in it (the `subscription` handler's counts too). The count over
 * every process, where Redis can give it: tl_redis_cluster_count() in
 * talon/redis.h (asynchronous, other processes' part slightly stale). */
TL_EXTERN size_t tl_app_subscriber_count(const tl_app *app, const char *topic);

/* Messages dropped for this socket because of backpressure (direct sends
 * and publishes). Counted in 32 bits per socket: it stops at 4294967295. */
TL_EXTERN size_t tl_ws_dropped_count(const tl_ws *ws);

#ifdef __cplusplus
}
#endif
#endif /* TALON_PUBSUB_H */
