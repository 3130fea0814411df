/* Growable byte buffers and a per-request arena. No libuv. */
#ifndef TALON_SRC_CORE_BUF_H
#define TALON_SRC_CORE_BUF_H

#include <stddef.h>

/* A growable buffer. `data` is owned; a zeroed struct is an empty buffer. */
typedef struct tl__buf {
  char *data;
  size_t len;
  size_t cap;
} tl__buf;

/* Make room for `extra` more bytes. Returns 0 or TL_ENOMEM (buffer
 * unchanged). */
int tl__buf_reserve(tl__buf *b, size_t extra);
/* Like tl__buf_reserve, but the capacity does not grow past `max_cap`
 * (unless the reservation itself needs more). */
int tl__buf_reserve_capped(tl__buf *b, size_t extra, size_t max_cap);
/* Append bytes. Returns 0 or TL_ENOMEM (buffer unchanged). */
int tl__buf_append(tl__buf *b, const void *p, size_t n);
/* Drop the first `n` bytes. */
void tl__buf_consume(tl__buf *b, size_t n);
/* Release the memory (the buffer becomes empty). */
void tl__buf_free(tl__buf *b);
/* Keep the memory but release it if it grew past `keep` bytes, so one
 * large request does not pin memory on a long-lived connection. */
void tl__buf_reset(tl__buf *b, size_t keep);

/* A bump allocator made of chained blocks. The first block is kept across
 * resets, so a keep-alive connection allocates nothing per request once
 * warmed up. */
typedef struct tl__arena_block tl__arena_block;
typedef struct tl__arena {
  tl__arena_block *head;
  size_t used; /* bytes used in head */
} tl__arena;

void *tl__arena_alloc(tl__arena *a, size_t size);
char *tl__arena_strndup(tl__arena *a, const char *s, size_t n);
void tl__arena_reset(tl__arena *a);
void tl__arena_free(tl__arena *a);

#endif
