/* talon — the test client: the app under test on a thread of its own
 * (contract in include/talon/test.h).
 *
 * Only the public API: the app runs through tl_app_listen() on a thread of
 * ours (worker 0's thread; other workers are the app's own); a one-shot
 * timer started before it, so on worker 0's loop from its first turn,
 * reads the bound port and wakes the caller; tl_app_stop(), safe from any
 * thread, ends it. */
#include "testkit.h"

#include <talon/timer.h>

#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_START_TIMEOUT_MS 10000

uint64_t tl__t_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the app's thread --------------------------------------------------- */

/* On the app's loop: the listener is bound once the loop runs. */
static void on_loop_started(tl_timer *timer, void *arg) {
  tl_test *t = arg;
  int port = tl_app_port(t->app);
  if (port == 0) { /* not yet (a later layout of listen): look again */
    tl_timer_start(t->app, 1, 0, on_loop_started, t);
    return;
  }
  pthread_mutex_lock(&t->mu);
  t->port = port;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

static void *run_app(void *arg) {
  tl_test *t = arg;
  int rc = tl_app_listen(t->app, t->host, 0);
  pthread_mutex_lock(&t->mu);
  t->done = true;
  t->rc = rc;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void test_free(tl_test *t) {
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}

int tl_test_start(tl_test **out, tl_app *app, const tl_test_options *opts) {
  if (!out || !app)
    return TL_EINVAL;
  *out = NULL;
  tl_test_options o = {0};
  if (opts)
    o = *opts;
  const char *host = o.host ? o.host : "127.0.0.1";
  /* A numeric address: the client connects to the host it listens on
   * (a name tl_app_listen would resolve, or a unix socket, it cannot). */
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICHOST};
  struct addrinfo *ai;
  if (strlen(host) >= 64 || getaddrinfo(host, NULL, &hints, &ai) != 0)
    return TL_EINVAL;
  freeaddrinfo(ai);
  tl_test *t = calloc(1, sizeof *t);
  if (!t)
    return TL_ENOMEM;
  t->app = app;
  memcpy(t->host, host, strlen(host) + 1);
  t->timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
  unsigned start_ms =
      o.start_timeout_ms ? o.start_timeout_ms : DEFAULT_START_TIMEOUT_MS;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cv, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&t->mu, NULL);
  /* Started here, before the app's thread exists, so that it runs on the
   * app's loop from its first turn. */
  if (!tl_timer_start(app, 0, 0, on_loop_started, t)) {
    test_free(t);
    return TL_ENOMEM;
  }
  int err = pthread_create(&t->thread, NULL, run_app, t);
  if (err) {
    test_free(t);
    return -err;
  }
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += start_ms / 1000;
  until.tv_nsec += (long)(start_ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  pthread_mutex_lock(&t->mu);
  int w = 0;
  while (!t->port && !t->done && w != ETIMEDOUT)
    w = pthread_cond_timedwait(&t->cv, &t->mu, &until);
  bool up = t->port != 0 && !t->done;
  pthread_mutex_unlock(&t->mu);
  if (!up) {
    tl_app_stop(app);
    pthread_join(t->thread, NULL);
    int rc = t->done && t->rc ? t->rc : -ETIMEDOUT;
    test_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int tl_test_stop(tl_test *t) {
  if (!t)
    return 0;
  tl_app_stop(t->app);
  pthread_join(t->thread, NULL);
  int rc = t->rc;
  test_free(t);
  return rc;
}

int tl_test_port(const tl_test *t) {
  return t->port;
}

tl_app *tl_test_app(const tl_test *t) {
  return t->app;
}
