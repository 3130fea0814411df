/* The Redis session store (contract in include/talon/redis.h): the
 * asynchronous form of talon/mw/session.h's store, on tl_redis_command().
 * Public headers only.
 *
 * A session is the string key PREFIX ID holding the middleware's
 * serialised data, with the idle timeout as its TTL: a lookup is GETEX
 * ... EX (read and restart the idle time in one step), a write SET ... EX,
 * a logout DEL. Redis expires what nobody uses; there is nothing to sweep
 * here. */
#include <talon.h>
#include <talon/mw/session.h>
#include <talon/redis.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_PREFIX "talon:sess:"
#define DEFAULT_IDLE_S 1800u

typedef struct rstore {
  tl_redis *r;
  size_t plen;
  char ttl[16];  /* the idle timeout in seconds, as text */
  char prefix[]; /* NUL-terminated */
} rstore;

/* A command waiting for its answer. */
typedef struct rop {
  tl_session_done_cb done;
  void *arg;
} rop;

/* PREFIX ID into `key` (room for the prefix and an id); its length. */
static size_t make_key(const rstore *s, const char *id, char *key) {
  size_t n = strlen(id);
  memcpy(key, s->prefix, s->plen);
  memcpy(key + s->plen, id, n);
  return s->plen + n;
}

static void on_answer(tl_redis *r, int status, const tl_redis_reply *rep,
                      void *arg) {
  rop *op = arg;
  tl_session_done_cb done = op->done;
  void *darg = op->arg;
  free(op);
  if (!done)
    return;
  if (status < 0)
    done(darg, status, NULL, 0);
  else if (rep->type == TL_REDIS_STRING)
    done(darg, 0, rep->str, rep->len);
  else if (rep->type == TL_REDIS_NIL)
    done(darg, TL_ENOENT, NULL, 0);
  else if (rep->type == TL_REDIS_ERROR)
    done(darg, TL_EIO, NULL, 0);
  else
    done(darg, 0, NULL, 0); /* SET's +OK, DEL's count */
}

static int submit(rstore *s, int argc, const char **argv, size_t *lens,
                tl_session_done_cb done, void *arg) {
  rop *op = malloc(sizeof *op);
  if (!op)
    return TL_ENOMEM;
  *op = (rop){done, arg};
  int rc = tl_redis_command(s->r, argc, argv, lens, on_answer, op);
  if (rc < 0)
    free(op);
  return rc;
}

static int rs_get(void *ctx, const char *id, tl_session_done_cb done,
                  void *arg) {
  rstore *s = ctx;
  char key[s->plen + TL_SESSION_ID_LEN + 1];
  if (strlen(id) > TL_SESSION_ID_LEN)
    return TL_EINVAL;
  const char *argv[4] = {"GETEX", key, "EX", s->ttl};
  size_t lens[4] = {5, make_key(s, id, key), 2, strlen(s->ttl)};
  return submit(s, 4, argv, lens, done, arg);
}

static int rs_set(void *ctx, const char *id, const char *data, size_t len,
                  tl_session_done_cb done, void *arg) {
  rstore *s = ctx;
  char key[s->plen + TL_SESSION_ID_LEN + 1];
  if (strlen(id) > TL_SESSION_ID_LEN)
    return TL_EINVAL;
  const char *argv[5] = {"SET", key, data ? data : "", "EX", s->ttl};
  size_t lens[5] = {3, make_key(s, id, key), len, 2, strlen(s->ttl)};
  return submit(s, 5, argv, lens, done, arg);
}

static int rs_destroy(void *ctx, const char *id, tl_session_done_cb done,
                      void *arg) {
  rstore *s = ctx;
  char key[s->plen + TL_SESSION_ID_LEN + 1];
  if (strlen(id) > TL_SESSION_ID_LEN)
    return TL_EINVAL;
  const char *argv[2] = {"DEL", key};
  size_t lens[2] = {3, make_key(s, id, key)};
  return submit(s, 2, argv, lens, done, arg);
}

int tl_redis_session_store(tl_redis *r, const tl_redis_session_options *o,
                           tl_session_store *out) {
  if (!r || !out)
    return TL_EINVAL;
  const char *prefix = o && o->prefix ? o->prefix : DEFAULT_PREFIX;
  unsigned idle = o && o->idle_timeout_s ? o->idle_timeout_s : DEFAULT_IDLE_S;
  size_t plen = strlen(prefix);
  rstore *s = malloc(sizeof *s + plen + 1);
  if (!s)
    return TL_ENOMEM;
  s->r = r;
  s->plen = plen;
  memcpy(s->prefix, prefix, plen + 1);
  snprintf(s->ttl, sizeof s->ttl, "%u", idle);
  *out = (tl_session_store){.get_async = rs_get,
                            .set_async = rs_set,
                            .destroy_async = rs_destroy,
                            .free = free,
                            .ctx = s};
  return 0;
}
