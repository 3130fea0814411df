#include "core/buf.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "talon/common.h"

int tl__buf_reserve(tl__buf *b, size_t extra) {
  return tl__buf_reserve_capped(b, extra, SIZE_MAX);
}

int tl__buf_reserve_capped(tl__buf *b, size_t extra, size_t max_cap) {
  if (b->cap - b->len >= extra)
    return 0;
  if (extra > SIZE_MAX / 2 - b->len)
    return TL_ENOMEM;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra)
    cap *= 2;
  if (cap > max_cap)
    cap = max_cap > b->len + extra ? max_cap : b->len + extra;
  char *p = realloc(b->data, cap);
  if (!p)
    return TL_ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int tl__buf_append(tl__buf *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  int err = tl__buf_reserve(b, n);
  if (err)
    return err;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void tl__buf_consume(tl__buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void tl__buf_free(tl__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void tl__buf_reset(tl__buf *b, size_t keep) {
  b->len = 0;
  if (b->cap > keep)
    tl__buf_free(b);
}

/* Blocks are at least this large; bigger requests get a block of their
 * own size. */
#define ARENA_BLOCK 2048

struct tl__arena_block {
  tl__arena_block *next;
  size_t size;
  alignas(max_align_t) unsigned char mem[];
};

void *tl__arena_alloc(tl__arena *a, size_t size) {
  const size_t align = alignof(max_align_t);
  if (size > SIZE_MAX - align - ARENA_BLOCK)
    return NULL;
  size = (size + align - 1) & ~(align - 1);
  if (size == 0)
    size = align;
  if (!a->head || a->head->size - a->used < size) {
    size_t bsize = size > ARENA_BLOCK ? size : ARENA_BLOCK;
    tl__arena_block *blk = malloc(sizeof *blk + bsize);
    if (!blk)
      return NULL;
    blk->size = bsize;
    blk->next = a->head;
    a->head = blk;
    a->used = 0;
  }
  void *p = a->head->mem + a->used;
  a->used += size;
  return p;
}

char *tl__arena_strndup(tl__arena *a, const char *s, size_t n) {
  char *p = tl__arena_alloc(a, n + 1);
  if (!p)
    return NULL;
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

void tl__arena_reset(tl__arena *a) {
  /* Keep only the oldest block (the tail of the chain), which is the
   * standard-size one a typical request fits in. */
  tl__arena_block *blk = a->head;
  if (!blk)
    return;
  while (blk->next) {
    tl__arena_block *next = blk->next;
    free(blk);
    blk = next;
  }
  if (blk->size > ARENA_BLOCK) {
    free(blk);
    blk = NULL;
  }
  a->head = blk;
  a->used = 0;
}

void tl__arena_free(tl__arena *a) {
  tl__arena_block *blk = a->head;
  while (blk) {
    tl__arena_block *next = blk->next;
    free(blk);
    blk = next;
  }
  a->head = NULL;
  a->used = 0;
}
