/* The hub: what the workers' topic registries share. Internal to pubsub.
 *
 * With more than one worker, each worker keeps its own registry (its
 * sockets, its frames, no lock), and the hub keeps one entry per topic
 * that has subscribers on any worker: which workers have them (the
 * interest bits a publish reads to know where to forward), how many
 * subscribers there are app-wide (exact: every subscribe and unsubscribe
 * counts atomically), and which compressed forms remote subscribers can
 * take. A registry links its topic to the entry when the topic gets its
 * first local subscriber and unlinks it when the last one leaves: only
 * then is the hub's mutex taken. Publishing to a topic a worker has
 * subscribers of reads the entry through the link, without the mutex. */
#ifndef TALON_SRC_PUBSUB_HUB_H
#define TALON_SRC_PUBSUB_HUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct tl__hub tl__hub;

typedef struct tl__hub_topic tl__hub_topic;
struct tl__hub_topic {
  tl__hub_topic *next; /* hash chain (hub lock) */
  uint32_t hash;
  uint32_t links;          /* registries linked to it (hub lock) */
  _Atomic uint32_t count;  /* subscribers on all workers */
  _Atomic uint32_t zbits;  /* bit b: a subscriber takes the shared
                              compressed frame of window b */
  _Atomic uint32_t zmin;   /* the smallest compress_threshold among them */
  size_t len;
  char *name;              /* NUL-terminated, in the same block */
  _Atomic uint64_t interest[]; /* bit w: worker w has subscribers */
};

/* A snapshot of a topic's entry for a publish without a link. */
typedef struct tl__hub_view {
  uint64_t *interest; /* the caller's array of tl__hub_words() words */
  uint32_t zbits, zmin;
} tl__hub_view;

/* NULL on out of memory. */
tl__hub *tl__hub_new(unsigned nworkers);
void tl__hub_free(tl__hub *hub);
size_t tl__hub_words(const tl__hub *hub);
unsigned tl__hub_workers(const tl__hub *hub);

/* Link worker `w` to `name` (n bytes, hash h): the entry is created if
 * needed and w's interest bit set. NULL on out of memory. */
tl__hub_topic *tl__hub_link(tl__hub *hub, const char *name, size_t n,
                            uint32_t h, unsigned w);
/* Undo one link of worker `w`; the entry goes with its last link. */
void tl__hub_unlink(tl__hub *hub, tl__hub_topic *t, unsigned w);
/* Copy the entry's interest and compression (false: no such topic). */
bool tl__hub_view_of(tl__hub *hub, const char *name, size_t n, uint32_t h,
                     tl__hub_view *out);
/* Subscribers of `name` on all workers. */
size_t tl__hub_count(tl__hub *hub, const char *name, size_t n, uint32_t h);
/* A subscriber that takes shared compressed frames of window `bits` from
 * `threshold` bytes joined the topic. */
void tl__hub_wants_compressed(tl__hub_topic *t, int bits, size_t threshold);

#endif
