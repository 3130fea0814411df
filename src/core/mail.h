/* A worker's mailbox: messages from any thread, delivered on the loop's
 * thread in the order each sender posted them.
 *
 * A multi-producer, single-consumer list without locks: posting pushes
 * onto an atomic stack (compare-and-swap) and wakes the loop through one
 * uv_async_t; the loop takes the whole stack at once (one exchange),
 * reverses it and delivers, so a burst of posts costs one wakeup and is
 * handled in one loop turn. Message memory is the sender's to allocate
 * and the receiver's (the `deliver` callback's) to free. */
#ifndef TALON_SRC_CORE_MAIL_H
#define TALON_SRC_CORE_MAIL_H

#include <stdatomic.h>
#include <uv.h>

typedef struct tl__mail tl__mail;
struct tl__mail {
  tl__mail *next;
  int kind; /* the owner's to interpret */
};

typedef struct tl__mailbox tl__mailbox;
struct tl__mailbox {
  _Atomic(tl__mail *) head; /* newest first */
  uv_async_t async;
  /* Called on the loop's thread for each message, oldest first. */
  void (*deliver)(tl__mailbox *mb, tl__mail *m);
  void *owner;
};

/* Initialise on `loop` (the async handle is unreferenced: an empty
 * mailbox does not keep the loop alive). 0 or a libuv error. Loop thread
 * only. */
int tl__mailbox_init(tl__mailbox *mb, uv_loop_t *loop,
                     void (*deliver)(tl__mailbox *mb, tl__mail *m),
                     void *owner);
/* Post `m`; safe from any thread while the mailbox is open. */
void tl__mailbox_post(tl__mailbox *mb, tl__mail *m);
/* Deliver what is there now (loop thread). Also runs on its own when
 * posted to. */
void tl__mailbox_drain(tl__mailbox *mb);
/* Close the handle (loop thread); the loop must run once more for the
 * close to complete. Undelivered messages are delivered first. */
void tl__mailbox_close(tl__mailbox *mb);

#endif
