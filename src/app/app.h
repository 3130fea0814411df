/* Internal: the app, the one owner. It holds the server (loop, listener)
 * and one state per layer, and wires them together: the server makes HTTP
 * connections, HTTP hands upgrades to the ws layer, a closing socket
 * leaves its topics, and the flush recycles publish buffers. No layer
 * below knows this struct; each gets its own part. */
#ifndef TALON_SRC_APP_APP_H
#define TALON_SRC_APP_APP_H

#include "core/server.h"
#include "http/http.h"
#include "pubsub/pubsub.h"
#include "talon.h"
#include "ws/wsconn.h"

typedef struct tl__stop_hook {
  tl_app_stop_cb cb;
  void *arg;
} tl__stop_hook;

struct tl_app {
  tl__server srv;
  tl_app_config opt;
  tl__http http;
  tl__wsctx ws;
  tl__pubsub pubsub;
  void *data;
  /* The user's timers (app/timer.c), and what runs when a stop begins. */
  struct tl_timer *timers;
  tl__stop_hook *stop_hooks;
  size_t nstop_hooks;
  /* The listeners tl_app_listen opens (app/listen.c): [0] is the listen
   * call's own, the rest were added with tl_app_add_listener. */
  tl__listen_spec *listen;
  size_t nlisten;
};

/* app/listen.c: sets the listen call's own listener, app->listen[0] (on
 * host:port, with TLS when `tls` is given: a reference is taken), before
 * the server runs on app->listen; _done drops that reference after; the
 * list goes with the app. */
int tl__app_listen_prepare(tl_app *app, const char *host, int port,
                           tl_tls *tls);
void tl__app_listen_done(tl_app *app);
void tl__app_listeners_free(tl_app *app);

#endif
