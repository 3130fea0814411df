/* talon — a web framework for C: HTTP routes, middleware and WebSocket
 * routes with pub/sub on one listener. Include this umbrella header. */
#ifndef TALON_H
#define TALON_H

#define TALON_VERSION_MAJOR 0
#define TALON_VERSION_MINOR 1
#define TALON_VERSION_PATCH 0

#include "talon/app.h"
#include "talon/common.h"
#include "talon/http.h"
#include "talon/middleware.h"
#include "talon/router.h"
#include "talon/ws.h"
#include "talon/pubsub.h"
#include "talon/mw.h"

#include "talon/timer.h"
#include "talon/util.h"

#endif /* TALON_H */
