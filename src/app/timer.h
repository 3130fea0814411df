/* The app's timers and stop hooks (src/app/timer.c): what the app calls to
 * wire them into a worker's life. Private to src/. */
#ifndef TALON_SRC_APP_TIMER_H
#define TALON_SRC_APP_TIMER_H

#include "app/app.h"

/* A worker's server's on_stop hook (`owner` is the worker): runs the
 * callbacks registered with tl_app_on_stop(), on that worker's thread. */
void tl__app_begin_stop(tl__worker *w);

/* Stop and close every timer still running on the worker's loop; their
 * memory goes once the loop has run the close callbacks. Called when the
 * loop has ended. */
void tl__app_timers_close(tl__worker *w);

/* Free the stop hooks (tl_app_free). */
void tl__app_stop_hooks_free(tl_app *app);

#endif
