/* The server: the loop, the listener, accepting, the flush phase, the
 * sweep of deadlines, deferred work, and the lifecycle (run, stop on a
 * signal or a request, close). Connection I/O is conn.c. */
#include "core/server.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "core/listen.h"
#include "core/tls.h"
#include "talon/common.h"
#ifdef TALON_FAULT_INJECTION
#include "core/fault.h"
#endif

#define RBUF_SIZE (64 * 1024)

/* Calls fn for every open connection, walking libuv's handle queue (see
 * tl__conn_opened). uv_walk tolerates handles being closed (or opened) by
 * the callback: it moves through a detached copy of the queue, and a
 * closing handle's memory goes only later. */
typedef void (*conn_visit)(tl__conn *c, void *arg);
typedef struct walk_ctx {
  conn_visit fn;
  void *arg;
} walk_ctx;

static void walk_one(uv_handle_t *h, void *arg) {
  walk_ctx *w = arg;
  if (h->type == UV_POLL && h->data == &tl__conn_mark &&
      !uv_is_closing(h) && !(((tl__conn *)h)->flags & TL__CONN_CLOSING))
    w->fn((tl__conn *)h, w->arg);
}

static void each_conn(tl__server *s, conn_visit fn, void *arg) {
  walk_ctx w = {fn, arg};
  uv_walk(&s->loop, walk_one, &w);
}

static void maybe_finish_stop(tl__server *s);

/* Flushes every corked connection. Runs in the check phase (after the
 * reads of this turn) and in the prepare phase (after timers and other
 * callbacks, before the loop blocks in poll), so nothing corked waits for
 * an unrelated event. A drain callback may cork more: loop until empty. */
static void flush_all(tl__server *s) {
  while (s->dirty) {
    tl__conn *c = s->dirty;
    s->dirty = NULL;
    while (c) {
      tl__conn *next = c->dirty_next;
      c->flags &= ~TL__CONN_DIRTY;
      c->dirty_next = NULL;
      if ((c->flags & TL__CONN_FEED) && !(c->flags & TL__CONN_CLOSING)) {
        c->flags &= ~TL__CONN_FEED;
        tl__conn_feed(c);
      }
      if ((c->flags & TL__CONN_WAKE) && !(c->flags & TL__CONN_CLOSING)) {
        c->flags &= ~TL__CONN_WAKE;
        c->proto->on_wake(c);
      }
      if (!(c->flags & TL__CONN_CLOSING)) {
        tl__conn_flush(c);
        /* Everything went out at once: tell a writer waiting for room. */
        if (!(c->flags & (TL__CONN_CLOSING | TL__CONN_ENDING)) &&
            tl__conn_pending(c) == 0 && c->proto->on_drain)
          c->proto->on_drain(c);
      }
      c = next;
    }
  }
}

static void flush_phase(tl__server *s) {
  flush_all(s);
  if (s->after_flush)
    s->after_flush(s->owner);
}

static void on_check(uv_check_t *h) {
  flush_phase(h->data);
}
static void on_prepare(uv_prepare_t *h) {
  tl__server *s = h->data;
  s->turn++;
  flush_phase(s);
}

uint32_t tl__server_turn(const tl__server *s) {
  return s->turn;
}

/* Runs the work deferred in the last turn. What runs is taken off the
 * list first, so work deferred again waits for the next turn: between two
 * slices of one connection's work the loop polls and serves the others. */
static void on_idle(uv_idle_t *h) {
  tl__server *s = h->data;
  s->working = s->work;
  s->work = NULL;
  while (s->working) {
    tl__work *w = s->working;
    s->working = w->next;
    w->next = NULL;
    w->fn(w);
  }
  if (!s->work)
    uv_idle_stop(&s->worker);
}

void tl__server_defer(tl__server *s, tl__work *w) {
  w->next = s->work;
  s->work = w;
  uv_idle_start(&s->worker, on_idle);
}

/* Unlinks `w` from the list at `*head`; whether it was there. */
static bool unlink_work(tl__work **head, tl__work *w) {
  for (tl__work **p = head; *p; p = &(*p)->next) {
    if (*p == w) {
      *p = w->next;
      w->next = NULL;
      return true;
    }
  }
  return false;
}

void tl__server_cancel(tl__server *s, tl__work *w) {
  /* A piece of work may close another connection while the turn's list
   * is being run: that one's work is still on `working`. */
  if (!unlink_work(&s->work, w))
    unlink_work(&s->working, w);
}

static void sweep_one(tl__conn *c, void *arg) {
  uint64_t now = *(const uint64_t *)arg;
  if (tl__conn_sweep_stalled(c, now)) {
    tl__conn_close(c);
    return;
  }
  if (!c->deadline || now < c->deadline)
    return;
  c->deadline = 0;
  if (c->flags & TL__CONN_LINGER)
    tl__conn_close(c);
  else if (tl__conn_tls_expired(c))
    return; /* the handshake did not finish in time */
  else if (c->proto->on_timeout)
    c->proto->on_timeout(c);
  else
    tl__conn_close(c);
}

static void resume_accepting(tl__server *s);

void tl__server_freed(tl__server *s, size_t bytes) {
  s->freed += bytes;
}

static void trim_heap(tl__server *s, uint64_t now) {
  /* At most once a second, however short the sweep's period. */
  if (s->freed < TL__TRIM_AFTER || now - s->trimmed_at < 1000)
    return;
  s->freed = 0;
  s->trimmed_at = now;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

static void on_sweep(uv_timer_t *t) {
  tl__server *s = t->data;
  uint64_t now = uv_now(&s->loop);
  if (!s->stopping)
    resume_accepting(s);
  each_conn(s, sweep_one, &now);
  trim_heap(s, now);
}

/* Takes one accepted socket: a connection block from the factory, its
 * handle, the limit, TLS, and reading. */
static void take(tl__server *s, const tl__listener *l, int fd) {
  tl__conn *c = s->factory(s, s->factory_arg);
  if (!c) {
    close(fd); /* out of memory: the client is not left hanging */
    return;
  }
  c->srv = s;
  if (tl__sock_open(&s->loop, &c->sock, fd) != 0) {
    close(fd);
    if (c->proto->release)
      c->proto->release(c);
    else
      free(c);
    return;
  }
  s->nconns++;
  if (s->nconns > s->cfg.max_connections) {
    c->flags |= TL__CONN_CLOSING;
    tl__sock_close(&c->sock, tl__conn_freed);
    return;
  }
  if (l->unix_sock) {
    c->flags |= TL__CONN_UNIX;
  } else {
    int on = 1; /* talon writes once per loop turn: no Nagle delay */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  }
  tl__conn_opened(c);
  if (l->spec->tls && tl__conn_tls_start(c, l->spec->tls) != 0) {
    tl__conn_close(c);
    return;
  }
  tl__conn_read_start(c);
}

static void on_listen_ready(uv_poll_t *h, int status, int events);

/* Out of descriptors: accepting stops until the next tick (on_sweep),
 * and the clients wait in the kernel's backlog meanwhile, rather than the
 * listener reporting readable again at once, every turn. */
static void pause_accepting(tl__listener *l) {
  uv_poll_stop(&l->sock.poll);
  l->paused = true;
}

static void resume_accepting(tl__server *s) {
  for (size_t i = 0; i < s->nlisteners; i++) {
    tl__listener *l = &s->listeners[i];
    if (l->paused && !uv_is_closing(&l->sock.handle)) {
      l->paused = false;
      uv_poll_start(&l->sock.poll, UV_READABLE, on_listen_ready);
    }
  }
}

/* The listening socket is readable: accepts every connection waiting
 * (several workers may share one socket: another may have taken it). */
static void on_listen_ready(uv_poll_t *h, int status, int events) {
  tl__listener *l =
      (tl__listener *)(void *)((char *)h - offsetof(tl__listener, sock));
  tl__server *s = l->srv;
  if (status < 0 || s->stopping)
    return;
  int lfd = tl__sock_fd(&l->sock);
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      take(s, l, fd);
      if (s->stopping || uv_is_closing(&l->sock.handle))
        return;
      continue;
    }
    switch (errno) {
    case EINTR:
    case ECONNABORTED: /* the client left while it waited */
    case EPROTO:
      continue;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM: pause_accepting(l); return;
    default: return; /* EAGAIN: none left */
    }
  }
}

void tl__server_adopt(tl__server *s, tl__conn *c) {
  c->srv = s;
  s->nconns++;
  tl__conn_opened(c);
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void maybe_finish_stop(tl__server *s) {
  if (!s->stopping || s->nconns > 0 || !s->handles_open)
    return;
  s->handles_open = false;
  close_handle((uv_handle_t *)&s->sweep);
  close_handle((uv_handle_t *)&s->shutdown_timer);
  close_handle((uv_handle_t *)&s->flusher);
  close_handle((uv_handle_t *)&s->preflusher);
  close_handle((uv_handle_t *)&s->worker);
  if (!s->cfg.no_signal_handlers) {
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sigterm);
  }
}

static void close_one(tl__conn *c, void *arg) {
  tl__conn_close(c);
}

static void on_shutdown_deadline(uv_timer_t *t) {
  each_conn(t->data, close_one, NULL);
}

static void shutdown_one(tl__conn *c, void *arg) {
  if (c->proto->on_shutdown)
    c->proto->on_shutdown(c);
  else
    tl__conn_close(c);
}

static void begin_stop(tl__server *s) {
  if (s->stopping || !s->running)
    return;
  s->stopping = true;
  for (size_t i = 0; i < s->nlisteners; i++)
    tl__listener_close(&s->listeners[i]);
  if (s->on_stop)
    s->on_stop(s->owner);
  each_conn(s, shutdown_one, NULL);
  if (s->nconns > 0) { /* some finish their work first */
    uv_timer_start(&s->shutdown_timer, on_shutdown_deadline,
                   s->cfg.shutdown_timeout_ms, 0);
  }
  maybe_finish_stop(s);
}

static void on_stop_async(uv_async_t *a) {
  begin_stop(a->data);
}

static void on_signal(uv_signal_t *sig, int signum) {
  begin_stop(sig->data);
}

int tl__server_init(tl__server *s, void *owner) {
  memset(s, 0, sizeof *s);
  s->owner = owner;
  s->on_conn_freed = maybe_finish_stop;
  int err = uv_loop_init(&s->loop);
  if (err)
    return err;
  /* The async handle exists for the server's whole life so tl_app_stop()
   * is safe from other threads at any time; unref'd so it does not keep
   * the loop alive. */
  err = uv_async_init(&s->loop, &s->stop_async, on_stop_async);
  if (err) {
    uv_loop_close(&s->loop);
    return err;
  }
  s->stop_async.data = s;
  uv_unref((uv_handle_t *)&s->stop_async);
  return 0;
}

static void close_listeners(tl__server *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    tl__listener_close(&s->listeners[i]);
  uv_run(&s->loop, UV_RUN_NOWAIT);
  free(s->listeners);
  s->listeners = NULL;
  s->nlisteners = 0;
}

/* The port a TCP socket of spec `sp` binds: its own, or, when that is 0
 * (any free port), the one an earlier socket of the same listener got,
 * so that a name's addresses (127.0.0.1 and ::1) share one port. */
static int group_port(const tl__server *s, size_t opened,
                      const tl__listen_spec *sp, bool *taken) {
  int port = tl__addr_port(&sp->addr);
  *taken = false;
  if (sp->kind != TL__LISTEN_INET || port != 0)
    return port;
  for (size_t i = 0; i < opened; i++) {
    const tl__listener *l = &s->listeners[i];
    if (l->spec->index == sp->index && l->spec->kind == TL__LISTEN_INET) {
      *taken = true;
      return l->port;
    }
  }
  return 0;
}

/* Whether some socket of listener `index` is open. */
static bool has_listener(const tl__server *s, size_t n, size_t index) {
  for (size_t i = 0; i < n; i++)
    if (s->listeners[i].spec->index == index)
      return true;
  return false;
}

/* Opens every spec and starts accepting; on failure none stays open.
 * *clash: the failure was a port taken that an earlier socket of the
 * same listener had picked (port 0): worth another try. */
static int open_listeners(tl__server *s, const tl__listen_spec *specs, size_t n,
                          bool reuse_port, bool *clash) {
  *clash = false;
  if (!(s->listeners = calloc(n, sizeof *s->listeners)))
    return TL_ENOMEM;
  size_t k = 0; /* slots used */
  int err = 0, skipped = 0;
  for (size_t i = 0; i < n; i++) {
    tl__listener *l = &s->listeners[k];
    l->srv = s;
    l->spec = &specs[i];
    bool taken;
    int port = group_port(s, k, &specs[i], &taken);
    err = tl__listener_open(&s->loop, l, &specs[i], port, reuse_port,
                            s->cfg.backlog);
    if (!err) {
      l->sock.handle.data = s; /* not tl__conn_mark: that marks a conn */
      err = uv_poll_start(&l->sock.poll, UV_READABLE, on_listen_ready);
    }
    if (err && !l->inited && specs[i].optional &&
        (err == UV_EAFNOSUPPORT || err == UV_EADDRNOTAVAIL)) {
      /* This address is not on this machine; the listener's others may
       * be. The slot was not used. */
      skipped = err;
      memset(l, 0, sizeof *l);
      err = 0;
      continue;
    }
    k++;
    if (err) {
      *clash = taken && err == UV_EADDRINUSE;
      break;
    }
  }
  for (size_t i = 0; !err && i < n; i++)
    if (!has_listener(s, k, specs[i].index))
      err = skipped;
  if (err) {
    close_listeners(s, k);
    return err;
  }
  s->nlisteners = k;
  return 0;
}

/* The bound port of the app's listener `i` (its first socket's). */
static int port_of(const tl__server *s, size_t i) {
  for (size_t j = 0; j < s->nlisteners; j++)
    if (s->listeners[j].spec->index == i)
      return s->listeners[j].port;
  return 0;
}

int tl__server_listener_port(const tl__server *s, size_t i) {
  return s->running ? port_of(s, i) : 0;
}

int tl__server_share(const tl__server *s, tl__listen_spec **specs, size_t *n) {
  *specs = NULL;
  *n = 0;
  if (!s->running || s->nlisteners == 0)
    return TL_ESTATE;
  if (!(*specs = calloc(s->nlisteners, sizeof **specs)))
    return TL_ENOMEM;
  for (size_t i = 0; i < s->nlisteners; i++)
    tl__listener_share(&s->listeners[i], &(*specs)[i]);
  *n = s->nlisteners;
  return 0;
}

int tl__server_open(tl__server *s, const tl__listen_spec *specs, size_t n,
                    bool reuse_port) {
  if (s->running)
    return TL_ESTATE;
  /* A peer that resets the connection while we write must cost only that
   * connection: write(2) and sendfile(2) would raise SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  s->rbuf_size = RBUF_SIZE;
  s->rbuf = malloc(s->rbuf_size);
  if (!s->rbuf)
    return TL_ENOMEM;
  int err = 0;
  bool clash;
  for (int tries = 0; n > 0; tries++) { /* none: outgoing connections only */
    err = open_listeners(s, specs, n, reuse_port, &clash);
    if (!err || !clash || tries == 8)
      break;
  }
  if (err) {
    free(s->rbuf);
    s->rbuf = NULL;
    return err;
  }
  s->port = port_of(s, 0);

  uv_timer_init(&s->loop, &s->sweep);
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, s->cfg.tick_ms, s->cfg.tick_ms);
  uv_timer_init(&s->loop, &s->shutdown_timer);
  s->shutdown_timer.data = s;
  uv_check_init(&s->loop, &s->flusher);
  s->flusher.data = s;
  uv_check_start(&s->flusher, on_check);
  uv_prepare_init(&s->loop, &s->preflusher);
  s->preflusher.data = s;
  uv_prepare_start(&s->preflusher, on_prepare);
  uv_idle_init(&s->loop, &s->worker);
  s->worker.data = s;
  if (!s->cfg.no_signal_handlers) {
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&s->sigint);
    uv_unref((uv_handle_t *)&s->sigterm);
  }
  s->handles_open = true;
  s->running = true;
  s->stopping = false;
  return 0;
}

void tl__server_loop(tl__server *s) {
#ifdef TALON_FAULT_INJECTION
  tl__fault_arm();
#endif
  /* A stop requested before we started running takes effect now. */
  uv_run(&s->loop, UV_RUN_DEFAULT);
  /* Closing handles need one more turn to finish. */
  uv_run(&s->loop, UV_RUN_DEFAULT);
  s->running = false;
  s->port = 0;
  free(s->listeners);
  s->listeners = NULL;
  s->nlisteners = 0;
#ifdef TALON_FAULT_INJECTION
  tl__fault_report();
#endif
  free(s->rbuf);
  s->rbuf = NULL;
  tl__conn_pool_free(s);
}

void tl__server_stop(tl__server *s) {
  uv_async_send(&s->stop_async);
}

void tl__server_close(tl__server *s) {
  close_handle((uv_handle_t *)&s->stop_async);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  uv_loop_close(&s->loop);
}
