/* talon — session middleware: a random session id in a signed cookie, the
 * session's data in a store.
 *
 *   static const char *const secrets[] = {"a-long-random-secret-2024", NULL};
 *   tl_app_use(app, tl_cookies(&(tl_cookies_options){.secrets = secrets}));
 *   tl_app_use(app, tl_session(NULL));         // after tl_cookies
 *
 *   static void login(tl_req *req, tl_res *res) {
 *     ... check the password ...
 *     tl_session_regenerate(req, res);          // new id: no fixation
 *     tl_session_set(tl_req_session(req), "user", "alice");
 *     tl_res_text(res, "welcome\n");
 *   }
 *
 * Requirements: the cookies middleware (talon/mw/cookies.h) must run before
 * this one for the same request, with at least one secret: the session id
 * travels as a signed cookie. Without the cookies middleware every request
 * through the session middleware fails with TL_ESTATE (500); without a
 * secret no session can be created (tl_session_set returns TL_ESTATE).
 *
 * The id is 192 bits from OpenSSL's RAND_bytes, base64url (32 characters).
 * A session exists in the store only once something was written: reading
 * a session that does not exist gives an empty one and sets no cookie.
 * The cookie is set (Set-Cookie on the response) at the call that creates
 * or regenerates the session, so make that call before the response head
 * goes out; data is written to the store at every tl_session_set/del
 * (write-through), so it is visible to the next request at once. Two
 * concurrent requests of one session that both write: the last write of
 * the whole data wins.
 *
 * A cookie that is missing, unsigned, tampered with, or names a session
 * the store does not have (expired, destroyed, evicted) gives a new empty
 * session; a later write then gets a fresh id.
 *
 * The per-request state is stored with tl_req_set() under TL_SESSION_KEY
 * ("tl.session"); if session middleware runs twice for a request (app and
 * router level), the later one's session is the one tl_req_session sees.
 * Sessions work in WebSocket upgrade handlers (the middleware chain runs
 * before them); a cookie set there goes out with the 101.
 *
 * Workers: the store is shared by every worker, so a session created
 * through a connection of one worker is valid on the connections of all
 * others; the built-in store expires sessions lazily under its lock (no
 * timer, no worker sweeps for the others). The `struct tl_session` of a
 * request belongs to that request and its worker's thread.
 */
#ifndef TALON_MW_SESSION_H
#define TALON_MW_SESSION_H

#include "../app.h"
#include "../http.h"
#include "../middleware.h"
#include "cookies.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The tl_req_set() key of the session middleware's per-request state. */
#define TL_SESSION_KEY "tl.session"

/* Length of a session id (base64url of 24 random bytes). */
#define TL_SESSION_ID_LEN 32

/* The answer of an asynchronous store operation: `status` 0 (for a get:
 * `data`, `len` bytes, valid only during the call: the middleware copies
 * it), TL_ENOENT (get: absent or expired), or another negative code. */
typedef void (*tl_session_done_cb)(void *arg, int status, const char *data,
                                   size_t len);

/* A session store. The session data is an opaque byte string (the
 * middleware serialises the key/value pairs); the store keeps it under the
 * id and handles expiry. Every callback gets `ctx`; `id` is a
 * NUL-terminated string valid during the call. The functions are called on
 * the worker thread of the request that needs them: with more than one
 * worker (tl_app_config.workers), from several threads at the same time,
 * so a store must be thread-safe (the built-in one takes a mutex; a
 * session created through one worker is valid on all). `free` runs once,
 * on the thread that frees the app, when no other call can be running.
 *
 * Two forms. Synchronous (get, set, destroy; touch optional): for stores
 * that answer at once, as the built-in memory store; the worker waits.
 * Asynchronous (get_async, set_async, destroy_async, all three): for
 * stores behind a network round trip (tl_redis_session_store in
 * talon/redis.h), which must not block a loop. When get_async is set the
 * middleware uses the asynchronous form only:
 *  - a request with a valid session cookie: the middleware calls
 *    get_async (which also restarts the idle time: there is no separate
 *    touch), defers the response (TL_PENDING) and continues the chain
 *    (tl_next) when the answer comes, with the session loaded. If the
 *    client goes away meanwhile, the answer is dropped and nothing of the
 *    request is touched. If the lookup fails (get_async returns an error,
 *    or the answer is an error other than TL_ENOENT) the request is
 *    answered 503 (tl_res_fail: the error middleware's page): neither a
 *    silent sign-out nor a request served without its session. Requests
 *    without a session cookie never wait.
 *  - writes (tl_session_set, _del, _regenerate, _destroy) call set_async
 *    or destroy_async and return once the store took them (its immediate
 *    error is returned); they do not wait for the answer, and a later
 *    failure is not reported to the request (the store may count it). A
 *    store keeps a worker's operations in order, so a request's writes
 *    are seen by the next lookup.
 * Each *_async function returns 0 and then calls `done(arg, ...)` exactly
 * once, later (never inside the call), on the calling worker's thread;
 * or returns a negative code and never calls it. `done` may be NULL for
 * set_async and destroy_async. */
typedef struct tl_session_store {
  /* Find `id`: on success set *data to a malloc()ed copy of the data
   * (the middleware free()s it) and *len to its length, and return 0.
   * Return TL_ENOENT if absent or expired, or another TL_E* code. */
  int (*get)(void *ctx, const char *id, char **data, size_t *len);
  /* Create or replace `id` with a copy of `data` (`len` bytes). Return
   * 0 or a TL_E* code. */
  int (*set)(void *ctx, const char *id, const char *data, size_t len);
  /* Remove `id` (0 even if absent). */
  int (*destroy)(void *ctx, const char *id);
  /* The session was used by a request (idle timers restart). Return 0, or
   * TL_ENOENT if absent or expired. May be NULL. */
  int (*touch)(void *ctx, const char *id);
  /* Called once with `ctx` when the middleware is freed (may be NULL). */
  void (*free)(void *ctx);
  void *ctx;
  /* The asynchronous form (see above); NULL for a synchronous store. */
  int (*get_async)(void *ctx, const char *id, tl_session_done_cb done,
                   void *arg);
  int (*set_async)(void *ctx, const char *id, const char *data, size_t len,
                   tl_session_done_cb done, void *arg);
  int (*destroy_async)(void *ctx, const char *id, tl_session_done_cb done,
                       void *arg);
} tl_session_store;

/* Options for tl_session(). Zero fields take the default in brackets. */
typedef struct tl_session_options {
  /* Cookie name ["tl.sid"]. Copied. */
  const char *cookie_name;
  /* Cookie Path ["/"] and Domain [none: host-only]. Copied. */
  const char *cookie_path;
  const char *cookie_domain;
  /* Cookie Max-Age in seconds [0: a browser-session cookie]. */
  int64_t cookie_max_age;
  /* Mark the cookie Secure (set it behind HTTPS) [off]. The cookie is
   * always HttpOnly. */
  bool cookie_secure;
  /* SameSite [TL_SAMESITE_LAX]. */
  tl_same_site same_site;
  /* Bytes of serialised session data (keys and values plus two bytes per
   * pair); tl_session_set() past it fails with TL_ETOOBIG [4096]. */
  size_t max_data_bytes;
  /* A custom store, copied; ownership of store->ctx passes to the
   * middleware (store->free runs when the middleware is freed, also when
   * tl_session() fails). NULL: the built-in memory store, configured by
   * the three fields below. With a custom store those are ignored:
   * expiry is the store's job. */
  const tl_session_store *store;
  /* Built-in store: a session unused this long is gone [1800 s]. */
  unsigned idle_timeout_s;
  /* Built-in store: a session id is gone this long after it was issued
   * (tl_session_regenerate issues a new one), however busy [86400 s]. */
  unsigned absolute_timeout_s;
  /* Built-in store: sessions kept at most. When full, expired sessions
   * are swept and then the least recently used one is evicted [10000]. */
  unsigned max_sessions;
} tl_session_options;

/* The session middleware. `opts` may be NULL; strings are copied, the
 * store struct too (see `store` for its ctx). On every request that
 * carries a valid session cookie it touches the session (restarting its
 * idle time), whether or not the handler reads it; the data is loaded on
 * the first tl_req_session(). On out of memory the returned middleware
 * has fn == NULL (tl_app_use then returns TL_EINVAL). */
TL_EXTERN tl_middleware tl_session(const tl_session_options *opts);

/* The session object. C has one namespace for functions and typedef
 * names, and tl_session is the constructor above, so the type is spelled
 * with its tag: `struct tl_session *s = tl_req_session(req);`. */
struct tl_session;

/* The session of `req`: the stored one if the request carries a valid
 * cookie for a live session, else a new empty one (not stored and no
 * cookie set until the first tl_session_set). Valid until the response
 * finishes. NULL if the session middleware did not run for this request,
 * or on out of memory / store failure. */
TL_EXTERN struct tl_session *tl_req_session(tl_req *req);

/* The session id (TL_SESSION_ID_LEN characters), or NULL while the
 * session has not been created. Valid until the id changes or the
 * response finishes. */
TL_EXTERN const char *tl_session_id(const struct tl_session *s);

/* The value stored under `key`, or NULL. Valid until that key is set or
 * deleted, or the response finishes. */
TL_EXTERN const char *tl_session_get(const struct tl_session *s,
                                     const char *key);

/* Store `value` under `key` (both NUL-terminated, copied; `key` not
 * empty). The first write of a new session creates it: a new id, the
 * signed cookie on the response, the data in the store. Returns 0;
 * TL_EINVAL (NULL or empty argument); TL_ETOOBIG (max_data_bytes);
 * TL_ESTATE when it would create the session but the response head was
 * already sent (or the cookies middleware is missing); TL_ENOMEM, or the
 * store's error. On error the session is unchanged. */
TL_EXTERN int tl_session_set(struct tl_session *s, const char *key,
                             const char *value);

/* Remove `key`. Returns 0 (also if absent), TL_EINVAL, or a store error. */
TL_EXTERN int tl_session_del(struct tl_session *s, const char *key);

/* Give the request's session a new id and keep its data (call it on
 * login, against session fixation): the data is stored under the new id,
 * the old id is removed from the store, and the new signed cookie is set
 * on `res`. A session not yet created is created (empty). Returns 0;
 * TL_EINVAL (NULL argument); TL_ESTATE (no session middleware, head
 * already sent); TL_ENOMEM or a store error. */
TL_EXTERN int tl_session_regenerate(tl_req *req, tl_res *res);

/* End the request's session (logout): the store entry is removed, the
 * data emptied, and the cookie cleared on `res` (Max-Age=0). A later
 * tl_session_set in the same request starts a new session. Returns 0
 * (also if there was no session); TL_EINVAL; TL_ESTATE (no session
 * middleware, head already sent); or a store error. */
TL_EXTERN int tl_session_destroy(tl_req *req, tl_res *res);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_SESSION_H */
