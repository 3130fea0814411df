/* Which worker the calling thread runs; see app.h. */
#include "app/app.h"

/* The one piece of state that is not on an app: which loop the calling
 * thread is, so that functions given only the app (timers, tl_app_loop,
 * tl_app_publish) act on the caller's worker. Per thread, so N apps and
 * N workers in one process need nothing else. */
static _Thread_local tl__worker *current;

tl__worker **tl__app_current(void) {
  return &current;
}

tl__worker *tl__app_here(tl_app *app) {
  return current && current->app == app ? current : &app->workers[0];
}
