/* Topic registry and fan-out. Internal.
 *
 * A topic holds an array of its subscribers; each socket holds an array of
 * its subscriptions; each entry knows its twin's index, so subscribe and
 * unsubscribe are O(1) (swap-remove), and a topic's subscriber count is
 * read in O(1) after a hash lookup. While a publish walks a topic
 * (`walking` > 0) removals only clear the slot; the array is compacted
 * when the walk ends, so handlers that run during a publish may subscribe,
 * unsubscribe or close freely.
 *
 * The backend seam (talon/cluster.h): a publish made here goes through
 * the registry's publish (local delivery and the other workers), then to
 * `out_publish` once; the backend learns from `interest` when the app (all
 * workers) gets its first subscriber of a topic or loses its last, to
 * subscribe upstream only while needed; what comes back is delivered with
 * tl__pubsub_deliver, which does not go out again. */
#ifndef TALON_SRC_PUBSUB_PUBSUB_H
#define TALON_SRC_PUBSUB_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mail.h"
#include "talon.h"
#include "ws/wsconn.h"

typedef struct tl__topic tl__topic;

/* One of a socket's subscriptions. */
typedef struct tl__sub {
  tl__topic *topic;
  uint32_t idx; /* the socket's slot in topic->subs */
} tl__sub;

/* A socket's subscriptions, one allocation (NULL until the first). */
typedef struct tl__subset {
  uint32_t n, cap;
  tl__sub at[];
} tl__subset;

typedef struct tl__pubsub tl__pubsub;
struct tl__hub;

/* Publishes forwarded to one worker in one loop turn, in the order they
 * happened: a mail for that worker's mailbox (core/mail.h). Each holds
 * its frames (tl__shared_hold) until the receiver has queued them. */
typedef struct tl__xbatch {
  tl__mail mail;
  size_t len, cap; /* bytes of entries in `data` */
  size_t last;     /* where the last entry starts (len > 0) */
  uint64_t data[]; /* entries, 8-byte aligned */
} tl__xbatch;

/* An app's topic registry (one per loop). */
struct tl__pubsub {
  tl__topic **buckets;
  size_t nbuckets;
  size_t ntopics;
  tl__topic *runs; /* topics holding a run buffer */
  tl__wsctx *ws;   /* the sockets' shared state (compression) */
  /* The backend: publish a message to `topic` (len bytes), skipping
   * `exclude` (may be NULL). Default: tl__pubsub_deliver. */
  int (*publish)(tl__pubsub *ps, const char *topic, size_t tlen,
                 const void *data, size_t len, int op, int compress,
                 tl_ws *exclude);
  /* A publish made here (not one delivered from the backend), after it
   * was delivered: once per publish. May be NULL. */
  void (*out_publish)(tl__pubsub *ps, const char *topic, const void *data,
                      size_t len, int op);
  /* The app's first subscriber of `topic` came (on) or its last left,
   * over all workers. May be NULL. */
  void (*interest)(tl__pubsub *ps, const char *topic, bool on);
  /* Workers (tl__pubsub_join): the shared topic table, which worker this
   * registry is, this turn's forwards per worker, and how a batch
   * reaches another worker (the app posts it to its mailbox). */
  struct tl__hub *hub;
  unsigned self, nworkers;
  tl__xbatch **outbox;
  void (*post)(tl__pubsub *ps, unsigned worker, tl__xbatch *b);
  /* Publishes made on this worker (tl_app_get_stats sums them). */
  uint64_t publishes;
};

/* `ws` is the ws layer's state of the same app; its `above` must point at
 * `ps` (sockets find their registry there). */
void tl__pubsub_init(tl__pubsub *ps, tl__wsctx *ws);
void tl__pubsub_free(tl__pubsub *ps);

/* Makes the registry worker `self` of `hub`'s: topics are linked to the
 * hub, counts are app-wide, and publishes reach the other workers'
 * subscribers through `post`, once per loop turn (after_flush). Before
 * the first subscriber. 0 or TL_ENOMEM. */
int tl__pubsub_join(tl__pubsub *ps, struct tl__hub *hub, unsigned self,
                    void (*post)(tl__pubsub *ps, unsigned worker,
                                 tl__xbatch *b));
/* Deliver a batch from another worker to this registry's subscribers
 * (as a local publish would, built frames shared) and free it. */
void tl__pubsub_receive(tl__pubsub *ps, tl__xbatch *b);
/* Free a batch without delivering it. */
void tl__xbatch_free(tl__xbatch *b);
/* A publish from a thread that is no worker: the frame is built once and
 * posted to every worker with subscribers (`hub` NULL: one worker, 0),
 * through `post(arg, worker, batch)`. Returns the frame size when it went
 * to some worker, TL_WS_DROPPED, or an error as tl_app_publish. */
int tl__pubsub_publish_from(struct tl__hub *hub, unsigned nworkers,
                            const char *topic, const void *data, size_t len,
                            tl_opcode op, int compress,
                            void (*post)(void *arg, unsigned worker,
                                         tl__xbatch *b),
                            void *arg);

/* Checks the topic and the opcode, then publishes through the backend.
 * `compress` as in tl_ws_publish_ex. Returns like tl_app_publish. */
int tl__pubsub_publish(tl__pubsub *ps, const char *topic, const void *data,
                       size_t len, tl_opcode op, int compress, tl_ws *exclude);

/* tl__pubsub_publish of a message that came from the backend: not handed
 * back to it. */
int tl__pubsub_publish_in(tl__pubsub *ps, const char *topic, const void *data,
                          size_t len, tl_opcode op);

/* Delivery here and to the other workers' subscribers, without going to
 * the backend: frame once, reference it into every subscriber's queue. */
int tl__pubsub_deliver(tl__pubsub *ps, const char *topic, size_t tlen,
                       const void *data, size_t len, int op, int compress,
                       tl_ws *exclude);

/* Subscribers of `topic` (0 for an invalid or unknown topic): on every
 * worker once joined to a hub (may take the hub's lock), else here. */
size_t tl__pubsub_count(const tl__pubsub *ps, const char *topic);

/* After each flush: post this turn's forwards to the other workers;
 * recycle or release the topics' run buffers. */
void tl__pubsub_after_flush(tl__pubsub *ps);

/* Remove every subscription of a closing socket (subscription handler
 * told of each). */
void tl__pubsub_leave_all(tl_ws *ws);

#endif
