/* Internal: the WebSocket client (client.c). A client socket is a tl_ws
 * whose block also holds its route (the handlers, copied) and its
 * handshake state; it speaks its own protocol to the core until the
 * server's 101 arrives, then ws.c's, like a socket a server accepted. */
#ifndef TALON_SRC_WS_CLIENT_H
#define TALON_SRC_WS_CLIENT_H

#include "ws/wsconn.h"

/* A client socket ready to connect: `url` parsed, `h` and `options`
 * copied, its context block filled. Not on any loop yet. NULL with *err
 * set (TL_EINVAL, TL_ENOMEM) on failure. Any thread. */
tl_ws *tl__wsc_new(const char *url, const tl_ws_handlers *h, size_t data_size,
                   const tl_ws_client_options *options, int *err);
/* Starts connecting on `srv`'s loop (its thread; its `ws` is the layer's
 * state there). The outcome comes through the handlers or on_fail. */
void tl__wsc_start(tl_ws *ws, tl__server *srv);
/* Frees a socket that was never started. */
void tl__wsc_discard(tl_ws *ws);
/* The link of a list of sockets waiting to start (the app's). */
tl_ws **tl__wsc_next(tl_ws *ws);

#endif
