/* talon — the app's clock and timers.
 *
 *   static void tick(tl_timer *t, void *arg) { ... }
 *   tl_timer *t = tl_timer_start(app, 1000, 1000, tick, state);
 *   ...
 *   tl_timer_stop(t);
 *
 * Timers run on the app's loop, on the thread that runs tl_app_listen():
 * their callbacks may answer deferred responses, send on WebSockets and
 * publish. They never keep the app running by themselves: once a stop
 * (tl_app_stop, SIGINT, SIGTERM) has closed the listener and the last
 * connection, tl_app_listen() returns whatever timers are still running.
 * While in-flight requests finish during a graceful stop, timers go on
 * firing, so a response a timer was going to finish still gets finished.
 * When tl_app_listen() returns after running, every timer still running
 * has been stopped and freed (tl_app_on_stop() is the place to forget
 * the pointers); tl_app_free() frees any started later.
 *
 * Threading: every function here except tl_hrtime() must be called on the
 * app's thread (the one that calls tl_app_new and tl_app_listen).
 */
#ifndef TALON_TIMER_H
#define TALON_TIMER_H

#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_timer tl_timer;

/* A timer's callback: `timer` is the timer that fired, `arg` the pointer
 * given to tl_timer_start(). */
typedef void (*tl_timer_cb)(tl_timer *timer, void *arg);

/* The app's clock: milliseconds of a monotonic clock with an arbitrary
 * origin (not wall time), read once per turn of the loop, so every
 * callback of one turn sees the same value. Timers, timeouts and
 * tl_ws_stats.opened_ms use this clock; wall-clock jumps change nothing.
 * Works from tl_app_new() on (before tl_app_listen() it reads the clock
 * afresh). */
TL_EXTERN uint64_t tl_app_now(tl_app *app);

/* A monotonic clock in nanoseconds with an arbitrary origin, read afresh
 * at each call: for measuring durations shorter than a loop turn (a
 * request's handling time). Any thread may call it. */
TL_EXTERN uint64_t tl_hrtime(void);

/* Start a timer on the app's loop: `cb` runs with `arg` (borrowed: the
 * caller keeps it valid while the timer runs) `timeout_ms` after now (0:
 * at the next turn of the loop), then every `repeat_ms` if that is not 0.
 * The timer is owned by talon:
 *  - a one-shot timer (repeat_ms 0) is freed when its callback returns;
 *  - a repeating timer runs until tl_timer_stop();
 *  - either may be stopped before it fires, or from inside its own
 *    callback, with tl_timer_stop(); the pointer is invalid after that
 *    (for a call inside the callback: once the callback returns);
 *  - the app stops and frees the timers still running when
 *    tl_app_listen() returns and in tl_app_free() (see the top of this
 *    file).
 * May be called before tl_app_listen() (the timer then runs from the
 * start of the loop on, counted from the call), inside any callback of
 * the app, and while the app is stopping. Returns the timer, or NULL if
 * `app` or `cb` is NULL or memory is short. */
TL_EXTERN tl_timer *tl_timer_start(tl_app *app, uint64_t timeout_ms,
                                   uint64_t repeat_ms, tl_timer_cb cb,
                                   void *arg);

/* Stop `timer` and free it: its callback does not run again. Safe inside
 * that callback (the timer is freed when it returns; a repeating timer
 * does not fire again); stopping it again there does nothing. Must not be
 * called with a timer that was already freed: a one-shot timer whose
 * callback returned, a timer stopped outside its callback, or any timer
 * after tl_app_listen() returned. NULL is a no-op. */
TL_EXTERN void tl_timer_stop(tl_timer *timer);

#ifdef __cplusplus
}
#endif
#endif /* TALON_TIMER_H */
