/* chat: the main example. Chat rooms in the browser, served by one talon
 * process on one port: the page and its assets, a sign-in form, and a
 * WebSocket per room with pub/sub.
 *
 *   GET  /              the page (public/, served by tl_static)
 *   GET  /api/me        {"name":"alice"} when signed in, else
 *                       {"name":null}: 200 either way, because being signed
 *                       out is the page's normal first state, not an
 *                       error (a browser logs every 4xx of a fetch as a
 *                       console error)
 *   POST /login         form name=...&room=... : starts a session (a new
 *                       random id in the signed `sid` cookie; the name is
 *                       kept on the server) and answers 303 to
 *                       /?room=ROOM (a form posted from another site gets
 *                       403)
 *   GET  /logout        ends the session: the server forgets its id, so
 *                       the old cookie opens nothing any more, and the
 *                       session's open sockets are closed (4001); 303 to /
 *   GET  /metrics       the server's counters in the Prometheus text
 *                       format (tl_metrics; a real deployment keeps it
 *                       behind authentication or off the public port)
 *   ws   /chat/:room    the room; needs a live session (else 401), a page
 *                       of this server (a foreign Origin gets 403), and
 *                       fewer than 16 sockets open with that session
 *                       (else 429; when upgrades on two workers take the
 *                       last place at once, the later one opens and is
 *                       closed at once with 4029)
 *
 * Messages, server to client (JSON text):
 *   {"type":"welcome","name":"alice","room":"lobby","max_bytes":2048,
 *    "history":[<message>...]}                      on connect
 *   {"type":"message","id":7,"name":"bob","text":"hi","time":<ms>}
 *   {"type":"join","id":8,"name":"bob","members":2,"time":<ms>}
 *   {"type":"leave","id":9,"name":"bob","members":1,"time":<ms>}
 *   {"type":"error","text":"..."}                   only to the sender
 * Ids number messages, joins and leaves in one sequence, the order in
 * which the server decided them (see Workers below).
 * Client to server: the text of a message (UTF-8, at most 2 KiB; a longer
 * one closes the socket with 1009, which the page reports). The server
 * closes a socket with 4001 when its session was signed out.
 *
 * Sessions (tl_session, kept in memory) end at /logout, at a new sign-in
 * from the same browser, after 24 hours without a request, 7 days after
 * the sign-in, and when the server stops.
 * With REDIS_URL (and CHAT_SECRET) they live in Redis instead and survive
 * a restart; the 7 days are then the cookie's Max-Age only (Redis expires
 * a session after 24 hours without a request). See "across processes"
 * below for what else is shared then.
 *
 * Limits are per sign-in, not global, so that one client cannot deny
 * everyone else: a session may hold at most 16 sockets (so 16 rooms) at
 * once. Rooms someone is in are always kept (there are never more of them
 * than open sockets, and talon's max_connections bounds those); of the
 * rooms nobody is in, the 256 used last keep their last 50 messages, which
 * are sent on join. Signing in is free, so the per-session cap bounds what
 * one sign-in holds, not what one person with many sign-ins can.
 *
 * Workers (chat --workers N, WORKERS=N; 0: one per CPU). Every worker
 * runs these handlers for the connections it accepted, at the same time
 * as the others, so what the sockets share (rooms, their history and
 * member counts, message ids, the sockets of each sign-in) is kept under
 * one mutex, and published messages reach the room's sockets on every
 * worker (talon's pub/sub spans the workers). Two things follow from
 * delivery across workers being asynchronous:
 *  - A message sent on another worker just as a socket joins may be both
 *    in its welcome's history and delivered live, and messages sent on
 *    different workers at the same moment may arrive in a different
 *    order than their ids. The page drops a message whose id it already
 *    shows, and takes a member count only from an event newer (higher
 *    id) than the one it took the last count from. Nothing is lost: a
 *    socket subscribes under the mutex, after taking the history, and a
 *    message enters the history under the mutex before it is published.
 *  - A socket may be used only on its worker's thread, so signing out
 *    asks every worker (tl_app_call_all) to close that sign-in's sockets
 *    it holds; the response does not wait for them.
 *
 * Usage: chat [--workers N] [PORT]   (or PORT=..., HOST=..., WORKERS=...;
 * CHAT_PUBLIC=dir serves another front end; REDIS_URL=redis://HOST:PORT
 * with CHAT_SECRET=<the same long random string on every process> shares
 * everything with the other chat processes on that Redis)
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <talon.h>
#include <talon/mw.h>

#include "../common.h"

#define NAME_MAX_CHARS 24
#define ROOM_MAX_CHARS 32
#define HISTORY 50                 /* messages kept per room */
#define MAX_PAYLOAD 2048           /* bytes of one message from a client */
#define MAX_SOCKETS_PER_SESSION 16 /* sockets (so rooms) of one sign-in */
#define MAX_IDLE_ROOMS 256         /* rooms nobody is in, kept for history */
#define RATE_BURST 20.0            /* messages a client may send at once... */
#define RATE_PER_SEC 5.0           /* ...and per second after that */
#define SESSION_IDLE_S (24 * 3600) /* a session unused this long ends */
#define SESSION_MAX_S (7 * 24 * 3600) /* and any session after this long */
#define SESSION_BUCKETS 1024  /* hash buckets of the sockets by session */
#define CLOSE_SIGNED_OUT 4001 /* close code: the session was ended */
#define CLOSE_TOO_MANY 4029   /* close code: over the per-session cap */

struct room;
struct session_socks;

/* One per WebSocket (tl_app_ws's data block), filled by `upgrade` and
 * `open`. */
typedef struct chat_user {
  char name[NAME_MAX_CHARS + 1];
  char room[ROOM_MAX_CHARS + 1];
  char topic[ROOM_MAX_CHARS + 6];  /* "room:" + room */
  char sid[TL_SESSION_ID_LEN + 1]; /* the session it was opened with */
  double tokens;                   /* rate limit bucket */
  uint64_t tokens_at;              /* loop time of the last refill, ms */
  tl_ws *ws;                       /* from open on; its worker only */
  int worker;                      /* the worker that owns it */
  struct room *r;                  /* its room, from open on */
  struct session_socks *session;   /* its session's sockets, from open on */
  struct chat_user *next_of_session;
  struct user_ref *ref; /* with Redis: for answers after a close */
} chat_user;

/* A room: the ring of its last HISTORY messages. */
typedef struct room {
  struct room *next;
  char name[ROOM_MAX_CHARS + 1];
  json_t *ring[HISTORY];
  unsigned first, count; /* ring[first] is the oldest */
  int members;           /* sockets in it (joined and not yet left) */
  uint64_t used;         /* loop time of the last activity, for eviction */
} room;

/* The open sockets of one session, on every worker: what the
 * per-session cap counts and what /logout closes (each worker closes its
 * own: see socks_revoke). */
typedef struct session_socks {
  struct session_socks *next; /* in its hash bucket */
  char id[TL_SESSION_ID_LEN + 1];
  chat_user *users;
  unsigned count;
} session_socks;

/* Everything the workers share, under `lock`. It is recursive because
 * talon calls some handlers from inside calls made under it: subscribing
 * runs the subscription handler, closing a socket may run its close
 * handler, and publishing may close a slow socket. */
typedef struct chat_state {
  pthread_mutex_t lock;
  room *rooms;
  size_t nrooms, nidle; /* all rooms / rooms nobody is in */
  json_int_t next_id;   /* of messages, joins and leaves */
  session_socks *sessions[SESSION_BUCKETS];
#ifdef TALON_HAVE_REDIS
  tl_redis *redis; /* with REDIS_URL: shared with other processes */
#endif
} chat_state;

/* ---- helpers ------------------------------------------------------------ */

static chat_state *state_of(tl_app *app) {
  return tl_app_data(app);
}

/* Locks the shared state of `app` and returns it. */
static chat_state *lock(tl_app *app) {
  chat_state *st = state_of(app);
  pthread_mutex_lock(&st->lock);
  return st;
}

static void unlock(chat_state *st) {
  pthread_mutex_unlock(&st->lock);
}

static json_int_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (json_int_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Display names: 1 to 24 printable ASCII characters, no leading or
 * trailing space, no two spaces in a row. */
static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > NAME_MAX_CHARS || s[0] == ' ' || s[n - 1] == ' ')
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e || (c == ' ' && s[i + 1] == ' '))
      return false;
  }
  return true;
}

/* Room names: 1 to 32 of [A-Za-z0-9_-]. */
static bool valid_room(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n < 1 || n > ROOM_MAX_CHARS)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
      return false;
  return true;
}

/* The signed-in user's name (validated) into `out` and the session id
 * into `sid` (either may be NULL), or false when the request has no live
 * session with a name: no cookie, a forged one, or one whose session
 * ended (logout, expiry, a restart of the server). */
static bool signed_in(tl_req *req, char out[NAME_MAX_CHARS + 1],
                      char sid[TL_SESSION_ID_LEN + 1]) {
  struct tl_session *s = tl_req_session(req);
  const char *name = s ? tl_session_get(s, "name") : NULL;
  const char *id = s ? tl_session_id(s) : NULL;
  if (!name || !id || !valid_name(name))
    return false;
  if (out)
    snprintf(out, NAME_MAX_CHARS + 1, "%s", name);
  if (sid)
    snprintf(sid, TL_SESSION_ID_LEN + 1, "%s", id);
  return true;
}

/* Same origin: the Origin header's host[:port] equals the Host header
 * (scheme http or https; default ports ignored). No Origin header (a
 * non-browser client) is allowed: the cookie still has to be valid. */
static bool same_origin(const tl_req *req) {
  const char *origin = tl_req_header(req, "origin");
  const char *host = tl_req_header(req, "host");
  if (!origin)
    return true;
  if (!host)
    return false;
  const char *o;
  const char *dflt;
  if (strncasecmp(origin, "http://", 7) == 0) {
    o = origin + 7;
    dflt = ":80";
  } else if (strncasecmp(origin, "https://", 8) == 0) {
    o = origin + 8;
    dflt = ":443";
  } else {
    return false; /* "null", file://, ... */
  }
  size_t on = strlen(o), hn = strlen(host), dn = strlen(dflt);
  if (on > dn && strcmp(o + on - dn, dflt) == 0)
    on -= dn;
  if (hn > dn && strcmp(host + hn - dn, dflt) == 0)
    hn -= dn;
  return on == hn && strncasecmp(o, host, on) == 0;
}

/* Serializes and frees `j`; NULL on failure. */
static char *dump(json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

static void send_json(tl_ws *ws, json_t *j) {
  char *s = dump(j);
  if (s)
    tl_ws_send(ws, s, strlen(s), TL_WS_TEXT);
  free(s);
}

static void send_error(tl_ws *ws, const char *text) {
  send_json(ws, json_pack("{s:s, s:s}", "type", "error", "text", text));
}

/* ---- rooms --------------------------------------------------------------- */

static void room_free(room *r) {
  for (unsigned i = 0; i < r->count; i++)
    json_decref(r->ring[(r->first + i) % HISTORY]);
  free(r);
}

static room *room_find(chat_state *st, const char *name) {
  for (room *r = st->rooms; r; r = r->next)
    if (strcmp(r->name, name) == 0)
      return r;
  return NULL;
}

/* Forgets rooms nobody is in, least recently used first, until at most
 * MAX_IDLE_ROOMS are left. `keep` (a room about to be joined) stays.
 * Rooms with members are never forgotten, so no number of rooms held by
 * some clients can stop another client from opening a new one. */
static void rooms_trim(chat_state *st, const room *keep) {
  while (st->nidle > MAX_IDLE_ROOMS) {
    room **victim = NULL;
    for (room **p = &st->rooms; *p; p = &(*p)->next)
      if ((*p)->members == 0 && *p != keep &&
          (!victim || (*p)->used < (*victim)->used))
        victim = p;
    if (!victim)
      return;
    room *v = *victim;
    *victim = v->next;
    room_free(v);
    st->nrooms--;
    st->nidle--;
  }
}

/* Finds or creates room `name`; NULL only when out of memory. Under the
 * lock (as is everything below that takes the state). */
static room *room_get(tl_app *app, chat_state *st, const char *name) {
  uint64_t now = tl_app_now(app);
  room *r = room_find(st, name);
  if (r) {
    r->used = now;
    return r;
  }
  r = calloc(1, sizeof *r);
  if (!r)
    return NULL;
  snprintf(r->name, sizeof r->name, "%s", name);
  r->used = now;
  r->next = st->rooms;
  st->rooms = r;
  st->nrooms++;
  st->nidle++; /* until its first member's join */
  rooms_trim(st, r);
  return r;
}

/* Keeps `msg` (a reference is taken) as the room's newest message. */
static void room_remember(room *r, json_t *msg) {
  if (r->count == HISTORY) {
    json_decref(r->ring[r->first]);
    r->ring[r->first] = json_incref(msg);
    r->first = (r->first + 1) % HISTORY;
  } else {
    r->ring[(r->first + r->count++) % HISTORY] = json_incref(msg);
  }
}

/* ---- the sockets of each session --------------------------------------- */

static size_t sid_bucket(const char *id) {
  uint32_t h = 2166136261u; /* FNV-1a; ids are random already */
  for (; *id; id++)
    h = (h ^ (unsigned char)*id) * 16777619u;
  return h % SESSION_BUCKETS;
}

static session_socks *socks_find(chat_state *st, const char *id) {
  for (session_socks *e = st->sessions[sid_bucket(id)]; e; e = e->next)
    if (strcmp(e->id, id) == 0)
      return e;
  return NULL;
}

/* Sockets open with session `id`. */
static unsigned socks_count(chat_state *st, const char *id) {
  session_socks *e = socks_find(st, id);
  return e ? e->count : 0;
}

/* Counts the open socket `u` for its session: 0, or 1 when the session
 * already has its MAX_SOCKETS_PER_SESSION, or -1 when out of memory. */
static int socks_attach(chat_state *st, chat_user *u) {
  session_socks *e = socks_find(st, u->sid);
  if (e && e->count >= MAX_SOCKETS_PER_SESSION)
    return 1;
  if (!e) {
    e = calloc(1, sizeof *e);
    if (!e)
      return -1;
    snprintf(e->id, sizeof e->id, "%s", u->sid);
    size_t b = sid_bucket(e->id);
    e->next = st->sessions[b];
    st->sessions[b] = e;
  }
  u->next_of_session = e->users;
  e->users = u;
  e->count++;
  u->session = e;
  return 0;
}

/* Stops counting `u` (its socket closed). */
static void socks_detach(chat_state *st, chat_user *u) {
  session_socks *e = u->session;
  if (!e)
    return;
  for (chat_user **p = &e->users; *p; p = &(*p)->next_of_session)
    if (*p == u) {
      *p = u->next_of_session;
      break;
    }
  u->session = NULL;
  if (--e->count > 0)
    return;
  for (session_socks **p = &st->sessions[sid_bucket(e->id)]; *p;
       p = &(*p)->next)
    if (*p == e) {
      *p = e->next;
      break;
    }
  free(e);
}

/* Closes the sockets of session `id` that this worker holds, with the
 * lock held. Each leaves the list in its close handler, later or at once;
 * `next` is read before the close in case it is at once. */
static void socks_close_here(chat_state *st, int worker, const char *id) {
  session_socks *e = socks_find(st, id);
  for (chat_user *u = e ? e->users : NULL, *next; u; u = next) {
    next = u->next_of_session;
    if (u->worker == worker)
      tl_ws_close(u->ws, CLOSE_SIGNED_OUT, "signed out");
  }
}

/* tl_app_call_all: on each worker in turn. */
static void revoke_here(tl_app *app, void *id) {
  chat_state *st = lock(app);
  socks_close_here(st, tl_app_worker(app), id);
  unlock(st);
}

static void revoke_done(tl_app *app, void *id) {
  free(id);
}

/* Closes every socket of session `id` (it was signed out or replaced):
 * each worker closes those it holds, since a socket may be used only on
 * its own worker's thread. */
static void socks_revoke(tl_app *app, const char *id) {
  char *copy = strdup(id);
  if (copy && tl_app_call_all(app, revoke_here, revoke_done, copy) == 0)
    return;
  free(copy);
  /* Out of memory: close at least this worker's. */
  chat_state *st = lock(app);
  socks_close_here(st, tl_app_worker(app), id);
  unlock(st);
}

/* ---- across processes: Redis ---------------------------------------------
 *
 * With REDIS_URL set, several chat processes share everything through one
 * Redis (talon/redis.h), on the worker's own Redis connection, never
 * blocking a loop:
 *  - sessions: tl_redis_session_store (signed in through one process,
 *    signed in on all; the cookie's secret is CHAT_SECRET, the same on
 *    every process);
 *  - messages: one script (MSG_LUA) checks that the sender's session is
 *    still alive, numbers the message (INCR chat:seq: one sequence for all
 *    processes), appends it to the room's history (RPUSH + LTRIM of the
 *    list chat:hist:ROOM, so a process started late has it) and returns
 *    it; the answer is published to the room (the bridge carries it to
 *    the other processes). A socket whose session was signed out through
 *    another process is closed (4001) at its next message;
 *  - history: a joining socket subscribes first and reads the list once
 *    Redis has this process's subscription (tl_redis_await_subscription):
 *    a message is then either in the list or published after the
 *    subscription took effect (or both, which is fine: the page drops ids
 *    it shows). The page keeps what arrives before the welcome and shows
 *    it after the history;
 *  - presence: member counts are tl_redis_cluster_count over every
 *    process; join and leave events carry the count and, as "id", its
 *    version, which orders counts across processes;
 *  - sign-out: the session's sockets here close at once (as without
 *    Redis); those on other processes are told {"type":"signed_out"} on
 *    the session's topic (the page closes them) and closed by their
 *    server at their next message.
 * The per-session socket cap counts the sockets of this process. */
#ifdef TALON_HAVE_REDIS

/* A socket, for answers that may come after it closed: `u` is NULL then.
 * Used on the socket's worker only (the answers come there), so plain
 * counts suffice. */
typedef struct user_ref {
  chat_user *u;
  unsigned refs;
} user_ref;

static void ref_drop(user_ref *ref) {
  if (--ref->refs == 0)
    free(ref);
}

/* KEYS: chat:seq, chat:hist:ROOM, the sender's session key; ARGV: the
 * message's JSON before and after its id, the history length. */
static const char MSG_LUA[] =
    "if redis.call('EXISTS', KEYS[3]) == 0 then return false end\n"
    "local id = redis.call('INCR', KEYS[1])\n"
    "local s = ARGV[1] .. id .. ARGV[2]\n"
    "redis.call('RPUSH', KEYS[2], s)\n"
    "redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)\n"
    "return s\n";

#define SESSION_PREFIX "talon:sess:"

typedef struct msg_op {
  tl_app *app;
  user_ref *ref;
  char topic[ROOM_MAX_CHARS + 6];
} msg_op;

static void msg_done(tl_redis *r, int status, const tl_redis_reply *rep,
                     void *arg) {
  msg_op *op = arg;
  chat_user *u = op->ref->u;
  if (status == 0 && rep->type == TL_REDIS_STRING) {
    tl_app_publish(op->app, op->topic, rep->str, rep->len, TL_WS_TEXT);
  } else if (status == 0 && rep->type == TL_REDIS_NIL) {
    if (u) /* signed out through another process */
      tl_ws_close(u->ws, CLOSE_SIGNED_OUT, "signed out");
  } else if (u) {
    send_error(u->ws, "message not sent: the server's store is unavailable");
  }
  ref_drop(op->ref);
  free(op);
}

/* A message of `u` (valid UTF-8, no NUL): numbered, kept and published
 * through Redis. */
static void redis_message(tl_redis *redis, chat_user *u, const char *data,
                          size_t len) {
  /* The JSON after the id: {"name":...,"text":...,"time":...} with its
   * '{' replaced by ','. jansson keeps the keys in insertion order. */
  char *tail = dump(json_pack("{s:s, s:s%, s:I}", "name", u->name, "text",
                              data, len, "time", now_ms()));
  msg_op *op = tail ? malloc(sizeof *op) : NULL;
  if (!op) {
    free(tail);
    send_error(u->ws, "message refused");
    return;
  }
  tail[0] = ',';
  op->app = tl_ws_app(u->ws);
  op->ref = u->ref;
  snprintf(op->topic, sizeof op->topic, "%s", u->topic);
  char hist[ROOM_MAX_CHARS + 16], sess[sizeof SESSION_PREFIX + TL_SESSION_ID_LEN];
  snprintf(hist, sizeof hist, "chat:hist:%s", u->room);
  snprintf(sess, sizeof sess, SESSION_PREFIX "%s", u->sid);
  char keep[16];
  snprintf(keep, sizeof keep, "%d", HISTORY);
  const char *argv[] = {"EVAL", MSG_LUA, "3", "chat:seq", hist, sess,
                        "{\"type\":\"message\",\"id\":", tail, keep};
  int rc = tl_redis_command(redis, 9, argv, NULL, msg_done, op);
  free(tail);
  if (rc < 0) {
    free(op);
    send_error(u->ws, "message not sent: the server's store is unavailable");
    return;
  }
  u->ref->refs++;
}

static void welcome_done(tl_redis *r, int status, const tl_redis_reply *rep,
                         void *arg) {
  user_ref *ref = arg;
  chat_user *u = ref->u;
  if (u && (status < 0 || rep->type != TL_REDIS_ARRAY)) {
    tl_ws_close(u->ws, 1011, "the server's store is unavailable");
  } else if (u) {
    json_t *history = json_array();
    for (size_t i = 0; i < rep->elements; i++) {
      const tl_redis_reply *e = &rep->element[i];
      json_t *m = e->type == TL_REDIS_STRING
                      ? json_loadb(e->str, e->len, 0, NULL)
                      : NULL;
      if (m)
        json_array_append_new(history, m);
    }
    send_json(u->ws, json_pack("{s:s, s:s, s:s, s:i, s:o}", "type",
                               "welcome", "name", u->name, "room", u->room,
                               "max_bytes", MAX_PAYLOAD, "history", history));
  }
  ref_drop(ref);
}

/* The room's channel is subscribed at Redis: the history read now
 * misses nothing published later. */
static void subscribed(tl_redis *redis, int status, void *arg) {
  user_ref *ref = arg;
  chat_user *u = ref->u;
  char hist[ROOM_MAX_CHARS + 16];
  if (u && status == 0) {
    snprintf(hist, sizeof hist, "chat:hist:%s", u->room);
    const char *argv[] = {"LRANGE", hist, "0", "-1"};
    if (tl_redis_command(redis, 4, argv, NULL, welcome_done, ref) == 0)
      return; /* the reference goes on to welcome_done */
  }
  if (u)
    tl_ws_close(u->ws, 1011, "the server's store is unavailable");
  ref_drop(ref);
}

/* A socket joined its room (under no lock): subscribe to the room and
 * to its session's topic; once Redis has the subscription, read the
 * history for the welcome. */
static void redis_open(tl_redis *redis, chat_user *u) {
  tl_ws *ws = u->ws;
  user_ref *ref = malloc(sizeof *ref);
  char sess_topic[TL_SESSION_ID_LEN + 9];
  snprintf(sess_topic, sizeof sess_topic, "session:%s", u->sid);
  if (!ref || tl_ws_subscribe(ws, u->topic) != 0 ||
      tl_ws_subscribe(ws, sess_topic) != 0) {
    free(ref);
    tl_ws_close(ws, 4011, "could not join the room");
    return;
  }
  *ref = (user_ref){.u = u, .refs = 1};
  u->ref = ref;
  if (tl_redis_await_subscription(redis, u->topic, subscribed, ref) != 0) {
    tl_ws_close(ws, 1011, "the server's store is unavailable");
    return;
  }
  ref->refs++;
}

static void redis_close(chat_user *u) {
  if (!u->ref)
    return;
  u->ref->u = NULL;
  ref_drop(u->ref);
  u->ref = NULL;
}

typedef struct presence_op {
  tl_app *app;
  bool join;
  char name[NAME_MAX_CHARS + 1];
  char topic[ROOM_MAX_CHARS + 6];
} presence_op;

static void presence_done(tl_redis *r, int status, long long count,
                          long long version, void *arg) {
  presence_op *op = arg;
  if (status == 0) {
    char *event = dump(json_pack("{s:s, s:I, s:s, s:I, s:I}", "type",
                                 op->join ? "join" : "leave", "id",
                                 (json_int_t)version, "name", op->name,
                                 "members", (json_int_t)count, "time",
                                 now_ms()));
    if (event)
      tl_app_publish(op->app, op->topic, event, strlen(event), TL_WS_TEXT);
    free(event);
  }
  free(op);
}

/* A join or leave: announced with the member count over every process. */
static void redis_presence(tl_redis *redis, tl_app *app, const chat_user *u,
                           const char *topic, bool join) {
  presence_op *op = malloc(sizeof *op);
  if (!op)
    return;
  op->app = app;
  op->join = join;
  snprintf(op->name, sizeof op->name, "%s", u->name);
  snprintf(op->topic, sizeof op->topic, "%s", topic);
  if (tl_redis_cluster_count(redis, topic, presence_done, op) != 0)
    free(op); /* Redis unavailable (or stopping): no announcement */
}

/* Sign-out of session `id`: its sockets on other processes are told. */
static void redis_signed_out(tl_app *app, const char *id) {
  char topic[TL_SESSION_ID_LEN + 9];
  snprintf(topic, sizeof topic, "session:%s", id);
  static const char msg[] = "{\"type\":\"signed_out\"}";
  tl_app_publish(app, topic, msg, sizeof msg - 1, TL_WS_TEXT);
}

#endif /* TALON_HAVE_REDIS */

/* ---- HTTP routes ------------------------------------------------------- */

/* Session `id` ended (sign-out, or replaced by a new sign-in): its sockets
 * close, here and, with Redis, on the other processes. */
static void signed_out(tl_app *app, const char *id) {
  socks_revoke(app, id);
#ifdef TALON_HAVE_REDIS
  if (state_of(app)->redis)
    redis_signed_out(app, id);
#endif
}

static void me(tl_req *req, tl_res *res) {
  char name[NAME_MAX_CHARS + 1];
  tl_res_header(res, "Cache-Control", "no-store");
  if (!signed_in(req, name, NULL)) {
    tl_res_json(res, "{\"name\":null}");
    return;
  }
  char *s = dump(json_pack("{s:s}", "name", name));
  if (!s) {
    tl_res_status(res, 500);
    tl_res_text(res, "out of memory\n");
    return;
  }
  tl_res_json(res, s);
  free(s);
}

/* Form field `key`, or NULL if absent or if it holds a NUL byte (%00). */
static const char *form_value(tl_req *req, const char *key) {
  tl_slice k, v;
  for (size_t i = 0; tl_req_form_field(req, i, &k, &v) == 0; i++)
    if (strcmp(k.ptr, key) == 0)
      return strlen(v.ptr) == v.len ? v.ptr : NULL;
  return NULL;
}

static void login(tl_req *req, tl_res *res) {
  const char *name = form_value(req, "name");
  const char *room = form_value(req, "room");
  char trimmed[256];
  char location[64];
  /* A form on another site must not sign the visitor in (login CSRF). */
  if (!same_origin(req)) {
    tl_res_status(res, 403);
    tl_res_text(res, "Forbidden: foreign origin\n");
    return;
  }
  if (!room || !*room)
    room = "lobby";
  if (!valid_room(room)) {
    tl_res_redirect(res, 303, "/?error=room");
    return;
  }
  /* Leading and trailing spaces are forgiven; everything else must be
   * valid as typed. */
  size_t n = name ? strlen(name) : 0;
  if (name && n < sizeof trimmed) {
    while (*name == ' ')
      name++, n--;
    while (n && name[n - 1] == ' ')
      n--;
    memcpy(trimmed, name, n);
    trimmed[n] = '\0';
  } else {
    trimmed[0] = '\0';
  }
  if (!valid_name(trimmed)) {
    snprintf(location, sizeof location, "/?error=name&room=%s", room);
    tl_res_redirect(res, 303, location);
    return;
  }
  /* A new session id at every sign-in (no session fixation: an id
   * planted in the browser before is not the one that gets signed in).
   * A sign-in it replaces loses its sockets, as at /logout. */
  struct tl_session *s = tl_req_session(req);
  char old[TL_SESSION_ID_LEN + 1] = "";
  const char *id = s ? tl_session_id(s) : NULL;
  if (id)
    snprintf(old, sizeof old, "%s", id);
  if (!s || tl_session_regenerate(req, res) != 0 ||
      tl_session_set(s, "name", trimmed) != 0) {
    tl_res_status(res, 500);
    tl_res_text(res, "could not start the session\n");
    return;
  }
  if (*old)
    signed_out(tl_req_app(req), old);
  snprintf(location, sizeof location, "/?room=%s", room);
  tl_res_redirect(res, 303, location);
}

/* The session ends on the server, not only in this browser: a copy of the
 * cookie kept elsewhere opens nothing afterwards. */
static void logout(tl_req *req, tl_res *res) {
  struct tl_session *s = tl_req_session(req);
  char old[TL_SESSION_ID_LEN + 1] = "";
  const char *id = s ? tl_session_id(s) : NULL;
  if (id)
    snprintf(old, sizeof old, "%s", id);
  tl_res_header(res, "Cache-Control", "no-store");
  if (tl_session_destroy(req, res) != 0) {
    tl_res_status(res, 500);
    tl_res_text(res, "could not end the session\n");
    return;
  }
  if (*old)
    signed_out(tl_req_app(req), old);
  tl_res_redirect(res, 303, "/");
}

/* ---- the WebSocket route ------------------------------------------------ */

static int refuse(tl_res *res, int status, const char *text) {
  tl_res_status(res, status);
  tl_res_text(res, text);
  return TL_REJECT;
}

static int on_upgrade(tl_req *req, tl_res *res, void *data) {
  chat_user *u = data;
  /* A page of another site could open this socket with the user's cookie
   * (cross-site WebSocket hijacking): same origin only. */
  if (!same_origin(req))
    return refuse(res, 403, "Forbidden: foreign origin\n");
  if (!signed_in(req, u->name, u->sid))
    return refuse(res, 401, "Unauthorized: sign in first\n");
  const char *r = tl_req_param(req, "room");
  if (!valid_room(r))
    return refuse(res, 400,
                  "Bad Request: room names are 1-32 of A-Z a-z 0-9 _ -\n");
  /* The cap is per session: a client holding many rooms stops only
   * itself. open() counts the socket; two upgrades of one session on two
   * workers at once may both pass here, and open() refuses the one over
   * the cap. */
  tl_app *app = tl_req_app(req);
  chat_state *st = lock(app);
  bool full = socks_count(st, u->sid) >= MAX_SOCKETS_PER_SESSION;
  bool made = !full && room_get(app, st, r);
  unlock(st);
  if (full) {
    char text[96];
    snprintf(text, sizeof text,
             "Too Many Requests: at most %d rooms open at once per sign-in; "
             "close one first\n",
             MAX_SOCKETS_PER_SESSION);
    return refuse(res, 429, text);
  }
  if (!made)
    return refuse(res, 503, "Service Unavailable: out of memory\n");
  snprintf(u->room, sizeof u->room, "%s", r);
  snprintf(u->topic, sizeof u->topic, "room:%s", r);
  u->tokens = RATE_BURST;
  u->tokens_at = tl_app_now(tl_req_app(req));
  return TL_ACCEPT;
}

static void on_open(tl_ws *ws) {
  chat_user *u = tl_ws_data(ws);
  tl_app *app = tl_ws_app(ws);
  u->ws = ws;
  u->worker = tl_app_worker(app);
  /* The history and the subscription are taken under one hold of the
   * lock: a message enters the history under it too, so each one is
   * either in the welcome or published after this socket subscribed. */
  chat_state *st = lock(app);
  int attached = -1;
  u->r = room_get(app, st, u->room);
  if (!u->r || (attached = socks_attach(st, u)) != 0) {
    unlock(st);
    if (attached == 1)
      tl_ws_close(ws, CLOSE_TOO_MANY, "too many rooms open");
    else
      tl_ws_close(ws, 1011, "out of memory");
    return;
  }
#ifdef TALON_HAVE_REDIS
  if (st->redis) {
    unlock(st);
    redis_open(st->redis, u);
    return;
  }
#endif
  room *r = u->r;
  json_t *history = json_array();
  for (unsigned i = 0; i < r->count; i++)
    json_array_append(history, r->ring[(r->first + i) % HISTORY]);
  send_json(ws, json_pack("{s:s, s:s, s:s, s:i, s:o}", "type", "welcome",
                          "name", u->name, "room", u->room, "max_bytes",
                          MAX_PAYLOAD, "history", history));
  /* The join announcement comes from the subscription handler. */
  int err = tl_ws_subscribe(ws, u->topic);
  unlock(st);
  if (err != 0)
    tl_ws_close(ws, 4011, "could not join the room");
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  chat_state *st = lock(tl_ws_app(ws));
  socks_detach(st, tl_ws_data(ws));
  unlock(st);
#ifdef TALON_HAVE_REDIS
  redis_close(tl_ws_data(ws));
#endif
}

/* Joins and leaves (also of closing sockets, after on_close): announce
 * them with the new member count, and keep the room's count, which
 * decides whether it may be forgotten. talon's counts are app-wide, but
 * the handlers of two workers may run in either order; the count kept
 * and announced here is the one of the order they took the lock in, and
 * the event's id tells the page which count is the newest. */
static void on_subscription(tl_ws *ws, const char *topic, int new_count,
                            int old_count) {
  chat_user *u = tl_ws_data(ws);
  tl_app *app = tl_ws_app(ws);
  bool join = new_count > old_count;
  if (strcmp(topic, u->topic) != 0)
    return; /* the session's topic (with Redis) */
  chat_state *st = lock(app);
  room *r = u->r;
  r->members += join ? 1 : -1;
  if (join && r->members == 1)
    st->nidle--;
  if (!join && r->members == 0) {
    st->nidle++;
    r->used = tl_app_now(app);
  }
#ifdef TALON_HAVE_REDIS
  if (st->redis) {
    if (r->members == 0)
      rooms_trim(st, NULL);
    unlock(st);
    redis_presence(st->redis, app, u, topic, join);
    return;
  }
#endif
  char *event = dump(json_pack(
      "{s:s, s:I, s:s, s:i, s:I}", "type", join ? "join" : "leave", "id",
      ++st->next_id, "name", u->name, "members", r->members, "time", now_ms()));
  if (r->members == 0)
    rooms_trim(st, NULL); /* `r` may be gone now */
  unlock(st);
  if (event)
    tl_app_publish(app, topic, event, strlen(event), TL_WS_TEXT);
  free(event);
}

/* Whether the text has something other than white space. */
static bool blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isspace((unsigned char)p[i]))
      return false;
  return true;
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  chat_user *u = tl_ws_data(ws);
  tl_app *app = tl_ws_app(ws);
  /* A socket this server is closing (its session was signed out, or open
   * failed and it may have no room) says nothing more. */
  if (tl_ws_ready_state(ws) != TL_WS_OPEN)
    return;
  if (op != TL_WS_TEXT) {
    send_error(ws, "only text messages");
    return;
  }
  if (blank(data, len))
    return;
  /* Rate limit: a token bucket per socket. */
  uint64_t now = tl_app_now(app);
  u->tokens += (double)(now - u->tokens_at) * RATE_PER_SEC / 1000.0;
  if (u->tokens > RATE_BURST)
    u->tokens = RATE_BURST;
  u->tokens_at = now;
  if (u->tokens < 1.0) {
    send_error(ws, "slow down: too many messages");
    return;
  }
  u->tokens -= 1.0;
#ifdef TALON_HAVE_REDIS
  tl_redis *redis = state_of(app)->redis;
  if (redis) {
    redis_message(redis, u, data, len);
    return;
  }
#endif

  /* talon checked that text is valid UTF-8; jansson escapes it. A NUL
   * (valid UTF-8, "\u0000") makes json_stringn fail: refused. The
   * message is numbered and kept under the lock, and serialised there
   * too: the history's objects are shared by the workers. */
  chat_state *st = lock(app);
  room *r = u->r;
  r->used = now;
  json_t *msg = json_pack("{s:s, s:I, s:s, s:s%, s:I}", "type", "message", "id",
                          ++st->next_id, "name", u->name, "text",
                          (const char *)data, len, "time", now_ms());
  char *text = NULL;
  if (msg) {
    room_remember(r, msg);
    text = dump(msg);
  }
  unlock(st);
  if (!text) {
    send_error(ws, "message refused");
    return;
  }
  /* To everyone, the sender included, on every worker. */
  tl_app_publish(app, u->topic, text, strlen(text), TL_WS_TEXT);
  free(text);
}

static void on_dropped(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  /* A client too slow to read: it misses messages (it gets the history
   * again when it reconnects). */
}

static const tl_ws_handlers chat_route = {
    .upgrade = on_upgrade,
    .open = on_open,
    .message = on_message,
    .close = on_close,
    .subscription = on_subscription,
    .dropped = on_dropped,
    .max_payload = MAX_PAYLOAD,
    .idle_timeout_s = 60,
    .send_pings = 1,
    .max_backpressure = 1u << 20,
    .compression = TL_SHARED_COMPRESSOR,
};

/* ---- startup ---------------------------------------------------------------
 */

static bool is_dir(const char *p) {
  struct stat sb;
  return p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The front end: $CHAT_PUBLIC, else the source folder this binary was
 * built from, else public/ or ../../examples/chat/public next to the
 * executable, else examples/chat/public under the current directory. */
static const char *find_public(char *buf, size_t size) {
  const char *env = getenv("CHAT_PUBLIC");
  if (env && *env)
    return env;
#ifdef CHAT_PUBLIC_DIR
  if (is_dir(CHAT_PUBLIC_DIR))
    return CHAT_PUBLIC_DIR;
#endif
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      static const char *const rel[] = {"chat-public", "public",
                                        "../../examples/chat/public"};
      for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        int len = snprintf(buf, size, "%s/%s", exe, rel[i]);
        if (len > 0 && (size_t)len < size && is_dir(buf))
          return buf;
      }
    }
  }
  return "examples/chat/public";
}

/* 32 random bytes as hex, from /dev/urandom: the secret that signs the
 * session cookie. A new one at every start costs nothing, since the
 * sessions themselves live in this process's memory and end with it. */
static bool random_secret(char out[65]) {
  unsigned char b[32];
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f)
    return false;
  size_t got = fread(b, 1, sizeof b, f);
  fclose(f);
  if (got != sizeof b)
    return false;
  for (size_t i = 0; i < sizeof b; i++)
    snprintf(out + 2 * i, 3, "%02x", b[i]);
  return true;
}

static void on_listen(tl_app *app, const char *host, int port) {
  /* A wildcard address is not one to browse to: name localhost then. */
  bool any = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
  char url[EXAMPLE_URL_MAX];
  bool browsable = example_url(url, sizeof url, any ? "localhost" : host, port);
  example_print_listening("chat", host, port);
  example_print_tls(app, "chat", host);
  if (browsable) /* a browser does not open unix sockets */
    printf("chat: open %s/ in two browser windows (Ctrl-C stops)\n", url);
  fflush(stdout);
}

int main(int argc, char **argv) {
  example_opts o;
  int rc = example_args(
      argc, argv, "chat",
      "  CHAT_PUBLIC     the front end's folder [examples/chat/public]\n"
      "  CHAT_SECRET     signs the session cookies [random per start];\n"
      "                  required with REDIS_URL (the same on every process)\n",
      &o);
  if (rc >= 0)
    return rc;

  char pubbuf[PATH_MAX];
  const char *pub = find_public(pubbuf, sizeof pubbuf);
  if (!is_dir(pub)) {
    fprintf(stderr, "chat: front end folder %s not found (set CHAT_PUBLIC)\n",
            pub);
    return 1;
  }

  /* With Redis, every process must sign cookies with the same secret. */
  const char *redis_url = getenv("REDIS_URL");
  bool shared = redis_url && *redis_url;
  const char *secret_env = getenv("CHAT_SECRET");
  char secret[65];
  if (secret_env && *secret_env) {
    if (strlen(secret_env) < 16) {
      fprintf(stderr, "chat: CHAT_SECRET must have at least 16 characters\n");
      return 1;
    }
  } else if (shared) {
    fprintf(stderr, "chat: with REDIS_URL, set CHAT_SECRET (the same long "
                    "random string on every process: it signs the session "
                    "cookies)\n");
    return 1;
  } else if (!random_secret(secret)) {
    fprintf(stderr, "chat: cannot read /dev/urandom\n");
    return 1;
  }
  const char *const secrets[] = {secret_env && *secret_env ? secret_env
                                                           : secret,
                                 NULL};

  chat_state state = {0};
  pthread_mutexattr_t recursive;
  pthread_mutexattr_init(&recursive);
  pthread_mutexattr_settype(&recursive, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&state.lock, &recursive);
  pthread_mutexattr_destroy(&recursive);
  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen,
                                            .workers = o.workers,
                                            .max_body_bytes = 16 << 10});
  if (!app)
    return 1;
  tl_session_options sopt = {.cookie_name = "sid",
                             .cookie_max_age = SESSION_MAX_S,
                             .idle_timeout_s = SESSION_IDLE_S,
                             .absolute_timeout_s = SESSION_MAX_S};
#ifdef TALON_HAVE_REDIS
  tl_session_store store;
  if (shared) {
    /* Topics, sessions, history and member counts in Redis. */
    int e = tl_redis_attach(
        app, &(tl_redis_options){.url = redis_url, .cluster_count_ms = 1000},
        &state.redis);
    if (!e)
      e = tl_redis_session_store(
          state.redis, &(tl_redis_session_options){.idle_timeout_s = SESSION_IDLE_S},
          &store);
    if (e) {
      fprintf(stderr, "chat: REDIS_URL=%s: %s\n", redis_url, tl_strerror(e));
      tl_app_free(app);
      return 1;
    }
    sopt.store = &store;
  }
#else
  int redis_rc = example_redis(app, "chat"); /* says it is not built */
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }
#endif
  tl_app_set_data(app, &state);

  int err = 0;
  /* Logger first (it sees every answer), then the headers every answer
   * gets, cookies, the front end, and sessions (cookies and sessions also
   * run for the WebSocket upgrade; static files need no session, so a
   * page load stops before it). */
  err |= tl_app_use(app, tl_logger(NULL));
  err |= tl_app_use(app, tl_security_headers(&(tl_security_headers_options){
                             .csp = TL_CSP_STRICT "; img-src 'self' data:",
                             /* not no-referrer: with it Chromium sends
                              * "Origin: null" on the login form's POST */
                             .referrer_policy = "same-origin",
                             .coop = "same-origin",
                             .corp = "same-origin"}));
  err |= tl_app_use(app, tl_metrics(NULL));
  err |= tl_app_use(app, tl_cookies(&(tl_cookies_options){.secrets = secrets}));
  err |= tl_app_use(
      app, tl_static(pub, &(tl_static_options){.cache_control = "no-cache"}));
  err |= tl_app_use(app, tl_session(&sopt));

  tl_middleware form[] = {tl_body_urlencoded(
      &(tl_body_urlencoded_options){.max_bytes = 4096, .max_fields = 8})};
  err |= tl_app_route(app, "POST", "/login", login, form, 1);
  err |= tl_app_get(app, "/logout", logout);
  err |= tl_app_get(app, "/api/me", me);
  err |= tl_app_ws(app, "/chat/:room", &chat_route, sizeof(chat_user));
  if (err) {
    fprintf(stderr, "chat: setting up the app failed\n");
    tl_app_free(app);
    return 1;
  }

  if (example_tls(app, "chat", o.host)) {
    tl_app_free(app);
    return 1;
  }
  err = tl_app_listen(app, o.host, o.port);
  if (err)
    fprintf(stderr, "chat: %s\n", tl_strerror(err));
  /* Every socket has closed (and left its session's list) when
   * tl_app_free returns; the rooms are left. */
  tl_app_free(app);
  while (state.rooms) {
    room *r = state.rooms;
    state.rooms = r->next;
    room_free(r);
  }
  pthread_mutex_destroy(&state.lock);
  return err ? 1 : 0;
}
