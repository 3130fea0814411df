/* Token-bucket rate limiting; the contract is in
 * include/talon/mw/ratelimit.h.
 *
 * The buckets live in one array of entries, linked by index (so the array
 * can grow with realloc) into hash chains and into an LRU list, most
 * recently used first. The array grows by doubling up to max_keys and is
 * never shrunk; once full, the LRU tail is recycled. Index links rather
 * than pointers also keep the entries free of per-bucket allocations.
 *
 * Workers: a client's connections may land on any worker, and its count
 * must be one. One mutex guards the table and the counters; it is held
 * for a hash lookup and a few arithmetic steps (the key callback and the
 * response headers run outside it). Time is the monotonic clock read
 * under the lock rather than the calling worker's loop time: loops cache
 * their time at different moments, and a bucket refilled by one worker
 * must not be refilled again by another whose loop time lags. */
#include <math.h> /* isfinite (a macro) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/ratelimit.h>

#define NIL UINT32_MAX
#define DEFAULT_RATE 10.0
#define DEFAULT_MAX_KEYS 10000
#define LIMIT_MAX_KEYS ((size_t)1 << 24)
#define FIRST_CAP 64

typedef struct entry {
  uint32_t hnext;      /* next in the hash chain */
  uint32_t prev, next; /* LRU neighbours */
  uint64_t hash;
  uint64_t last_ms; /* when `tokens` was last brought up to date */
  double tokens;
  uint8_t klen;
  char key[TL_RATE_LIMIT_KEY_MAX];
} entry;

typedef struct limiter {
  pthread_mutex_t lock; /* the table, the LRU list and `st` */
  double rate;          /* tokens per ms */
  double burst;
  unsigned burst_u;
  size_t max_keys;
  tl_rate_limit_key_fn key;
  void *key_arg;
  int headers;
  char *message;
  uint64_t seed[2]; /* SipHash key */
  uint32_t *buckets;
  size_t mask;
  entry *e;
  size_t cap, used;
  uint32_t head, tail; /* LRU: head is the most recent */
  tl_rate_limit_stats st;
} limiter;

static void limiter_free(void *p) {
  limiter *l = p;
  if (!l)
    return;
  free(l->buckets);
  free(l->e);
  free(l->message);
  pthread_mutex_destroy(&l->lock);
  free(l);
}

/* SipHash-1-3 of the key with the limiter's secret seed: clients choose
 * their keys (addresses, headers), so a predictable hash would let them
 * pile every bucket into one chain. */
#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                               \
  do {                                                                         \
    v0 += v1;                                                                  \
    v1 = ROTL(v1, 13);                                                         \
    v1 ^= v0;                                                                  \
    v0 = ROTL(v0, 32);                                                         \
    v2 += v3;                                                                  \
    v3 = ROTL(v3, 16);                                                         \
    v3 ^= v2;                                                                  \
    v0 += v3;                                                                  \
    v3 = ROTL(v3, 21);                                                         \
    v3 ^= v0;                                                                  \
    v2 += v1;                                                                  \
    v1 = ROTL(v1, 17);                                                         \
    v1 ^= v2;                                                                  \
    v2 = ROTL(v2, 32);                                                         \
  } while (0)

static uint64_t siphash(const uint64_t k[2], const char *s, size_t n) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ k[0], v1 = 0x646f72616e646f6dULL ^ k[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ k[0], v3 = 0x7465646279746573ULL ^ k[1];
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--)
      m = (m << 8) | p[i + (size_t)j];
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t m = (uint64_t)n << 56;
  for (size_t j = 0; i + j < n; j++)
    m |= (uint64_t)p[i + j] << (8 * j);
  v3 ^= m;
  SIPROUND;
  v0 ^= m;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static void lru_unlink(limiter *l, uint32_t i) {
  entry *x = &l->e[i];
  if (x->prev != NIL)
    l->e[x->prev].next = x->next;
  else
    l->head = x->next;
  if (x->next != NIL)
    l->e[x->next].prev = x->prev;
  else
    l->tail = x->prev;
}

static void lru_push_front(limiter *l, uint32_t i) {
  entry *x = &l->e[i];
  x->prev = NIL;
  x->next = l->head;
  if (l->head != NIL)
    l->e[l->head].prev = i;
  l->head = i;
  if (l->tail == NIL)
    l->tail = i;
}

static void chain_unlink(limiter *l, uint32_t i) {
  uint32_t *pp = &l->buckets[l->e[i].hash & l->mask];
  while (*pp != i)
    pp = &l->e[*pp].hnext;
  *pp = l->e[i].hnext;
}

/* The bucket for `key`, created full if new (recycling the least recently
 * used one when the table is full). NIL only if the table cannot grow and
 * has no entry to recycle. */
static uint32_t lookup(limiter *l, const char *key, size_t klen, uint64_t now) {
  uint64_t h = siphash(l->seed, key, klen);
  for (uint32_t i = l->buckets[h & l->mask]; i != NIL; i = l->e[i].hnext) {
    entry *x = &l->e[i];
    if (x->hash == h && x->klen == klen && memcmp(x->key, key, klen) == 0) {
      if (l->head != i) {
        lru_unlink(l, i);
        lru_push_front(l, i);
      }
      return i;
    }
  }
  uint32_t i;
  if (l->used == l->cap && l->cap < l->max_keys) {
    size_t cap = l->cap ? l->cap * 2 : FIRST_CAP;
    if (cap > l->max_keys)
      cap = l->max_keys;
    entry *e = realloc(l->e, cap * sizeof *e);
    if (e) {
      l->e = e;
      l->cap = cap;
    }
  }
  if (l->used < l->cap) {
    i = (uint32_t)l->used++;
  } else if (l->tail != NIL) {
    i = l->tail;
    lru_unlink(l, i);
    chain_unlink(l, i);
    l->st.evicted++;
  } else {
    return NIL;
  }
  entry *x = &l->e[i];
  x->hash = h;
  x->klen = (uint8_t)klen;
  memcpy(x->key, key, klen);
  x->tokens = l->burst;
  x->last_ms = now;
  x->hnext = l->buckets[h & l->mask];
  l->buckets[h & l->mask] = i;
  lru_push_front(l, i);
  return i;
}

/* ceil() for the non-negative, bounded values used here, without libm
 * (the talon library does not link it). */
static double ceil_pos(double x) {
  if (!(x > 0))
    return 0;
  if (x >= 1e15)
    return x;
  double t = (double)(uint64_t)x;
  return t < x ? t + 1 : t;
}

static int rate_headers(const limiter *l, tl_res *res, double tokens) {
  if (l->headers == TL_RATE_LIMIT_HEADERS_NONE)
    return 0;
  const char *p = l->headers == TL_RATE_LIMIT_HEADERS_X ? "X-" : "";
  char name[32];
  double reset_s = ceil_pos((l->burst - tokens) / (l->rate * 1000.0));
  int err;
  snprintf(name, sizeof name, "%sRateLimit-Limit", p);
  err = tl_res_headerf(res, name, "%u", l->burst_u);
  snprintf(name, sizeof name, "%sRateLimit-Remaining", p);
  if (!err)
    err = tl_res_headerf(res, name, "%u", (unsigned)tokens);
  snprintf(name, sizeof name, "%sRateLimit-Reset", p);
  if (!err)
    err = tl_res_headerf(res, name, "%.0f", reset_s > 0 ? reset_s : 0);
  return err;
}

static int limiter_run(tl_req *req, tl_res *res, void *ctx) {
  limiter *l = ctx;
  char key[TL_RATE_LIMIT_KEY_MAX];
  key[0] = '\0';
  if (l->key) {
    int rc = l->key(req, key, sizeof key, l->key_arg);
    if (rc < 0)
      return rc;
    if (rc > 0)
      return TL_NEXT;
  } else if (tl_req_remote_address(req, key, sizeof key) != 0) {
    memcpy(key, "unknown", sizeof "unknown");
  }
  key[sizeof key - 1] = '\0';
  size_t klen = strlen(key);
  pthread_mutex_lock(&l->lock);
  uint64_t now = tl_hrtime() / 1000000u;
  uint32_t i = lookup(l, key, klen, now);
  if (i == NIL) {
    pthread_mutex_unlock(&l->lock);
    return TL_ENOMEM;
  }
  entry *x = &l->e[i];
  if (now > x->last_ms) {
    x->tokens += (double)(now - x->last_ms) * l->rate;
    if (x->tokens > l->burst)
      x->tokens = l->burst;
    x->last_ms = now;
  }
  bool allowed = x->tokens >= 1.0;
  if (allowed) {
    x->tokens -= 1.0;
    l->st.allowed++;
  } else {
    l->st.limited++;
  }
  double tokens = x->tokens; /* `x` may be recycled once unlocked */
  pthread_mutex_unlock(&l->lock);
  if (allowed) {
    int err = rate_headers(l, res, tokens);
    return err ? err : TL_NEXT;
  }
  /* Seconds until one whole token is back, rounded up (at least 1). */
  double wait_s = ceil_pos((1.0 - tokens) / (l->rate * 1000.0));
  if (wait_s < 1)
    wait_s = 1;
  int err = rate_headers(l, res, tokens);
  if (!err)
    err = tl_res_headerf(res, "Retry-After", "%.0f", wait_s);
  if (err)
    return err;
  tl_res_status(res, 429);
  tl_res_text(res, l->message);
  return TL_DONE;
}

tl_middleware tl_rate_limit(const tl_rate_limit_options *opts) {
  static const tl_rate_limit_options defaults;
  tl_middleware mw = {.name = "rate_limit"};
  if (!opts)
    opts = &defaults;
  double rate = opts->rate ? opts->rate : DEFAULT_RATE;
  size_t max_keys = opts->max_keys ? opts->max_keys : DEFAULT_MAX_KEYS;
  if (!isfinite(rate) || rate <= 0 || max_keys > LIMIT_MAX_KEYS ||
      opts->headers < TL_RATE_LIMIT_HEADERS_NONE ||
      opts->headers > TL_RATE_LIMIT_HEADERS_X)
    return mw;
  limiter *l = calloc(1, sizeof *l);
  if (!l || pthread_mutex_init(&l->lock, NULL) != 0) {
    free(l);
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  l->rate = rate / 1000.0;
  l->burst_u = opts->burst ? opts->burst : (unsigned)ceil_pos(rate);
  if (l->burst_u == 0)
    l->burst_u = 1;
  l->burst = l->burst_u;
  l->max_keys = max_keys;
  l->key = opts->key;
  l->key_arg = opts->key_arg;
  l->headers = opts->headers;
  l->head = l->tail = NIL;
  l->st.max_keys = max_keys;
  size_t nb = 16;
  while (nb < max_keys)
    nb *= 2;
  l->mask = nb - 1;
  l->buckets = malloc(nb * sizeof *l->buckets);
  l->message = strdup(opts->message ? opts->message : "Too Many Requests\n");
  if (!l->buckets || !l->message ||
      RAND_bytes((unsigned char *)l->seed, sizeof l->seed) != 1) {
    limiter_free(l);
    return mw;
  }
  memset(l->buckets, 0xff, nb * sizeof *l->buckets); /* all NIL */
  mw.fn = limiter_run;
  mw.ctx = l;
  mw.free = limiter_free;
  return mw;
}

int tl_rate_limit_stats_get(const tl_middleware *mw, tl_rate_limit_stats *out) {
  if (!mw || !out || mw->fn != limiter_run || !mw->ctx)
    return TL_EINVAL;
  limiter *l = mw->ctx;
  pthread_mutex_lock(&l->lock);
  *out = l->st;
  out->keys = l->used;
  pthread_mutex_unlock(&l->lock);
  return 0;
}
