/* Connection I/O: reads into the server's receive buffer, corked writes
 * with one queued write at a time, shared blocks, the backlog, the peer's
 * progress, graceful end and close. The server (server.c) accepts, sweeps
 * and flushes; this file knows nothing of its lifecycle. */
#include "core/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/sendfile.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/sockios.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tls.h"
#include "talon/common.h"

/* After a graceful end, how long we keep reading (and discarding) before
 * giving up on the peer's FIN. */
#define LINGER_MS 2000

/* Output the kernel did not take at once, queued on the connection
 * (c->pend) and written as the socket becomes writable. Own bytes are
 * copied into `own`; shared blocks are referenced, not copied. `bufs`
 * from `cur` on is what is left: the first of them is advanced in place
 * as the kernel takes part of it. */
typedef struct tl__wreq {
  struct tl__wreq *next;
  size_t len;  /* bytes in all, for the backlog */
  size_t done; /* bytes written so far */
  uint32_t nbufs, cur;
  uint32_t nrefs;
  tl__shared **refs;
  struct iovec *bufs;
  char own[];
} tl__wreq;

/* ---- the socket ----------------------------------------------------------
 *
 * A connection's socket is a descriptor under a libuv poll handle (see
 * tl__sock in conn.h): it is watched for readable while the protocol
 * reads and for writable while output is queued or a shutdown waits for
 * it, and read, written and shut down here with plain system calls. */

static void on_poll(uv_poll_t *h, int status, int events);
static void sock_arm(tl__conn *c);

int tl__sock_open(uv_loop_t *loop, tl__sock *k, int fd) {
  return uv_poll_init(loop, &k->poll, fd);
}

int tl__sock_fd(const tl__sock *k) {
  uv_os_fd_t fd;
  return uv_fileno(&k->handle, &fd) == 0 ? fd : -1;
}

void tl__sock_close(tl__sock *k, uv_close_cb cb) {
  int fd = tl__sock_fd(k);
  /* uv_close stops the poll (the descriptor leaves epoll) before it
   * returns, so the descriptor can go now: its number may be reused by
   * the next accept of this turn, which must not meet a stale watcher. */
  uv_close(&k->handle, cb);
  if (fd >= 0)
    close(fd);
}

int tl__conn_take_socket(tl__conn *c, int fd) {
  int cur = tl__sock_fd(&c->sock);
  if (cur < 0)
    return UV_EBADF;
  /* The descriptor leaves epoll before the socket behind it changes. */
  if (c->flags & (TL__CONN_ARM_R | TL__CONN_ARM_W)) {
    uv_poll_stop(&c->sock.poll);
    c->flags &= ~(TL__CONN_ARM_R | TL__CONN_ARM_W);
  }
  if (dup3(fd, cur, O_CLOEXEC) < 0)
    return uv_translate_sys_error(errno);
  int on = 1; /* talon writes once per loop turn: no Nagle delay */
  setsockopt(cur, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  c->flags &= ~TL__CONN_UNIX;
  sock_arm(c);
  return 0;
}

/* Watches what the connection waits for: readable while the protocol
 * reads and the read side is open, writable while output is queued or a
 * shutdown waits. */
static void sock_arm(tl__conn *c) {
  if ((c->flags & TL__CONN_CLOSING) || c->sock.handle.type != UV_POLL)
    return;
  unsigned want = 0;
  if ((c->flags & (TL__CONN_READING | TL__CONN_RDONE)) == TL__CONN_READING)
    want |= TL__CONN_ARM_R;
  if (c->pend || (c->flags & TL__CONN_SHUT))
    want |= TL__CONN_ARM_W;
  if ((c->flags & (TL__CONN_ARM_R | TL__CONN_ARM_W)) == want)
    return;
  int err = 0;
  if (want)
    err = uv_poll_start(&c->sock.poll,
                        (want & TL__CONN_ARM_R ? UV_READABLE : 0) |
                            (want & TL__CONN_ARM_W ? UV_WRITABLE : 0),
                        on_poll);
  else
    uv_poll_stop(&c->sock.poll);
  if (err) {
    c->error = err;
    tl__conn_close(c);
    return;
  }
  c->flags = (c->flags & ~(TL__CONN_ARM_R | TL__CONN_ARM_W)) | want;
}

/* One sendmsg of up to 1024 (IOV_MAX) buffers, or one send(2) when there
 * is one (most writes: a turn's corked bytes; the kernel's sendmsg path
 * copies and checks the msghdr and the iovec array first, about 3% of
 * the CPU time of pipelined HTTP): the bytes taken (> 0), UV_EAGAIN when
 * the socket is full, or a libuv error (UV_EPIPE, UV_ECONNRESET, ...).
 * MSG_NOSIGNAL: a peer gone is an error, not a signal. */
static ssize_t sock_send(tl__conn *c, struct iovec *iov, size_t n) {
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = n < 1024 ? n : 1024};
  int fd = tl__sock_fd(&c->sock);
  if (fd < 0)
    return UV_ENOTCONN;
  for (;;) {
    ssize_t w = n == 1 ? send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                       : sendmsg(fd, &m, MSG_NOSIGNAL);
    if (w > 0)
      return w;
    if (w == 0)
      return UV_EAGAIN; /* (only for an empty write, never asked) */
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return UV_EAGAIN;
    return uv_translate_sys_error(errno);
  }
}

/* A block of `extra` trailing bytes with one reference and one holder;
 * the caller sets where its bytes are. NULL on out of memory. */
static tl__shared *shared_alloc(size_t extra, tl__shared *origin) {
  tl__shared *f = malloc(sizeof *f + extra);
  if (!f)
    return NULL;
  f->refs = 1;
  atomic_init(&f->holders, 1);
  f->origin = origin;
  f->release = NULL;
  f->release_arg = NULL;
  return f;
}

tl__shared *tl__shared_new(size_t cap) {
  tl__shared *f = shared_alloc(cap, NULL);
  if (!f)
    return NULL;
  f->data = f->bytes;
  f->len = 0;
  f->cap = cap;
  return f;
}

tl__shared *tl__shared_wrap(const void *data, size_t len,
                            void (*release)(void *data, void *arg),
                            void *arg) {
  tl__shared *f = shared_alloc(0, NULL);
  if (!f)
    return NULL;
  f->data = (char *)data;
  f->len = f->cap = len;
  f->release = release;
  f->release_arg = arg;
  return f;
}

void tl__shared_hold(tl__shared *f) {
  atomic_fetch_add_explicit(&f->holders, 1, memory_order_relaxed);
}

void tl__shared_release(tl__shared *f) {
  /* Release: this thread's reads of the bytes happen before the owner
   * reuses them (tl__shared_alone) or before the free. */
  if (atomic_fetch_sub_explicit(&f->holders, 1, memory_order_acq_rel) == 1) {
    if (f->release)
      f->release(f->data, f->release_arg);
    free(f);
  }
}

bool tl__shared_alone(tl__shared *f) {
  return atomic_load_explicit(&f->holders, memory_order_acquire) == 1;
}

tl__shared *tl__shared_proxy(tl__shared *origin) {
  tl__shared *p = shared_alloc(0, origin);
  if (!p)
    return NULL;
  /* Only what never changes: the owner may still append to the
   * original (its `len`) while other threads read the bytes it sent. */
  p->data = origin->data;
  p->len = 0;
  p->cap = origin->cap;
  return p;
}

void tl__shared_unref(tl__shared *f) {
  if (!f || --f->refs > 0)
    return;
  if (f->origin) {
    tl__shared_release(f->origin);
    free(f);
  } else {
    tl__shared_release(f);
  }
}

/* Output queues kept for reuse, and the most each may keep. */
#define Q_POOL_MAX 128
#define Q_KEEP_BYTES (64 * 1024)
#define Q_KEEP_SEGS 64

static void q_free(tl__outq *q) {
  tl__buf_free(&q->out);
  free(q->segs);
  free(q);
}

/* The connection's output queue, from the pool if it has none. */
static tl__outq *q_get(tl__conn *c) {
  if (c->q)
    return c->q;
  tl__server *s = c->srv;
  tl__outq *q = s->q_pool;
  if (q) {
    s->q_pool = q->next;
    s->q_pooled--;
    q->next = NULL;
  } else if (!(q = calloc(1, sizeof *q))) {
    return NULL;
  }
  c->q = q;
  return q;
}

/* Gives an empty queue back to the pool (or frees it). */
static void q_put(tl__conn *c) {
  tl__outq *q = c->q;
  if (!q)
    return;
  c->q = NULL;
  tl__server *s = c->srv;
  if (s->q_pooled >= Q_POOL_MAX) {
    q_free(q);
    return;
  }
  /* One large response must not pin its memory in the pool. */
  tl__buf_reset(&q->out, Q_KEEP_BYTES);
  if (q->cap_segs > Q_KEEP_SEGS) {
    free(q->segs);
    q->segs = NULL;
    q->cap_segs = 0;
  }
  q->next = s->q_pool;
  s->q_pool = q;
  s->q_pooled++;
}

static void drop_segs(tl__outq *q) {
  for (uint32_t i = 0; i < q->nsegs; i++)
    tl__shared_unref(q->segs[i].ref);
  q->nsegs = 0;
  q->shared_bytes = 0;
  q->covered = 0;
}

/* Bytes written straight into the cork buffer (tl__conn_cork) after a
 * shared block are not in a segment yet: give them one, in place, before
 * anything else is queued or the queue is flushed. Own segments cover
 * `out` in order, so the uncovered bytes are its tail. */
static int cover_own(tl__outq *q) {
  if (q->nsegs == 0 || q->covered >= q->out.len)
    return 0;
  tl__seg *last = &q->segs[q->nsegs - 1];
  if (!last->ref) {
    last->len += q->out.len - q->covered;
  } else {
    if (q->nsegs == q->cap_segs) {
      tl__seg *g = realloc(q->segs, q->cap_segs * 2 * sizeof *g);
      if (!g)
        return TL_ENOMEM;
      q->segs = g;
      q->cap_segs *= 2;
    }
    q->segs[q->nsegs++] =
        (tl__seg){NULL, q->covered, q->out.len - q->covered};
  }
  q->covered = q->out.len;
  return 0;
}

static size_t corked(const tl__conn *c) {
  return c->q ? c->q->out.len + c->q->shared_bytes : 0;
}

/* The server keeps no list of its connections (two pointers less in
 * every block): libuv's own handle queue is walked instead (server.c). A
 * connection's handle has &tl__conn_mark as `data`; no other handle
 * does (other poll handles, such as the Redis bridge's, point `data` at
 * their own state). */
const char tl__conn_mark = 0;

void tl__conn_opened(tl__conn *c) {
  c->sock.handle.data = (void *)&tl__conn_mark;
  c->flags |= TL__CONN_COUNTED;
  tl__count(&c->srv->conns_open, 1);
  c->taken_at = (uint32_t)tl__server_now(c->srv);
}

void tl__conn_freed(uv_handle_t *h) {
  tl__conn *c = (tl__conn *)h;
  tl__server *s = c->srv;
  if (c->proto->release)
    c->proto->release(c);
  else
    free(c);
  s->nconns--;
  if (s->on_conn_freed)
    s->on_conn_freed(s);
}

void tl__conn_close(tl__conn *c) {
  if (c->flags & TL__CONN_CLOSING)
    return;
  c->flags |= TL__CONN_CLOSING;
  if (c->flags & TL__CONN_COUNTED)
    tl__count(&c->srv->conns_open, (uint64_t)-1);
  /* A connection on the flush list stays there; the flusher skips closing
   * ones, and the block lives until after the loop turn. */
  if (c->proto->on_close)
    c->proto->on_close(c);
  if (c->q) {
    c->q->out.len = 0;
    drop_segs(c->q);
    q_put(c);
  }
  if (c->tls) {
    tl__tls_free(c->tls);
    c->tls = NULL;
  }
  while (c->pend) {
    tl__wreq *w = c->pend;
    c->pend = w->next;
    for (uint32_t i = 0; i < w->nrefs; i++)
      tl__shared_unref(w->refs[i]);
    free(w);
  }
  c->backlog = 0;
  tl__sock_close(&c->sock, tl__conn_freed);
}

static void flush(tl__conn *c, bool force);
static void tls_flush(tl__conn *c);

/* A queued write is out: what was corked meanwhile follows, and the
 * protocol hears when nothing waits any more. */
static void wreq_done(tl__conn *c, tl__wreq *w) {
  c->backlog -= w->len;
  for (uint32_t i = 0; i < w->nrefs; i++)
    tl__shared_unref(w->refs[i]);
  free(w);
  if (c->backlog > 0)
    return;
  if (corked(c) > 0)
    flush(c, false);
  if (c->backlog == 0 && corked(c) == 0 && c->proto->on_drain &&
      !(c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING)))
    c->proto->on_drain(c);
}

static void on_shutdown_done(tl__conn *c, int status);

/* The socket is writable: writes what is queued, oldest first, for as
 * long as the kernel takes it; then the shutdown that waited for it. */
static void on_writable(tl__conn *c) {
  while (c->pend) {
    tl__wreq *w = c->pend;
    ssize_t n = sock_send(c, w->bufs + w->cur, w->nbufs - w->cur);
    if (n == UV_EAGAIN)
      return;
    if (n < 0) {
      c->error = (int)n;
      tl__conn_close(c);
      return;
    }
    w->done += (size_t)n;
    while (n > 0) {
      struct iovec *b = &w->bufs[w->cur];
      if ((size_t)n < b->iov_len) {
        b->iov_base = (char *)b->iov_base + n;
        b->iov_len -= (size_t)n;
        break;
      }
      n -= (ssize_t)b->iov_len;
      w->cur++;
    }
    if (w->done < w->len)
      continue;
    c->pend = w->next;
    wreq_done(c, w);
    if (c->flags & TL__CONN_CLOSING)
      return;
  }
  if (c->flags & TL__CONN_SHUT) {
    c->flags &= ~TL__CONN_SHUT;
    int fd = tl__sock_fd(&c->sock);
    int st = fd >= 0 && shutdown(fd, SHUT_WR) == 0
                 ? 0
                 : (fd < 0 ? UV_ENOTCONN : uv_translate_sys_error(errno));
    on_shutdown_done(c, st);
  }
}

/* Whether a queue that may wait on a slow peer should reference `len`
 * bytes of shared block `f` rather than copy them. A reference pins the
 * whole block, and a peer that never reads would pin one mostly-unused
 * block per loop turn while only its slices count against the protocol's
 * limits; so a slice smaller than half its block is copied. What a
 * waiting connection holds is then at most twice what it has queued. */
static bool worth_referencing(const tl__shared *f, size_t len) {
  /* A wrapped block (the owner's memory) is pinned until all of it is
   * written anyway: always referenced. */
  return len >= f->cap / 2 || (!f->origin && f->data != f->bytes);
}

/* Queues what the kernel did not take: `bufs[0..n)` after the first
 * `skip` bytes. Own bytes and small slices of shared blocks are copied;
 * large slices keep their reference (taken over from the segments). */
static int queue_rest(tl__conn *c, struct iovec *bufs, tl__seg *segs,
                      size_t n, size_t skip) {
  size_t own = 0, total = 0, nrefs = 0;
  size_t first = 0;
  while (first < n && skip >= bufs[first].iov_len)
    skip -= bufs[first++].iov_len;
  for (size_t i = first; i < n; i++) {
    size_t l = bufs[i].iov_len - (i == first ? skip : 0);
    total += l;
    if (segs && segs[i].ref && worth_referencing(segs[i].ref, l))
      nrefs++;
    else
      own += l;
  }
  if (total == 0)
    return 0;
  size_t nb = n - first;
  /* Layout after the header: own bytes, padded so that the buf and ref
   * arrays that follow are aligned. */
  size_t own_pad = (own + sizeof(void *) - 1) & ~(sizeof(void *) - 1);
  tl__wreq *w = malloc(sizeof *w + own_pad + nb * sizeof(struct iovec) +
                       nrefs * sizeof(tl__shared *));
  if (!w)
    return TL_ENOMEM;
  w->bufs = (struct iovec *)(void *)(w->own + own_pad);
  w->refs = (tl__shared **)(void *)(w->bufs + nb);
  w->next = NULL;
  w->nrefs = 0;
  w->len = total;
  w->done = 0;
  w->nbufs = (uint32_t)nb;
  w->cur = 0;
  char *o = w->own;
  for (size_t i = first; i < n; i++) {
    size_t cut = i == first ? skip : 0;
    char *p = (char *)bufs[i].iov_base + cut;
    size_t l = bufs[i].iov_len - cut;
    if (segs && segs[i].ref && worth_referencing(segs[i].ref, l)) {
      w->refs[w->nrefs++] = segs[i].ref;
      segs[i].ref = NULL;
      w->bufs[i - first] = (struct iovec){p, l};
    } else {
      memcpy(o, p, l);
      w->bufs[i - first] = (struct iovec){o, l};
      o += l;
    }
  }
  tl__wreq **tail = &c->pend;
  while (*tail)
    tail = &(*tail)->next;
  *tail = w;
  c->backlog += total;
  sock_arm(c);
  return 0;
}

/* Writes as much as the kernel takes of `bufs` (nothing when a backlog
 * is queued: order), and queues the rest. */
static int write_bufs(tl__conn *c, struct iovec *bufs, tl__seg *segs,
                      size_t n) {
  size_t done = 0;
  if (c->backlog == 0) {
    ssize_t w = sock_send(c, bufs, n);
    if (w < 0 && w != UV_EAGAIN)
      return (int)w;
    if (w > 0)
      done = (size_t)w;
  }
  return queue_rest(c, bufs, segs, n, done);
}

/* Hands the corked output to the kernel, and queues what it does not
 * take. A connection has at most one queued write: while one waits, the
 * output stays corked (unless `force`) and goes out when that write
 * completes (wreq_done). A peer that does not read
 * then costs one growing queue, bounded by the protocol's limits, not one
 * write request per loop turn. */
static void flush(tl__conn *c, bool force) {
  if (c->flags & TL__CONN_CLOSING)
    return;
  tl__outq *q = c->q;
  if (!q)
    return;
  if (c->backlog > 0 && !force && !(c->flags & TL__CONN_ENDING))
    return;
  if (c->tls) {
    tls_flush(c);
    return;
  }
  int err = 0;
  c->sent += (uint32_t)corked(c);
  tl__count(&c->srv->bytes_out, corked(c));
  if (q->nsegs == 0) {
    if (q->out.len) {
      struct iovec b = {q->out.data, q->out.len};
      err = write_bufs(c, &b, NULL, 1);
    }
  } else {
    struct iovec small[64];
    struct iovec *bufs = NULL;
    if (cover_own(q) == 0)
      bufs = q->nsegs <= 64 ? small : malloc(q->nsegs * sizeof *bufs);
    if (!bufs) {
      tl__conn_close(c);
      return;
    }
    for (uint32_t i = 0; i < q->nsegs; i++) {
      tl__seg *g = &q->segs[i];
      char *p = (g->ref ? g->ref->data : q->out.data) + g->off;
      bufs[i] = (struct iovec){p, g->len};
    }
    err = write_bufs(c, bufs, q->segs, q->nsegs);
    if (bufs != small)
      free(bufs);
    drop_segs(q); /* references not queued are released */
  }
  /* Whatever the kernel did not take was copied or referenced by the
   * queued write: the cork queue is empty and goes back to the pool. */
  q->out.len = 0;
  q_put(c);
  if (err) {
    c->error = err;
    tl__conn_close(c);
  }
}

void tl__conn_flush(tl__conn *c) {
  flush(c, false);
}

tl__buf *tl__conn_cork(tl__conn *c, size_t extra) {
  tl__outq *q = q_get(c);
  if (!q || tl__buf_reserve(&q->out, extra))
    return NULL;
  return &q->out;
}

int tl__conn_write_shared(tl__conn *c, tl__shared *f, size_t off, size_t len) {
  if (c->flags & (TL__CONN_CLOSING | TL__CONN_LINGER | TL__CONN_ENDING))
    return TL_ECLOSED;
  tl__outq *q = q_get(c);
  if (!q)
    return TL_ENOMEM;
  tl__conn_mark_dirty(c); /* the flush gives an unused queue back */
  if (cover_own(q))
    return TL_ENOMEM;
  if (q->nsegs) {
    tl__seg *last = &q->segs[q->nsegs - 1];
    if (last->ref == f && last->off + last->len == off) {
      last->len += len;
      q->shared_bytes += len;
      return 0;
    }
  }
  /* A write is in flight, so this queue waits for the peer: a small slice
   * must not pin its whole block (see worth_referencing). */
  if (c->backlog > 0 && !worth_referencing(f, len))
    return tl__conn_write(c, f->data + off, len);
  if (q->nsegs + 2 > q->cap_segs) {
    uint32_t cap = q->cap_segs ? q->cap_segs * 2 : 8;
    tl__seg *n = realloc(q->segs, cap * sizeof *n);
    if (!n)
      return TL_ENOMEM;
    q->segs = n;
    q->cap_segs = cap;
  }
  if (q->nsegs == 0 && q->out.len > 0)
    q->segs[q->nsegs++] = (tl__seg){NULL, 0, q->out.len};
  if (q->nsegs <= 1)
    q->covered = q->out.len;
  f->refs++;
  q->segs[q->nsegs++] = (tl__seg){f, off, len};
  q->shared_bytes += len;
  return 0;
}

char *tl__conn_space(tl__conn *c, size_t n) {
  if (c->flags & (TL__CONN_CLOSING | TL__CONN_LINGER))
    return NULL;
  tl__outq *q = q_get(c);
  if (!q)
    return NULL;
  tl__conn_mark_dirty(c); /* the flush gives an unused queue back */
  if (cover_own(q))
    return NULL;
  if (q->nsegs && q->segs[q->nsegs - 1].ref) {
    /* After a shared block: own bytes start a new segment. */
    if (q->nsegs == q->cap_segs) {
      tl__seg *g = realloc(q->segs, q->cap_segs * 2 * sizeof *g);
      if (!g)
        return NULL;
      q->segs = g;
      q->cap_segs *= 2;
    }
    q->segs[q->nsegs++] = (tl__seg){NULL, q->out.len, 0};
  }
  if (tl__buf_reserve(&q->out, n))
    return NULL;
  char *at = q->out.data + q->out.len;
  q->out.len += n;
  if (q->nsegs) {
    q->segs[q->nsegs - 1].len += n;
    q->covered += n;
  }
  return at;
}

int tl__conn_write(tl__conn *c, const void *p, size_t n) {
  if (c->flags & (TL__CONN_CLOSING | TL__CONN_LINGER))
    return TL_ECLOSED;
  if (n == 0)
    return 0;
  char *at = tl__conn_space(c, n);
  if (!at)
    return TL_ENOMEM;
  memcpy(at, p, n);
  return 0;
}

void tl__conn_mark_dirty(tl__conn *c) {
  if (c->flags & (TL__CONN_DIRTY | TL__CONN_CLOSING))
    return;
  c->flags |= TL__CONN_DIRTY;
  c->dirty_next = c->srv->dirty;
  c->srv->dirty = c;
}

void tl__conn_wake(tl__conn *c) {
  if (c->flags & TL__CONN_CLOSING)
    return;
  c->flags |= TL__CONN_WAKE;
  tl__conn_mark_dirty(c);
}

size_t tl__conn_pending(const tl__conn *c) {
  return corked(c) + c->backlog;
}

static void tls_on_read(tl__conn *c, char *data, size_t n);
static void tls_on_eof(tl__conn *c);

/* What a read gave: n > 0 bytes in the receive buffer, or the end of
 * the read side (UV_EOF, or a libuv error). */
static void on_read(tl__conn *c, ssize_t n, char *data) {
  if (c->flags & TL__CONN_LINGER) {
    if (n < 0)
      tl__conn_close(c);
    return; /* discard */
  }
  if (n > 0) {
    tl__count(&c->srv->bytes_in, (uint64_t)n);
    if (c->tls)
      tls_on_read(c, data, (size_t)n);
    else
      c->proto->on_read(c, data, (size_t)n);
  } else if (n < 0) {
    if (n == UV_EOF)
      c->flags |= TL__CONN_PEER_EOF;
    if (c->tls)
      tls_on_eof(c);
    c->proto->on_eof(c, (int)n);
  }
}

/* The socket is readable: reads into the server's receive buffer, again
 * while a read fills it (at most 32 times, so that one busy peer does
 * not hold the loop), for as long as the protocol reads. */
static void on_readable(tl__conn *c) {
  int fd = tl__sock_fd(&c->sock);
  tl__server *s = c->srv;
  for (int i = 0; i < 32; i++) {
    /* recv(2), not read(2): the same bytes without the VFS layer. */
    ssize_t n = recv(fd, s->rbuf, s->rbuf_size, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      /* The read side is over: never watched again. */
      c->flags |= TL__CONN_RDONE;
      on_read(c, n == 0 ? UV_EOF : uv_translate_sys_error(errno), NULL);
      return;
    }
    on_read(c, n, s->rbuf);
    if ((size_t)n < s->rbuf_size ||
        (c->flags & (TL__CONN_CLOSING | TL__CONN_READING)) != TL__CONN_READING)
      return;
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  tl__conn *c = (tl__conn *)h;
  if (c->flags & TL__CONN_CLOSING)
    return;
  if (status < 0) {
    /* An error on the socket (POLLERR: a reset, a timeout); libuv has
     * stopped the handle. The read or write that follows meets the
     * error and ends the connection as a stream's would. */
    c->flags &= ~(TL__CONN_ARM_R | TL__CONN_ARM_W);
    events = UV_READABLE | UV_WRITABLE;
  }
  if ((events & UV_READABLE) &&
      (c->flags & (TL__CONN_READING | TL__CONN_RDONE)) == TL__CONN_READING)
    on_readable(c);
  if ((events & UV_WRITABLE) && !(c->flags & TL__CONN_CLOSING))
    on_writable(c);
  sock_arm(c);
}

void tl__conn_read_start(tl__conn *c) {
  if (c->flags & (TL__CONN_READING | TL__CONN_CLOSING))
    return;
  c->flags |= TL__CONN_READING;
  sock_arm(c);
  /* Input the reader paused on is inside the TLS state, not the socket:
   * the socket would not report it again, so the flush phase feeds it. */
  if (c->tls && tl__tls_has_input(c->tls)) {
    c->flags |= TL__CONN_FEED;
    tl__conn_mark_dirty(c);
  }
}

void tl__conn_read_stop(tl__conn *c) {
  if (!(c->flags & TL__CONN_READING))
    return;
  c->flags &= ~TL__CONN_READING;
  sock_arm(c);
}

void tl__conn_timeout(tl__conn *c, unsigned ms) {
  c->deadline = ms ? tl__server_now(c->srv) + ms : 0;
}

static bool tls_close_notify(tl__conn *c);

static void on_shutdown_done(tl__conn *c, int status) {
  if (status < 0) {
    tl__conn_close(c);
    return;
  }
  if (c->flags & TL__CONN_PEER_EOF) {
    tl__conn_close(c); /* both sides are done */
    return;
  }
  /* Our FIN is out; read and discard until the peer's, within a limit. */
  c->flags |= TL__CONN_LINGER;
  c->deadline = tl__server_now(c->srv) + LINGER_MS;
  tl__conn_read_start(c);
}

void tl__conn_end(tl__conn *c) {
  if (c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING))
    return;
  c->flags |= TL__CONN_ENDING;
  flush(c, true);
  if (c->flags & TL__CONN_CLOSING)
    return;
  if (c->tls && !tls_close_notify(c))
    return;
  /* The shutdown runs once every queued write has gone out, from the
   * writable event (also when nothing is queued: never from inside the
   * caller). */
  c->flags |= TL__CONN_SHUT;
  sock_arm(c);
}

int tl__conn_peer_name(const tl__conn *c, char *buf, size_t size) {
  char tmp[64];
  if (c->flags & TL__CONN_UNIX) {
    /* A unix socket's client is a process of this machine, most often
     * with no name of its own: "unix:", as nginx says. */
    snprintf(tmp, sizeof tmp, "unix:");
  } else {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(tl__sock_fd(&c->sock), (struct sockaddr *)&ss, &len) != 0)
      return uv_translate_sys_error(errno);
    int err;
    if (ss.ss_family == AF_INET6)
      err = uv_ip6_name((struct sockaddr_in6 *)&ss, tmp, sizeof tmp);
    else
      err = uv_ip4_name((struct sockaddr_in *)&ss, tmp, sizeof tmp);
    if (err)
      return err;
  }
  size_t n = strlen(tmp);
  if (n + 1 > size)
    return TL_ETOOBIG;
  memcpy(buf, tmp, n + 1);
  return 0;
}

/* Bytes written but not yet taken by the peer: our queue plus the
 * kernel's send queue (unsent and unacknowledged). The kernel part is what
 * shows a slow reader's progress: its reads free the window and the kernel
 * queue shrinks long before we can write more. Capped at 32 bits. */
static uint32_t untaken(const tl__conn *c) {
  uint64_t n = c->backlog - (c->pend ? c->pend->done : 0);
#ifdef SIOCOUTQ
  int fd = tl__sock_fd(&c->sock), q;
  if (fd >= 0 && ioctl(fd, SIOCOUTQ, &q) == 0 && q > 0)
    n += (uint64_t)q;
#endif
  return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* Looks at the peer's progress; returns whether output waits for it.
 * What it has taken is what was handed to the socket less what our queue
 * and the kernel still hold: counting that, not the untaken bytes, keeps what
 * we queue meanwhile from hiding what the peer took. More taken is
 * progress, dated now; so is output beginning to wait, as the peer has
 * had no time to take any. */
static bool look(tl__conn *c, uint64_t now) {
  uint32_t left = untaken(c);
  uint32_t taken = c->sent - left;
  bool waiting = left > 0 || corked(c) > 0;
  if (c->flags & TL__CONN_STALL) {
    if ((int32_t)(taken - c->taken) > 0)
      c->taken_at = (uint32_t)now;
  } else if (waiting) {
    c->taken_at = (uint32_t)now;
  }
  c->taken = taken;
  if (waiting)
    c->flags |= TL__CONN_STALL;
  else
    c->flags &= ~TL__CONN_STALL;
  return waiting;
}

bool tl__conn_output_waits(tl__conn *c, uint64_t *taken_at) {
  uint64_t now = tl__server_now(c->srv);
  bool waiting = look(c, now);
  *taken_at = now - (uint32_t)((uint32_t)now - c->taken_at);
  return waiting;
}

void tl__conn_count_sent(tl__conn *c, size_t n) {
  c->sent += (uint32_t)n;
  tl__count(&c->srv->bytes_out, n);
}

/* Whether the peer took nothing of our queued output for send_timeout_ms.
 * Only a backlog counts: output the kernel holds alone does not keep a
 * write of ours waiting. */
static bool send_stalled(const tl__conn *c, uint64_t now) {
  unsigned limit = c->srv->cfg.send_timeout_ms;
  if (c->backlog == 0 || limit == 0 || limit == (unsigned)-1)
    return false;
  return (uint32_t)now - c->taken_at >= limit;
}

bool tl__conn_sweep_stalled(tl__conn *c, uint64_t now) {
  /* While output waits, progress is looked at every tick, so that the
   * send timeout and the protocol's timeouts see the same. */
  if (c->backlog > 0 || (c->flags & TL__CONN_STALL))
    look(c, now);
  return send_stalled(c, now);
}

void tl__conn_pool_free(tl__server *s) {
  while (s->q_pool) {
    tl__outq *q = s->q_pool;
    s->q_pool = q->next;
    q_free(q);
  }
  s->q_pooled = 0;
  free(s->tls_plain);
  s->tls_plain = NULL;
  tl__buf_free(&s->tls_out);
}

static int tls_send_file(tl__conn *c, int fd, int64_t *off, int64_t end);

int tl__conn_send_file(tl__conn *c, int fd, int64_t *off, int64_t end) {
  if (c->tls)
    return tls_send_file(c, fd, off, end);
  int sock = tl__sock_fd(&c->sock);
  if (sock < 0) {
    tl__conn_close(c);
    return TL_EIO;
  }
  while (*off < end) {
    if (c->flags & TL__CONN_CLOSING)
      return TL_ECLOSED;
    if (tl__conn_pending(c) > 0) {
      tl__conn_flush(c);
      if (tl__conn_pending(c) > 0)
        return TL_EAGAIN; /* on_drain resumes */
    }
    off_t o = (off_t)*off;
    int64_t rest = end - *off;
    size_t want = rest > (1 << 30) ? (size_t)1 << 30 : (size_t)rest;
    ssize_t n = sendfile(sock, fd, &o, want);
    if (n > 0) {
      tl__conn_count_sent(c, (size_t)n);
      *off += n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN) {
      /* The socket is full. Queue one chunk, which tells us (drain)
       * when the socket takes bytes again. */
      char chunk[16384];
      size_t m = want < sizeof chunk ? want : sizeof chunk;
      ssize_t r = pread(fd, chunk, m, (off_t)*off);
      if (r > 0 && tl__conn_write(c, chunk, (size_t)r) == 0) {
        *off += r;
        tl__conn_flush(c);
        continue;
      }
    }
    /* A read error or a file that shrank: the length is promised, so the
     * only honest end is to close. */
    tl__conn_close(c);
    return TL_EIO;
  }
  return 0;
}

/* ---- TLS ----------------------------------------------------------------
 *
 * With TLS the connection sits between the socket and the protocol: what
 * the socket gives is ciphertext, handed to the TLS state (core/tls.h) and
 * decrypted into the server's plaintext buffer, which proto->on_read gets
 * as it would the receive buffer; what the protocol corks is encrypted at
 * the flush, coalesced into full records, and written like plain output.
 * Whatever a TLS call produces (handshake messages, alerts, records) is
 * written out right after the call, so ciphertext always leaves in the
 * order OpenSSL numbered it. */

/* A record's most plaintext: output is gathered up to this before it is
 * encrypted, so that small sends of one loop turn share records. */
#define TLS_RECORD 16384
/* The ciphertext buffer keeps at most this much memory between calls. */
#define TLS_OUT_KEEP (256 * 1024)

struct tl__tls *tl__conn_tls(const tl__conn *c) {
  return c->tls;
}

static char *tls_plain(tl__server *s) {
  if (!s->tls_plain)
    s->tls_plain = malloc(s->rbuf_size);
  return s->tls_plain;
}

static void tls_log(tl__conn *c, const char *what) {
  if (tl__tls_is_client(c->tls))
    return; /* a client's failure goes to its protocol (tl__tls_error) */
  tl__server *s = c->srv;
  tl__tls_log(tl__tls_ctx(c->tls), tl__tls_clock_of(c->tls)->peer, what,
              s->log, s->owner);
}

/* Writes the ciphertext the last TLS call produced. False when that
 * closed the connection (a write error). */
static bool tls_push(tl__conn *c) {
  tl__buf *o = &c->srv->tls_out;
  if (o->len == 0)
    return true;
  struct iovec b = {o->data, o->len};
  c->sent += (uint32_t)o->len;
  int err = write_bufs(c, &b, NULL, 1); /* the rest is copied */
  tl__buf_reset(o, TLS_OUT_KEEP);
  if (err) {
    tl__conn_close(c);
    return false;
  }
  return true;
}

int tl__conn_tls_start(tl__conn *c, struct tl_tls *ctx) {
  tl__tls *t = tl__tls_new_server(ctx);
  if (!t)
    return TL_ENOMEM;
  c->tls = t;
  tl__tls_clock *k = tl__tls_clock_of(t);
  uint64_t now = tl__server_now(c->srv);
  k->started_ms = now;
  k->saved_deadline = c->deadline;
  if (tl__conn_peer_name(c, k->peer, sizeof k->peer) != 0)
    snprintf(k->peer, sizeof k->peer, "?");
  c->deadline = now + tl__tls_handshake_timeout(ctx);
  return 0;
}

bool tl__conn_tls_expired(tl__conn *c) {
  if (!c->tls || !tl__tls_handshaking(c->tls) || tl__tls_is_client(c->tls))
    return false; /* a client's protocol times its own handshake */
  if (!(c->flags & TL__CONN_ENDING))
    tls_log(c, tl__tls_seen(c->tls) ? "handshake timeout"
                                    : "handshake timeout (nothing received)");
  tl__conn_close(c);
  return true;
}

/* The protocol's deadline comes back, shifted by the handshake's time. */
static void handshake_done(tl__conn *c) {
  tl__tls_clock *k = tl__tls_clock_of(c->tls);
  uint64_t now = tl__server_now(c->srv);
  c->deadline =
      k->saved_deadline ? k->saved_deadline + (now - k->started_ms) : 0;
  if (corked(c) > 0)
    tl__conn_mark_dirty(c);
}

/* Plain HTTP on the TLS port gets a plain answer, like nginx's 497, so
 * that someone who typed http:// sees why. */
static void tls_answer_plain(tl__conn *c) {
  static const char answer[] = "HTTP/1.1 400 Bad Request\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 45\r\n"
                               "Connection: close\r\n\r\n"
                               "This port speaks HTTPS: use an https:// URL.\n";
  tls_log(c, "plain HTTP on the TLS port: answered 400");
  struct iovec b = {(char *)answer, sizeof answer - 1};
  c->sent += (uint32_t)b.iov_len;
  if (write_bufs(c, &b, NULL, 1) != 0) {
    tl__conn_close(c);
    return;
  }
  tl__conn_end(c);
}

/* Decrypts what the TLS state holds and hands it to the protocol, for as
 * long as the protocol reads. */
static void tls_pump(tl__conn *c) {
  tl__tls *t = c->tls;
  tl__server *s = c->srv;
  char *plain = tls_plain(s);
  if (!plain) {
    tl__conn_close(c);
    return;
  }
  for (;;) {
    bool was_hs = tl__tls_handshaking(t);
    size_t got = 0;
    int st = tl__tls_read(t, plain, s->rbuf_size, &got, &s->tls_out);
    if (!tls_push(c))
      return;
    if (st == TL__TLS_PLAIN) {
      tls_answer_plain(c);
      return;
    }
    if (st == TL__TLS_FAIL) {
      char what[224];
      snprintf(what, sizeof what, "%s: %s",
               was_hs ? "handshake failed" : "protocol error",
               tl__tls_error(t));
      tls_log(c, what);
      tl__conn_close(c);
      return;
    }
    if (was_hs && !tl__tls_handshaking(t)) {
      if (tl__tls_is_client(t)) {
        if (corked(c) > 0) /* the request waited for the handshake */
          tl__conn_mark_dirty(c);
      } else {
        handshake_done(c);
      }
    }
    /* The receive buffer is reused once this returns, and the protocol
     * may move the connection (an upgrade): keep what is unused. */
    if (tl__tls_keep_input(t) != 0) {
      tl__conn_close(c);
      return;
    }
    if (got) {
      c->proto->on_read(c, plain, got);
      if (c->tls != t || (c->flags & TL__CONN_CLOSING))
        return;
    }
    if (st == TL__TLS_EOF) {
      c->flags |= TL__CONN_PEER_EOF;
      c->proto->on_eof(c, UV_EOF);
      return;
    }
    if (st == TL__TLS_AGAIN || !(c->flags & TL__CONN_READING) ||
        (c->flags & TL__CONN_LINGER))
      return;
  }
}

int tl__conn_tls_connect(tl__conn *c, struct tl__tls *t) {
  c->tls = t;
  tls_pump(c); /* no input yet: this writes the ClientHello */
  return (c->flags & TL__CONN_CLOSING) ? TL_ECLOSED : 0;
}

static void tls_on_read(tl__conn *c, char *data, size_t n) {
  if (tl__tls_input(c->tls, data, n) != 0) {
    tl__conn_close(c);
    return;
  }
  tls_pump(c);
}

/* The socket ended. Worth a line when it cut a handshake or a record. */
static void tls_on_eof(tl__conn *c) {
  tl__tls *t = c->tls;
  if (tl__tls_handshaking(t)) {
    if (tl__tls_seen(t))
      tls_log(c, "the peer left during the handshake");
  } else if (tl__tls_has_input(t)) {
    tls_log(c, "the peer left in the middle of a record");
  }
}

void tl__conn_feed(tl__conn *c) {
  if (c->tls && (c->flags & TL__CONN_READING) &&
      !(c->flags & (TL__CONN_CLOSING | TL__CONN_LINGER)))
    tls_pump(c);
}

/* Encrypts everything corked, gathered into full records, and writes the
 * ciphertext with one try_write. While the handshake runs, output waits
 * corked. */
static void tls_flush(tl__conn *c) {
  tl__outq *q = c->q;
  tl__tls *t = c->tls;
  if (tl__tls_handshaking(t))
    return;
  tl__buf *o = &c->srv->tls_out;
  char stage[TLS_RECORD];
  size_t sl = 0;
  int err = 0;
  uint32_t n = q->nsegs ? q->nsegs : 1;
  for (uint32_t i = 0; i < n && !err; i++) {
    const char *p;
    size_t len;
    if (q->nsegs) {
      tl__seg *g = &q->segs[i];
      p = (g->ref ? g->ref->data : q->out.data) + g->off;
      len = g->len;
    } else {
      p = q->out.data;
      len = q->out.len;
    }
    while (len && !err) {
      if (sl == 0 && len >= TLS_RECORD) {
        size_t whole = len - len % TLS_RECORD;
        err = tl__tls_write(t, p, whole, o);
        p += whole;
        len -= whole;
        continue;
      }
      size_t k = TLS_RECORD - sl < len ? TLS_RECORD - sl : len;
      memcpy(stage + sl, p, k);
      sl += k;
      p += k;
      len -= k;
      if (sl == TLS_RECORD) {
        err = tl__tls_write(t, stage, sl, o);
        sl = 0;
      }
    }
  }
  if (!err && sl)
    err = tl__tls_write(t, stage, sl, o);
  drop_segs(q);
  q->out.len = 0;
  q_put(c);
  if (err) {
    o->len = 0;
    tls_log(c, tl__tls_error(t));
    tl__conn_close(c);
    return;
  }
  tls_push(c);
}

/* Sends close_notify before our FIN. False if the connection closed. */
static bool tls_close_notify(tl__conn *c) {
  tl__tls_close_notify(c->tls, &c->srv->tls_out);
  return tls_push(c);
}

/* Files over TLS without kernel TLS: read and encrypt, a few records at a
 * time, paced by the socket (TL_EAGAIN until on_drain). */
static int tls_send_file(tl__conn *c, int fd, int64_t *off, int64_t end) {
  char chunk[4 * TLS_RECORD];
  while (*off < end) {
    if (c->flags & TL__CONN_CLOSING)
      return TL_ECLOSED;
    if (tl__conn_pending(c) > 0) {
      tl__conn_flush(c);
      if (c->flags & TL__CONN_CLOSING)
        return TL_ECLOSED;
      if (tl__conn_pending(c) > 0)
        return TL_EAGAIN; /* on_drain resumes */
    }
    int64_t rest = end - *off;
    size_t want = rest < (int64_t)sizeof chunk ? (size_t)rest : sizeof chunk;
    ssize_t r = pread(fd, chunk, want, (off_t)*off);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0 || tl__conn_write(c, chunk, (size_t)r) != 0) {
      tl__conn_close(c);
      return TL_EIO;
    }
    *off += r;
    tl__conn_flush(c);
  }
  return 0;
}

int tl__conn_move(tl__conn *from, tl__conn *to, bool *inited) {
  *inited = false;
  int fd = tl__sock_fd(&from->sock);
  if (fd < 0)
    return TL_EIO;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0)
    return TL_EIO;
  int err = tl__sock_open(&from->srv->loop, &to->sock, nfd);
  if (err) {
    close(nfd);
    return err;
  }
  *inited = true;
  to->flags |= from->flags & TL__CONN_UNIX;
  to->tls = from->tls;
  from->tls = NULL;
  return 0;
}
