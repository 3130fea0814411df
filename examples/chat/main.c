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
 * CHAT_PUBLIC=dir serves another front end)
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

/* ---- HTTP routes ------------------------------------------------------- */

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
    socks_revoke(tl_req_app(req), old);
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
    socks_revoke(tl_req_app(req), old);
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
  chat_state *st = lock(app);
  room *r = u->r;
  r->members += join ? 1 : -1;
  if (join && r->members == 1)
    st->nidle--;
  if (!join && r->members == 0) {
    st->nidle++;
    r->used = tl_app_now(app);
  }
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
      "  CHAT_PUBLIC     the front end's folder [examples/chat/public]\n", &o);
  if (rc >= 0)
    return rc;

  char pubbuf[PATH_MAX];
  const char *pub = find_public(pubbuf, sizeof pubbuf);
  if (!is_dir(pub)) {
    fprintf(stderr, "chat: front end folder %s not found (set CHAT_PUBLIC)\n",
            pub);
    return 1;
  }

  char secret[65];
  if (!random_secret(secret)) {
    fprintf(stderr, "chat: cannot read /dev/urandom\n");
    return 1;
  }
  const char *const secrets[] = {secret, NULL};

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
  int redis_rc = example_redis(app, "chat");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }
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
  err |= tl_app_use(app, tl_session(&(tl_session_options){
                             .cookie_name = "sid",
                             .cookie_max_age = SESSION_MAX_S,
                             .idle_timeout_s = SESSION_IDLE_S,
                             .absolute_timeout_s = SESSION_MAX_S}));

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
