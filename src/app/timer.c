/* The app's clock, its timers (include/talon/timer.h) and its stop hooks
 * (tl_app_on_stop).
 *
 * A timer is a uv_timer_t in a malloc'd block on the loop of the worker
 * that started it (worker 0 before listen), listed on that worker so the
 * ones still running can be closed when the loop ends. The handle is
 * unreferenced: timers never keep the loop alive, so a stop ends
 * tl_app_listen() once the server's own handles are closed, while timers
 * keep firing during the graceful part of the stop (they may be what
 * finishes an in-flight response). The block is freed in the handle's
 * close callback; a timer stopped inside its own callback is closed once
 * that callback returns, so the callback can use its timer throughout. */
#include <stdlib.h>

#include "app/app.h"
#include "app/timer.h"

struct tl_timer {
  uv_timer_t handle;
  tl__worker *w; /* whose loop it runs on */
  tl_timer_cb cb;
  void *arg;
  struct tl_timer *prev, *next; /* the worker's list of live timers */
  bool in_cb;                   /* its callback is running */
  bool stopped;                 /* tl_timer_stop ran inside the callback */
};

uint64_t tl_app_now(tl_app *app) {
  tl__worker *w = tl__app_here(app);
  /* Outside the loop the cached time is that of the last turn (or of
   * tl_app_new): read the clock instead. */
  if (!w->srv.running)
    uv_update_time(&w->srv.loop);
  return tl__server_now(&w->srv);
}

uint64_t tl_hrtime(void) {
  return uv_hrtime();
}

static void on_closed(uv_handle_t *h) {
  free(h->data);
}

/* Takes the timer off its worker's list and closes it. */
static void release(tl_timer *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    t->w->timers = t->next;
  if (t->next)
    t->next->prev = t->prev;
  uv_timer_stop(&t->handle);
  uv_close((uv_handle_t *)&t->handle, on_closed);
}

static void on_fire(uv_timer_t *h) {
  tl_timer *t = h->data;
  bool once = uv_timer_get_repeat(h) == 0;
  t->in_cb = true;
  t->cb(t, t->arg);
  t->in_cb = false;
  if (once || t->stopped)
    release(t);
}

tl_timer *tl_timer_start(tl_app *app, uint64_t timeout_ms, uint64_t repeat_ms,
                         tl_timer_cb cb, void *arg) {
  if (!app || !cb)
    return NULL;
  tl_timer *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  tl__worker *w = tl__app_here(app);
  uv_loop_t *loop = &w->srv.loop;
  /* Before tl_app_listen the loop's cached time may be long past: count
   * from now, as the caller means. */
  if (!w->srv.running)
    uv_update_time(loop);
  uv_timer_init(loop, &t->handle);
  t->handle.data = t;
  t->w = w;
  t->cb = cb;
  t->arg = arg;
  uv_unref((uv_handle_t *)&t->handle);
  uv_timer_start(&t->handle, on_fire, timeout_ms, repeat_ms);
  t->next = w->timers;
  if (t->next)
    t->next->prev = t;
  w->timers = t;
  return t;
}

void tl_timer_stop(tl_timer *t) {
  if (!t)
    return;
  if (t->in_cb) {
    /* on_fire releases it once the callback returns. */
    t->stopped = true;
    uv_timer_stop(&t->handle);
    return;
  }
  release(t);
}

void tl__app_timers_close(tl__worker *w) {
  while (w->timers)
    release(w->timers);
}

int tl_app_on_stop(tl_app *app, tl_app_stop_cb cb, void *arg) {
  if (!app || !cb)
    return TL_EINVAL;
  /* Every worker reads the list when it stops: with several, it is
   * complete before they start. */
  if (app->nworkers > 1 && atomic_load(&app->running))
    return TL_ESTATE;
  tl__stop_hook *h =
      realloc(app->stop_hooks, (app->nstop_hooks + 1) * sizeof *h);
  if (!h)
    return TL_ENOMEM;
  h[app->nstop_hooks++] = (tl__stop_hook){cb, arg};
  app->stop_hooks = h;
  return 0;
}

void tl__app_begin_stop(tl__worker *w) {
  tl_app *app = w->app;
  /* A hook may register another (the array may move): index, and only
   * the ones there when the stop began. */
  size_t n = app->nstop_hooks;
  for (size_t i = 0; i < n; i++)
    app->stop_hooks[i].cb(app, app->stop_hooks[i].arg);
}

void tl__app_stop_hooks_free(tl_app *app) {
  free(app->stop_hooks);
  app->stop_hooks = NULL;
  app->nstop_hooks = 0;
}
