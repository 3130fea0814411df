/* The workers: each one loop on one thread with its own server, HTTP,
 * WebSocket and pub/sub state; starting them, stopping them, and what
 * crosses between them (calls, publishes). See app.h. */
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "app/timer.h"
#include "pubsub/hub.h"
#include "ws/client.h"

/* The worker on this thread (app/thread.c). */
#define current (*tl__app_current())

static unsigned min_u(unsigned a, unsigned b) {
  return a < b ? a : b;
}

/* ---- the wiring of a worker's layers ------------------------------------ */

static void after_flush(void *owner) {
  tl__worker *w = owner;
  tl__pubsub_after_flush(&w->pubsub);
}

/* A closing socket leaves its topics (after its close handler ran). */
static void ws_closed(tl_ws *ws) {
  tl__pubsub_leave_all(ws);
}

/* A batch of publishes for another worker goes to its mailbox. */
static void post_batch(tl__pubsub *ps, unsigned to, tl__xbatch *b);

typedef struct call_all {
  tl_app_call_cb fn, done;
  void *arg;
  _Atomic unsigned left; /* workers yet to run fn */
} call_all;

typedef struct call {
  tl__mail mail;
  tl_app_call_cb fn;
  void *arg;
  call_all *all; /* tl_app_call_all: shared by the workers' calls */
} call;

static void on_mail(tl__mailbox *mb, tl__mail *m) {
  tl__worker *w = mb->owner;
  if (m->kind == TL__MAIL_PUBSUB) {
    tl__pubsub_receive(&w->pubsub, (tl__xbatch *)m);
    return;
  }
  call *c = (call *)m;
  tl__worker *was = current;
  current = w; /* also when run from tl_app_free */
  c->fn(w->app, c->arg);
  if (c->all && atomic_fetch_sub(&c->all->left, 1) == 1) {
    if (c->all->done)
      c->all->done(w->app, c->arg);
    free(c->all);
  }
  current = was;
  free(c);
}

static void begin_stop(void *owner);

static tl__worker *of_pubsub(tl__pubsub *ps) {
  return (tl__worker *)((char *)ps - offsetof(tl__worker, pubsub));
}

/* The backend's side of a worker's registry (talon/cluster.h). */
static void out_publish(tl__pubsub *ps, const char *topic, const void *data,
                        size_t len, int op) {
  tl_app *app = of_pubsub(ps)->app;
  if (app->backend.publish)
    app->backend.publish(app->backend.ctx, topic, data, len, (tl_opcode)op);
}

static void interest(tl__pubsub *ps, const char *topic, bool on) {
  tl_app *app = of_pubsub(ps)->app;
  if (app->backend.interest)
    app->backend.interest(app->backend.ctx, topic, on);
}

static void post_batch(tl__pubsub *ps, unsigned to, tl__xbatch *b) {
  tl__mailbox_post(&of_pubsub(ps)->app->workers[to].mail, &b->mail);
}

void tl__worker_use_backend(tl__worker *w) {
  w->pubsub.out_publish = out_publish;
  w->pubsub.interest = interest;
}

int tl__worker_init(tl_app *app, tl__worker *w, unsigned id) {
  w->app = app;
  w->id = id;
  if (tl__server_init(&w->srv, w) != 0)
    return TL_ENOMEM;
  if (tl__mailbox_init(&w->mail, &w->srv.loop, on_mail, w) != 0) {
    tl__server_close(&w->srv);
    return TL_ENOMEM;
  }
  w->ws.app = app;
  w->ws.above = &w->pubsub;
  w->ws.on_closed = ws_closed;
  w->srv.ws = &w->ws;
  tl__pubsub_init(&w->pubsub, &w->ws);
  if (app->hub && tl__pubsub_join(&w->pubsub, app->hub, id, post_batch) != 0) {
    tl__mailbox_close(&w->mail);
    tl__server_close(&w->srv);
    return TL_ENOMEM;
  }
  const tl_app_config *o = &app->opt;
  /* Timeouts are checked by one sweep; a quarter of the shortest timeout
   * keeps them within 25% of their setting, and at most once a second. */
  unsigned shortest = min_u(o->header_timeout_ms, o->keepalive_timeout_ms);
  shortest = min_u(shortest, o->send_timeout_ms);
  unsigned tick = shortest / 4;
  if (tick < 10)
    tick = 10;
  if (tick > 1000)
    tick = 1000;
  w->srv.cfg = (tl__server_config){
      /* Each worker takes its part of the app's limit. */
      .max_connections =
          (o->max_connections + app->nworkers - 1) / app->nworkers,
      .backlog = o->backlog,
      .shutdown_timeout_ms = o->shutdown_timeout_ms,
      .send_timeout_ms = o->send_timeout_ms,
      .tick_ms = tick,
      /* Signals stop the app through worker 0. */
      .no_signal_handlers = o->no_signal_handlers != 0 || id > 0,
  };
  w->srv.factory = tl__hconn_new;
  w->srv.factory_arg = &w->http;
  w->srv.after_flush = after_flush;
  w->srv.on_stop = begin_stop;
  w->srv.log = tl__app_log;
  return 0;
}

void tl__worker_free(tl__worker *w) {
  /* Timers started after the last run (or without one) are closed here;
   * closing the loop runs their close callbacks. Mail still waiting is
   * delivered (calls run; publishes find no subscribers). */
  tl__worker *was = current;
  current = w;
  tl__app_timers_close(w);
  tl__mailbox_close(&w->mail);
  current = was;
  tl__server_close(&w->srv);
  tl__pubsub_free(&w->pubsub);
  tl__wsctx_free(&w->ws);
}

/* ---- listening and stopping ---------------------------------------------- */

/* Asks every worker to stop, once per listen. */
static void stop_all(tl_app *app) {
  if (atomic_exchange(&app->stopping, true))
    return;
  for (unsigned i = 0; i < app->nworkers; i++)
    tl__server_stop(&app->workers[i].srv);
}

/* A worker begins to stop (its server's on_stop): the others stop too
 * (a signal reaches worker 0 only), and the stop hooks run here. */
static void begin_stop(void *owner) {
  tl__worker *w = owner;
  tl_app *app = w->app;
  stop_all(app);
  if (atomic_load(&app->failed))
    return;
  if (w->id == 0 && app->has_backend && app->backend.stop)
    app->backend.stop(app->backend.ctx);
  tl__app_begin_stop(w);
}

/* The loop has ended: the timers still running are stopped and freed, as
 * include/talon/timer.h promises, so nothing of this run is left for the
 * next one; mail that came meanwhile is delivered. One turn without
 * waiting runs the close callbacks. */
static void after_run(tl__worker *w) {
  tl__app_timers_close(w);
  tl__mailbox_drain(&w->mail);
  uv_run(&w->srv.loop, UV_RUN_NOWAIT);
}

static void worker_main(void *arg) {
  tl__worker *w = arg;
  tl_app *app = w->app;
  current = w;
  w->start_err = tl__server_open(&w->srv, app->bound, app->nbound, true);
  uv_sem_post(&app->started);
  if (w->start_err == 0) {
    tl__server_loop(&w->srv);
    after_run(w);
  }
  current = NULL;
}

/* The other workers share worker 0's routes and start with copies of its
 * observers (each may add its own later). 0 or TL_ENOMEM. */
static int share(tl_app *app) {
  tl__worker *w0 = &app->workers[0];
  for (unsigned i = 1; i < app->nworkers; i++) {
    tl__worker *w = &app->workers[i];
    /* The counters stay the worker's own (a second listen). */
    __typeof__(w->http.cnt) cnt = w->http.cnt;
    w->http = w0->http;
    w->http.cnt = cnt;
    w->http.date[0] = '\0';
    w->http.date_sec = 0;
    w->ws.nobservers = 0;
    for (size_t j = 0; j < w0->ws.nobservers; j++)
      if (tl__wsctx_observe(&w->ws, &w0->ws.observers[j]) != 0)
        return TL_ENOMEM;
  }
  return 0;
}

static void on_listen(tl_app *app) {
  if (app->opt.on_listen)
    app->opt.on_listen(app, app->host, app->workers[0].srv.port);
}

/* Client sockets made before the loops ran (tl_ws_connect) start on
 * worker 0. */
static void start_connects(tl_app *app, tl__worker *w) {
  /* The list is newest first: start them in the order they were made. */
  tl_ws *rev = NULL;
  while (app->connects) {
    tl_ws *ws = app->connects;
    app->connects = *tl__wsc_next(ws);
    *tl__wsc_next(ws) = rev;
    rev = ws;
  }
  while (rev) {
    tl_ws *ws = rev;
    rev = *tl__wsc_next(ws);
    tl__wsc_start(ws, &w->srv);
  }
}

/* The listen call's own listener (with TLS when `tls` is given) and the
 * added ones (app/listen.c), on every worker; with `none`, no listener
 * (tl_app_run). */
static int listen_on(tl_app *app, const char *host, int port, tl_tls *tls,
                     bool none) {
  if (!app)
    return TL_EINVAL;
  bool idle = false;
  if (!atomic_compare_exchange_strong(&app->running, &idle, true))
    return TL_ESTATE;
  tl__worker *w0 = &app->workers[0];
  int err = tl__router_compile(&w0->http);
  if (!err)
    err = tl__app_attach(app);
  if (!err && host && strlen(host) >= sizeof app->host)
    err = TL_EINVAL;
  if (!err) {
    snprintf(app->host, sizeof app->host, "%s", host && *host ? host : "0.0.0.0");
    atomic_store(&app->failed, false);
    atomic_store(&app->stopping, false);
    err = share(app);
  }
  if (!err && none && app->nlisten > 1)
    err = TL_EINVAL; /* listeners were added: tl_app_listen opens them */
  if (!err && !none)
    err = tl__app_listen_prepare(app, &w0->srv.loop, host, port, tls);
  if (!err) /* with none: no listener (app->open is NULL, nopen 0) */
    err = tl__server_open(&w0->srv, app->open, app->nopen, app->nworkers > 1);
  if (err) {
    tl__app_listen_done(app);
    tl__app_log_unfix(app);
    atomic_store(&app->running, false);
    return err;
  }
  /* The others bind the TCP ports worker 0 got (port 0 picked one), and
   * take copies of its unix and inherited sockets (SO_REUSEPORT is no
   * use there: a second bind of a path fails), one after the other. With
   * none (tl_app_run) they open nothing either. */
  if (app->nworkers > 1 && !none)
    err = tl__server_share(&w0->srv, &app->bound, &app->nbound);
  for (unsigned i = 1; i < app->nworkers && !err; i++) {
    tl__worker *w = &app->workers[i];
    err = uv_thread_create(&w->thread, worker_main, w);
    if (err)
      break;
    w->thread_started = true;
    uv_sem_wait(&app->started);
    err = w->start_err;
  }
  current = w0;
  if (!err && app->has_backend && app->backend.start)
    err = app->backend.start(app->backend.ctx, app);
  if (err) {
    /* Stop the ones that listen; their stop hooks do not run. */
    atomic_store(&app->failed, true);
    stop_all(app);
  } else {
    if (!none)
      on_listen(app);
    start_connects(app, w0);
  }
  tl__server_loop(&w0->srv);
  after_run(w0);
  current = NULL;
  for (unsigned i = 1; i < app->nworkers; i++) {
    tl__worker *w = &app->workers[i];
    if (w->thread_started)
      uv_thread_join(&w->thread);
    /* A worker that never listened may have been asked to stop: take
     * that request now, so that it does not stop the next listen. */
    if (w->thread_started && w->start_err)
      uv_run(&w->srv.loop, UV_RUN_NOWAIT);
    w->thread_started = false;
  }
  free(app->bound);
  app->bound = NULL;
  app->nbound = 0;
  tl__app_listen_done(app);
  tl__app_log_unfix(app);
  atomic_store(&app->running, false);
  return err;
}

int tl_app_listen(tl_app *app, const char *host, int port) {
  return listen_on(app, host, port, NULL, false);
}

int tl_app_listen_tls(tl_app *app, const char *host, int port, tl_tls *tls) {
  return tls ? listen_on(app, host, port, tls, false) : TL_EINVAL;
}

int tl_app_run(tl_app *app) {
  return listen_on(app, NULL, 0, NULL, true);
}

void tl_app_stop(tl_app *app) {
  if (!app)
    return;
  if (atomic_load(&app->running))
    stop_all(app);
  else /* before listen: the next listen stops at once */
    for (unsigned i = 0; i < app->nworkers; i++)
      tl__server_stop(&app->workers[i].srv);
}

int tl_app_port(const tl_app *app) {
  return app->workers[0].srv.port;
}

struct uv_loop_s *tl_app_loop(tl_app *app) {
  return &tl__app_here(app)->srv.loop;
}

unsigned tl_app_workers(const tl_app *app) {
  return app->nworkers;
}

int tl_app_worker(const tl_app *app) {
  return current && current->app == app ? (int)current->id : -1;
}

/* ---- calls and publishes from anywhere ----------------------------------- */

static int post_call(tl_app *app, unsigned worker, tl_app_call_cb fn,
                     void *arg, call_all *all) {
  call *c = malloc(sizeof *c);
  if (!c)
    return TL_ENOMEM;
  *c = (call){{NULL, TL__MAIL_CALL}, fn, arg, all};
  tl__mailbox_post(&app->workers[worker].mail, &c->mail);
  return 0;
}

int tl_app_call(tl_app *app, unsigned worker, tl_app_call_cb fn, void *arg) {
  if (!app || !fn || worker >= app->nworkers)
    return TL_EINVAL;
  return post_call(app, worker, fn, arg, NULL);
}

int tl_app_call_all(tl_app *app, tl_app_call_cb fn, tl_app_call_cb done,
                    void *arg) {
  if (!app || !fn)
    return TL_EINVAL;
  call_all *all = malloc(sizeof *all);
  call **calls = calloc(app->nworkers, sizeof *calls);
  bool ok = all && calls;
  for (unsigned i = 0; ok && i < app->nworkers; i++)
    ok = (calls[i] = malloc(sizeof **calls)) != NULL;
  if (!ok) {
    for (unsigned i = 0; calls && i < app->nworkers; i++)
      free(calls[i]);
    free(calls);
    free(all);
    return TL_ENOMEM;
  }
  *all = (call_all){fn, done, arg, app->nworkers};
  for (unsigned i = 0; i < app->nworkers; i++) {
    *calls[i] = (call){{NULL, TL__MAIL_CALL}, fn, arg, all};
    tl__mailbox_post(&app->workers[i].mail, &calls[i]->mail);
  }
  free(calls);
  return 0;
}

static void post_foreign(void *arg, unsigned worker, tl__xbatch *b) {
  tl_app *app = arg;
  tl__mailbox_post(&app->workers[worker].mail, &b->mail);
}

int tl_app_publish(tl_app *app, const char *topic, const void *data, size_t len,
                   tl_opcode op) {
  return tl_app_publish_ex(app, topic, data, len, op, -1);
}

int tl_app_publish_ex(tl_app *app, const char *topic, const void *data,
                      size_t len, tl_opcode op, int compress) {
  if (current && current->app == app)
    return tl__pubsub_publish(&current->pubsub, topic, data, len, op, compress,
                              NULL);
  if (!atomic_load(&app->running)) /* nobody subscribes here */
    return tl__pubsub_publish(&app->workers[0].pubsub, topic, data, len, op,
                              compress, NULL);
  int r = tl__pubsub_publish_from(app->hub, app->nworkers, topic, data, len,
                                  op, compress, post_foreign, app);
  if (r >= 0 && app->has_backend && app->backend.publish)
    app->backend.publish(app->backend.ctx, topic, data, len, op);
  return r;
}

int tl_app_deliver(tl_app *app, const char *topic, const void *data,
                   size_t len, tl_opcode op) {
  if (!app)
    return TL_EINVAL;
  if (current && current->app == app)
    return tl__pubsub_publish_in(&current->pubsub, topic, data, len, op);
  if (!atomic_load(&app->running))
    return tl__pubsub_publish_in(&app->workers[0].pubsub, topic, data, len,
                                 op);
  return tl__pubsub_publish_from(app->hub, app->nworkers, topic, data, len, op,
                                 -1, post_foreign, app);
}

size_t tl_app_subscriber_count(const tl_app *app, const char *topic) {
  tl__worker *w = tl__app_here((tl_app *)app);
  return tl__pubsub_count(&w->pubsub, topic);
}
