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
/* Open every one of `specs` (borrowed while the server runs) and accept
 * on them (core/listen.h), ready to run; with SO_REUSEPORT on TCP
 * sockets when `reuse_port`, so that other workers' servers can bind the
 * same ports. With `n` 0 the loop runs for outgoing connections only
 * (tl_app_run). The TCP sockets of one listener (spec.index) that ask
 * for port 0 share the port the first one got (tried again a few times
 * if another process has it on the other address). A spec marked
 * optional whose address is not on this machine is skipped, as long as
 * its listener gets some socket. 0; TL_EINVAL (a bad spec); TL_ESTATE
 * (running); a libuv error if a socket could not be opened (then none
 * stays open); TL_ENOMEM. */
int tl__server_open(tl__server *s, const tl__listen_spec *specs, size_t n,
                    bool reuse_port);
/* The bound port of the app's listener `i` (spec.index; its first
 * socket's) while running, else 0 (also for a unix socket). */
int tl__server_listener_port(const tl__server *s, size_t i);
/* The specs another worker's server opens to listen beside this one's
 * open sockets (tl__listener_share): an array of *n for the caller to
 * free; its descriptors are borrowed from this server while it runs.
 * 0, TL_ESTATE (not open) or TL_ENOMEM. */
int tl__server_share(const tl__server *s, tl__listen_spec **specs, size_t *n);
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

/* `bytes` of large, short-lived memory (a connection's compression
 * windows) were freed on this loop. The C library keeps freed heap for
 * reuse rather than giving it back (glibc does so for blocks under its
 * mmap threshold, which zlib's 32 and 64 KiB windows are): once
 * TL__TRIM_AFTER bytes have been noted, the next sweep asks it to return
 * free pages to the system (malloc_trim, glibc only; elsewhere nothing
 * is done). A mass close of compressing connections then leaves the
 * process about as large as before they came. A trim costs what the
 * kernel takes to drop the pages, and the loop waits for it: 59 ms for
 * the 860 MiB of 10,000 closed zlib streams on the bench VM, at most once
 * a second. Loop thread. */
#define TL__TRIM_AFTER (4u << 20)
void tl__server_freed(tl__server *s, size_t bytes);
/* Take over an initialised, open handle as a new connection of `s`
 * (counted and listed like an accepted one). */
void tl__server_adopt(tl__server *s, tl__conn *c);

#endif
