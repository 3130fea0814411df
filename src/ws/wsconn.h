/* Internal: WebSocket routes and connections. */
#ifndef TALON_SRC_WS_WSCONN_H
#define TALON_SRC_WS_WSCONN_H

#include <stdalign.h>

#include "core/pool.h"
#include "core/server.h"
#include "talon.h"
#include "ws/parser.h"
#include "ws/pmd.h"

/* Per-app compression state: shared streams (one per window size for
 * compressors) and a scratch buffer for (de)compressed messages. */
typedef struct tl__pmd_shared {
  z_stream *deflate[16]; /* by window bits, created on first use */
  /* Window bits 15: one call per message (tl__pmd_deflate_whole), two to
   * three times faster than a reset zlib stream. On first use. */
  struct libdeflate_compressor *whole;
  /* Messages that start no context: inflated in one call when they can
   * be (tl__pmd_inflate_whole). On first use. */
  struct libdeflate_decompressor *unwhole;
  z_stream *inflate;
  tl__buf scratch;    /* compressed output */
  tl__buf scratch_in; /* inflated input */
  tl__buf whole_in;   /* a message's compressed bytes, for unwhole */
} tl__pmd_shared;

/* The ws layer's state in an app (one per loop): what its sockets share.
 * Embedded in the app, which sets `app`, `above` and `on_closed`. */
typedef struct tl__wsctx {
  tl_app *app;         /* the owner, opaque here (tl_ws_app) */
  void *above;         /* the layer above's state (the app's pub/sub
                          registry), opaque here */
  tl__pmd_shared *pmd; /* compression state, on first use */
  tl_ws_observer *observers;
  size_t nobservers, cap_observers;
  /* Counters of this loop (tl_app_get_stats sums them). */
  uint64_t nopen; /* sockets opened and not yet closed (tl_app_ws_count) */
  uint64_t messages_in, messages_out; /* whole messages; out: queued */
  uint64_t dropped;                   /* messages dropped for backpressure */
  /* The client's masks (ws.c): a fast generator's state, seeded from
   * the OS on first use; each frame takes a fresh 32-bit mask. */
  uint64_t mask_state;
  bool mask_seeded;
  /* wss:// trust settings in use on this loop (client.c), kept for the
   * loop's life: loading the system's CA store takes about 20 ms. */
  struct tl__wsc_trust *trust;
  /* Called for every closing socket after its close handler and the
   * observers ran (the app leaves its topics there). May be NULL. */
  void (*on_closed)(tl_ws *ws);
  /* The blocks of this loop's sockets, one pool per block size (a
   * route's context size decides it): see core/pool.h. */
  tl__pool **pools;
  size_t npools;
} tl__wsctx;

/* One cached client TLS context: its CA file (NULL: the system's
 * store) and whether it verifies. */
typedef struct tl__wsc_trust {
  struct tl__wsc_trust *next;
  char *ca_file;
  bool verify;
  struct tl__tls_client_ctx *ctx;
} tl__wsc_trust;

void tl__wsctx_free(tl__wsctx *ctx);
/* Adds an observer (copied). 0, TL_EINVAL or TL_ENOMEM. */
int tl__wsctx_observe(tl__wsctx *ctx, const tl_ws_observer *obs);

/* A registered ws route: the handlers (copied, defaults applied) and the
 * context size. Owned by the router that registered it. */
typedef struct tl__wsroute {
  tl_ws_handlers h;
  size_t data_size;
  size_t max_inflated; /* bytes of a message once inflated */
  /* A client socket's (ws/client.c): each has a route of its own, in its
   * block, and frames it sends are masked. */
  bool client;
  /* Called when the socket closes, after its close handler (a client
   * lets go of what its handshake held). May be NULL. */
  void (*release)(tl_ws *ws);
} tl__wsroute;

/* A compressed message that is inflated over several loop turns (ws.c). */
struct tl__inflating;

/* permessage-deflate state of one connection, allocated only when the
 * extension was agreed. */
typedef struct tl__wspmd {
  tl__pmd_agreed agreed;
  z_stream *deflater; /* dedicated compressor (lazily created) */
  z_stream *inflater; /* dedicated decompressor (lazily created) */
  /* Inflating: the loop turn the budget was last counted in, and the
   * bytes inflated in it. */
  uint32_t turn, spent;
  struct tl__inflating *busy; /* a message being inflated; NULL: none */
} tl__wspmd;

/* One block per open socket, so it is packed: what only some sockets need
 * (compression, topics, a message spanning reads) hangs off a pointer, and
 * what can be derived is not stored (the app is the server's owner; the
 * lifetime deadline follows from the open time). */
struct tl_ws {
  tl__conn conn; /* first: the core's view */
  const tl__wsroute *route;
  tl__wsp parser;
  tl__wspmd *pmd;          /* NULL: no compression */
  struct tl__subset *subs; /* topics (src/pubsub); NULL: none */
  uint32_t dropped;        /* messages dropped for backpressure (saturates) */
  uint8_t state;           /* tl_ws_state, 0 before open */
  bool close_called : 1;
  bool want_drain : 1;
  bool user_paused : 1;
  bool auto_paused : 1;
  bool ping_outstanding : 1;
  bool sent_close : 1;
  bool life_armed : 1; /* the route's max lifetime applies */
  bool error_told : 1; /* the error handler ran */
  tl_ws_stats stats;
  alignas(max_align_t) unsigned char data[];
};

/* The ws layer's state on the connection's loop. */
static inline tl__wsctx *tl__ws_ctx(const tl_ws *ws) {
  return (tl__wsctx *)ws->conn.srv->ws;
}

/* The app a connection belongs to. */
#define tl__ws_app(ws) (tl__ws_ctx(ws)->app)

/* Compresses a message of `len` bytes once with the app's shared
 * (context-free) compressor for `bits`: one deflate, kept only if it is
 * smaller. Returns the scratch buffer holding it (valid until
 * tl__ws_scratch_done), or NULL: send it uncompressed. Used by both
 * tl_ws_send and publish. */
tl__buf *tl__ws_deflate_shared(tl__wsctx *ctx, int bits, const void *data,
                               size_t len);
/* Gives back the scratch buffer's memory after a large message. */
void tl__ws_scratch_done(tl__wsctx *ctx);
/* Whether a published message of `len` bytes goes to `ws` compressed by
 * the shared (context-free) compressor; `compress` as in tl_ws_send_ex. */
bool tl__ws_shares_compressed(const tl_ws *ws, size_t len, int compress);

/* A route's settings: `h` copied with defaults applied. NULL on out of
 * memory. Freed with free(). */
tl__wsroute *tl__wsroute_new(const tl_ws_handlers *h, size_t data_size);
/* The same into `rt`. */
void tl__wsroute_init(tl__wsroute *rt, const tl_ws_handlers *h,
                      size_t data_size);

/* Allocate a connection block of `srv` (whose `ws` is set) with
 * `route->data_size` zeroed bytes of context. NULL on out of memory. */
tl_ws *tl__ws_new(tl__server *srv, const tl__wsroute *route);
/* A client's block (from calloc, freed with free(), not the pool) with
 * `data_size` bytes of context and `extra` zeroed bytes after it
 * (aligned for any type; *extra_out points there), its route and server
 * not set yet. NULL on out of memory. */
tl_ws *tl__ws_alloc(size_t data_size, size_t extra, void **extra_out);
/* Queue a published frame (bytes [off, off+flen) of `f`, built from
 * `data`, `len`, `op`) for `ws` with the same backpressure rules as
 * tl_ws_send. Returns the frame size, TL_WS_BACKPRESSURE, TL_WS_DROPPED
 * (over its backlog limit), or TL_ECLOSED (not open: skipped). */
int tl__ws_queue_shared(tl_ws *ws, tl__shared *f, size_t off, size_t flen,
                        const void *data, size_t len, int op);
/* Queue `count` published frames lying back to back in bytes
 * [off, off+span) of `f` (`payload` bytes of payload together) for `ws`
 * in one piece, when that is what queueing them one by one with
 * tl__ws_queue_shared would do: none over the backlog limit, no client
 * (whose frames are masked). Returns true when done (queued, or `ws`
 * takes nothing: not open, or out of memory), false when the caller must
 * queue them one by one. The caller knows `ws` takes no shared
 * compressed frame. */
bool tl__ws_queue_span(tl_ws *ws, tl__shared *f, size_t off, size_t span,
                       uint32_t count, size_t payload);

/* Open an accepted socket: run `open` (and observers, with the upgrade
 * request; a client socket has none, and observers do not see it), then
 * feed `pre` (frames that came with the handshake). */
void tl__ws_start(tl_ws *ws, tl_req *req, const char *pre, size_t prelen);

/* Free a block that never became a connection (rejected upgrade). */
void tl__ws_discard(tl_ws *ws);

#endif
