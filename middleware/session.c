/* The session middleware and its built-in memory store. Only public
 * headers are used. */
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/cookies.h>
#include <talon/mw/session.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#define DEFAULT_NAME "tl.sid"
#define DEFAULT_MAX_DATA 4096u
#define DEFAULT_IDLE_S 1800u
#define DEFAULT_ABSOLUTE_S 86400u
#define DEFAULT_MAX_SESSIONS 10000u
#define ID_BYTES 24 /* 192 bits */

/* ---- the built-in memory store ------------------------------------------- */

/* Entries sit in a chained hash table and in a list ordered by last use
 * (head: least recently used). Expiry is lazy: an entry found expired on
 * access is removed, and every insert first drops expired entries from the
 * head of the list; when the store is full, a full sweep runs and then the
 * least recently used entry goes. No timer is needed, so the store needs
 * no loop, and no worker sweeps for the others.
 *
 * Workers call the store concurrently (a session created through one
 * worker is read through any other): one mutex guards the whole store.
 * Every operation is a hash lookup plus list splicing, so it is held for
 * well under a microsecond; the full sweep when the store is full is the
 * only long one, and it frees room for many inserts. */
typedef struct entry {
  struct entry *hnext;
  struct entry *prev, *next;
  uint64_t created_ms, used_ms;
  char *data;
  size_t len;
  char id[TL_SESSION_ID_LEN + 1];
} entry;

typedef struct mem_store {
  pthread_mutex_t lock; /* everything below */
  entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  entry *head, *tail;
  uint64_t idle_ms, absolute_ms;
  size_t max;
} mem_store;

/* The store has no app to ask for its loop time (its functions get only
 * their context), so it reads the monotonic clock itself. */
static uint64_t now_ms(void) {
  return tl_hrtime() / 1000000u;
}

static size_t hash_id(const char *id) {
  uint64_t h = 1469598103934665603ull;
  for (; *id; id++)
    h = (h ^ (unsigned char)*id) * 1099511628211ull;
  return (size_t)h;
}

static entry **slot(mem_store *m, const char *id) {
  entry **pp = &m->buckets[hash_id(id) & (m->nbuckets - 1)];
  while (*pp && strcmp((*pp)->id, id) != 0)
    pp = &(*pp)->hnext;
  return pp;
}

static void lru_unlink(mem_store *m, entry *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    m->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    m->tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_append(mem_store *m, entry *e) {
  e->prev = m->tail;
  e->next = NULL;
  if (m->tail)
    m->tail->next = e;
  else
    m->head = e;
  m->tail = e;
}

static void remove_entry(mem_store *m, entry *e) {
  entry **pp = slot(m, e->id);
  if (*pp == e)
    *pp = e->hnext;
  lru_unlink(m, e);
  m->count--;
  OPENSSL_cleanse(e->data, e->len);
  free(e->data);
  free(e);
}

static bool expired(const mem_store *m, const entry *e, uint64_t now) {
  return now - e->used_ms >= m->idle_ms ||
         now - e->created_ms >= m->absolute_ms;
}

/* The live entry for `id`, removing it if expired. */
static entry *find_live(mem_store *m, const char *id, uint64_t now) {
  entry *e = *slot(m, id);
  if (e && expired(m, e, now)) {
    remove_entry(m, e);
    e = NULL;
  }
  return e;
}

static int grow(mem_store *m) {
  size_t nb = m->nbuckets * 2;
  entry **b = calloc(nb, sizeof *b);
  if (!b)
    return TL_ENOMEM;
  for (size_t i = 0; i < m->nbuckets; i++) {
    entry *e = m->buckets[i];
    while (e) {
      entry *next = e->hnext;
      size_t k = hash_id(e->id) & (nb - 1);
      e->hnext = b[k];
      b[k] = e;
      e = next;
    }
  }
  free(m->buckets);
  m->buckets = b;
  m->nbuckets = nb;
  return 0;
}

static int mem_get_locked(mem_store *m, const char *id, char **data,
                          size_t *len) {
  entry *e = find_live(m, id, now_ms());
  if (!e)
    return TL_ENOENT;
  char *copy = malloc(e->len ? e->len : 1);
  if (!copy)
    return TL_ENOMEM;
  memcpy(copy, e->data, e->len);
  *data = copy;
  *len = e->len;
  return 0;
}

static int mem_touch_locked(mem_store *m, const char *id) {
  uint64_t now = now_ms();
  entry *e = find_live(m, id, now);
  if (!e)
    return TL_ENOENT;
  e->used_ms = now;
  lru_unlink(m, e);
  lru_append(m, e);
  return 0;
}

static int mem_set_locked(mem_store *m, const char *id, const char *data,
                          size_t len) {
  uint64_t now = now_ms();
  if (strlen(id) != TL_SESSION_ID_LEN)
    return TL_EINVAL;
  char *copy = malloc(len ? len : 1);
  if (!copy)
    return TL_ENOMEM;
  memcpy(copy, data, len);
  /* The least recently used entries are the first to pass the idle
   * limit. */
  while (m->head && now - m->head->used_ms >= m->idle_ms)
    remove_entry(m, m->head);
  entry *e = find_live(m, id, now);
  if (e) {
    OPENSSL_cleanse(e->data, e->len);
    free(e->data);
  } else {
    if (m->count >= m->max) {
      for (entry *x = m->head, *next; x; x = next) {
        next = x->next;
        if (expired(m, x, now))
          remove_entry(m, x);
      }
      while (m->count >= m->max && m->head)
        remove_entry(m, m->head);
    }
    if (m->count >= m->nbuckets && grow(m) < 0) {
      free(copy);
      return TL_ENOMEM;
    }
    e = calloc(1, sizeof *e);
    if (!e) {
      free(copy);
      return TL_ENOMEM;
    }
    memcpy(e->id, id, TL_SESSION_ID_LEN + 1);
    e->created_ms = now;
    entry **pp = slot(m, id);
    *pp = e;
    lru_append(m, e);
    m->count++;
  }
  e->data = copy;
  e->len = len;
  e->used_ms = now;
  lru_unlink(m, e);
  lru_append(m, e);
  return 0;
}

static int mem_destroy_locked(mem_store *m, const char *id) {
  entry *e = *slot(m, id);
  if (e)
    remove_entry(m, e);
  return 0;
}

/* The store's functions: each one under the lock. */
static int mem_get(void *ctx, const char *id, char **data, size_t *len) {
  mem_store *m = ctx;
  pthread_mutex_lock(&m->lock);
  int rc = mem_get_locked(m, id, data, len);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

static int mem_touch(void *ctx, const char *id) {
  mem_store *m = ctx;
  pthread_mutex_lock(&m->lock);
  int rc = mem_touch_locked(m, id);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

static int mem_set(void *ctx, const char *id, const char *data, size_t len) {
  mem_store *m = ctx;
  pthread_mutex_lock(&m->lock);
  int rc = mem_set_locked(m, id, data, len);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

static int mem_destroy(void *ctx, const char *id) {
  mem_store *m = ctx;
  pthread_mutex_lock(&m->lock);
  int rc = mem_destroy_locked(m, id);
  pthread_mutex_unlock(&m->lock);
  return rc;
}

static void mem_free(void *ctx) {
  mem_store *m = ctx;
  if (!m)
    return;
  while (m->head)
    remove_entry(m, m->head);
  free(m->buckets);
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static int mem_store_init(tl_session_store *st, const tl_session_options *o) {
  mem_store *m = calloc(1, sizeof *m);
  if (!m)
    return TL_ENOMEM;
  m->nbuckets = 64;
  m->buckets = calloc(m->nbuckets, sizeof *m->buckets);
  if (!m->buckets || pthread_mutex_init(&m->lock, NULL) != 0) {
    free(m->buckets);
    free(m);
    return TL_ENOMEM;
  }
  unsigned idle = o && o->idle_timeout_s ? o->idle_timeout_s : DEFAULT_IDLE_S;
  unsigned abs_s =
      o && o->absolute_timeout_s ? o->absolute_timeout_s : DEFAULT_ABSOLUTE_S;
  m->idle_ms = (uint64_t)idle * 1000u;
  m->absolute_ms = (uint64_t)abs_s * 1000u;
  m->max = o && o->max_sessions ? o->max_sessions : DEFAULT_MAX_SESSIONS;
  *st = (tl_session_store){.get = mem_get,
                           .set = mem_set,
                           .destroy = mem_destroy,
                           .touch = mem_touch,
                           .free = mem_free,
                           .ctx = m};
  return 0;
}

/* ---- the middleware
 * ---------------------------------------------------------- */

typedef struct session_ctx {
  char *cookie_name;
  char *path;
  char *domain;
  int64_t max_age;
  bool secure;
  tl_same_site same_site;
  size_t max_data;
  tl_session_store store;
} session_ctx;

typedef struct kv {
  const char *key;
  const char *value;
} kv;

typedef struct sess_req sess_req;

struct tl_session {
  sess_req *st;
  kv *kvs; /* request memory */
  size_t n, cap;
  size_t bytes; /* serialised size */
  bool has_id;
  char id[TL_SESSION_ID_LEN + 1];
};

/* Per-request state under TL_SESSION_KEY, in request memory. `res` is kept
 * because writes that create a session must set the cookie, and
 * tl_session_set only gets the session. */
struct sess_req {
  const session_ctx *ctx;
  tl_req *req;
  tl_res *res;
  bool loaded;
  struct tl_session s;
};

static void ctx_free(void *p) {
  session_ctx *c = p;
  if (!c)
    return;
  if (c->store.free)
    c->store.free(c->store.ctx);
  free(c->cookie_name);
  free(c->path);
  free(c->domain);
  free(c);
}

/* An id is the base64url encoding of ID_BYTES random bytes. */
static bool valid_id(const char *id) {
  unsigned char raw[ID_BYTES];
  size_t n = 0;
  return strlen(id) == TL_SESSION_ID_LEN &&
         tl_base64url_decode(raw, sizeof raw, id, TL_SESSION_ID_LEN, &n) == 0 &&
         n == ID_BYTES;
}

static bool deserialize(struct tl_session *s, const char *data, size_t len);

/* An asynchronous lookup in flight. It is its own allocation: the client
 * may leave before the answer, and then the request is gone. */
typedef struct lookup {
  sess_req *st; /* NULL once the client left */
} lookup;

static void lookup_abort(tl_res *res, void *arg) {
  lookup *lk = arg;
  lk->st = NULL; /* the answer will find nobody */
}

static void lookup_done(void *arg, int status, const char *data, size_t len) {
  lookup *lk = arg;
  sess_req *st = lk->st;
  free(lk);
  if (!st)
    return;
  struct tl_session *s = &st->s;
  if (status < 0 && status != TL_ENOENT) {
    tl_res_fail(st->res, 503, status);
    return;
  }
  if (status == 0) {
    s->has_id = true;
    if (!deserialize(s, data ? data : "", data ? len : 0)) {
      s->n = 0;
      s->bytes = 0;
      s->has_id = false; /* unreadable data: start afresh */
    }
  }
  st->loaded = true;
  tl_next(st->req, st->res);
}

/* The asynchronous store's way: the session is loaded before the chain
 * goes on. */
static int session_async(sess_req *st, const char *id) {
  const session_ctx *c = st->ctx;
  if (!id || !valid_id(id)) {
    st->loaded = true;
    return TL_NEXT;
  }
  memcpy(st->s.id, id, TL_SESSION_ID_LEN + 1); /* has_id once found */
  lookup *lk = malloc(sizeof *lk);
  if (!lk)
    return TL_ENOMEM;
  lk->st = st;
  int rc = c->store.get_async(c->store.ctx, st->s.id, lookup_done, lk);
  if (rc < 0) {
    free(lk);
    tl_res_fail(st->res, 503, rc);
    return TL_DONE;
  }
  tl_res_defer(st->res, lookup_abort, lk);
  return TL_PENDING;
}

static int session_fn(tl_req *req, tl_res *res, void *ctx) {
  session_ctx *c = ctx;
  if (!tl_req_get(req, TL_COOKIES_KEY))
    return TL_ESTATE; /* the cookies middleware must run first */
  sess_req *st = tl_req_alloc(req, sizeof *st);
  if (!st)
    return TL_ENOMEM;
  *st = (sess_req){.ctx = c, .req = req, .res = res};
  st->s.st = st;
  const char *id = tl_req_signed_cookie(req, c->cookie_name);
  if (c->store.get_async) {
    int rc = tl_req_set(req, TL_SESSION_KEY, st, NULL);
    return rc < 0 ? rc : session_async(st, id);
  }
  if (id && valid_id(id)) {
    int rc = c->store.touch ? c->store.touch(c->store.ctx, id) : 0;
    if (rc == 0) {
      memcpy(st->s.id, id, TL_SESSION_ID_LEN + 1);
      st->s.has_id = true;
    } else if (rc != TL_ENOENT) {
      return rc;
    }
  }
  int rc = tl_req_set(req, TL_SESSION_KEY, st, NULL);
  return rc < 0 ? rc : TL_NEXT;
}

tl_middleware tl_session(const tl_session_options *opts) {
  tl_middleware none = {0};
  session_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    if (opts && opts->store && opts->store->free)
      opts->store->free(opts->store->ctx);
    return none;
  }
  if (opts && opts->store)
    c->store = *opts->store;
  else if (mem_store_init(&c->store, opts) < 0)
    goto fail;
  const char *name =
      opts && opts->cookie_name ? opts->cookie_name : DEFAULT_NAME;
  c->cookie_name = strdup(name);
  c->path = strdup(opts && opts->cookie_path ? opts->cookie_path : "/");
  if (opts && opts->cookie_domain) {
    c->domain = strdup(opts->cookie_domain);
    if (!c->domain)
      goto fail;
  }
  bool sync = c->store.get && c->store.set && c->store.destroy;
  bool async =
      c->store.get_async && c->store.set_async && c->store.destroy_async;
  if (!c->cookie_name || !c->path || !(sync || async))
    goto fail;
  c->max_age = opts ? opts->cookie_max_age : 0;
  c->secure = opts && opts->cookie_secure;
  c->same_site = opts && opts->same_site ? opts->same_site : TL_SAMESITE_LAX;
  c->max_data =
      opts && opts->max_data_bytes ? opts->max_data_bytes : DEFAULT_MAX_DATA;
  return (tl_middleware){
      .fn = session_fn, .ctx = c, .free = ctx_free, .name = "session"};
fail:
  ctx_free(c);
  return none;
}

/* ---- data -----------------------------------------------------------------
 */

static char *arena_strdup(tl_req *req, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = tl_req_alloc(req, n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* Reads "key\0value\0..." into the session; false if malformed. */
static bool deserialize(struct tl_session *s, const char *data, size_t len) {
  size_t nstr = 0;
  for (size_t i = 0; i < len; i++)
    nstr += data[i] == '\0';
  if (len && data[len - 1] != '\0')
    return false;
  if (nstr % 2)
    return false;
  char *copy = tl_req_alloc(s->st->req, len ? len : 1);
  kv *kvs = tl_req_alloc(s->st->req, (nstr / 2 + 1) * sizeof *kvs);
  if (!copy || !kvs)
    return false;
  memcpy(copy, data, len);
  size_t n = 0;
  for (size_t off = 0; off < len;) {
    const char *k = copy + off;
    off += strlen(k) + 1;
    const char *v = copy + off;
    off += strlen(v) + 1;
    if (!*k)
      return false;
    kvs[n++] = (kv){k, v};
  }
  s->kvs = kvs;
  s->n = n;
  s->cap = nstr / 2 + 1;
  s->bytes = len;
  return true;
}

struct tl_session *tl_req_session(tl_req *req) {
  sess_req *st = req ? tl_req_get(req, TL_SESSION_KEY) : NULL;
  if (!st)
    return NULL;
  struct tl_session *s = &st->s;
  if (st->loaded)
    return s;
  if (s->has_id) {
    const tl_session_store *store = &st->ctx->store;
    char *data = NULL;
    size_t len = 0;
    int rc = store->get(store->ctx, s->id, &data, &len);
    if (rc == TL_ENOENT) {
      s->has_id = false;
    } else if (rc < 0) {
      return NULL;
    } else {
      bool ok = deserialize(s, data, len);
      OPENSSL_cleanse(data, len);
      free(data);
      if (!ok) {
        s->n = 0;
        s->bytes = 0;
        s->has_id = false; /* unreadable data: start afresh */
      }
    }
  }
  st->loaded = true;
  return s;
}

const char *tl_session_id(const struct tl_session *s) {
  return s && s->has_id ? s->id : NULL;
}

static size_t find(const struct tl_session *s, const char *key) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->kvs[i].key, key) == 0)
      return i;
  return SIZE_MAX;
}

const char *tl_session_get(const struct tl_session *s, const char *key) {
  if (!s || !key)
    return NULL;
  size_t i = find(s, key);
  return i == SIZE_MAX ? NULL : s->kvs[i].value;
}

/* The serialised data without pair `skip` (SIZE_MAX: none), plus
 * `key`=`value` if `key` is not NULL; malloc()ed, `*len` bytes. */
static char *serialize(const struct tl_session *s, size_t skip, const char *key,
                       const char *value, size_t *len) {
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++)
    if (i != skip)
      n += strlen(s->kvs[i].key) + strlen(s->kvs[i].value) + 2;
  if (key)
    n += strlen(key) + strlen(value) + 2;
  char *buf = malloc(n ? n : 1);
  if (!buf)
    return NULL;
  char *p = buf;
  for (size_t i = 0; i <= s->n; i++) {
    const char *k = i < s->n ? s->kvs[i].key : key;
    const char *v = i < s->n ? s->kvs[i].value : value;
    if (i == skip || !k)
      continue;
    size_t kl = strlen(k) + 1, vl = strlen(v) + 1;
    memcpy(p, k, kl);
    memcpy(p + kl, v, vl);
    p += kl + vl;
  }
  *len = n;
  return buf;
}

/* A fresh id into `out` (TL_SESSION_ID_LEN + 1 bytes): 24 random bytes
 * encode to exactly 32 base64url characters. */
static int new_id(char *out) {
  unsigned char raw[ID_BYTES];
  if (RAND_bytes(raw, sizeof raw) != 1)
    return TL_EIO;
  int err = tl_base64url_encode(out, TL_SESSION_ID_LEN + 1, raw, sizeof raw);
  OPENSSL_cleanse(raw, sizeof raw);
  return err;
}

/* A write or removal, in the store's form (an asynchronous one returns
 * when the store took it). */
static int store_set(const session_ctx *c, const char *id, const char *data,
                     size_t len) {
  const tl_session_store *st = &c->store;
  return st->get_async ? st->set_async(st->ctx, id, data, len, NULL, NULL)
                       : st->set(st->ctx, id, data, len);
}

static int store_destroy(const session_ctx *c, const char *id) {
  const tl_session_store *st = &c->store;
  return st->get_async ? st->destroy_async(st->ctx, id, NULL, NULL)
                       : st->destroy(st->ctx, id);
}

static tl_cookie_attrs cookie_attrs(const session_ctx *c) {
  return (tl_cookie_attrs){.path = c->path,
                           .domain = c->domain,
                           .max_age = c->max_age,
                           .secure = c->secure,
                           .http_only = true,
                           .same_site = c->same_site};
}

/* Stores `data` under a fresh id and sets its cookie on `res`; on success
 * the id is in `id`. */
static int issue(sess_req *st, tl_res *res, const char *data, size_t len,
                 char *id) {
  const session_ctx *c = st->ctx;
  if (tl_res_head_sent(res))
    return TL_ESTATE;
  int rc = new_id(id);
  if (rc < 0)
    return rc;
  rc = store_set(c, id, data, len);
  if (rc < 0)
    return rc;
  tl_cookie_attrs a = cookie_attrs(c);
  rc = tl_res_cookie_signed(res, c->cookie_name, id, &a);
  if (rc < 0)
    store_destroy(c, id);
  return rc;
}

/* Writes the data (as serialised in `buf`) through to the store, creating
 * the session first if needed. */
static int save(struct tl_session *s, const char *buf, size_t len) {
  sess_req *st = s->st;
  if (s->has_id)
    return store_set(st->ctx, s->id, buf, len);
  char id[TL_SESSION_ID_LEN + 1];
  int rc = issue(st, st->res, buf, len, id);
  if (rc < 0)
    return rc;
  memcpy(s->id, id, sizeof id);
  s->has_id = true;
  return 0;
}

int tl_session_set(struct tl_session *s, const char *key, const char *value) {
  if (!s || !key || !*key || !value)
    return TL_EINVAL;
  size_t i = find(s, key);
  size_t add = strlen(key) + strlen(value) + 2;
  size_t bytes = s->bytes + add;
  if (i != SIZE_MAX)
    bytes -= strlen(s->kvs[i].key) + strlen(s->kvs[i].value) + 2;
  if (bytes > s->st->ctx->max_data)
    return TL_ETOOBIG;
  /* Copies and room first, so nothing can fail after the store took the
   * new data. */
  tl_req *req = s->st->req;
  const char *v = arena_strdup(req, value);
  const char *k = i == SIZE_MAX ? arena_strdup(req, key) : s->kvs[i].key;
  if (!v || !k)
    return TL_ENOMEM;
  if (i == SIZE_MAX && s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    kv *n = tl_req_alloc(req, cap * sizeof *n);
    if (!n)
      return TL_ENOMEM;
    if (s->n)
      memcpy(n, s->kvs, s->n * sizeof *n);
    s->kvs = n;
    s->cap = cap;
  }
  size_t len;
  char *buf = serialize(s, i, k, v, &len);
  if (!buf)
    return TL_ENOMEM;
  int rc = save(s, buf, len);
  OPENSSL_cleanse(buf, len);
  free(buf);
  if (rc < 0)
    return rc;
  if (i == SIZE_MAX)
    s->kvs[s->n++] = (kv){k, v};
  else
    s->kvs[i].value = v;
  s->bytes = bytes;
  return 0;
}

int tl_session_del(struct tl_session *s, const char *key) {
  if (!s || !key)
    return TL_EINVAL;
  size_t i = find(s, key);
  if (i == SIZE_MAX)
    return 0;
  size_t len;
  char *buf = serialize(s, i, NULL, NULL, &len);
  if (!buf)
    return TL_ENOMEM;
  int rc = save(s, buf, len);
  OPENSSL_cleanse(buf, len);
  free(buf);
  if (rc < 0)
    return rc;
  s->bytes = len;
  memmove(&s->kvs[i], &s->kvs[i + 1], (s->n - i - 1) * sizeof *s->kvs);
  s->n--;
  return 0;
}

int tl_session_regenerate(tl_req *req, tl_res *res) {
  if (!req || !res)
    return TL_EINVAL;
  struct tl_session *s = tl_req_session(req);
  if (!s)
    return tl_req_get(req, TL_SESSION_KEY) ? TL_ENOMEM : TL_ESTATE;
  sess_req *st = s->st;
  size_t len;
  char *buf = serialize(s, SIZE_MAX, NULL, NULL, &len);
  if (!buf)
    return TL_ENOMEM;
  char id[TL_SESSION_ID_LEN + 1];
  int rc = issue(st, res, buf, len, id);
  OPENSSL_cleanse(buf, len);
  free(buf);
  if (rc < 0)
    return rc;
  if (s->has_id)
    store_destroy(st->ctx, s->id);
  memcpy(s->id, id, sizeof id);
  s->has_id = true;
  return 0;
}

int tl_session_destroy(tl_req *req, tl_res *res) {
  if (!req || !res)
    return TL_EINVAL;
  sess_req *st = tl_req_get(req, TL_SESSION_KEY);
  if (!st)
    return TL_ESTATE;
  if (tl_res_head_sent(res))
    return TL_ESTATE;
  struct tl_session *s = &st->s;
  const session_ctx *c = st->ctx;
  if (s->has_id) {
    int rc = store_destroy(c, s->id);
    if (rc < 0)
      return rc;
  }
  s->has_id = false;
  s->n = 0;
  s->bytes = 0;
  st->loaded = true;
  tl_cookie_attrs a = cookie_attrs(c);
  return tl_res_clear_cookie(res, c->cookie_name, &a);
}
