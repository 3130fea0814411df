/* Topic registry and fan-out by reference; see pubsub.h. */
#include "pubsub/pubsub.h"

#include <stdlib.h>
#include <string.h>

#include "pubsub/hub.h"

#include "ws/wsconn.h"

/* A subscriber slot in a topic: the socket and its slot in ws->subs. */
typedef struct topic_sub {
  tl_ws *ws;
  uint32_t ws_idx;
  bool zshare; /* may take shared compressed frames */
} topic_sub;

struct tl__topic {
  tl__topic *next; /* hash chain */
  uint32_t hash;
  uint32_t nsubs, cap; /* slots in subs (some NULL while walking) */
  uint32_t live;       /* subscribers */
  uint32_t walking;    /* publishes in progress over this topic */
  uint32_t zsubs;      /* subscribers that may take shared compressed
                          frames (tl__ws_shares_compressed) */
  bool holes;
  bool busy;           /* published to since the last flush */
  tl__shared *run;     /* this turn's frames, appended back to back */
  tl__topic *next_run; /* topics holding a run (pubsub->runs) */
  tl__hub_topic *link; /* the hub's entry (workers), else NULL */
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
  return tl__ws_ctx(ws)->above;
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
  for (unsigned w = 0; ps->outbox && w < ps->nworkers; w++)
    tl__xbatch_free(ps->outbox[w]);
  free(ps->outbox);
  ps->outbox = NULL;
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
  if (ps->hub && !(t->link = tl__hub_link(ps->hub, name, n, h, ps->self))) {
    free(t);
    return NULL;
  }
  t->hash = h;
  t->len = n;
  memcpy(t->name, name, n + 1);
  t->next = ps->buckets[h & (ps->nbuckets - 1)];
  ps->buckets[h & (ps->nbuckets - 1)] = t;
  ps->ntopics++;
  if (ps->interest && !ps->hub) /* one worker: its topics are the app's */
    ps->interest(ps, t->name, true);
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
  if (ps->interest && !ps->hub)
    ps->interest(ps, t->name, false);
  if (t->link)
    tl__hub_unlink(ps->hub, t->link, ps->self);
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

/* A walk over the topic's subscribers ends: the last one closes the holes
 * removals left. */
static void walk_end(tl__topic *t) {
  if (--t->walking == 0 && t->holes)
    compact(t);
}

static void topic_remove(tl__topic *t, uint32_t idx) {
  t->zsubs -= t->subs[idx].zshare;
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

static int check_compress(int compress) {
  return compress < -1 || compress > 1 ? TL_EINVAL : 0;
}

/* The arguments every publish checks: the topic (its length in *n), the
 * opcode and the compress choice. 0 or the error to return. */
static int check_publish(const char *topic, tl_opcode op, int compress,
                         size_t *n) {
  int err = check_topic(topic, n);
  if (err)
    return err;
  if ((op != TL_WS_TEXT && op != TL_WS_BINARY) || check_compress(compress))
    return TL_EINVAL;
  return 0;
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

/* Counts one subscriber more (+1) or less (-1) and tells the socket's
 * subscription handler: the counts are the app's (all workers). */
static void count_and_tell(tl_ws *ws, const tl__topic *t, int delta) {
  uint32_t now = t->live;
  if (t->link) {
    now = delta > 0 ? atomic_fetch_add(&t->link->count, 1) + 1
                    : atomic_fetch_sub(&t->link->count, 1) - 1;
    tl__pubsub *ps = ps_of(ws);
    if (ps->interest && now == (delta > 0 ? 1u : 0u)) /* first or last */
      ps->interest(ps, t->name, delta > 0);
  }
  if (ws->route->h.subscription)
    ws->route->h.subscription(ws, t->name, (int)now, (int)(now - delta));
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
  /* Whether it takes shared compressed frames of some messages (for any
   * length and compress flag: SIZE_MAX passes every threshold). */
  bool zshare = tl__ws_shares_compressed(ws, SIZE_MAX, -1);
  t->subs[t->nsubs] = (topic_sub){ws, ws->subs->n, zshare};
  ws->subs->at[ws->subs->n++] = (tl__sub){t, t->nsubs++};
  t->live++;
  t->zsubs += zshare;
  /* Other workers forward the compressed form this socket can take. */
  if (t->link && zshare)
    tl__hub_wants_compressed(t->link, ws->pmd->agreed.server_bits,
                             ws->route->h.compress_threshold);
  count_and_tell(ws, t, 1);
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
  count_and_tell(ws, t, -1);
  walk_end(t);
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
  if (ps->hub)
    return tl__hub_count(ps->hub, topic, n, hash_of(topic, n));
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
  for (unsigned w = 0; ps->outbox && w < ps->nworkers; w++) {
    if (ps->outbox[w]) {
      ps->post(ps, w, ps->outbox[w]);
      ps->outbox[w] = NULL;
    }
  }
  tl__topic **pp = &ps->runs;
  while (*pp) {
    tl__topic *t = *pp;
    if (t->busy && t->run->refs == 1 && tl__shared_alone(t->run)) {
      /* Everyone wrote it, here and on other workers: reuse the buffer
       * from its start. */
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

/* A compressed form of a message for one window size: where its frame
 * is (a reference held in `buf`), or off -2: not built yet, -1: failed
 * or not smaller. */
typedef struct zform {
  tl__shared *buf;
  int64_t off;
  size_t len;
  bool local; /* built here (our reference), not from a batch */
} zform;

static void zforms_init(zform z[16]) {
  for (int b = 0; b < 16; b++)
    z[b] = (zform){NULL, -2, 0, false};
}

/* Drops the references of the forms built here. */
static void zforms_done(zform z[16]) {
  for (int b = 0; b < 16; b++)
    if (z[b].local && z[b].off >= 0)
      tl__shared_unref(z[b].buf);
}

/* Compresses a published message once with the worker's shared
 * compressor for `bits` and appends the frame (RSV1 set) to the topic's
 * run buffer. */
static void compressed_frame(tl__pubsub *ps, tl__topic *t, int bits,
                             const void *data, size_t len, int op, zform *z) {
  z->off = -1;
  z->local = true;
  tl__buf *buf = tl__ws_deflate_shared(ps->ws, bits, data, len);
  if (!buf)
    return;
  uint8_t hdr[10];
  size_t hl = tl__ws_frame_header(hdr, true, true, op, buf->len);
  size_t flen = hl + buf->len;
  int64_t off = run_append(ps, t, hdr, hl, buf->data, buf->len);
  tl__ws_scratch_done(ps->ws);
  if (off < 0)
    return;
  z->len = flen;
  z->buf = t->run;
  z->buf->refs++;
  z->off = off;
}

/* Queues a built frame (`flen` bytes at `off` of `buf`, whose payload is
 * `data`) to every subscriber of `t` but `exclude`, or the compressed
 * form a subscriber takes (built on first need, kept in `z`). Returns like
 * tl_ws_publish. */
static int fan_out(tl__pubsub *ps, tl__topic *t, tl__shared *buf, size_t off,
                   size_t flen, const void *data, size_t len, int op,
                   int compress, tl_ws *exclude, zform z[16]) {
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
    int b = tl__ws_shares_compressed(ws, len, compress)
                ? ws->pmd->agreed.server_bits
                : 0;
    if (b && z[b].off == -2)
      compressed_frame(ps, t, b, data, len, op, &z[b]);
    if (b && z[b].off >= 0)
      r = tl__ws_queue_shared(ws, z[b].buf, (size_t)z[b].off, z[b].len, data,
                              len, op);
    else
      r = tl__ws_queue_shared(ws, buf, off, flen, data, len, op);
    if (r == TL_WS_BACKPRESSURE || r == TL_WS_DROPPED)
      pressure = true; /* this subscriber is over its backlog */
    if (r > 0)         /* accepted, with or without backpressure */
      queued = true;
    if (r > 0 && r != TL_WS_BACKPRESSURE)
      result = r;
  }
  walk_end(t);
  if (!queued)
    return TL_WS_DROPPED;
  return pressure ? TL_WS_BACKPRESSURE : result;
}

/* ---- forwarding between workers ----------------------------------------

   A batch entry: the plain frame, `nz` compressed forms, then the topic's
   bytes; each frame is held (tl__shared_hold) for the receiver. Plain
   frames published to one topic one after the other in a loop turn lie
   back to back in its run buffer: without compressed forms they share one
   entry (`count` frames in `plain`), which the receiver queues to each
   subscriber as one piece. */
typedef struct xframe {
  tl__shared *buf;
  uint32_t off, len;
} xframe;

typedef struct xentry {
  xframe plain;
  uint32_t hl;      /* the (first) plain frame's header bytes */
  uint32_t count;   /* frames in `plain`; more than one only if nz is 0 */
  uint32_t payload; /* their payload bytes together */
  uint16_t tlen;    /* topic bytes */
  uint8_t op, nz;   /* compressed forms following */
  int8_t compress;  /* as given to the publish */
  /* xzform[nz], then the topic */
} xentry;

typedef struct xzform {
  xframe f;
  uint32_t bits;
} xzform;

static size_t entry_size(size_t nz, size_t tlen) {
  size_t n = sizeof(xentry) + nz * sizeof(xzform) + tlen;
  return (n + 7) & ~(size_t)7;
}

static xzform *entry_z(xentry *e) {
  return (xzform *)(void *)(e + 1);
}

static char *entry_topic(xentry *e) {
  return (char *)(entry_z(e) + e->nz);
}

/* Appends an entry for a frame to the batch *bp (created or grown), taking
 * a hold of every frame in it. 0 or TL_ENOMEM. */
static int batch_add(tl__xbatch **bp, tl__shared *buf, size_t off, size_t flen,
                     size_t hl, int op, int compress, const zform z[16],
                     const char *topic, size_t tlen) {
  size_t nz = 0;
  for (int b = 0; z && b < 16; b++)
    nz += z[b].off >= 0;
  tl__xbatch *bt = *bp;
  if (bt && bt->len && nz == 0) {
    /* The frame right after the last entry's, for the same topic: the
     * entry grows to cover it (its hold covers the block). */
    xentry *l = (xentry *)(void *)((char *)bt->data + bt->last);
    if (l->nz == 0 && l->plain.buf == buf &&
        (size_t)l->plain.off + l->plain.len == off &&
        flen <= UINT32_MAX - l->plain.len && l->compress == compress &&
        l->tlen == tlen && memcmp(entry_topic(l), topic, tlen) == 0) {
      l->plain.len += (uint32_t)flen;
      l->count++;
      l->payload += (uint32_t)(flen - hl);
      return 0;
    }
  }
  size_t need = entry_size(nz, tlen);
  if (!bt || bt->cap - bt->len < need) {
    size_t cap = bt ? bt->cap * 2 : 4096;
    while (cap - (bt ? bt->len : 0) < need)
      cap *= 2;
    tl__xbatch *nb = realloc(bt, sizeof *nb + cap);
    if (!nb)
      return TL_ENOMEM;
    if (!bt) {
      nb->len = 0;
      nb->mail.next = NULL;
      nb->mail.kind = 0;
    }
    nb->cap = cap;
    *bp = bt = nb;
  }
  xentry *e = (xentry *)(void *)((char *)bt->data + bt->len);
  e->plain = (xframe){buf, (uint32_t)off, (uint32_t)flen};
  e->hl = (uint32_t)hl;
  e->count = 1;
  e->payload = (uint32_t)(flen - hl);
  e->tlen = (uint16_t)tlen;
  e->op = (uint8_t)op;
  e->nz = (uint8_t)nz;
  e->compress = (int8_t)compress;
  tl__shared_hold(buf);
  xzform *zf = entry_z(e);
  for (int b = 0; z && b < 16; b++) {
    if (z[b].off < 0)
      continue;
    *zf++ = (xzform){{z[b].buf, (uint32_t)z[b].off, (uint32_t)z[b].len},
                     (uint32_t)b};
    tl__shared_hold(z[b].buf);
  }
  memcpy(entry_topic(e), topic, tlen);
  bt->last = bt->len;
  bt->len += need;
  return 0;
}

/* Calls fn(entry) for each entry of the batch. */
#define EACH_ENTRY(bt, e)                                                      \
  for (size_t at_ = 0; at_ < (bt)->len;                                        \
       at_ += entry_size((e)->nz, (e)->tlen))                                  \
    if (((e) = (xentry *)(void *)((char *)(bt)->data + at_)), 1)

static void entry_release(xentry *e) {
  tl__shared_release(e->plain.buf);
  for (uint8_t i = 0; i < e->nz; i++)
    tl__shared_release(entry_z(e)[i].f.buf);
}

void tl__xbatch_free(tl__xbatch *b) {
  if (!b)
    return;
  xentry *e;
  EACH_ENTRY(b, e)
  entry_release(e);
  free(b);
}

static bool bit_set(const uint64_t *words, unsigned w) {
  return words[w / 64] >> (w % 64) & 1;
}

/* Adds the message to this turn's batch of every other worker whose bit
 * is set in `interest`, first building the compressed forms in `zbits`
 * that their subscribers take (when `t` is given: the frames go to its
 * run buffer). Returns 1 if it went to some worker, 0 if to none,
 * TL_ENOMEM if some copy was lost. */
static int forward(tl__pubsub *ps, const uint64_t *interest, uint32_t zbits,
                   tl__topic *t, tl__shared *buf, size_t off, size_t hl,
                   const void *data, size_t len, int op, int compress,
                   zform z[16], const char *topic, size_t tlen) {
  int sent = 0;
  bool built = false;
  for (unsigned w = 0; w < ps->nworkers; w++) {
    if (w == ps->self || !bit_set(interest, w))
      continue;
    if (!built && t) {
      for (int b = 8; b < 16; b++)
        if ((zbits >> b & 1) && z[b].off == -2)
          compressed_frame(ps, t, b, data, len, op, &z[b]);
      built = true;
    }
    if (batch_add(&ps->outbox[w], buf, off, hl + len, hl, op, compress,
                  t ? z : NULL, topic, tlen) != 0)
      return TL_ENOMEM;
    sent = 1;
  }
  return sent;
}

static void load_interest(const tl__hub_topic *link, uint64_t *out,
                          size_t words) {
  for (size_t i = 0; i < words; i++)
    out[i] = atomic_load_explicit(&link->interest[i], memory_order_acquire);
}

/* Whether any worker but `self` is in `interest`. */
static bool others(const uint64_t *interest, size_t words, unsigned self) {
  for (size_t i = 0; i < words; i++) {
    uint64_t v = interest[i];
    if (i == self / 64)
      v &= ~(UINT64_C(1) << (self % 64));
    if (v)
      return true;
  }
  return false;
}

/* A block of its own holding one unmasked frame of `data` (header bytes
 * in *hl), for a publish that has no run buffer to go into. NULL on out
 * of memory. */
static tl__shared *frame_block(const void *data, size_t len, int op,
                               size_t *hl) {
  uint8_t hdr[10];
  *hl = tl__ws_frame_header(hdr, true, false, op, len);
  tl__shared *f = tl__shared_new(*hl + len);
  if (!f)
    return NULL;
  memcpy(f->data, hdr, *hl);
  if (len)
    memcpy(f->data + *hl, data, len);
  f->len = *hl + len;
  return f;
}

/* The interest bits of a worker's publish, on the stack when they fit. */
#define INTEREST_INLINE 4

/* A publish to a topic this worker has no subscriber of: the hub says
 * who has (under its lock); the frame gets a block of its own. */
static int forward_unlinked(tl__pubsub *ps, const char *topic, size_t tlen,
                            uint32_t h, const void *data, size_t len, int op,
                            int compress) {
  size_t words = tl__hub_words(ps->hub);
  uint64_t stack[INTEREST_INLINE];
  uint64_t *interest = words <= INTEREST_INLINE ? stack
                                                : malloc(words * sizeof *interest);
  if (!interest)
    return TL_ENOMEM;
  tl__hub_view v = {.interest = interest};
  int r = TL_WS_DROPPED;
  if (tl__hub_view_of(ps->hub, topic, tlen, h, &v) &&
      others(interest, words, ps->self)) {
    size_t hl;
    tl__shared *f = frame_block(data, len, op, &hl);
    if (!f) {
      r = TL_ENOMEM;
    } else {
      int sent = forward(ps, interest, 0, NULL, f, 0, hl, data, len, op,
                         compress, NULL, topic, tlen);
      r = sent < 0 ? sent : sent ? (int)(hl + len) : TL_WS_DROPPED;
      tl__shared_unref(f);
    }
  }
  if (interest != stack)
    free(interest);
  return r;
}

int tl__pubsub_deliver(tl__pubsub *ps, const char *topic, size_t tlen,
                       const void *data, size_t len, int op, int compress,
                       tl_ws *exclude) {
  uint32_t h = hash_of(topic, tlen);
  tl__topic *t = find(ps, topic, tlen, h);
  if (!t || t->live == 0)
    return ps->hub ? forward_unlinked(ps, topic, tlen, h, data, len, op,
                                      compress)
                   : TL_WS_DROPPED;
  size_t words = ps->hub ? tl__hub_words(ps->hub) : 0;
  uint64_t stack[INTEREST_INLINE], *interest = stack;
  bool remote = false;
  if (t->link) {
    if (words > INTEREST_INLINE && !(interest = malloc(words * 8)))
      return TL_ENOMEM;
    load_interest(t->link, interest, words);
    remote = others(interest, words, ps->self);
  }
  bool local = !(t->live == 1 && exclude && sub_index(exclude, t) >= 0);
  int result = TL_WS_DROPPED;
  if (local || remote) {
    uint8_t hdr[10];
    size_t hl = tl__ws_frame_header(hdr, true, false, op, len);
    int64_t off = run_append(ps, t, hdr, hl, data, len);
    if (off < 0) {
      result = TL_ENOMEM;
    } else {
      tl__shared *run = t->run;
      run->refs++; /* a nested publish may replace t->run during the walk */
      /* Subscribers that take compressed frames share one compressed copy
       * per window size, built on first need, also in the run buffer. */
      zform z[16];
      zforms_init(z);
      t->walking++; /* the topic outlives handlers run by the fan-out */
      if (local)
        result = fan_out(ps, t, run, (size_t)off, hl + len, data, len, op,
                         compress, exclude, z);
      if (remote) {
        /* The compressed forms remote subscribers will take, as
         * tl__ws_shares_compressed decides for each of them. */
        uint32_t zbits = 0;
        if (compress > 0 ||
            (compress < 0 &&
             len >= atomic_load_explicit(&t->link->zmin, memory_order_relaxed)))
          zbits = atomic_load_explicit(&t->link->zbits, memory_order_relaxed);
        int sent = forward(ps, interest, zbits, t, run, (size_t)off, hl, data,
                           len, op, compress, z, topic, tlen);
        if (sent < 0)
          result = sent;
        else if (sent && result == TL_WS_DROPPED)
          result = (int)(hl + len); /* queued for other workers */
      }
      walk_end(t);
      zforms_done(z);
      tl__shared_unref(run);
    }
  }
  if (interest != stack)
    free(interest);
  maybe_destroy(ps, t);
  return result;
}

/* ---- receiving a batch --------------------------------------------------- */

/* Proxies made for the frames of one batch, so that consecutive frames of
 * one block stay one block for the connections (their pieces join). */
#define PROXIES 8

typedef struct proxies {
  tl__shared *origin[PROXIES], *proxy[PROXIES];
  unsigned n, next;
} proxies;

/* A proxy of `origin` that takes over the hold the entry had. NULL when
 * out of memory (the hold is given back). */
static tl__shared *proxy_of(proxies *px, tl__shared *origin) {
  for (unsigned i = 0; i < px->n; i++)
    if (px->origin[i] == origin) {
      tl__shared_release(origin); /* the proxy has its own hold */
      return px->proxy[i];
    }
  tl__shared *p = tl__shared_proxy(origin);
  if (!p) {
    tl__shared_release(origin);
    return NULL;
  }
  unsigned i;
  if (px->n < PROXIES) {
    i = px->n++;
  } else { /* the oldest goes: connections keep their own references */
    i = px->next;
    px->next = (px->next + 1) % PROXIES;
    tl__shared_unref(px->proxy[i]);
  }
  px->origin[i] = origin;
  px->proxy[i] = p;
  return p;
}

/* The frames of a batch entry, one by one: `at` is a frame's offset in
 * the block, `hl` its header and `len` its payload bytes, `op` its
 * opcode. */
typedef struct frame_it {
  size_t at, end, hl, len;
  int op;
} frame_it;

static frame_it frames_of(const xentry *e) {
  return (frame_it){.at = e->plain.off,
                    .end = (size_t)e->plain.off + e->plain.len};
}

/* Reads the header at it->at (a frame built here: unmasked, FIN); false
 * past the last frame. */
static bool frame_next(const tl__shared *buf, frame_it *it) {
  if (it->at >= it->end)
    return false;
  const uint8_t *p = (const uint8_t *)buf->data + it->at;
  it->op = p[0] & 0x0f;
  size_t n = p[1] & 0x7f;
  it->hl = 2;
  if (n >= 126) {
    it->hl = n == 126 ? 4 : 10;
    n = 0;
    for (size_t i = 2; i < it->hl; i++)
      n = n << 8 | p[i];
  }
  it->len = n;
  return true;
}

#define EACH_FRAME(buf, e, f)                                                  \
  for (frame_it f = frames_of(e); frame_next(buf, &f); f.at += f.hl + f.len)

/* Queues the frames of entry `e` (more than one, back to back in `buf`,
 * its proxy) to every subscriber of `t`: in one piece to each that takes
 * them all as they are, frame by frame to the others. */
static void fan_out_run(tl__pubsub *ps, tl__topic *t, tl__shared *buf,
                        const xentry *e) {
  if (t->zsubs) {
    /* Some subscribers may take compressed forms, which are built here
     * (none came with the entry): a message at a time, as published. */
    EACH_FRAME(buf, e, f) {
      zform z[16];
      zforms_init(z);
      fan_out(ps, t, buf, f.at, f.hl + f.len, buf->data + f.at + f.hl, f.len,
              f.op, e->compress, NULL, z);
      zforms_done(z);
    }
    return;
  }
  t->walking++;
  uint32_t n = t->nsubs;
  for (uint32_t i = 0; i < n; i++) {
    tl_ws *ws = t->subs[i].ws;
    if (!ws || tl__ws_queue_span(ws, buf, e->plain.off, e->plain.len, e->count,
                                 e->payload))
      continue;
    /* Over its backlog limit with some of them: each frame is admitted or
     * dropped on its own. A handler run by a drop may close the socket
     * (its slot is then cleared). */
    EACH_FRAME(buf, e, f) {
      if (t->subs[i].ws != ws ||
          tl__ws_queue_shared(ws, buf, f.at, f.hl + f.len,
                              buf->data + f.at + f.hl, f.len,
                              f.op) == TL_ECLOSED)
        break;
    }
  }
  walk_end(t);
}

void tl__pubsub_receive(tl__pubsub *ps, tl__xbatch *b) {
  proxies px = {.n = 0};
  xentry *e;
  EACH_ENTRY(b, e) {
    const char *topic = entry_topic(e);
    tl__topic *t = find(ps, topic, e->tlen, hash_of(topic, e->tlen));
    if (!t || t->live == 0) {
      entry_release(e);
      continue;
    }
    zform z[16];
    zforms_init(z);
    tl__shared *plain = proxy_of(&px, e->plain.buf);
    for (uint8_t i = 0; i < e->nz; i++) {
      xzform *zf = &entry_z(e)[i];
      tl__shared *p = proxy_of(&px, zf->f.buf);
      if (p)
        z[zf->bits] = (zform){p, zf->f.off, zf->f.len, false};
    }
    if (!plain)
      continue; /* out of memory: these messages are lost here */
    t->walking++;
    if (e->count > 1) {
      fan_out_run(ps, t, plain, e);
    } else {
      const char *data = plain->data + e->plain.off + e->hl;
      size_t len = e->plain.len - e->hl;
      fan_out(ps, t, plain, e->plain.off, e->plain.len, data, len, e->op,
              e->compress, NULL, z);
    }
    walk_end(t);
    zforms_done(z);
    maybe_destroy(ps, t);
  }
  for (unsigned i = 0; i < px.n; i++)
    tl__shared_unref(px.proxy[i]);
  free(b);
}

int tl__pubsub_join(tl__pubsub *ps, struct tl__hub *hub, unsigned self,
                    void (*post)(tl__pubsub *ps, unsigned worker,
                                 tl__xbatch *b)) {
  unsigned n = tl__hub_workers(hub);
  ps->outbox = calloc(n, sizeof *ps->outbox);
  if (!ps->outbox)
    return TL_ENOMEM;
  ps->hub = hub;
  ps->self = self;
  ps->nworkers = n;
  ps->post = post;
  return 0;
}

int tl__pubsub_publish_from(struct tl__hub *hub, unsigned nworkers,
                            const char *topic, const void *data, size_t len,
                            tl_opcode op, int compress,
                            void (*post)(void *arg, unsigned worker,
                                         tl__xbatch *b),
                            void *arg) {
  size_t tlen;
  int err = check_publish(topic, op, compress, &tlen);
  if (err)
    return err;
  size_t words = hub ? tl__hub_words(hub) : 1;
  uint64_t *interest = calloc(words, sizeof *interest);
  if (!interest)
    return TL_ENOMEM;
  tl__hub_view v = {.interest = interest};
  if (!hub)
    interest[0] = 1; /* one worker: it looks for subscribers itself */
  else if (!tl__hub_view_of(hub, topic, tlen, hash_of(topic, tlen), &v))
    nworkers = 0;
  size_t hl = 0;
  tl__shared *f = nworkers ? frame_block(data, len, op, &hl) : NULL;
  int r = nworkers ? TL_ENOMEM : TL_WS_DROPPED;
  if (f) {
    r = TL_WS_DROPPED;
    for (unsigned w = 0; w < nworkers; w++) {
      tl__xbatch *b = NULL;
      if (!bit_set(interest, w))
        continue;
      if (batch_add(&b, f, 0, hl + len, hl, op, compress, NULL, topic, tlen) !=
          0) {
        r = TL_ENOMEM;
        continue;
      }
      post(arg, w, b);
      if (r == TL_WS_DROPPED)
        r = (int)(hl + len);
    }
    tl__shared_unref(f);
  }
  free(interest);
  return r;
}

static int publish_checked(tl__pubsub *ps, const char *topic, const void *data,
                           size_t len, tl_opcode op, int compress,
                           tl_ws *exclude, bool out) {
  size_t n;
  int err = check_publish(topic, op, compress, &n);
  if (err)
    return err;
  if (out) /* a publish of this node's, not one from the cluster */
    tl__count(&ps->publishes, 1);
  int r = ps->publish(ps, topic, n, data, len, op, compress, exclude);
  if (out && ps->out_publish && r >= 0)
    ps->out_publish(ps, topic, data, len, op);
  return r;
}

int tl__pubsub_publish(tl__pubsub *ps, const char *topic, const void *data,
                       size_t len, tl_opcode op, int compress, tl_ws *exclude) {
  return publish_checked(ps, topic, data, len, op, compress, exclude, true);
}

int tl__pubsub_publish_in(tl__pubsub *ps, const char *topic, const void *data,
                          size_t len, tl_opcode op) {
  return publish_checked(ps, topic, data, len, op, -1, NULL, false);
}

int tl_ws_publish(tl_ws *ws, const char *topic, const void *data, size_t len,
                  tl_opcode op) {
  return tl_ws_publish_ex(ws, topic, data, len, op, -1);
}

int tl_ws_publish_ex(tl_ws *ws, const char *topic, const void *data,
                     size_t len, tl_opcode op, int compress) {
  return tl__pubsub_publish(ps_of(ws), topic, data, len, op, compress,
                            ws->route->h.publish_to_self ? NULL : ws);
}
