/* WebSocket opening handshake helpers (RFC 6455 section 4.2). Pure: no
 * libuv. */
#ifndef TALON_SRC_WS_HANDSHAKE_H
#define TALON_SRC_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

/* Whether `key` is the base64 encoding of 16 bytes (24 characters, the
 * last two "=="). */
bool tl__ws_key_valid(const char *key, size_t len);

/* Sec-WebSocket-Accept for `key`: base64(SHA-1(key + GUID)), 28
 * characters, written NUL-terminated to `out`. Returns 0 or TL_EINVAL /
 * TL_ENOMEM. */
int tl__ws_accept_key(const char *key, size_t len, char out[29]);

/* Whether the comma-separated Sec-WebSocket-Protocol list (NUL-terminated)
 * holds `name` exactly (subprotocol names are case-sensitive tokens). */
bool tl__ws_protocol_listed(const char *list, const char *name);

#endif
