/* talon — a web framework for C: HTTP routes, middleware and WebSocket
 * routes with pub/sub on one listener. This umbrella header is the core
 * API; the built-in middleware is <talon/mw.h>. */
#ifndef TALON_H
#define TALON_H

#define TALON_VERSION_MAJOR 0
#define TALON_VERSION_MINOR 1
#define TALON_VERSION_PATCH 0

#include "talon/app.h"
#include "talon/common.h"
#include "talon/error.h"
#include "talon/http.h"
#include "talon/middleware.h"
#include "talon/router.h"
#include "talon/ws.h"
#include "talon/pubsub.h"
#include "talon/cluster.h"
#include "talon/stats.h"

#include "talon/timer.h"
#include "talon/util.h"

#endif /* TALON_H */
