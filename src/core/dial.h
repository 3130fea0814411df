/* Outgoing connections (dial.c): resolve a host name with libuv's
 * getaddrinfo (IPv4 and IPv6, on the thread pool: the loop never
 * blocks), then connect to its addresses in the order the resolver gives
 * them, the next when one fails. Knows nothing of what the connection
 * speaks. */
#ifndef TALON_SRC_CORE_DIAL_H
#define TALON_SRC_CORE_DIAL_H

#include <stdbool.h>

#include "core/conn.h"

typedef struct tl__dial tl__dial;

/* Called once when the dial ends: `status` 0 (the socket is c's,
 * ready to read and write), or a libuv error: of the resolver when `dns`
 * (UV_EAI_NONAME: no such host, ...), else of the last address tried
 * (UV_ECONNREFUSED, UV_ENETUNREACH, ...). The dial is gone when this
 * runs. */
typedef void (*tl__dial_cb)(tl__conn *c, int status, bool dns);

/* Starts connecting `c` (a zeroed block with its proto set) to
 * `host`:`port`: c's handle is made on `s`'s loop on a placeholder socket and
 * the server adopts `c` at once, so it has a deadline, is asked to shut
 * down and can be closed like any connection while the dial runs (close
 * it only through tl__conn_close, after tl__dial_cancel). Returns the
 * dial, or NULL with *err set (TL_ENOMEM, the resolver's error, or
 * socket()'s (UV_EMFILE): then
 * `c` is adopted and must be closed by the caller; `done` never runs). */
tl__dial *tl__dial_start(tl__server *s, tl__conn *c, const char *host, int port,
                         tl__dial_cb done, int *err);
/* The connection is closing before the dial ended: `done` never runs,
 * and the dial frees itself once libuv gives back its requests. */
void tl__dial_cancel(tl__dial *d);

#endif
