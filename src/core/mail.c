/* A worker's mailbox; see mail.h. */
#include "core/mail.h"

#include <stddef.h>

static void on_async(uv_async_t *a) {
  tl__mailbox_drain(a->data);
}

int tl__mailbox_init(tl__mailbox *mb, uv_loop_t *loop,
                     void (*deliver)(tl__mailbox *mb, tl__mail *m),
                     void *owner) {
  atomic_init(&mb->head, NULL);
  mb->deliver = deliver;
  mb->owner = owner;
  int err = uv_async_init(loop, &mb->async, on_async);
  if (err)
    return err;
  mb->async.data = mb;
  uv_unref((uv_handle_t *)&mb->async);
  return 0;
}

void tl__mailbox_post(tl__mailbox *mb, tl__mail *m) {
  tl__mail *old = atomic_load_explicit(&mb->head, memory_order_relaxed);
  do
    m->next = old;
  while (!atomic_compare_exchange_weak_explicit(
      &mb->head, &old, m, memory_order_release, memory_order_relaxed));
  /* Only the post that found the box empty wakes the loop; the others
   * join that wakeup (the loop takes the whole list). */
  if (!old)
    uv_async_send(&mb->async);
}

void tl__mailbox_drain(tl__mailbox *mb) {
  tl__mail *m = atomic_exchange_explicit(&mb->head, NULL, memory_order_acquire);
  tl__mail *fifo = NULL;
  while (m) { /* newest first: reverse */
    tl__mail *next = m->next;
    m->next = fifo;
    fifo = m;
    m = next;
  }
  while (fifo) {
    tl__mail *next = fifo->next;
    mb->deliver(mb, fifo);
    fifo = next;
  }
}

void tl__mailbox_close(tl__mailbox *mb) {
  tl__mailbox_drain(mb);
  if (!uv_is_closing((uv_handle_t *)&mb->async))
    uv_close((uv_handle_t *)&mb->async, NULL);
}
