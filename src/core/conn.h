/* The transport core's types and its connection I/O (conn.c): the
 * server's state that connections write through (tl__server), connections
 * with corked writes, a backlog, two-phase close and coarse timeouts.
 * Knows nothing of HTTP: a protocol plugs in through tl__conn_proto. The
 * server's lifecycle is core/server.h.
 *
 * Connection lifetime:
 *  1. tl__server accepts a socket and asks the factory for a connection
 *     block (protocol state first, tl__conn embedded in it).
 *  2. Reads arrive in the server's one receive buffer (valid only during
 *     proto->on_read); the protocol copies what it must keep.
 *  3. Writes are appended to the connection's cork buffer and flushed once
 *     per loop turn (uv_check) with one sendmsg; what the kernel does not
 *     take is queued on the connection (the backlog) and written when
 *     the socket is writable again.
 *  4. tl__conn_close() calls proto->on_close at once (the protocol
 *     releases its state and tells the user), then uv_close; the block is
 *     freed in the close callback, after the loop turn.
 */
#ifndef TALON_SRC_CORE_CONN_H
#define TALON_SRC_CORE_CONN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "core/buf.h"

typedef struct tl__server tl__server;
typedef struct tl__conn tl__conn;

typedef struct tl__conn_proto {
  /* Bytes arrived. `data` is the server's receive buffer: writable, valid
   * only during the call. */
  void (*on_read)(tl__conn *c, char *data, size_t len);
  /* The peer closed its side or the read failed (`status` < 0). */
  void (*on_eof)(tl__conn *c, int status);
  /* The backlog fell to zero after a write had to queue. */
  void (*on_drain)(tl__conn *c);
  /* tl__conn_wake was called: runs in the loop turn's flush phase,
   * before the flush. */
  void (*on_wake)(tl__conn *c);
  /* The deadline passed. */
  void (*on_timeout)(tl__conn *c);
  /* The server is shutting down: finish or close. */
  void (*on_shutdown)(tl__conn *c);
  /* The connection is closing: last call before the memory goes. */
  void (*on_close)(tl__conn *c);
  /* Frees the connection's block (after libuv closed its handle). NULL:
   * free(). */
  void (*release)(tl__conn *c);
} tl__conn_proto;

enum {
  TL__CONN_CLOSING = 1u << 0,  /* tl__conn_close() ran */
  TL__CONN_READING = 1u << 1,  /* the protocol reads (tl__conn_read_start) */
  TL__CONN_DIRTY = 1u << 2,    /* on the flush list */
  TL__CONN_ENDING = 1u << 3,   /* close once the backlog is written */
  TL__CONN_LINGER = 1u << 4,   /* write side shut: discard input until EOF */
  TL__CONN_PEER_EOF = 1u << 5, /* the peer's FIN was read */
  TL__CONN_STALL = 1u << 6,    /* output waits for the peer (taken_at) */
  TL__CONN_WAKE = 1u << 7,     /* on_wake is due */
  TL__CONN_COUNTED = 1u << 8,  /* counted in the server's conns_open */
  TL__CONN_FEED = 1u << 9,     /* TLS input waits for a resumed reader */
  TL__CONN_RDONE = 1u << 10,   /* the socket's read side ended (EOF, error) */
  TL__CONN_SHUT = 1u << 11,    /* shut the write side once the backlog is out */
  TL__CONN_ARM_R = 1u << 12,   /* the poll handle watches readable */
  TL__CONN_ARM_W = 1u << 13,   /* the poll handle watches writable */
  TL__CONN_UNIX = 1u << 14,    /* a unix domain socket, not TCP */
};

/* A reference-counted byte block written to many connections without a
 * copy (a published WebSocket frame, a caller-owned response body).
 * Created with one reference.
 *
 * `refs` counts references on the thread that uses the block, without
 * atomics. A block crosses to another worker's thread as a "hold"
 * (tl__shared_hold, counted atomically in `holders`, of which the owning
 * thread's references together are one); the other thread wraps it in a
 * proxy (tl__shared_proxy), a block of its own whose `data` points into
 * the original, so the per-subscriber references stay thread-local and
 * cost no atomic operation. The bytes are read-only once shared. */
typedef struct tl__shared tl__shared;
struct tl__shared {
  uint32_t refs;
  _Atomic uint32_t holders; /* threads holding the original; 1: its owner */
  tl__shared *origin;       /* a proxy's original; NULL: not a proxy */
  char *data;               /* the bytes: `bytes`, or the original's */
  size_t len;               /* bytes used (the owner's; 0 in a proxy) */
  size_t cap;               /* bytes allocated; data never moves */
  /* A wrapped block (tl__shared_wrap, the owner's bytes): called once
   * with `data` and `release_arg` when the last hold goes. */
  void (*release)(void *data, void *arg);
  void *release_arg;
  char bytes[];
};

/* A block of `cap` bytes, `len` 0, one reference. NULL on out of memory. */
tl__shared *tl__shared_new(size_t cap);
/* A block over the caller's `len` bytes at `data` (not copied; len and
 * cap are `len`), one reference; `release` (may be NULL) runs when the
 * last reference goes. NULL on out of memory (`release` is not called). */
tl__shared *tl__shared_wrap(const void *data, size_t len,
                            void (*release)(void *data, void *arg),
                            void *arg);
void tl__shared_unref(tl__shared *f);
/* One more hold of an original (not a proxy) for another thread, which
 * gives it back with tl__shared_release or hands it to a proxy. Safe while
 * the caller holds a reference. */
void tl__shared_hold(tl__shared *f);
/* Gives back a hold; frees the original when it was the last. */
void tl__shared_release(tl__shared *f);
/* A thread-local proxy of `origin` with one reference, taking over one
 * hold the caller has. NULL on out of memory (the hold stays the
 * caller's). */
tl__shared *tl__shared_proxy(tl__shared *origin);
/* Whether no other thread holds the block (its owner may then reuse its
 * bytes once its own references allow). */
bool tl__shared_alone(tl__shared *f);

/* A piece of a connection's queued output: bytes of `out` (ref NULL) or a
 * shared block. Used only once a shared block is queued; until then `out`
 * alone is the queue. */
typedef struct tl__seg {
  tl__shared *ref;
  size_t off, len;
} tl__seg;

/* What a connection has queued in this loop turn. Only connections that
 * wrote since the last flush have one: it is taken from the server's pool
 * on the first write and given back by the flush, so an idle connection
 * holds no output memory. */
typedef struct tl__outq {
  tl__buf out;   /* corked bytes, flushed once per loop turn */
  tl__seg *segs; /* order of `out` and shared blocks, if any */
  uint32_t nsegs, cap_segs;
  size_t shared_bytes;   /* bytes of shared blocks in segs */
  size_t covered;        /* bytes of `out` in segs (while there are any) */
  struct tl__outq *next; /* the server's pool */
} tl__outq;

/* The libuv handle of a connection or listener: a poll handle on the
 * socket's descriptor (TCP or unix domain), which talon reads, writes,
 * accepts and shuts down itself (conn.c, server.c). A stream handle would
 * do that for us but costs 104 bytes more in every connection (264 for a
 * uv_pipe_t against 160); what it did here is a read per readable event,
 * one sendmsg per flush and a queue of what the kernel did not take. The
 * descriptor is the handle's (uv_fileno) and is closed with it
 * (tl__sock_close). */
typedef union tl__sock {
  uv_handle_t handle;
  uv_poll_t poll;
  /* Only a dialing connection for which no socket could be made: a
   * handle without a descriptor, so that it closes the normal way (its
   * dial failed at once and the caller closes it: the server's walk of
   * connections, which looks at poll handles only, never sees it). */
  uv_timer_t none;
} tl__sock;

/* Makes `k` a poll handle on `fd` (a connected or listening socket,
 * made non-blocking), not yet watching anything. 0 or a libuv error;
 * on error the descriptor is left open. Loop thread. */
int tl__sock_open(uv_loop_t *loop, tl__sock *k, int fd);
/* The socket's descriptor, or -1 when `k` has none. */
int tl__sock_fd(const tl__sock *k);
/* Closes the handle (`cb` runs after the loop turn, the memory must live
 * until then) and its descriptor, at once. */
void tl__sock_close(tl__sock *k, uv_close_cb cb);
/* Puts the socket `fd` (connected, non-blocking; still the caller's)
 * under c's descriptor number in place of the one there (dial.c: the
 * connection's handle is made before its socket is connected), with
 * TCP_NODELAY. 0 or a libuv error. */
int tl__conn_take_socket(tl__conn *c, int fd);

struct tl__conn {
  tl__sock sock; /* first: the handle's address is the connection's */
  tl__server *srv;
  const tl__conn_proto *proto;
  tl__conn *dirty_next; /* the flush list */
  tl__outq *q;          /* NULL: nothing corked */
  size_t backlog;       /* bytes queued (pend), not yet written */
  struct tl__wreq *pend; /* what the kernel did not take, oldest first */
  uint64_t deadline;    /* loop time (ms) when on_timeout fires; 0: none */
  unsigned flags;
  /* The peer's progress (see tl__conn_output_waits): bytes handed to the
   * socket, and how many of them the peer had taken at the last look
   * (both mod 2^32), and the loop time (low 32 bits) when it was last
   * seen taking some, or when output began to wait for it, or when the
   * connection opened. */
  uint32_t sent, taken, taken_at;
  /* The write error that closed the connection (a libuv code), else 0;
   * set before on_close runs, for protocols that report it. */
  int error;
  /* The TLS state (core/tls.h), or NULL for plain TCP. With TLS, what
   * proto->on_read gets is decrypted, and what is corked is encrypted at
   * the flush; `sent` and the peer's progress count ciphertext. */
  struct tl__tls *tls;
};

/* Work a connection leaves for a later loop turn, embedded in the
 * protocol's own state (WebSocket inflates a large compressed message a
 * slice per turn, so that other connections are served in between). */
typedef struct tl__work tl__work;
struct tl__work {
  tl__work *next; /* the server's list; the server's to use */
  void (*fn)(tl__work *w);
};

/* Allocates a connection block of the protocol's size, with tl__conn
 * embedded, zeroed; returns NULL on out of memory. `arg` is the server's
 * factory_arg. */
typedef tl__conn *(*tl__conn_factory)(tl__server *srv, void *arg);

/* A listening socket to open: data, so that every worker's server can
 * open the same list (owned by the caller, read-only while servers run).
 * One spec is one socket; the app turns what the user gave (a name, a
 * path, inherited descriptors) into specs (app/listen.c). */
enum {
  TL__LISTEN_INET = 0, /* bind `addr` (a numeric address and port) */
  TL__LISTEN_UNIX = 1, /* bind a unix domain socket at `path` */
  TL__LISTEN_FD = 2    /* listen on a copy of the open socket `fd` */
};

typedef struct tl__listen_spec {
  int kind;
  /* Which of the app's listeners this socket serves (several sockets of
   * one listener: a name that resolved to several addresses, or every
   * socket systemd passed); tl__server_listener_port asks by it. */
  size_t index;
  /* INET: the address and port (0: any free port; the sockets of one
   * listener get the port its first one was given). */
  struct sockaddr_storage addr;
  /* INET, IPv6: IPV6_V6ONLY on (the name also resolved to IPv4
   * addresses, which have their own sockets) or off (dual stack: "::"
   * takes IPv4 clients too). */
  bool v6only;
  /* INET: a socket that may be skipped when its address family or
   * address is not available on this machine, as long as another socket
   * of the listener binds (a name's ::1 on a host without IPv6). */
  bool optional;
  /* UNIX: the socket file (NUL-terminated, shorter than sun_path), and
   * the permissions it gets before listening (0: what the umask gave). */
  char path[108];
  unsigned mode;
  /* FD: an open SOCK_STREAM socket (TCP or unix), bound; it is
   * duplicated, the descriptor itself stays the caller's. */
  int fd;
  struct tl_tls *tls; /* NULL: plain; else TLS with this context */
} tl__listen_spec;

/* An open listener of a server. */
typedef struct tl__listener {
  tl__sock sock;
  tl__server *srv;
  const tl__listen_spec *spec;
  int port;    /* bound TCP port; 0 for a unix socket */
  bool inited;    /* the handle was initialised: it must be closed */
  bool unix_sock; /* a unix domain socket (its connections too) */
  bool paused;    /* accepting stopped: out of descriptors (server.c) */
  /* A socket file this listener made (UNIX): removed at close if it is
   * still the one made (its device and inode), not a newer one. */
  bool owns_path;
  uint64_t path_dev, path_ino;
} tl__listener;

typedef struct tl__server_config {
  unsigned max_connections;
  int backlog;
  unsigned shutdown_timeout_ms;
  unsigned send_timeout_ms; /* no write progress this long: close */
  unsigned tick_ms;         /* the timeout sweep period */
  bool no_signal_handlers;
} tl__server_config;

struct tl__server {
  uv_loop_t loop;
  tl__listener *listeners; /* while running */
  size_t nlisteners;
  uv_timer_t sweep;
  uv_timer_t shutdown_timer;
  uv_check_t flusher;
  uv_prepare_t preflusher;
  uv_idle_t worker; /* runs deferred work; active only while there is some */
  uv_signal_t sigint, sigterm;
  uv_async_t stop_async;
  tl__server_config cfg;
  tl__conn_factory factory;
  void *factory_arg;
  /* Called after each flush of all connections (end of a loop phase). */
  void (*after_flush)(void *owner);
  /* Called once when a stop begins (signal or tl__server_stop), after the
   * listener is closed and before connections are asked to shut down, so
   * the owner can close what it keeps on the loop. May be NULL. */
  void (*on_stop)(void *owner);
  void *owner; /* the app */
  /* The WebSocket layer's state on this loop (tl__wsctx, ws/wsconn.h),
   * opaque here: the app sets it with the loop, ws/ reads it, so that a
   * socket's block need not hold a pointer to it. */
  void *ws;
  /* Where the server's own messages go (a TLS connection's failures):
   * one line, no newline, valid during the call. May be NULL: then they
   * go nowhere. */
  void (*log)(void *owner, const char *line);
  /* Called after a connection's memory went (conn.c): the stop may be
   * complete. */
  void (*on_conn_freed)(tl__server *s);
  char *rbuf; /* the one receive buffer */
  size_t rbuf_size;
  /* TLS: decrypted input (rbuf_size bytes, made on first use) and the
   * ciphertext of one TLS call, written out right after it (conn.c). */
  char *tls_plain;
  tl__buf tls_out;
  size_t nconns;    /* accepted, not yet freed (the handles are walked) */
  tl__conn *dirty;  /* connections with corked bytes */
  tl__outq *q_pool; /* output queues not in use */
  unsigned q_pooled;
  /* Counters of this loop (tl_app_get_stats sums them): connections
   * opened and not yet closed, bytes read from and handed to sockets. */
  uint64_t conns_open, bytes_in, bytes_out;
  tl__work *work;    /* deferred to the next turn */
  tl__work *working; /* being run in this turn */
  uint32_t turn;     /* loop turns so far (wraps) */
  size_t freed;      /* noted by tl__server_freed since the last trim */
  uint64_t trimmed_at; /* loop time (ms) of the last trim */
  int port;          /* the first listener's bound port (0: a unix socket) */
  bool running, stopping, handles_open;
};

/* The counters of a loop (tl_app_get_stats): plain fields of its
 * per-loop state, written only by that loop's thread and read by any
 * (the sum over workers). A relaxed atomic load and store of the field,
 * so a reader on another worker is no data race; no lock and no
 * read-modify-write instruction: plain moves on x86-64 and arm64. */
static inline void tl__count(uint64_t *c, uint64_t n) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n,
                   __ATOMIC_RELAXED);
}
static inline uint64_t tl__count_read(const uint64_t *c) {
  return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* Loop time in ms (cached per iteration). */
static inline uint64_t tl__server_now(const tl__server *s) {
  return uv_now(&s->loop);
}

/* conn.c, for the server: a connection was accepted or adopted (it is
 * marked for the handle walk, its progress clock starts); the close
 * callback of a connection's handle (frees it, counts it); the sweep's
 * look at its output (true: the peer took nothing for send_timeout_ms);
 * the output queues' pool is emptied. */
void tl__conn_opened(tl__conn *c);
/* What a connection's handle.data points at (tl__conn_opened). */
extern const char tl__conn_mark;
void tl__conn_freed(uv_handle_t *h);
bool tl__conn_sweep_stalled(tl__conn *c, uint64_t now);
void tl__conn_pool_free(tl__server *s);

/* The cork buffer with room for `extra` more bytes, for a caller that
 * writes into it directly (then calls tl__conn_mark_dirty). Bytes added
 * there after a shared block go out after it. NULL on out of memory. */
tl__buf *tl__conn_cork(tl__conn *c, size_t extra);
/* Queue bytes in the cork buffer; flushed at the end of the loop turn.
 * Returns 0, TL_ECLOSED or TL_ENOMEM. */
int tl__conn_write(tl__conn *c, const void *p, size_t n);
/* Room for `n` more bytes at the end of the cork, counted as written:
 * the caller fills all `n` at the returned place before anything else is
 * queued (the WebSocket client masks its payload straight into it).
 * NULL when closing or out of memory. */
char *tl__conn_space(tl__conn *c, size_t n);
/* Queue bytes [off, off+len) of a shared block after everything queued so
 * far (a reference is taken; no copy). When they directly follow the last
 * queued piece of the same block, that piece just grows: subscribers that
 * receive the same run of frames get one contiguous write. Returns 0,
 * TL_ECLOSED or TL_ENOMEM. */
int tl__conn_write_shared(tl__conn *c, tl__shared *f, size_t off, size_t len);
/* Flush the cork buffer now (order is kept with queued writes). */
void tl__conn_flush(tl__conn *c);
/* Bytes not yet written: corked plus backlog. */
size_t tl__conn_pending(const tl__conn *c);
/* The peer's progress, the one measure for every timeout that must not
 * cut a slow reader. Returns whether output still waits for the peer
 * (corked, in libuv's queue, or unacknowledged in the kernel's send
 * queue), and sets *taken_at to the loop time (ms) when the peer was last
 * seen taking some of it, or when output began to wait, or when the
 * connection opened, whichever is latest. Looks again now. The sweep
 * looks every tick while output waits, and closes a connection whose
 * backlog waited send_timeout_ms past that time. */
bool tl__conn_output_waits(tl__conn *c, uint64_t *taken_at);
/* Counts `n` bytes a protocol wrote to the socket itself (sendfile), so
 * that they are not taken for the peer's progress. */
void tl__conn_count_sent(tl__conn *c, size_t n);
/* Mark the connection for the flush at the end of this loop turn. */
void tl__conn_mark_dirty(tl__conn *c);
/* Have proto->on_wake called in this loop turn's flush phase (before the
 * flush), outside the caller's stack: a protocol continues its work there
 * instead of re-entering itself from a user's callback. */
void tl__conn_wake(tl__conn *c);
/* Close now: on_close runs before this returns; memory goes after the
 * loop turn. Idempotent. */
void tl__conn_close(tl__conn *c);
/* Close after everything queued has been written, with a lingering read
 * so the peer sees the last response rather than a reset. */
void tl__conn_end(tl__conn *c);
/* Sends bytes [*off, end) of file `fd` with sendfile(2), after what is
 * queued; *off advances. Returns 0 when all is sent, TL_EAGAIN when the
 * socket is full (on_drain comes; call again), or TL_EIO / TL_ECLOSED
 * after the connection was closed (a read error or a file that shrank:
 * the promised length cannot be kept). */
int tl__conn_send_file(tl__conn *c, int fd, int64_t *off, int64_t end);
/* TLS (conn.c over core/tls.h). An accepted connection of a TLS listener
 * gets its state here: the handshake starts with the first bytes, under
 * the context's handshake timeout (the protocol's deadline waits). 0 or
 * TL_ENOMEM (then close it). */
int tl__conn_tls_start(tl__conn *c, struct tl_tls *ctx);
/* A client connection speaks TLS through `t` (tl__tls_new_client; the
 * connection owns it from now): the ClientHello is written at once, the
 * handshake goes on as the server answers, and what the protocol corks
 * meanwhile leaves when it is done. A failed handshake closes the
 * connection (proto->on_close can read tl__tls_error). The protocol
 * keeps its own deadline. 0, or TL_ECLOSED (closed already). */
int tl__conn_tls_connect(tl__conn *c, struct tl__tls *t);
/* The deadline passed: true if the handshake was still running (the
 * connection is then closed and the timeout logged); false if it is the
 * protocol's deadline. */
bool tl__conn_tls_expired(tl__conn *c);
/* TL__CONN_FEED was set: decrypted input waits for a reader that
 * resumed. Runs in the flush phase, outside any protocol callback. */
void tl__conn_feed(tl__conn *c);
/* Moves the socket, and the TLS state with what it has read, from `from`
 * to `to` (a fresh block): the descriptor is duplicated into to->sock, a
 * handle of the same kind (TCP or unix) initialised on from's loop
 * (adopt `to` afterwards, also when this fails after the handle was
 * initialised: *inited says so). `from` keeps its own descriptor, to be
 * closed. 0, TL_EIO or a libuv error. */
int tl__conn_move(tl__conn *from, tl__conn *to, bool *inited);
/* Whether the connection speaks TLS; its state, or NULL. */
struct tl__tls *tl__conn_tls(const tl__conn *c);
/* Start or stop reading. */
void tl__conn_read_start(tl__conn *c);
void tl__conn_read_stop(tl__conn *c);
/* The peer's address as text into buf ("unix:" for a peer on a unix
 * socket); 0, TL_ETOOBIG or a libuv error. */
int tl__conn_peer_name(const tl__conn *c, char *buf, size_t size);
/* Set the deadline `ms` from now (0: none). */
void tl__conn_timeout(tl__conn *c, unsigned ms);

#endif
