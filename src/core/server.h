/* The server's lifecycle (server.c): initialise, run, stop and close the
 * loop and its listener, adopt a connection, defer work to the next loop
 * turn. The types, and the connection I/O the server drives, are in
 * core/conn.h (conn.c), which knows nothing of this file. */
#ifndef TALON_SRC_CORE_SERVER_H
#define TALON_SRC_CORE_SERVER_H

#include "core/conn.h"

/* Initialise the loop (the rest starts in tl__server_run). 0 or a libuv
 * error. */
int tl__server_init(tl__server *s, void *owner);
/* Bind and listen on every one of `specs` (borrowed while the server
 * runs: with workers, every worker's server opens the same list, with
 * SO_REUSEPORT when `reuse_port`, so that other servers' listeners can
 * share the ports), ready to run. With `n` 0 the loop runs for outgoing
 * connections only. 0; TL_EINVAL (a bad address); TL_ESTATE (running); a
 * libuv error if a bind or listen failed (then none stays open);
 * TL_ENOMEM. */
int tl__server_open(tl__server *s, const tl__listen_spec *specs, size_t n,
                    bool reuse_port);
/* The bound port of listener `i` while running, else 0. */
int tl__server_listener_port(const tl__server *s, size_t i);
/* Run the loop of an opened server until it is stopped and every handle
 * is closed. */
void tl__server_loop(tl__server *s);
/* Ask for a graceful stop; safe from any thread. */
void tl__server_stop(tl__server *s);
/* Close the loop; the server must not be running. */
void tl__server_close(tl__server *s);

/* Run `w->fn(w)` once on the next loop turn, after that turn's timers
 * and before it polls for I/O (which does not block while work is
 * pending); `fn` may defer `w` again. `w` must not be on the list yet. */
void tl__server_defer(tl__server *s, tl__work *w);
/* Take `w` off the list, if it is on it: it does not run. */
void tl__server_cancel(tl__server *s, tl__work *w);
/* A counter that goes up by one every loop turn (a turn ends when the
 * loop is about to poll for I/O), for budgets of work per turn. */
uint32_t tl__server_turn(const tl__server *s);

/* Take over an initialised, open handle as a new connection of `s`
 * (counted and listed like an accepted one). */
void tl__server_adopt(tl__server *s, tl__conn *c);

#endif
