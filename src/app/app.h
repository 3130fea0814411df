/* Internal: the app, the one owner. It holds the options, the routes,
 * the stop hooks and one or more workers; a worker is one loop on one
 * thread with one state per layer (server, HTTP, WebSocket, pub/sub), and
 * the app wires them together: the server makes HTTP connections, HTTP
 * hands upgrades to the ws layer, a closing socket leaves its topics, the
 * flush recycles publish buffers and forwards publishes to the other
 * workers. No layer below knows these structs; each gets its own part.
 *
 * Threads: worker 0 runs on the thread that calls tl_app_listen(), the
 * others on threads the app starts. The routes (compiled once, before
 * the workers start) and the middleware are shared read-only; everything
 * else a worker uses is its own, and what crosses workers goes through
 * their mailboxes (core/mail.h) or the pub/sub hub. */
#ifndef TALON_SRC_APP_APP_H
#define TALON_SRC_APP_APP_H

#include <stdatomic.h>

#include "core/mail.h"
#include "core/server.h"
#include "http/http.h"
#include "pubsub/pubsub.h"
#include "talon.h"
#include "ws/wsconn.h"

/* Room for a listener's host as given: a name (253), an IPv6 address
 * with a zone, "unix:" and a path (107), "fd:N", "systemd:NAME". */
#define TL__HOST_MAX 264

/* A listener the user asked for: tl_app_listen's own or one added with
 * tl_app_add_listener, its host as given (app/listen.c). */
typedef struct tl__app_listener {
  char host[TL__HOST_MAX];
  int port;
  tl_tls *tls; /* a reference of the app's, or NULL */
} tl__app_listener;

typedef struct tl__stop_hook {
  tl_app_stop_cb cb;
  void *arg;
} tl__stop_hook;

typedef struct tl__log_hook {
  tl_app_log_fn fn;
  void *arg;
} tl__log_hook;

enum { /* kinds of mail between workers */
       TL__MAIL_PUBSUB = 0, /* a tl__xbatch */
       TL__MAIL_CALL = 1    /* tl_app_call */
};

typedef struct tl__worker {
  tl_app *app;
  unsigned id;
  tl__server srv;
  /* Worker 0's owns the routes; the others' share them (a copy of the
   * struct taken at listen, with their own parser settings and Date). */
  tl__http http;
  tl__wsctx ws;
  tl__pubsub pubsub;
  tl__mailbox mail;
  struct tl_timer *timers; /* the user's timers on this loop (timer.c) */
  uv_thread_t thread;      /* workers 1..n-1 while listening */
  bool thread_started;
  int start_err; /* what opening its listener returned */
} tl__worker;

struct tl_app {
  tl_app_config opt;
  tl__worker *workers;
  unsigned nworkers;
  struct tl__hub *hub; /* topics across workers; NULL with one worker */
  tl_pubsub_backend backend; /* across processes (talon/cluster.h) */
  bool has_backend;
  void *data;
  tl__stop_hook *stop_hooks;
  size_t nstop_hooks;
  /* tl_app_on_log's hooks: fixed while the workers run (log.c). */
  tl__log_hook *log_hooks;
  size_t nlog_hooks;
  bool log_fixed;
  /* The listeners (app/listen.c): [0] is the listen call's own, the
   * rest were added with tl_app_add_listener. At each listen they are
   * resolved into the sockets worker 0 opens (`open`: a name may give
   * several addresses, "systemd" several descriptors), and worker 0's
   * open sockets are described for the others (`bound`). */
  tl__app_listener *listen;
  size_t nlisten;
  tl__listen_spec *open;
  size_t nopen;
  tl__listen_spec *bound;
  size_t nbound; /* 0 with tl_app_run: no listener */
  /* The sockets systemd passed (LISTEN_FDS for this process), read and
   * unset at the first listen on "systemd" (app/listen.c): how many,
   * from descriptor 3, and their names (LISTEN_FDNAMES, or NULL). */
  bool sd_read;
  int sd_nfds;
  char *sd_names;
  /* Client sockets made before the loops run (tl_ws_connect, in
   * connect.c): worker 0 starts them, or the app frees them. */
  tl_ws *connects;
  /* Listening: the host given, whether tl_app_listen runs, whether the
   * start failed (stop hooks do not run then), whether a stop of all
   * workers was already asked for. */
  char host[TL__HOST_MAX];
  _Atomic bool running;
  _Atomic bool failed;
  _Atomic bool stopping;
  uv_sem_t started; /* workers 1..n-1 report their listener */
};

/* thread.c: the worker of `app` running on the calling thread, or worker
 * 0 when the calling thread runs none (before listen, or a thread of the
 * user's); and the calling thread's worker slot itself (NULL: none). */
/* log.c: the server's own messages to the app's hooks (a server's `log`,
 * whose owner is the worker); middleware's attach at listen, after which
 * the hooks are fixed until tl__app_log_unfix; freeing the hooks. */
void tl__app_log(void *worker, const char *line);
int tl__app_attach(tl_app *app);
void tl__app_log_unfix(tl_app *app);
void tl__app_log_free(tl_app *app);

tl__worker *tl__app_here(tl_app *app);
tl__worker **tl__app_current(void);

/* worker.c, for app.c: initialise a worker's state on its loop; start
 * and stop the workers; free one; plug the backend into a worker. */
int tl__worker_init(tl_app *app, tl__worker *w, unsigned id);
void tl__worker_free(tl__worker *w);
void tl__worker_use_backend(tl__worker *w);

/* app/listen.c: sets the listen call's own listener, app->listen[0] (on
 * host:port, with TLS when `tls` is given: a reference is taken), and
 * resolves the list into app->open (names with getaddrinfo, on `loop`,
 * synchronously), for worker 0's server to open. _done drops that
 * reference and the resolved list after the run; the list goes with the
 * app. Returns 0, TL_EINVAL or UV_ENAMETOOLONG (a bad host), a libuv
 * getaddrinfo error (UV_EAI_NONAME: a name that does not resolve),
 * TL_ENOENT (no socket from systemd), TL_ENOMEM. */
int tl__app_listen_prepare(tl_app *app, uv_loop_t *loop, const char *host,
                           int port, tl_tls *tls);
void tl__app_listen_done(tl_app *app);
void tl__app_listeners_free(tl_app *app);


#endif
