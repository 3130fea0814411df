/* Fixed-size blocks in aligned slabs (contract in pool.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#endif
#include "core/pool.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void tl__pool_init(tl__pool *p, size_t size) {
  *p = (tl__pool){.size = (size + 15) & ~(size_t)15};
}

#ifdef TL__POOL_MALLOC

void *tl__pool_alloc(tl__pool *p) {
  return calloc(1, p->size);
}

void tl__pool_free(tl__pool *p, void *block) {
  (void)p;
  free(block);
}

void tl__pool_destroy(tl__pool *p) {
  (void)p;
}

#else

#include <sys/mman.h>

#define SLAB ((size_t)256 * 1024)

typedef struct tl__slab {
  struct tl__slab *prev, *next; /* in pool->partial while listed */
  void *free;                   /* returned blocks, linked through them */
  char *bump;                   /* the first block never handed out */
  char *end;
  unsigned used;
  bool listed;
} tl__slab;

/* Blocks start one cache line into the slab. */
#define FIRST(s) ((char *)(s) + 64)

_Static_assert(sizeof(tl__slab) <= 64, "slab header fits its line");

static tl__slab *slab_of(void *block) {
  return (tl__slab *)((uintptr_t)block & ~(uintptr_t)(SLAB - 1));
}

static void list(tl__pool *p, tl__slab *s) {
  s->prev = NULL;
  s->next = p->partial;
  if (p->partial)
    p->partial->prev = s;
  p->partial = s;
  s->listed = true;
}

static void unlist(tl__pool *p, tl__slab *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    p->partial = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->listed = false;
}

/* A slab aligned to its size: map twice that, keep the aligned middle. */
static tl__slab *slab_new(tl__pool *p) {
  char *m = mmap(NULL, 2 * SLAB, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return NULL;
  char *a = (char *)(((uintptr_t)m + SLAB - 1) & ~(uintptr_t)(SLAB - 1));
  if (a > m)
    munmap(m, (size_t)(a - m));
  if (a + SLAB < m + 2 * SLAB)
    munmap(a + SLAB, (size_t)(m + 2 * SLAB - (a + SLAB)));
  tl__slab *s = (tl__slab *)a;
  *s = (tl__slab){.bump = FIRST(s), .end = a + SLAB};
  p->nslabs++;
  list(p, s);
  return s;
}

void *tl__pool_alloc(tl__pool *p) {
  if (p->size > TL__POOL_MAX)
    return calloc(1, p->size);
  tl__slab *s = p->partial;
  if (!s && !(s = slab_new(p)))
    return NULL;
  void *b;
  if (s->free) {
    b = s->free;
    memcpy(&s->free, b, sizeof s->free);
    memset(b, 0, p->size);
  } else {
    b = s->bump; /* never used: still zero from the kernel */
    s->bump += p->size;
  }
  s->used++;
  if (!s->free && s->bump + p->size > s->end)
    unlist(p, s);
  return b;
}

void tl__pool_free(tl__pool *p, void *block) {
  if (!block)
    return;
  if (p->size > TL__POOL_MAX) {
    free(block);
    return;
  }
  tl__slab *s = slab_of(block);
  memcpy(block, &s->free, sizeof s->free);
  s->free = block;
  s->used--;
  if (!s->listed)
    list(p, s);
  /* An empty slab goes back, unless it is the only one with room. */
  if (s->used == 0 && (s->prev || s->next)) {
    unlist(p, s);
    p->nslabs--;
    munmap(s, SLAB);
  }
}

void tl__pool_destroy(tl__pool *p) {
  /* With every block free, every slab is listed (and all but one were
   * already unmapped as they emptied). */
  while (p->partial) {
    tl__slab *s = p->partial;
    unlist(p, s);
    munmap(s, SLAB);
  }
  p->nslabs = 0;
}

#endif
