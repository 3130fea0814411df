/* Internal: fixed-size blocks for long-lived connections, on one thread.
 *
 * A WebSocket lives for hours in a block of a few hundred bytes, and the
 * HTTP connection it came from (a few KiB) is freed beside it: from
 * malloc's heap, the two interleave, and each idle socket ends up costing
 * its block, malloc's header and a share of the holes the HTTP blocks
 * left. A pool carves blocks of one size out of 256 KiB slabs mapped
 * from the kernel and aligned to their size (a block finds its slab by
 * masking its address): no header per block, no holes between blocks of
 * different lives, pages touched only as blocks are first used, and a
 * slab whose blocks are all free goes back to the kernel (the last one
 * with free room is kept).
 *
 * Under AddressSanitizer or fault injection the pool is plain calloc and
 * free, so that use-after-free and allocation failures stay visible to
 * those builds. */
#ifndef TALON_SRC_CORE_POOL_H
#define TALON_SRC_CORE_POOL_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__) || defined(TALON_FAULT_INJECTION)
#define TL__POOL_MALLOC 1 /* calloc and free, see above */
#endif

struct tl__slab;

typedef struct tl__pool {
  size_t size;              /* bytes per block (a multiple of 16) */
  struct tl__slab *partial; /* slabs with a free block */
  size_t nslabs;            /* slabs mapped */
} tl__pool;

/* Blocks larger than this come from calloc: a slab would hold too few. */
#define TL__POOL_MAX ((size_t)16 * 1024)

/* A pool of blocks of at least `size` bytes. */
void tl__pool_init(tl__pool *p, size_t size);
/* A zeroed block, or NULL when memory ran out. */
void *tl__pool_alloc(tl__pool *p);
/* Returns `block`, which came from `p`. NULL is ignored. */
void tl__pool_free(tl__pool *p, void *block);
/* Unmaps every slab: every block must have been freed. */
void tl__pool_destroy(tl__pool *p);

#endif
