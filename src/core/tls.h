/* The TLS engine (tls.c): the shared server context (struct tl_tls of
 * talon/tls.h: certificates by name, policy, reload) and one OpenSSL
 * object per connection driven through memory: ciphertext in from the
 * loop's receive buffer, ciphertext out into a buffer the caller writes.
 * It knows nothing of connections or libuv (conn.c drives it), so the
 * same engine serves a TLS client later, and a fuzzer can feed it alone.
 *
 * Threads: a tl_tls is shared (its current certificates are swapped
 * under its lock, OpenSSL's SSL_CTX is safe to share once set up); a
 * tl__tls belongs to one connection, on one loop thread.
 */
#ifndef TALON_SRC_CORE_TLS_H
#define TALON_SRC_CORE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "talon/tls.h"

typedef struct tl__tls tl__tls;

/* What tl__tls_read found. */
enum {
  TL__TLS_AGAIN = 0, /* all input used: wait for more */
  TL__TLS_MORE,      /* the plaintext buffer is full: call again */
  TL__TLS_EOF,       /* the peer sent close_notify */
  TL__TLS_FAIL,      /* a protocol error or a refused handshake:
                      * tl__tls_error() says why; close */
  TL__TLS_PLAIN,     /* the first bytes are plain HTTP, not TLS */
};

/* The per-connection state the connection keeps on it while the
 * handshake runs: its start, and the deadline the protocol had set
 * (restored, shifted by the handshake's duration, when it completes). */
typedef struct tl__tls_clock {
  uint64_t started_ms;
  uint64_t saved_deadline;
  /* The peer's address as text, taken at the accept: the log names the
   * peer even after it has gone (getpeername fails then). */
  char peer[48];
} tl__tls_clock;

/* A server-side connection state using `ctx`'s current certificates.
 * NULL on out of memory. */
tl__tls *tl__tls_new_server(tl_tls *ctx);
/* The client side. A client context holds trust settings: with
 * `verify`, the server's certificate must chain to `ca_file` (PEM) or,
 * when that is NULL, to the system's CA store (about 20 ms to load, so a
 * loop keeps its contexts); without it, nothing about the certificate is
 * checked. It offers ALPN http/1.1 and TLS 1.2 at least. Counted
 * references on one loop's thread (not atomic). NULL on failure, with the
 * reason in `err`. */
typedef struct tl__tls_client_ctx tl__tls_client_ctx;
tl__tls_client_ctx *tl__tls_client_ctx_new(const char *ca_file, bool verify,
                                           char *err, size_t errsize);
/* Drops a reference (NULL: nothing). */
void tl__tls_client_ctx_free(tl__tls_client_ctx *cc);
/* A client-side state (taking a reference to `cc`) for a connection to
 * `host`: a DNS name, sent as SNI and, with `verify` (as `cc` was made),
 * checked against the certificate; or an IP literal, checked against its
 * IP subjectAltNames. NULL on out of memory. */
tl__tls *tl__tls_new_client(tl__tls_client_ctx *cc, const char *host,
                            bool verify);
bool tl__tls_is_client(const tl__tls *t);
/* Whether the state failed (tl__tls_error says why). */
bool tl__tls_failed(const tl__tls *t);
void tl__tls_free(tl__tls *t);
/* The context it was made from (NULL for a client), and its handshake
 * timeout (ms). */
tl_tls *tl__tls_ctx(const tl__tls *t);
unsigned tl__tls_handshake_timeout(const tl_tls *ctx);
tl__tls_clock *tl__tls_clock_of(tl__tls *t);

/* Ciphertext arrived: `p` is borrowed until tl__tls_keep_input (which
 * copies what tl__tls_read has not used yet) or the next tl__tls_read
 * that uses it all. Appended after what is kept. 0 or TL_ENOMEM. */
int tl__tls_input(tl__tls *t, const char *p, size_t n);
/* Copies the unused part of the borrowed input into the state's own
 * buffer (the receive buffer is about to be reused). 0 or TL_ENOMEM. */
int tl__tls_keep_input(tl__tls *t);
/* Advances the handshake and decrypts into `buf` (`cap` bytes); *got is
 * the plaintext produced, possibly with a non-AGAIN status. Anything to
 * send (handshake messages, alerts, tickets) is appended to `out`. */
int tl__tls_read(tl__tls *t, char *buf, size_t cap, size_t *got, tl__buf *out);
/* Encrypts `n` bytes into `out` (records of up to 16 KiB; one call makes
 * as few records as the length allows). Only after the handshake. 0,
 * TL_ESTATE (handshaking or failed) or TL_ENOMEM. */
int tl__tls_write(tl__tls *t, const void *p, size_t n, tl__buf *out);
/* Appends a close_notify alert to `out` (once; nothing while the
 * handshake is unfinished). */
void tl__tls_close_notify(tl__tls *t, tl__buf *out);
bool tl__tls_handshaking(const tl__tls *t);
/* Whether any input has arrived yet. */
bool tl__tls_seen(const tl__tls *t);
/* Whether input is kept or decrypted bytes wait inside OpenSSL: a reader
 * that paused must be fed again without waiting for the socket. */
bool tl__tls_has_input(const tl__tls *t);
/* The last failure's reason (static text or the state's own buffer). */
const char *tl__tls_error(const tl__tls *t);
/* Fills `info` (see talon/tls.h). */
void tl__tls_info(const tl__tls *t, tl_tls_info *info);
const char *tl__tls_server_name(const tl__tls *t);

/* Reports `what` about peer `peer` (rate limited, see tl_tls_config.log)
 * through the context's log, or when it has none through `sink` with
 * `arg`, as "tls: PEER: WHAT"; with neither, nowhere. */
void tl__tls_log(tl_tls *ctx, const char *peer, const char *what,
                 void (*sink)(void *arg, const char *line), void *arg);

/* Context references for listeners (the app's and the workers'). */
tl_tls *tl__tls_ref(tl_tls *ctx);

#endif
