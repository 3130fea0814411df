/* The workers' shared topic table; see hub.h. */
#include "pubsub/hub.h"

#include <stdlib.h>
#include <string.h>

struct tl__hub {
  uv_mutex_t lock;
  tl__hub_topic **buckets;
  size_t nbuckets, ntopics;
  unsigned nworkers;
  size_t nwords; /* interest words per topic */
};

tl__hub *tl__hub_new(unsigned nworkers) {
  tl__hub *hub = calloc(1, sizeof *hub);
  if (!hub)
    return NULL;
  if (uv_mutex_init(&hub->lock) != 0) {
    free(hub);
    return NULL;
  }
  hub->nworkers = nworkers;
  hub->nwords = (nworkers + 63) / 64;
  return hub;
}

void tl__hub_free(tl__hub *hub) {
  if (!hub)
    return;
  /* Every registry unlinked its topics before this (they are freed
   * first); what is left would be a leak of theirs, freed anyway. */
  for (size_t b = 0; b < hub->nbuckets; b++) {
    tl__hub_topic *t = hub->buckets[b];
    while (t) {
      tl__hub_topic *next = t->next;
      free(t);
      t = next;
    }
  }
  free(hub->buckets);
  uv_mutex_destroy(&hub->lock);
  free(hub);
}

size_t tl__hub_words(const tl__hub *hub) {
  return hub->nwords;
}

unsigned tl__hub_workers(const tl__hub *hub) {
  return hub->nworkers;
}

/* Under the lock. */
static tl__hub_topic *find(tl__hub *hub, const char *name, size_t n,
                           uint32_t h) {
  if (!hub->nbuckets)
    return NULL;
  for (tl__hub_topic *t = hub->buckets[h & (hub->nbuckets - 1)]; t;
       t = t->next)
    if (t->hash == h && t->len == n && memcmp(t->name, name, n) == 0)
      return t;
  return NULL;
}

/* Under the lock. */
static bool grow(tl__hub *hub) {
  size_t nb = hub->nbuckets ? hub->nbuckets * 2 : 64;
  tl__hub_topic **b = calloc(nb, sizeof *b);
  if (!b)
    return false;
  for (size_t i = 0; i < hub->nbuckets; i++) {
    tl__hub_topic *t = hub->buckets[i];
    while (t) {
      tl__hub_topic *next = t->next;
      t->next = b[t->hash & (nb - 1)];
      b[t->hash & (nb - 1)] = t;
      t = next;
    }
  }
  free(hub->buckets);
  hub->buckets = b;
  hub->nbuckets = nb;
  return true;
}

tl__hub_topic *tl__hub_link(tl__hub *hub, const char *name, size_t n,
                            uint32_t h, unsigned w) {
  uv_mutex_lock(&hub->lock);
  tl__hub_topic *t = find(hub, name, n, h);
  if (!t && (hub->ntopics < hub->nbuckets || grow(hub))) {
    size_t words = hub->nwords * sizeof(_Atomic uint64_t);
    t = malloc(sizeof *t + words + n + 1);
    if (t) {
      t->hash = h;
      t->links = 0;
      atomic_init(&t->count, 0);
      atomic_init(&t->zbits, 0);
      atomic_init(&t->zmin, UINT32_MAX);
      for (size_t i = 0; i < hub->nwords; i++)
        atomic_init(&t->interest[i], 0);
      t->len = n;
      t->name = (char *)t->interest + words;
      memcpy(t->name, name, n);
      t->name[n] = '\0';
      t->next = hub->buckets[h & (hub->nbuckets - 1)];
      hub->buckets[h & (hub->nbuckets - 1)] = t;
      hub->ntopics++;
    }
  }
  if (t) {
    t->links++;
    atomic_fetch_or_explicit(&t->interest[w / 64], UINT64_C(1) << (w % 64),
                             memory_order_release);
  }
  uv_mutex_unlock(&hub->lock);
  return t;
}

void tl__hub_unlink(tl__hub *hub, tl__hub_topic *t, unsigned w) {
  uv_mutex_lock(&hub->lock);
  atomic_fetch_and_explicit(&t->interest[w / 64], ~(UINT64_C(1) << (w % 64)),
                            memory_order_release);
  if (--t->links == 0) {
    tl__hub_topic **pp = &hub->buckets[t->hash & (hub->nbuckets - 1)];
    while (*pp != t)
      pp = &(*pp)->next;
    *pp = t->next;
    hub->ntopics--;
    free(t);
  }
  uv_mutex_unlock(&hub->lock);
}

bool tl__hub_view_of(tl__hub *hub, const char *name, size_t n, uint32_t h,
                     tl__hub_view *out) {
  uv_mutex_lock(&hub->lock);
  tl__hub_topic *t = find(hub, name, n, h);
  if (t) {
    for (size_t i = 0; i < hub->nwords; i++)
      out->interest[i] = atomic_load(&t->interest[i]);
    out->zbits = atomic_load(&t->zbits);
    out->zmin = atomic_load(&t->zmin);
  }
  uv_mutex_unlock(&hub->lock);
  return t != NULL;
}

size_t tl__hub_count(tl__hub *hub, const char *name, size_t n, uint32_t h) {
  uv_mutex_lock(&hub->lock);
  tl__hub_topic *t = find(hub, name, n, h);
  size_t count = t ? atomic_load(&t->count) : 0;
  uv_mutex_unlock(&hub->lock);
  return count;
}

void tl__hub_wants_compressed(tl__hub_topic *t, int bits, size_t threshold) {
  uint32_t th = threshold > UINT32_MAX ? UINT32_MAX : (uint32_t)threshold;
  atomic_fetch_or_explicit(&t->zbits, 1u << bits, memory_order_relaxed);
  uint32_t cur = atomic_load_explicit(&t->zmin, memory_order_relaxed);
  while (th < cur &&
         !atomic_compare_exchange_weak_explicit(&t->zmin, &cur, th,
                                                memory_order_relaxed,
                                                memory_order_relaxed))
    ;
}
