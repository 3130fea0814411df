/* The WebSocket connection: frames in through the parser, handlers,
 * sends corked with the rest of the loop turn, backpressure, the closing
 * handshake and timeouts. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libdeflate.h>

#include "core/server.h"
#include "core/tls.h"
#include "ws/wsconn.h"

/* How long we wait for the peer's close frame after sending ours. */
#define CLOSE_TIMEOUT_MS 5000

/* The default limit of a message that arrives compressed, once inflated,
 * when the route sets no max_payload: a few KiB on the wire can inflate
 * to this, and an inflated message is held whole (talon/ws.h). */
#define DEFAULT_MAX_INFLATED (1024 * 1024)

/* The longest message_timeout_s kept: the start of a message is stored as
 * the low 32 bits of the loop time in ms, which tell the time since then
 * exactly up to 49 days. */
#define MAX_MESSAGE_TIMEOUT_S (24u * 24 * 3600)

static uint64_t now_ms(const tl_ws *ws) {
  return tl__server_now(ws->conn.srv);
}

tl__wsroute *tl__wsroute_new(const tl_ws_handlers *h, size_t data_size) {
  tl__wsroute *rt = calloc(1, sizeof *rt);
  if (rt)
    tl__wsroute_init(rt, h, data_size);
  return rt;
}

void tl__wsroute_init(tl__wsroute *rt, const tl_ws_handlers *h,
                      size_t data_size) {
  rt->h = *h;
  rt->data_size = data_size;
  rt->max_inflated = h->max_payload ? h->max_payload : DEFAULT_MAX_INFLATED;
  if (!rt->h.max_payload)
    rt->h.max_payload = 16 * 1024 * 1024;
  if (!rt->h.idle_timeout_s)
    rt->h.idle_timeout_s = 120;
  if (!rt->h.message_timeout_s)
    rt->h.message_timeout_s = 30;
  else if (rt->h.message_timeout_s != TL_WS_NO_TIMEOUT &&
           rt->h.message_timeout_s > MAX_MESSAGE_TIMEOUT_S)
    rt->h.message_timeout_s = MAX_MESSAGE_TIMEOUT_S;
  if (!rt->h.max_backpressure)
    rt->h.max_backpressure = 16 * 1024 * 1024;
  if (rt->h.compression && !(rt->h.compression & (TL_SHARED_DECOMPRESSOR |
                                                  TL_DEDICATED_DECOMPRESSOR)))
    rt->h.compression |= TL_SHARED_DECOMPRESSOR;
  if (rt->h.compress_window_bits < 9 || rt->h.compress_window_bits > 15)
    rt->h.compress_window_bits = 15;
  if (rt->h.compress_mem_level < 1 || rt->h.compress_mem_level > 9)
    rt->h.compress_mem_level = 8;
  if (rt->h.compress_level < 1 || rt->h.compress_level > 9)
    rt->h.compress_level = 1;
  if (!rt->h.compress_threshold)
    rt->h.compress_threshold = 128;
}

static const tl__conn_proto ws_proto;

/* The pool for blocks of `size` bytes on this loop; made on first use
 * when `make` (NULL on out of memory). */
static tl__pool *pool_for(tl__wsctx *ctx, size_t size, bool make) {
  size = (size + 15) & ~(size_t)15;
  for (size_t i = 0; i < ctx->npools; i++)
    if (ctx->pools[i]->size == size)
      return ctx->pools[i];
  if (!make)
    return NULL;
  tl__pool **pools = realloc(ctx->pools, (ctx->npools + 1) * sizeof *pools);
  if (!pools)
    return NULL;
  ctx->pools = pools;
  tl__pool *p = malloc(sizeof *p);
  if (!p)
    return NULL;
  tl__pool_init(p, size);
  pools[ctx->npools++] = p;
  return p;
}

static size_t block_size(const tl__wsroute *route) {
  return sizeof(tl_ws) + route->data_size;
}

tl_ws *tl__ws_new(tl__server *srv, const tl__wsroute *route) {
  tl__pool *pool = pool_for(srv->ws, block_size(route), true);
  tl_ws *ws = pool ? tl__pool_alloc(pool) : NULL;
  if (!ws)
    return NULL;
  ws->conn.srv = srv;
  ws->conn.proto = &ws_proto;
  ws->route = route;
  return ws;
}

/* A client's block comes from calloc: it is made before its loop is
 * known (tl_ws_connect may run on any thread), and clients are few. */
tl_ws *tl__ws_alloc(size_t data_size, size_t extra, void **extra_out) {
  size_t a = alignof(max_align_t);
  size_t at = sizeof(tl_ws) + (data_size + a - 1) / a * a;
  tl_ws *ws = calloc(1, at + extra);
  if (!ws)
    return NULL;
  ws->conn.proto = &ws_proto;
  if (extra_out)
    *extra_out = (char *)ws + at;
  return ws;
}

/* The block goes back to its pool, or to free() for a client's (the
 * connection's memory: the core calls this from its close callback). */
static void release(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  if (ws->route->client)
    free(ws);
  else
    tl__pool_free(pool_for(tl__ws_ctx(ws), block_size(ws->route), false), ws);
}

void tl__ws_discard(tl_ws *ws) {
  free(ws->pmd);
  release(&ws->conn);
}

/* ---- deadlines -------------------------------------------------------- */

/* The end of the route's max lifetime, or 0. */
static uint64_t life_deadline(const tl_ws *ws) {
  if (!ws->life_armed)
    return 0;
  return ws->stats.opened_ms + (uint64_t)ws->route->h.max_lifetime_s * 1000;
}

/* The time the frame or message in progress has to complete ends at this
 * (0: none is in progress, or no limit). Its start is kept as the low 32
 * bits of the loop time; the time since then is exact (timeouts are
 * capped well below 2^32 ms). */
static uint64_t message_deadline(const tl_ws *ws) {
  unsigned s = ws->route->h.message_timeout_s;
  if (s == TL_WS_NO_TIMEOUT || ws->state != TL_WS_OPEN ||
      !tl__wsp_in_progress(&ws->parser))
    return 0;
  uint64_t now = now_ms(ws);
  uint64_t start = now - (uint32_t)((uint32_t)now - ws->parser.since);
  return start + (uint64_t)s * 1000;
}

/* The connection's one deadline: the earliest of `idle` (0: none), the
 * end of its lifetime and that of the message in progress. The idle
 * deadline is not kept apart: when another comes first the socket closes
 * then, and the idle one no longer matters; on_timeout tells them apart
 * by the time. */
static void set_deadline(tl_ws *ws, uint64_t idle) {
  uint64_t d = idle, life = life_deadline(ws), msg = message_deadline(ws);
  if (life && (!d || life < d))
    d = life;
  if (msg && (!d || msg < d))
    d = msg;
  ws->conn.deadline = d;
}

/* Traffic from the peer: push the idle deadline (half of it when we ping
 * quiet peers, so the ping has time to be answered). Bytes of a frame or
 * message that is not complete yet push it too, but never past the time
 * that frame or message has left: a peer that trickles a frame a byte at
 * a time is closed when that time is up. */
static void touch(tl_ws *ws) {
  if (ws->state != TL_WS_OPEN)
    return;
  unsigned s = ws->route->h.idle_timeout_s;
  uint64_t idle = 0;
  if (s != TL_WS_NO_TIMEOUT) {
    uint64_t ms = (uint64_t)s * 1000;
    if (ws->route->h.send_pings)
      ms /= 2;
    ws->ping_outstanding = false;
    idle = now_ms(ws) + ms;
  }
  set_deadline(ws, idle);
}

/* ---- sending ----------------------------------------------------------- */

/* Sends are corked until the end of the loop turn, unless the cork grows
 * past this: then it is flushed early, so a burst of sends finds out about
 * a slow socket (and reports backpressure) instead of piling up memory. */
#define CORK_LIMIT (64 * 1024)

/* A fresh mask for a client's frame: wyrand (a 64-bit multiply-xorshift
 * generator, a few cycles per call) over a per-loop state seeded from the
 * OS. RFC 6455 asks for masks a peer cannot predict from earlier ones;
 * the seed is unpredictable and the state is never shown whole. */
static void next_mask(tl__wsctx *ctx, uint8_t mask[4]) {
  if (!ctx->mask_seeded) {
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
      seed = (uint64_t)(uintptr_t)ctx ^ (uint64_t)uv_hrtime();
    ctx->mask_state = seed;
    ctx->mask_seeded = true;
  }
  ctx->mask_state += UINT64_C(0xa0761d6478bd642f);
  unsigned __int128 t = (unsigned __int128)ctx->mask_state *
                        (ctx->mask_state ^ UINT64_C(0xe7037ed1a0b428db));
  uint64_t r = (uint64_t)(t >> 64) ^ (uint64_t)t;
  memcpy(mask, &r, 4);
}

static int write_frame_rsv(tl_ws *ws, int op, bool rsv1, const void *data,
                           size_t len) {
  uint8_t hdr[14];
  uint8_t mask[4];
  bool client = ws->route->client;
  size_t n;
  if (client) {
    next_mask(tl__ws_ctx(ws), mask);
    n = tl__ws_frame_header_masked(hdr, true, rsv1, op, len, mask);
  } else {
    n = tl__ws_frame_header(hdr, true, rsv1, op, len);
  }
  tl__conn *c = &ws->conn;
  if (!tl__conn_cork(c, n + len))
    return TL_ENOMEM;
  int err = tl__conn_write(c, hdr, n);
  if (!err && client && len) {
    /* Masked while copied into the cork: one pass over the payload. */
    char *at = tl__conn_space(c, len);
    if (at)
      tl__ws_mask_copy((uint8_t *)at, data, len, mask);
    else
      err = TL_ENOMEM;
  } else if (!err) {
    err = tl__conn_write(c, data, len);
  }
  if (!err && c->q && c->q->out.len + c->q->shared_bytes >= CORK_LIMIT)
    tl__conn_flush(c);
  return err;
}

static int write_frame(tl_ws *ws, int op, const void *data, size_t len) {
  return write_frame_rsv(ws, op, false, data, len);
}

/* ---- permessage-deflate ------------------------------------------------ */

static void pmd_shared_free(tl__pmd_shared *ps) {
  for (int i = 0; i < 16; i++) {
    if (ps->deflate[i]) {
      deflateEnd(ps->deflate[i]);
      free(ps->deflate[i]);
      ps->deflate[i] = NULL;
    }
  }
  if (ps->inflate) {
    inflateEnd(ps->inflate);
    free(ps->inflate);
    ps->inflate = NULL;
  }
  libdeflate_free_compressor(ps->whole); /* NULL is fine */
  ps->whole = NULL;
  libdeflate_free_decompressor(ps->unwhole);
  ps->unwhole = NULL;
  tl__buf_free(&ps->scratch);
  tl__buf_free(&ps->scratch_in);
  tl__buf_free(&ps->whole_in);
}

static z_stream *new_deflater(int bits, int mem_level, int level) {
  z_stream *zs = malloc(sizeof *zs);
  if (zs && tl__pmd_deflate_init(zs, bits, mem_level, level) != 0) {
    free(zs);
    zs = NULL;
  }
  return zs;
}

static z_stream *new_inflater(int bits) {
  z_stream *zs = malloc(sizeof *zs);
  if (zs && tl__pmd_inflate_init(zs, bits) != 0) {
    free(zs);
    zs = NULL;
  }
  return zs;
}

/* The app's compression state, created on first use (NULL: out of
 * memory). */
static tl__pmd_shared *pmd_of(tl__wsctx *ctx) {
  if (!ctx->pmd)
    ctx->pmd = calloc(1, sizeof *ctx->pmd);
  return ctx->pmd;
}

void tl__wsctx_free(tl__wsctx *ctx) {
  if (ctx->pmd) {
    pmd_shared_free(ctx->pmd);
    free(ctx->pmd);
    ctx->pmd = NULL;
  }
  while (ctx->trust) {
    tl__wsc_trust *t = ctx->trust;
    ctx->trust = t->next;
    tl__tls_client_ctx_free(t->ctx);
    free(t->ca_file);
    free(t);
  }
  free(ctx->observers);
  ctx->observers = NULL;
  ctx->nobservers = ctx->cap_observers = 0;
  for (size_t i = 0; i < ctx->npools; i++) {
    tl__pool_destroy(ctx->pools[i]);
    free(ctx->pools[i]);
  }
  free(ctx->pools);
  ctx->pools = NULL;
  ctx->npools = 0;
}

int tl__wsctx_observe(tl__wsctx *ctx, const tl_ws_observer *obs) {
  if (!obs)
    return TL_EINVAL;
  if (ctx->nobservers == ctx->cap_observers) {
    size_t cap = ctx->cap_observers ? ctx->cap_observers * 2 : 4;
    tl_ws_observer *o = realloc(ctx->observers, cap * sizeof *o);
    if (!o)
      return TL_ENOMEM;
    ctx->observers = o;
    ctx->cap_observers = cap;
  }
  ctx->observers[ctx->nobservers++] = *obs;
  return 0;
}

tl__buf *tl__ws_deflate_shared(tl__wsctx *ctx, int bits, const void *data,
                               size_t len) {
  tl__pmd_shared *ps = pmd_of(ctx);
  if (!ps)
    return NULL;
  tl__buf *out = &ps->scratch;
  out->len = 0;
  /* libdeflate at level 1 stores any message of up to 51 bytes as it is
   * (its max_passthrough_size, 55 - 4 x level), so a short message that
   * was asked to be compressed (tl_ws_send_ex) takes the zlib stream. */
  if (bits == 15 && len > 51) {
    /* libdeflate's level 1. Each message is compressed on its own, so
     * there is no history to search: on chat text level 1 packed 200 B
     * messages as well as level 6 and 4 KiB ones 2% worse (wire ratio
     * 0.327 against 0.321) for 1.6 / 3 times fewer cycles (bench/README.md,
     * compress_level); zlib's level 6 packs like libdeflate's 6 with
     * about twice the instructions. */
    if (!ps->whole && !(ps->whole = libdeflate_alloc_compressor(1)))
      return NULL;
    return tl__pmd_deflate_whole(ps->whole, data, len, out) == 0 ? out : NULL;
  }
  /* A fresh stream for every message (no context kept), so a frame that
   * is not smaller is not worth sending compressed. Level 1 as above;
   * zlib has no pass-through for short input. */
  if (!ps->deflate[bits])
    ps->deflate[bits] = new_deflater(bits, 8, 1);
  if (!ps->deflate[bits] ||
      tl__pmd_deflate(ps->deflate[bits], data, len, true, out) != 0 ||
      out->len >= len)
    return NULL;
  return out;
}

void tl__ws_scratch_done(tl__wsctx *ctx) {
  if (ctx->pmd)
    tl__buf_reset(&ctx->pmd->scratch, 64 * 1024);
}

static void free_streams(tl_ws *ws) {
  tl__wspmd *pm = ws->pmd;
  if (!pm)
    return;
  /* What zlib's streams hold (zconf.h's memory figures) is noted so that
   * the loop gives it back after a mass close (tl__server_freed). */
  size_t bytes = 0;
  if (pm->deflater) {
    deflateEnd(pm->deflater);
    free(pm->deflater);
    bytes += ((size_t)1 << (pm->agreed.server_bits + 2)) +
             ((size_t)1 << (ws->route->h.compress_mem_level + 9));
  }
  if (pm->inflater) {
    inflateEnd(pm->inflater);
    free(pm->inflater);
    bytes += ((size_t)1 << pm->agreed.client_bits) + 7 * 1024;
  }
  free(pm);
  ws->pmd = NULL;
  tl__server_freed(ws->conn.srv, bytes);
}

/* Compresses a message for `ws` into the app's scratch buffer. Returns
 * the buffer, or NULL (send uncompressed) when compression is not possible
 * or not worth it. */
static tl__buf *compress_for(tl_ws *ws, const void *data, size_t len) {
  int bits = ws->pmd->agreed.server_bits;
  bool dedicated = (ws->route->h.compression & TL_DEDICATED_COMPRESSOR) &&
                   !ws->pmd->agreed.server_no_takeover;
  if (!dedicated)
    return tl__ws_deflate_shared(tl__ws_ctx(ws), bits, data, len);
  tl__pmd_shared *ps = pmd_of(tl__ws_ctx(ws));
  if (!ps)
    return NULL;
  if (!ws->pmd->deflater)
    ws->pmd->deflater = new_deflater(bits, ws->route->h.compress_mem_level,
                                     ws->route->h.compress_level);
  tl__buf *out = &ps->scratch;
  out->len = 0;
  /* A dedicated stream has taken the bytes into its history, so the
   * client must see them compressed, even when not smaller. */
  if (!ws->pmd->deflater ||
      tl__pmd_deflate(ws->pmd->deflater, data, len, false, out) != 0)
    return NULL;
  return out;
}

/* Whether to compress a message of `len` bytes for `ws` (compress: 1, 0,
 * -1 as in tl_ws_send_ex). */
static bool want_compress(const tl_ws *ws, size_t len, int compress) {
  if (!ws->pmd || compress == 0 ||
      !(ws->route->h.compression &
        (TL_SHARED_COMPRESSOR | TL_DEDICATED_COMPRESSOR)))
    return false;
  return compress > 0 || len >= ws->route->h.compress_threshold;
}

bool tl__ws_shares_compressed(const tl_ws *ws, size_t len, int compress) {
  if (ws->route->client)
    return false; /* its frames are masked: built for it alone */
  /* A subscriber can take the once-compressed published frame when its
   * compressor keeps no context (the frame is built by a fresh stream). */
  return want_compress(ws, len, compress) &&
         (ws->pmd->agreed.server_no_takeover ||
          !(ws->route->h.compression & TL_DEDICATED_COMPRESSOR));
}

static void send_close_frame(tl_ws *ws, int code, const char *reason,
                             size_t rlen) {
  uint8_t payload[125];
  size_t n = 0;
  if (code) {
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (rlen > 123)
      rlen = 123;
    if (rlen)
      memcpy(payload + 2, reason, rlen);
    n = 2 + rlen;
  }
  ws->sent_close = true;
  write_frame(ws, TL__WS_OP_CLOSE, payload, n);
}

/* An I/O error on the socket: the app hears of it before `close`. */
static void report_error(tl_ws *ws, int err) {
  if (ws->close_called || ws->state == 0 || ws->error_told)
    return;
  ws->error_told = true;
  if (ws->route->h.error)
    ws->route->h.error(ws, err);
}

/* Runs the close handler once; the socket is unusable afterwards. */
static void report_close(tl_ws *ws, int code, const char *reason, size_t len) {
  if (ws->close_called)
    return;
  ws->close_called = true;
  bool opened = ws->state != 0;
  ws->state = TL_WS_CLOSED;
  if (opened)
    tl__count(&tl__ws_ctx(ws)->nopen, (uint64_t)-1);
  if (opened && ws->route->h.close)
    ws->route->h.close(ws, code, reason ? reason : "", len);
  const tl__wsctx *ctx = tl__ws_ctx(ws);
  for (size_t i = 0; opened && !ws->route->client && i < ctx->nobservers; i++)
    if (ctx->observers[i].close)
      ctx->observers[i].close(ws, code, ctx->observers[i].arg);
  /* After the close handler, so it could still see and publish to its
   * topics. */
  if (ctx->on_closed)
    ctx->on_closed(ws);
}

/* Fail the connection: send a close frame with `code`, tell the user, and
 * close TCP once the frame is out. */
static void fail(tl_ws *ws, int code, const char *reason) {
  if (ws->state == TL_WS_OPEN || ws->state == TL_WS_CLOSING) {
    if (!ws->sent_close)
      send_close_frame(ws, code, reason, strlen(reason));
  }
  report_close(ws, code, reason, strlen(reason));
  tl__conn_end(&ws->conn);
}

/* Stops reading from a socket whose peer does not take its output;
 * on_drain starts again. */
static void pause_inbound(tl_ws *ws) {
  if (ws->auto_paused)
    return;
  ws->auto_paused = true;
  tl__conn_read_stop(&ws->conn);
}

/* Whether a message of `frame` bytes may be queued now. Over
 * max_backpressure it is dropped (counted, `dropped` told) or the socket
 * is closed, per the route's option. A single message larger than the
 * limit still goes out when nothing else is queued. */
static bool admit(tl_ws *ws, size_t frame, const void *data, size_t len,
                  int op) {
  size_t pending = tl__conn_pending(&ws->conn);
  if (pending == 0 || pending + frame <= ws->route->h.max_backpressure)
    return true;
  if (ws->dropped != UINT32_MAX)
    ws->dropped++;
  tl__count(&tl__ws_ctx(ws)->dropped, 1);
  if (ws->route->h.close_on_backpressure_limit) {
    fail(ws, 1008, "backpressure limit");
    return false;
  }
  ws->want_drain = true;
  /* Dropping is the limit at work, so the backlog never passes it: the
   * peer is not reading, and must not go on making us read (and answer,
   * and drop) at full speed. */
  pause_inbound(ws);
  if (ws->route->h.dropped)
    ws->route->h.dropped(ws, data, len, (tl_opcode)op);
  return false;
}

/* The send result once a frame is queued. */
static int queued(tl_ws *ws, size_t frame) {
  tl__conn *c = &ws->conn;
  ws->stats.messages_out++;
  tl__count(&tl__ws_ctx(ws)->messages_out, 1);
  if (c->backlog > 0 || tl__conn_pending(c) > ws->route->h.max_backpressure) {
    ws->want_drain = true;
    return TL_WS_BACKPRESSURE;
  }
  return frame >= (size_t)INT_MAX ? INT_MAX - 1 : (int)frame;
}

static bool sendable(const tl_ws *ws) {
  return ws->state == TL_WS_OPEN && !(ws->conn.flags & TL__CONN_CLOSING);
}

int tl_ws_send(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  return tl_ws_send_ex(ws, data, len, op, -1);
}

int tl_ws_send_ex(tl_ws *ws, const void *data, size_t len, tl_opcode op,
                  int compress) {
  if (op != TL_WS_TEXT && op != TL_WS_BINARY)
    return TL_EINVAL;
  if (!sendable(ws))
    return TL_WS_DROPPED;
  tl__buf *z =
      want_compress(ws, len, compress) ? compress_for(ws, data, len) : NULL;
  const void *payload = z ? z->data : data;
  size_t plen = z ? z->len : len;
  size_t frame = plen + (plen < 126 ? 2 : plen < 65536 ? 4 : 10);
  if (!admit(ws, frame, data, len, op))
    return TL_WS_DROPPED;
  ws->stats.bytes_out += len;
  int werr = write_frame_rsv(ws, op, z != NULL, payload, plen);
  if (z)
    tl__buf_reset(z, 64 * 1024);
  if (werr != 0) {
    report_error(ws, TL_ENOMEM);
    fail(ws, 1011, "out of memory");
    return TL_WS_DROPPED;
  }
  return queued(ws, frame);
}

int tl__ws_queue_shared(tl_ws *ws, tl__shared *f, size_t off, size_t flen,
                        const void *data, size_t len, int op) {
  if (!sendable(ws))
    return TL_ECLOSED;
  if (ws->route->client) /* a client masks every frame: no shared bytes */
    return tl_ws_send_ex(ws, data, len, (tl_opcode)op, -1);
  if (!admit(ws, flen, data, len, op))
    return TL_WS_DROPPED;
  tl__conn *c = &ws->conn;
  if (tl__conn_write_shared(c, f, off, flen) != 0)
    return TL_WS_DROPPED;
  ws->stats.bytes_out += len;
  /* No early flush here: a burst of publishes is meant to reach each
   * subscriber as one run of bytes in one write at the end of the turn
   * (max_backpressure still bounds what may pile up). */
  return queued(ws, flen);
}

bool tl__ws_queue_span(tl_ws *ws, tl__shared *f, size_t off, size_t span,
                       uint32_t count, size_t payload) {
  if (!sendable(ws))
    return true;
  if (ws->route->client)
    return false;
  /* admit() would take every frame of the run: the backlog stays within
   * the limit after the last one (or it is a single frame on an empty
   * queue). Otherwise some are dropped, which goes frame by frame. */
  size_t pending = tl__conn_pending(&ws->conn);
  if (pending + span > ws->route->h.max_backpressure &&
      !(count == 1 && pending == 0))
    return false;
  /* Queued as one frame of `payload` bytes (so that the per-frame path
   * stays the only caller of the connection's write), then counted as
   * `count` messages. */
  if (tl__ws_queue_shared(ws, f, off, span, NULL, payload, 0) > 0 &&
      count > 1) {
    ws->stats.messages_out += count - 1;
    tl__count(&tl__ws_ctx(ws)->messages_out, count - 1);
  }
  return true;
}

size_t tl_ws_dropped_count(const tl_ws *ws) {
  return ws->dropped;
}

int tl_ws_send_text(tl_ws *ws, const char *text) {
  return tl_ws_send(ws, text, text ? strlen(text) : 0, TL_WS_TEXT);
}

int tl_ws_send_binary(tl_ws *ws, const void *data, size_t len) {
  return tl_ws_send(ws, data, len, TL_WS_BINARY);
}

int tl_ws_ping(tl_ws *ws, const void *data, size_t len) {
  if (len > 125)
    return TL_EINVAL;
  if (ws->state != TL_WS_OPEN)
    return TL_WS_DROPPED;
  if (write_frame(ws, TL__WS_OP_PING, data, len) != 0)
    return TL_WS_DROPPED;
  return (int)len + 2;
}

int tl_ws_pong(tl_ws *ws, const void *data, size_t len) {
  if (len > 125)
    return TL_EINVAL;
  if (!sendable(ws))
    return TL_WS_DROPPED;
  /* An unsolicited pong is a heartbeat the peer does not answer (RFC 6455
   * 5.5.3); like a ping it counts against max_backpressure only through
   * the reading pause. */
  if (write_frame(ws, TL__WS_OP_PONG, data, len) != 0)
    return TL_WS_DROPPED;
  return (int)len + 2;
}

/* The codes an endpoint may send in a close frame (RFC 6455 7.4.1 and
 * the IANA registry): 1002 (protocol error) is talon's to send, 1004-1006
 * and 1015 never go on the wire. */
static bool close_code_ok(int code) {
  return code == 1000 || code == 1001 || code == 1003 ||
         (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

int tl_ws_close(tl_ws *ws, int code, const char *reason) {
  size_t rlen = reason ? strlen(reason) : 0;
  if (code != 0 && !close_code_ok(code))
    return TL_EINVAL;
  if (rlen > 123 || (code == 0 && rlen > 0))
    return TL_EINVAL;
  if (ws->state != TL_WS_OPEN)
    return TL_ESTATE;
  send_close_frame(ws, code, reason, rlen);
  ws->state = TL_WS_CLOSING;
  ws->life_armed = false;
  set_deadline(ws, now_ms(ws) + CLOSE_TIMEOUT_MS);
  return 0;
}

void tl_ws_terminate(tl_ws *ws) {
  report_close(ws, 1006, "", 0);
  tl__conn_close(&ws->conn);
}

void tl_ws_cork(tl_ws *ws, void (*fn)(tl_ws *ws, void *arg), void *arg) {
  /* Every send is corked until the end of the loop turn already; this
   * only runs fn. */
  fn(ws, arg);
}

void *tl_ws_data(const tl_ws *ws) {
  return ws->route->data_size ? (void *)ws->data : NULL;
}

int tl_ws_remote_address(const tl_ws *ws, char *buf, size_t size) {
  return tl__conn_peer_name(&ws->conn, buf, size);
}

size_t tl_ws_buffered_amount(const tl_ws *ws) {
  return tl__conn_pending(&ws->conn);
}

tl_ws_state tl_ws_ready_state(const tl_ws *ws) {
  return (tl_ws_state)ws->state;
}

tl_app *tl_ws_app(const tl_ws *ws) {
  return tl__ws_app(ws);
}

void tl_ws_pause(tl_ws *ws) {
  ws->user_paused = true;
  tl__conn_read_stop(&ws->conn);
}

static bool can_read(const tl_ws *ws);

void tl_ws_resume(tl_ws *ws) {
  ws->user_paused = false;
  if (can_read(ws))
    tl__conn_read_start(&ws->conn);
}

/* ---- receiving --------------------------------------------------------- */

/* Whether a data message is delivered. Closing: a server discards data
 * after its close frame; a client still delivers what the server sent
 * before answering ours (wscat prints the replies to its last lines). */
static bool takes_data(const tl_ws *ws) {
  return ws->state == TL_WS_OPEN ||
         (ws->route->client && ws->state == TL_WS_CLOSING);
}

/* Stops the parser once the socket can no longer take messages. */
static int gone(const tl_ws *ws) {
  return ws->state != TL_WS_OPEN || (ws->conn.flags & TL__CONN_CLOSING);
}

/* A client that sends without reading our answers makes its backlog
 * grow: once it passes half of max_backpressure, stop reading until it
 * drains (there is still room for the answers to what was read). */
static void check_inbound(tl_ws *ws) {
  if (tl__conn_pending(&ws->conn) > ws->route->h.max_backpressure / 2)
    pause_inbound(ws);
}

static void fail(tl_ws *ws, int code, const char *reason);
static void feed(tl_ws *ws, char *data, size_t len);

/* Whether talon may read the socket: not paused by the app or for
 * backpressure, and no message is being inflated (what comes after it
 * waits until it is delivered). */
static bool can_read(const tl_ws *ws) {
  return !ws->user_paused && !ws->auto_paused && !(ws->pmd && ws->pmd->busy);
}

/* Bytes one connection may inflate in one loop turn. zlib inflates at
 * 0.3-2 GB/s, so this is a few milliseconds at most; a message that
 * inflates to more goes on in later turns, other connections being served
 * in between. (Inflated in one go, ten 64 MiB bombs of 61 KB each held
 * the loop for seconds.) */
#define INFLATE_BUDGET (1024 * 1024)

/* The most a message may inflate to for the one-call path: larger ones
 * take the zlib stream (at most this much inflating is then redone). */
#define WHOLE_MAX (64 * 1024)

/* A compressed message inflated over several loop turns. Its compressed
 * bytes are copied (they were in the parser's buffer or the receive
 * buffer, both gone after the read), and so are the bytes that followed
 * it: they are parsed once the message is delivered, and the socket is
 * not read until then, so messages keep their order. */
typedef struct tl__inflating {
  tl__work work; /* first: the deferred list hands back this pointer */
  tl_ws *ws;
  z_stream *zs; /* the dedicated stream, or a copy of the shared one */
  bool own_zs;  /* zs is that copy */
  uint8_t op;
  uint32_t utf8;   /* validation state of `out` so far (text) */
  tl__pmd_msg msg; /* its `in` points into `in` */
  tl__buf in;      /* compressed bytes not yet inflated */
  tl__buf out;     /* inflated so far */
  tl__buf rest;    /* input that came after the message */
} inflating;

static void free_inflating(inflating *f) {
  if (f->own_zs) {
    inflateEnd(f->zs);
    free(f->zs);
  }
  tl__buf_free(&f->in);
  tl__buf_free(&f->out);
  tl__buf_free(&f->rest);
  free(f);
}

static const char *inflate_failure(int code) {
  return code == 1009   ? "message too big"
         : code == 1011 ? "out of memory"
                        : "invalid compressed data";
}

/* What `ws` may still inflate in this loop turn. */
static size_t budget_left(tl_ws *ws) {
  tl__wspmd *pm = ws->pmd;
  uint32_t turn = tl__server_turn(ws->conn.srv);
  if (pm->turn != turn) {
    pm->turn = turn;
    pm->spent = 0;
  }
  return pm->spent < INFLATE_BUDGET ? INFLATE_BUDGET - pm->spent : 0;
}

/* Inflates more of `m` into `out`, as much as the turn's budget allows
 * (at most one byte more, so that a message of exactly the budget is
 * done in one turn); a text message's UTF-8 check (*utf8) follows the
 * output. Returns as tl__pmd_inflate_some, with 1007 also for text that
 * is not UTF-8. */
static int inflate_slice(tl_ws *ws, z_stream *zs, tl__pmd_msg *m, int op,
                         tl__buf *out, uint32_t *utf8) {
  size_t left = budget_left(ws);
  if (!left)
    return TL__PMD_MORE;
  size_t before = out->len;
  int rc = tl__pmd_inflate_some(zs, m, ws->route->max_inflated, left, 0, out);
  size_t made = out->len - before;
  ws->pmd->spent += (uint32_t)made;
  if (rc != 0 && rc != TL__PMD_MORE)
    return rc;
  if (op == TL_WS_TEXT) {
    *utf8 = tl__utf8_validate(*utf8, (const uint8_t *)out->data + before, made);
    if (*utf8 == TL__UTF8_REJECT || (rc == 0 && *utf8 != TL__UTF8_ACCEPT))
      return 1007;
  }
  return rc;
}

/* The stream that inflates the messages of `ws`; *fresh: whether each
 * message starts a new stream. NULL on out of memory. */
static z_stream *inflater_for(tl_ws *ws, tl__pmd_shared *ps, bool *fresh) {
  /* A shared stream starts fresh for every message (the client agreed to
   * client_no_context_takeover); a dedicated one only if the client said
   * it resets. */
  if (ws->route->h.compression & TL_DEDICATED_DECOMPRESSOR) {
    if (!ws->pmd->inflater)
      /* The peer's window: 15 from a client (the server never asks for
       * less), what the server agreed to for a client socket. */
      ws->pmd->inflater = new_inflater(ws->pmd->agreed.client_bits);
    *fresh = ws->pmd->agreed.client_no_takeover;
    return ws->pmd->inflater;
  }
  if (!ps->inflate)
    ps->inflate = new_inflater(15);
  *fresh = true;
  return ps->inflate;
}

static void inflate_more(tl__work *w);

/* The message's first slice used up the turn's budget: it moves to its
 * connection (its output so far, a copy of the compressed bytes still to
 * go, and of the shared stream, which the next message of any connection
 * resets), reading stops, and the next slice runs next turn. Returns
 * TL__PMD_MORE, or 1011 on out of memory. */
static int defer_inflate(tl_ws *ws, z_stream *zs, const tl__pmd_msg *m, int op,
                         uint32_t utf8, tl__buf *out) {
  inflating *f = calloc(1, sizeof *f);
  if (!f)
    return 1011;
  f->ws = ws;
  f->zs = zs;
  f->op = (uint8_t)op;
  f->utf8 = utf8;
  f->msg = *m;
  if (zs != ws->pmd->inflater) {
    f->zs = malloc(sizeof *f->zs);
    if (!f->zs || inflateCopy(f->zs, zs) != Z_OK) {
      free(f->zs);
      free(f);
      return 1011;
    }
    f->own_zs = true;
  }
  if (tl__buf_append(&f->in, m->in, m->in_len) != 0) {
    free_inflating(f);
    return 1011;
  }
  f->msg.in = (const uint8_t *)f->in.data;
  f->out = *out; /* the scratch buffer's memory goes with the message */
  *out = (tl__buf){0};
  f->work.fn = inflate_more;
  ws->pmd->busy = f;
  tl__conn_read_stop(&ws->conn);
  tl__server_defer(ws->conn.srv, &f->work);
  return TL__PMD_MORE;
}

/* Inflates a compressed message, as far as the connection's budget for
 * this turn goes. Returns 0 with the message in *out (the app's inbound
 * scratch buffer), TL__PMD_MORE when it goes on in later turns
 * (ws->pmd->busy), or a close code: 1007 corrupt or not UTF-8, 1009 too
 * big, 1011 out of memory. The size limit applies to the inflated
 * message, and inflating stops as soon as it is passed: a bomb costs
 * nothing past the limit. */
static int inflate_message(tl_ws *ws, int op, uint8_t *data, size_t len,
                           tl__buf **out) {
  tl__pmd_shared *ps = pmd_of(tl__ws_ctx(ws));
  bool fresh = true;
  z_stream *zs = ps ? inflater_for(ws, ps, &fresh) : NULL;
  if (!zs)
    return 1011;
  tl__buf *o = &ps->scratch_in;
  o->len = 0;
  /* A message that starts no context, in one call when it can be
   * (small enough for this turn's budget and the route's limit). */
  size_t cap = budget_left(ws);
  if (cap > WHOLE_MAX)
    cap = WHOLE_MAX;
  if (cap > ws->route->max_inflated)
    cap = ws->route->max_inflated;
  if (fresh && cap > 0 &&
      (ps->unwhole || (ps->unwhole = libdeflate_alloc_decompressor()))) {
    int rc =
        tl__pmd_inflate_whole(ps->unwhole, data, len, cap, &ps->whole_in, o);
    if (rc == 0) {
      ws->pmd->spent += (uint32_t)o->len;
      if (op == TL_WS_TEXT &&
          tl__utf8_validate(TL__UTF8_ACCEPT, (const uint8_t *)o->data,
                            o->len) != TL__UTF8_ACCEPT) {
        tl__buf_reset(o, 64 * 1024);
        return 1007;
      }
      *out = o;
      return 0;
    }
    if (rc < 0)
      return 1011;
  }
  tl__pmd_msg m;
  if (tl__pmd_inflate_start(zs, &m, data, len, fresh) != 0)
    return 1011;
  uint32_t utf8 = TL__UTF8_ACCEPT;
  int rc = inflate_slice(ws, zs, &m, op, o, &utf8);
  if (rc == TL__PMD_MORE)
    rc = defer_inflate(ws, zs, &m, op, utf8, o);
  if (rc == 0)
    *out = o;
  else if (rc != TL__PMD_MORE)
    tl__buf_reset(o, 64 * 1024);
  return rc;
}

/* Hands a whole message to the app. */
static void deliver(tl_ws *ws, int op, const void *data, size_t len) {
  ws->stats.messages_in++;
  tl__count(&tl__ws_ctx(ws)->messages_in, 1);
  ws->stats.bytes_in += len;
  if (ws->route->h.message)
    ws->route->h.message(ws, data, len, (tl_opcode)op);
  check_inbound(ws);
}

/* The next slice of a message being inflated, on a later loop turn; once
 * it is whole, it is delivered, the input that followed it is parsed and
 * reading resumes. */
static void inflate_more(tl__work *w) {
  inflating *f = (inflating *)w;
  tl_ws *ws = f->ws;
  tl__conn *c = &ws->conn;
  int rc = -1; /* not open any more: dropped, like data after a close */
  if (takes_data(ws)) {
    rc = inflate_slice(ws, f->zs, &f->msg, f->op, &f->out, &f->utf8);
    if (rc == TL__PMD_MORE) {
      tl__server_defer(c->srv, w);
      return;
    }
  }
  /* Detached first: a message handler that closes the socket must not
   * free what is being delivered. */
  ws->pmd->busy = NULL;
  tl__buf rest = f->rest;
  f->rest = (tl__buf){0};
  if (rc > 0)
    fail(ws, rc, inflate_failure(rc));
  else if (rc == 0)
    deliver(ws, f->op, f->out.data, f->out.len);
  free_inflating(f);
  if (!(c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING)) && rest.len)
    feed(ws, rest.data, rest.len);
  tl__buf_free(&rest);
  if (!(c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING)) && can_read(ws))
    tl__conn_read_start(c);
}

static int on_message(void *ud, int op, uint8_t *data, size_t len,
                      bool compressed) {
  tl_ws *ws = ud;
  if (!takes_data(ws))
    return 0;
  tl__buf *out = NULL;
  if (compressed) {
    int rc = inflate_message(ws, op, data, len, &out);
    if (rc == TL__PMD_MORE)
      return TL__WSP_PAUSE; /* the rest of the input waits for it */
    if (rc) {
      fail(ws, rc, inflate_failure(rc));
      return 1;
    }
    data = (uint8_t *)out->data;
    len = out->len;
  }
  deliver(ws, op, data, len);
  if (out) /* one large message must not pin its memory */
    tl__buf_reset(out, 64 * 1024);
  return gone(ws) && ws->state != TL_WS_CLOSING;
}

static int on_control(void *ud, int op, uint8_t *data, size_t len) {
  tl_ws *ws = ud;
  if (op == TL__WS_OP_PING) {
    if (ws->state == TL_WS_OPEN) {
      write_frame(ws, TL__WS_OP_PONG, data, len);
      if (ws->route->h.ping)
        ws->route->h.ping(ws, data, len);
      /* Pongs count against max_backpressure like any output: a peer
       * that pings without reading is paused, not buffered for. */
      check_inbound(ws);
    }
  } else if (ws->route->h.pong && takes_data(ws)) {
    ws->route->h.pong(ws, data, len);
  }
  return gone(ws) && ws->state != TL_WS_CLOSING;
}

static int on_close_frame(void *ud, int code, const char *reason, size_t len) {
  tl_ws *ws = ud;
  if (ws->state == TL_WS_OPEN) {
    /* The peer starts the closing handshake: echo its code. */
    ws->state = TL_WS_CLOSING;
    send_close_frame(ws, code == 1005 ? 0 : code, NULL, 0);
  }
  report_close(ws, code, reason, len);
  tl__conn_end(&ws->conn); /* the server closes TCP first (RFC 6455 7.1.1) */
  return 1;
}

static const tl__wsp_callbacks parser_cb = {
    .on_message = on_message,
    .on_control = on_control,
    .on_close = on_close_frame,
};

static void feed(tl_ws *ws, char *data, size_t len) {
  ws->parser.began = false;
  size_t used = 0;
  int rc =
      tl__wsp_feed_ex(&ws->parser, (uint8_t *)data, len, &parser_cb, ws, &used);
  if (rc == TL__WSP_PAUSED) {
    /* A compressed message goes on in later turns (ws->pmd->busy): what
     * came after it waits for it. */
    if (tl__buf_append(&ws->pmd->busy->rest, data + used, len - used) != 0)
      fail(ws, 1011, "out of memory");
  } else if (rc > 0) {
    const char *why = rc == 1007   ? "invalid UTF-8"
                      : rc == 1009 ? "message too big"
                      : rc == 1011 ? "out of memory"
                                   : "protocol error";
    fail(ws, rc, why);
  }
  /* A frame or message that began in these bytes and is not complete
   * starts its time now (touch() then keeps the deadline within it). */
  if (ws->parser.began)
    ws->parser.since = (uint32_t)now_ms(ws);
  touch(ws);
}

static void on_read(tl__conn *c, char *data, size_t len) {
  tl_ws *ws = (tl_ws *)c;
  if (c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING))
    return;
  if (ws->pmd && ws->pmd->busy) {
    /* Reading started again (after a drain) while a message is being
     * inflated: these bytes come after it. */
    if (tl__buf_append(&ws->pmd->busy->rest, data, len) != 0)
      fail(ws, 1011, "out of memory");
    tl__conn_read_stop(c);
    return;
  }
  feed(ws, data, len);
}

static void on_eof(tl__conn *c, int status) {
  tl_ws *ws = (tl_ws *)c;
  if (status != UV_EOF)
    report_error(ws, status); /* a read error: ECONNRESET, ... */
  report_close(ws, 1006, "", 0);
  tl__conn_close(c);
}

static void on_drain(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  if (ws->auto_paused) {
    ws->auto_paused = false;
    if (!ws->user_paused)
      tl__conn_read_start(c);
  }
  if (ws->want_drain && ws->state == TL_WS_OPEN) {
    ws->want_drain = false;
    if (ws->route->h.drain)
      ws->route->h.drain(ws);
  }
}

static void on_timeout(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  uint64_t now = now_ms(ws);
  if (ws->state == TL_WS_CLOSING) {
    /* The peer never answered our close frame. */
    report_close(ws, 1006, "", 0);
    tl__conn_close(c);
    return;
  }
  uint64_t life = life_deadline(ws);
  if (life && now >= life) {
    ws->life_armed = false;
    tl_ws_close(ws, 1000, "max lifetime");
    return;
  }
  uint64_t msg = message_deadline(ws);
  if (msg && now >= msg) {
    /* A frame or message was begun and not finished in time. */
    fail(ws, 1008, "message timeout");
    return;
  }
  if (ws->route->h.send_pings && !ws->ping_outstanding) {
    ws->ping_outstanding = true;
    write_frame(ws, TL__WS_OP_PING, NULL, 0);
    set_deadline(ws, now + (uint64_t)ws->route->h.idle_timeout_s * 500);
    return;
  }
  fail(ws, 1001, "idle timeout");
}

static void on_shutdown(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  if (ws->state == TL_WS_OPEN)
    fail(ws, 1001, ws->route->client ? "going away" : "server shutting down");
  else
    tl__conn_end(c);
}

static void on_close(tl__conn *c) {
  tl_ws *ws = (tl_ws *)c;
  if (c->error)
    report_error(ws, c->error); /* a write error (EPIPE, ECONNRESET) */
  report_close(ws, 1006, "", 0);
  if (ws->pmd && ws->pmd->busy) {
    tl__server_cancel(c->srv, &ws->pmd->busy->work);
    free_inflating(ws->pmd->busy);
    ws->pmd->busy = NULL;
  }
  tl__wsp_free(&ws->parser);
  free_streams(ws);
  if (ws->route->release)
    ws->route->release(ws);
}

static const tl__conn_proto ws_proto = {
    .on_read = on_read,
    .on_eof = on_eof,
    .on_drain = on_drain,
    .on_timeout = on_timeout,
    .on_shutdown = on_shutdown,
    .on_close = on_close,
    .release = release,
};

void tl_ws_get_stats(const tl_ws *ws, tl_ws_stats *stats) {
  *stats = ws->stats;
}

void tl__ws_start(tl_ws *ws, tl_req *req, const char *pre, size_t prelen) {
  tl__conn *c = &ws->conn;
  c->proto = &ws_proto; /* a client's handshake had its own */
  tl__wsp_init(&ws->parser);
  ws->parser.max_payload = ws->route->h.max_payload;
  ws->parser.allow_rsv1 = ws->pmd != NULL;
  ws->parser.client = ws->route->client;
  ws->state = TL_WS_OPEN;
  tl__count(&tl__ws_ctx(ws)->nopen, 1);
  ws->stats.opened_ms = now_ms(ws);
  ws->life_armed = ws->route->h.max_lifetime_s != 0;
  set_deadline(ws, 0); /* the lifetime alone, if idle timeouts are off */
  touch(ws);
  if (ws->route->h.open)
    ws->route->h.open(ws);
  const tl__wsctx *ctx = tl__ws_ctx(ws);
  for (size_t i = 0; req && !gone(ws) && i < ctx->nobservers; i++)
    if (ctx->observers[i].open)
      ctx->observers[i].open(ws, req, ctx->observers[i].arg);
  /* Also when `open` started to close: a close frame may be among them. */
  if (prelen && !(c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING)))
    feed(ws, (char *)pre, prelen);
  if (!(c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING)) && can_read(ws))
    tl__conn_read_start(c);
}
