/* The app's timers and stop hooks (src/app/timer.c): what app.c calls to
 * wire them into the app's life. Private to src/. */
#ifndef TALON_SRC_APP_TIMER_H
#define TALON_SRC_APP_TIMER_H

#include "talon/app.h"

/* The server's on_stop hook (`owner` is the app): runs the callbacks
 * registered with tl_app_on_stop(). */
void tl__app_begin_stop(void *owner);

/* Stop and close every timer still running; their memory goes once the
 * loop has run the close callbacks. Called when the loop has ended. */
void tl__app_timers_close(tl_app *app);

/* Free the stop hooks (tl_app_free). */
void tl__app_stop_hooks_free(tl_app *app);

#endif
