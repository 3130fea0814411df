/* Topic registry and fan-out by reference; see pubsub.h. */
#include "pubsub/pubsub.h"

#include <stdlib.h>
#include <string.h>

#include "ws/wsconn.h"

/* A subscriber slot in a topic: the socket and its slot in ws->subs. */
typedef struct topic_sub {
  tl_ws *ws;
  uint32_t ws_idx;
} topic_sub;

struct tl__topic {
  tl__topic *next; /* hash chain */
  uint32_t hash;
  uint32_t nsubs, cap; /* slots in subs (some NULL while walking) */
  uint32_t live;       /* subscribers */
  uint32_t walking;    /* publishes in progress over this topic */
  bool holes;
  bool busy;           /* published to since the last flush */
  tl__shared *run;     /* this turn's frames, appended back to back */
  tl__topic *next_run; /* topics holding a run (pubsub->runs) */
  topic_sub *subs;
  size_t len;
  char name[];
};

static uint32_t hash_of(const char *s, size_t n) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

void tl__pubsub_init(tl__pubsub *ps, tl__wsctx *ws) {
  memset(ps, 0, sizeof *ps);
  ps->ws = ws;
  ps->publish = tl__pubsub_deliver;
}

/* The registry a socket's topics live in. */
static tl__pubsub *ps_of(const tl_ws *ws) {
  return ws->ctx->above;
}

void tl__pubsub_free(tl__pubsub *ps) {
  for (size_t b = 0; b < ps->nbuckets; b++) {
    tl__topic *t = ps->buckets[b];
    while (t) {
      tl__topic *next = t->next;
      tl__shared_unref(t->run);
      free(t->subs);
      free(t);
      t = next;
    }
  }
  free(ps->buckets);
  ps->buckets = NULL;
  ps->nbuckets = ps->ntopics = 0;
}

static tl__topic *find(const tl__pubsub *ps, const char *name, size_t n,
                       uint32_t h) {
  if (!ps->nbuckets)
    return NULL;
  for (tl__topic *t = ps->buckets[h & (ps->nbuckets - 1)]; t; t = t->next)
    if (t->hash == h && t->len == n && memcmp(t->name, name, n) == 0)
      return t;
  return NULL;
}

static int grow_table(tl__pubsub *ps) {
  size_t nb = ps->nbuckets ? ps->nbuckets * 2 : 64;
  tl__topic **b = calloc(nb, sizeof *b);
  if (!b)
    return TL_ENOMEM;
  for (size_t i = 0; i < ps->nbuckets; i++) {
    tl__topic *t = ps->buckets[i];
    while (t) {
      tl__topic *next = t->next;
      t->next = b[t->hash & (nb - 1)];
      b[t->hash & (nb - 1)] = t;
      t = next;
    }
  }
  free(ps->buckets);
  ps->buckets = b;
  ps->nbuckets = nb;
  return 0;
}

static tl__topic *create(tl__pubsub *ps, const char *name, size_t n,
                         uint32_t h) {
  if (ps->ntopics >= ps->nbuckets && grow_table(ps) != 0)
    return NULL;
  tl__topic *t = calloc(1, sizeof *t + n + 1);
  if (!t)
    return NULL;
  t->hash = h;
  t->len = n;
  memcpy(t->name, name, n + 1);
  t->next = ps->buckets[h & (ps->nbuckets - 1)];
  ps->buckets[h & (ps->nbuckets - 1)] = t;
  ps->ntopics++;
  if (ps->topic_active)
    ps->topic_active(ps, t->name, true);
  return t;
}

/* Frees a topic nobody subscribes to and nobody is walking. */
static void maybe_destroy(tl__pubsub *ps, tl__topic *t) {
  if (t->live > 0 || t->walking > 0)
    return;
  tl__topic **pp = &ps->buckets[t->hash & (ps->nbuckets - 1)];
  while (*pp != t)
    pp = &(*pp)->next;
  *pp = t->next;
  ps->ntopics--;
  if (ps->topic_active)
    ps->topic_active(ps, t->name, false);
  if (t->run) {
    tl__topic **rp = &ps->runs;
    while (*rp != t)
      rp = &(*rp)->next_run;
    *rp = t->next_run;
    tl__shared_unref(t->run);
  }
  free(t->subs);
  free(t);
}

/* Closes the holes a walk left, fixing the sockets' back indices. */
static void compact(tl__topic *t) {
  uint32_t o = 0;
  for (uint32_t i = 0; i < t->nsubs; i++) {
    topic_sub s = t->subs[i];
    if (!s.ws)
      continue;
    t->subs[o] = s;
    s.ws->subs->at[s.ws_idx].idx = o;
    o++;
  }
  t->nsubs = o;
  t->holes = false;
}

static void topic_remove(tl__topic *t, uint32_t idx) {
  if (t->walking) {
    t->subs[idx].ws = NULL;
    t->holes = true;
  } else {
    topic_sub last = t->subs[--t->nsubs];
    if (idx != t->nsubs) {
      t->subs[idx] = last;
      last.ws->subs->at[last.ws_idx].idx = idx;
    }
  }
  t->live--;
}

static int check_topic(const char *topic, size_t *n) {
  if (!topic || !*topic)
    return TL_EINVAL;
  *n = strnlen(topic, TL_TOPIC_MAX + 1);
  return *n > TL_TOPIC_MAX ? TL_ETOOBIG : 0;
}

static uint32_t nsubs(const tl_ws *ws) {
  return ws->subs ? ws->subs->n : 0;
}

static int sub_index(const tl_ws *ws, const tl__topic *t) {
  for (uint32_t i = 0; i < nsubs(ws); i++)
    if (ws->subs->at[i].topic == t)
      return (int)i;
  return -1;
}

static void tell(tl_ws *ws, const tl__topic *t, uint32_t old) {
  if (ws->route->h.subscription)
    ws->route->h.subscription(ws, t->name, (int)t->live, (int)old);
}

int tl_ws_subscribe(tl_ws *ws, const char *topic) {
  size_t n;
  int err = check_topic(topic, &n);
  if (err)
    return err;
  if (ws->state != TL_WS_OPEN && ws->state != TL_WS_CLOSING)
    return TL_ESTATE;
  tl__pubsub *ps = ps_of(ws);
  uint32_t h = hash_of(topic, n);
  tl__topic *t = find(ps, topic, n, h);
  if (t && sub_index(ws, t) >= 0)
    return 0;
  if (!ws->subs || ws->subs->n == ws->subs->cap) {
    uint32_t cap = ws->subs ? ws->subs->cap * 2 : 4;
    tl__subset *s = realloc(ws->subs, sizeof *s + cap * sizeof s->at[0]);
    if (!s)
      return TL_ENOMEM;
    if (!ws->subs)
      s->n = 0;
    s->cap = cap;
    ws->subs = s;
  }
  bool fresh = !t;
  if (fresh && !(t = create(ps, topic, n, h)))
    return TL_ENOMEM;
  if (t->nsubs == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 4;
    topic_sub *s = realloc(t->subs, cap * sizeof *s);
    if (!s) {
      if (fresh)
        maybe_destroy(ps, t);
      return TL_ENOMEM;
    }
    t->subs = s;
    t->cap = cap;
  }
  t->subs[t->nsubs] = (topic_sub){ws, ws->subs->n};
  ws->subs->at[ws->subs->n++] = (tl__sub){t, t->nsubs++};
  t->live++;
  tell(ws, t, t->live - 1);
  return 0;
}

/* Removes subscription `i` of `ws`; tells the handler; may free the
 * topic. */
static void leave(tl_ws *ws, uint32_t i) {
  tl__subset *set = ws->subs;
  tl__sub s = set->at[i];
  tl__topic *t = s.topic;
  topic_remove(t, s.idx);
  tl__sub last = set->at[--set->n];
  if (i != set->n) {
    set->at[i] = last;
    if (last.topic->subs[last.idx].ws == ws)
      last.topic->subs[last.idx].ws_idx = i;
  }
  t->walking++; /* keep the topic alive through the handler */
  tell(ws, t, t->live + 1);
  t->walking--;
  if (!t->walking && t->holes)
    compact(t);
  maybe_destroy(ps_of(ws), t);
}

int tl_ws_unsubscribe(tl_ws *ws, const char *topic) {
  size_t n;
  if (check_topic(topic, &n) != 0)
    return TL_ENOENT;
  tl__topic *t = find(ps_of(ws), topic, n, hash_of(topic, n));
  int i = t ? sub_index(ws, t) : -1;
  if (i < 0)
    return TL_ENOENT;
  leave(ws, (uint32_t)i);
  return 0;
}

void tl__pubsub_leave_all(tl_ws *ws) {
  while (nsubs(ws))
    leave(ws, nsubs(ws) - 1);
  free(ws->subs);
  ws->subs = NULL;
}

bool tl_ws_is_subscribed(const tl_ws *ws, const char *topic) {
  size_t n;
  if (check_topic(topic, &n) != 0)
    return false;
  tl__topic *t = find(ps_of(ws), topic, n, hash_of(topic, n));
  return t && sub_index(ws, t) >= 0;
}

size_t tl_ws_topic_count(const tl_ws *ws) {
  return nsubs(ws);
}

const char *tl_ws_topic_at(const tl_ws *ws, size_t i) {
  return i < nsubs(ws) ? ws->subs->at[i].topic->name : NULL;
}

size_t tl__pubsub_count(const tl__pubsub *ps, const char *topic) {
  size_t n;
  if (check_topic(topic, &n) != 0)
    return 0;
  tl__topic *t = find(ps, topic, n, hash_of(topic, n));
  return t ? t->live : 0;
}

/* The smallest run buffer; it doubles while a turn's frames overflow it,
 * up to RUN_MAX (larger frames get a buffer of their own size). */
#define RUN_MIN 4096
#define RUN_MAX (256 * 1024)

/* Appends a frame to the topic's run buffer, starting a new one when it is
 * full. Frames published to one topic within a loop turn lie back to back
 * in one buffer, so a subscriber that receives all of them gets one
 * contiguous piece to write, and every such subscriber writes the same
 * bytes. The buffer never moves once allocated, so pieces already handed
 * to the kernel stay valid. Returns the frame's offset, or -1 on out of
 * memory. */
static int64_t run_append(tl__pubsub *ps, tl__topic *t, const uint8_t *hdr,
                          size_t hl, const void *data, size_t len) {
  size_t need = hl + len;
  if (!t->run || t->run->cap - t->run->len < need) {
    size_t cap = t->run ? t->run->cap * 2 : RUN_MIN;
    if (cap > RUN_MAX)
      cap = RUN_MAX;
    if (cap < need)
      cap = need;
    tl__shared *r = tl__shared_new(cap);
    if (!r)
      return -1;
    if (t->run) {
      tl__shared_unref(t->run);
    } else {
      t->next_run = ps->runs;
      ps->runs = t;
    }
    t->run = r;
  }
  size_t off = t->run->len;
  memcpy(t->run->data + off, hdr, hl);
  if (len)
    memcpy(t->run->data + off + hl, data, len);
  t->run->len += need;
  t->busy = true;
  return (int64_t)off;
}

void tl__pubsub_after_flush(tl__pubsub *ps) {
  tl__topic **pp = &ps->runs;
  while (*pp) {
    tl__topic *t = *pp;
    if (t->busy && t->run->refs == 1) {
      /* Everyone wrote it: reuse the buffer from its start. */
      t->run->len = 0;
      t->busy = false;
      pp = &t->next_run;
    } else {
      /* Idle since the last flush, or still referenced by a slow
       * subscriber's queue: let it go. */
      tl__shared_unref(t->run);
      t->run = NULL;
      t->busy = false;
      *pp = t->next_run;
    }
  }
}

/* Compresses a published message once with the app's shared compressor
 * for `bits` and appends the frame (RSV1 set) to the topic's run buffer.
 * Returns its offset (and a reference to its buffer in *buf), or -1 when
 * compression failed or did not make it smaller. */
static int64_t compressed_frame(tl__pubsub *ps, tl__topic *t, int bits,
                                const void *data, size_t len, int op,
                                size_t *flen, tl__shared **buf) {
  tl__buf *z = tl__ws_deflate_shared(ps->ws, bits, data, len);
  if (!z)
    return -1;
  uint8_t hdr[10];
  size_t hl = tl__ws_frame_header(hdr, true, true, op, z->len);
  int64_t off = run_append(ps, t, hdr, hl, z->data, z->len);
  *flen = hl + z->len;
  tl__ws_scratch_done(ps->ws);
  if (off < 0)
    return -1;
  *buf = t->run;
  t->run->refs++;
  return off;
}

int tl__pubsub_deliver(tl__pubsub *ps, const char *topic, size_t tlen,
                       const void *data, size_t len, int op, tl_ws *exclude) {
  tl__topic *t = find(ps, topic, tlen, hash_of(topic, tlen));
  if (!t || t->live == 0 ||
      (t->live == 1 && exclude && sub_index(exclude, t) >= 0))
    return TL_WS_DROPPED;
  uint8_t hdr[10];
  size_t hl = tl__ws_frame_header(hdr, true, false, op, len);
  int64_t off = run_append(ps, t, hdr, hl, data, len);
  if (off < 0)
    return TL_ENOMEM;
  tl__shared *run = t->run;
  run->refs++; /* a nested publish may replace t->run during the walk */
  /* Subscribers that take compressed frames share one compressed copy per
   * window size, built on first need, also in the run buffer. */
  int64_t zoff[16];
  size_t zlen[16];
  tl__shared *zrun[16];
  for (int b = 0; b < 16; b++)
    zoff[b] = -2; /* not built yet; -1: failed or not smaller */
  int result = TL_WS_DROPPED;
  bool pressure = false, queued = false;
  t->walking++;
  /* Subscribers that join during the walk are not visited. */
  uint32_t n = t->nsubs;
  for (uint32_t i = 0; i < n; i++) {
    tl_ws *ws = t->subs[i].ws;
    if (!ws || ws == exclude)
      continue;
    int r;
    int b = tl__ws_shares_compressed(ws, len) ? ws->pmd->agreed.server_bits : 0;
    if (b && zoff[b] == -2)
      zoff[b] = compressed_frame(ps, t, b, data, len, op, &zlen[b], &zrun[b]);
    if (b && zoff[b] >= 0)
      r = tl__ws_queue_shared(ws, zrun[b], (size_t)zoff[b], zlen[b], data, len,
                              op);
    else
      r = tl__ws_queue_shared(ws, run, (size_t)off, hl + len, data, len, op);
    if (r == TL_WS_BACKPRESSURE || r == TL_WS_DROPPED)
      pressure = true; /* this subscriber is over its backlog */
    if (r > 0)         /* accepted, with or without backpressure */
      queued = true;
    if (r > 0 && r != TL_WS_BACKPRESSURE)
      result = r;
  }
  t->walking--;
  for (int b = 0; b < 16; b++)
    if (zoff[b] >= 0)
      tl__shared_unref(zrun[b]);
  tl__shared_unref(run);
  if (!t->walking && t->holes)
    compact(t);
  maybe_destroy(ps, t);
  if (!queued)
    return TL_WS_DROPPED;
  return pressure ? TL_WS_BACKPRESSURE : result;
}

int tl__pubsub_publish(tl__pubsub *ps, const char *topic, const void *data,
                       size_t len, tl_opcode op, tl_ws *exclude) {
  size_t n;
  int err = check_topic(topic, &n);
  if (err)
    return err;
  if (op != TL_WS_TEXT && op != TL_WS_BINARY)
    return TL_EINVAL;
  ps->publishes++;
  return ps->publish(ps, topic, n, data, len, op, exclude);
}

int tl_ws_publish(tl_ws *ws, const char *topic, const void *data, size_t len,
                  tl_opcode op) {
  return tl__pubsub_publish(ps_of(ws), topic, data, len, op,
                            ws->route->h.publish_to_self ? NULL : ws);
}
