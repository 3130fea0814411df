/* talon — the built-in middleware (each header documents its options).
 * Every one is written only against the public API in include/talon/. */
#ifndef TALON_MW_H
#define TALON_MW_H

#include "mw/body.h"
#include "mw/compress.h"
#include "mw/cookies.h"
#include "mw/cors.h"
#include "mw/csrf.h"
#include "mw/logger.h"
#include "mw/metrics.h"
#include "mw/ratelimit.h"
#include "mw/requestid.h"
#include "mw/security.h"
#include "mw/session.h"
#include "mw/sse.h"
#include "mw/static.h"

#endif /* TALON_MW_H */
