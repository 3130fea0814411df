/* talon — pub/sub across processes: the backend seam.
 *
 * A backend carries the app's publishes to other processes (through a
 * message bus such as Redis: see talon/redis.h, built on this seam) and
 * brings theirs back. talon tells it two things and it answers with one:
 *
 *   publish   every publish made in this app (tl_ws_publish,
 *             tl_app_publish, on any worker or thread), once, after it
 *             was delivered here: send it out;
 *   interest  the app (all its workers) got its first subscriber of a
 *             topic, or lost its last: listen to that topic out there, or
 *             stop;
 *   tl_app_deliver()   a message that came from outside: delivered to
 *             this app's subscribers on every worker like a publish, but
 *             not handed back to the backend.
 *
 * Threads: `publish` runs on the thread that published (any worker, or a
 * thread of the user's for tl_app_publish), `interest` on the worker
 * where the subscription changed; they may run at the same time on
 * different threads, and two `interest` calls for one topic from
 * different workers may reach the backend in either order: a backend
 * that acts later (on another thread) should ask tl_app_subscriber_count()
 * for the truth. Neither may block. `start` runs each time the app has
 * started listening, `stop` each time it begins to stop, both on worker
 * 0's thread (the place to open and close what the backend keeps on
 * tl_app_loop()); `free` from tl_app_free().
 */
#ifndef TALON_CLUSTER_H
#define TALON_CLUSTER_H

#include "pubsub.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_pubsub_backend {
  /* A publish of this app: `topic` (NUL-terminated) and `data` are valid
   * only during the call; copy what you keep. May be NULL. */
  void (*publish)(void *ctx, const char *topic, const void *data, size_t len,
                  tl_opcode op);
  /* The app's first subscriber of `topic` came (on) or its last left. May
   * be NULL. */
  void (*interest)(void *ctx, const char *topic, bool on);
  /* Every worker listens (worker 0's thread, before the app's on_listen):
   * connect. A non-zero return (a TL_E* or libuv error) makes
   * tl_app_listen() stop the workers and return it. May be NULL. */
  int (*start)(void *ctx, tl_app *app);
  /* The app begins to stop (worker 0's thread): disconnect. May be NULL. */
  void (*stop)(void *ctx);
  /* tl_app_free(): release `ctx`. May be NULL. */
  void (*free)(void *ctx);
  void *ctx;
} tl_pubsub_backend;

/* Install `backend` (copied; one per app) before tl_app_listen(). The
 * backend's `free` runs from tl_app_free() (also when this fails later
 * for another reason, it is the app's once installed). Returns 0,
 * TL_EINVAL (NULL), TL_ESTATE (listening, or a backend is there). */
TL_EXTERN int tl_app_set_pubsub_backend(tl_app *app,
                                        const tl_pubsub_backend *backend);

/* Deliver a message that came from the backend to the subscribers of
 * `topic` on every worker, as tl_app_publish() would, without handing it
 * to the backend. Any thread. Returns like tl_app_publish(). */
TL_EXTERN int tl_app_deliver(tl_app *app, const char *topic, const void *data,
                             size_t len, tl_opcode op);

#ifdef __cplusplus
}
#endif
#endif /* TALON_CLUSTER_H */
