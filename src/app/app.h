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

struct tl_app {
  tl__server srv;
  tl_app_config opt;
  tl__http http;
  tl__wsctx ws;
  tl__pubsub pubsub;
  void *data;
};

#endif
