/* Internal HTTP state: the HTTP layer's context, routers, the HTTP
 * connection with its embedded request and response. Private to src/.
 *
 * The HTTP layer knows the core below it and nothing above: not the app
 * that owns it (an opaque tl_app pointer it hands back to users), not
 * WebSocket (an upgrade route is an opaque entry the ws layer installs).
 */
#ifndef TALON_SRC_HTTP_HTTP_H
#define TALON_SRC_HTTP_HTTP_H

#include <llhttp.h>
#include <stdbool.h>

#include "core/buf.h"
#include "core/server.h"
#include "http/rtree.h"
#include "talon.h"

/* ---- routers and the compiled routes -------------------------------- */

/* An upgrade route's entry (TL__M_UPGRADE), installed by the protocol
 * that takes the connection over, so that dispatch never names it.
 * `run` answers the upgrade request like a handler (it may take the
 * socket, answer, or defer); `data` is the route's own state, freed with
 * `free` when the router goes. */
typedef struct tl__upgrade {
  void (*run)(tl_req *req, tl_res *res, void *data);
  void (*free)(void *data);
  void *data;
} tl__upgrade;

/* The most a buffered body may hold (a streamed one has no such cap). */
#define TL__MAX_BUFFERED ((uint64_t)1 << 31)

typedef struct tl__route_def {
  int slot;
  char *pattern;
  tl_handler handler;
  tl__upgrade up; /* TL__M_UPGRADE routes; data owned */
  tl_route_options opts;
  tl_middleware *mw;
  size_t nmw;
} tl__route_def;

typedef struct tl__mount {
  char *prefix;
  tl_router *child;
} tl__mount;

typedef struct tl__http tl__http;

struct tl_router {
  tl__route_def *routes;
  size_t nroutes, cap_routes;
  tl_middleware *mw;
  size_t nmw, cap_mw;
  tl_error_middleware *emw; /* error middleware (error.c) */
  size_t nemw, cap_emw;
  tl_router *parent; /* the router it is mounted in, set by compilation */
  tl__mount *mounts;
  size_t nmounts, cap_mounts;
  tl__http *owner; /* set once the router belongs to an app */
  bool mounted;    /* owned by a parent */
};

/* A compiled route: the value stored in the route tree. */
typedef struct tl__route {
  tl_handler handler;
  tl__upgrade up;              /* an upgrade route: handler is NULL */
  uint64_t max_body;           /* its body limit; 0: the app's */
  bool stream_body;            /* dispatched at the head (conn.c) */
  const tl_middleware **chain; /* router middleware (outer first), then
                                  route middleware */
  size_t nchain;
  const tl_router *router;      /* the router that holds it: error
                                   middleware runs from there outward */
  struct tl__route *next_alloc; /* all compiled routes, for freeing */
} tl__route;

int tl__router_compile(tl__http *http);
void tl__router_free_compiled(tl__http *http);
/* Calls `fn` for every middleware of router `r` and its mounted routers
 * (router level and route level, outer first); stops at the first
 * non-zero return and returns it, else 0. */
int tl__router_each_mw(tl_router *r,
                       int (*fn)(const tl_middleware *mw, void *arg),
                       void *arg);
void tl__router_destroy(tl_router *r, bool run_mw_free);
/* Adds an upgrade route with `nmw` route-level middleware (copied, as
 * for tl_router_route); ownership of `up->data` passes to the router on
 * success (0); TL_EINVAL, TL_EEXIST, TL_ESTATE (frozen) or TL_ENOMEM. */
int tl__router_add_upgrade(tl_router *r, const char *pattern,
                           const tl__upgrade *up, const tl_middleware *mw,
                           size_t nmw);

/* ---- the HTTP layer of an app ------------------------------------------ */

/* What every HTTP connection of an app shares: its options, the routes,
 * the parser settings. Embedded in the app, which fills it. */
struct tl__http {
  const tl_app_config *opt; /* the app's options, defaults applied */
  tl_app *app;              /* the owner, opaque here (tl_req_app) */
  tl_router *root;          /* its middleware is app-level */
  tl__rtree *tree;
  tl__route *compiled;
  tl_handler not_found;
  bool compiled_ok;
  llhttp_settings_t settings;
  /* Counters of this loop (tl_app_get_stats sums them; tl__count):
   * responses finished, by status class (index status / 100; 0: other);
   * responses the client left before their end; requests for an upgrade
   * route answered without a 101, or left by their client while the
   * upgrade was undecided. A worker's copy of the routes keeps its own. */
  struct {
    uint64_t responses[6];
    uint64_t aborted;
    uint64_t upgrades_refused;
  } cnt;
  /* The Date header value, refreshed once a second. */
  char date[40];
  int64_t date_sec;
};

/* Initialise: a root router, parser settings. 0 or TL_ENOMEM. */
int tl__http_init(tl__http *http, const tl_app_config *opt, tl_app *app);
void tl__http_free(tl__http *http);

/* ---- the HTTP connection ---------------------------------------------- */

typedef struct tl__hdr {
  uint32_t name_off, name_len;
  uint32_t value_off, value_len; /* value_off == UINT32_MAX: empty */
} tl__hdr;

typedef struct tl__param {
  const char *name;
  uint32_t off, len;   /* in the message */
  const char *decoded; /* NULL until read */
} tl__param;

typedef struct tl__local {
  const char *key;
  void *value;
  void (*free_fn)(void *);
} tl__local;

typedef struct tl__hconn tl__hconn;

enum {                /* request parse phases */
       TL__P_IDLE,    /* between messages */
       TL__P_HEAD,    /* head in progress */
       TL__P_BODY,     /* head done, body in progress */
       TL__P_DISPATCH, /* complete, in the handler or deferred */
       TL__P_STREAM    /* dispatched at its head, its body streaming */
};

struct tl_req {
  tl__hconn *h;
  uint8_t method; /* llhttp_method_t */
  int slot;       /* route tree slot, or TL__M_OTHER */
  int version;    /* 10 or 11 */
  bool keep_alive;
  bool ws_upgrade; /* GET with Upgrade: websocket */
  uint32_t url_off, url_len;
  uint32_t body_off, body_len;
  uint32_t nhdrs;
  int cur_hdr_state; /* 0 none, 1 in name, 2 in value */
  tl__hdr *hdrs;     /* max_headers entries, after the conn block */
  /* The first Upgrade header, found with the others (on_headers_complete;
   * NULL: none). */
  const tl__hdr *upgrade_hdr;
  /* Routing result. */
  const tl__route *route;
  int match_status; /* 0, 404, 405 */
  unsigned allow;
  size_t nparams;
  tl__param params[TL__MAX_PARAMS];
  /* Middleware cursor: app middleware first, then the route chain. */
  size_t mw_idx;
  bool waiting; /* a middleware returned TL_PENDING */
  /* Lazily computed. */
  const char *path;
  tl__local *locals;
  size_t nlocals, cap_locals;
};

enum { /* response flags */
       TL__R_HEAD_SENT = 1u << 0,
       TL__R_FINISHED = 1u << 1,
       TL__R_DEFERRED = 1u << 2,
       TL__R_CHUNKED = 1u << 3,
       TL__R_CLOSE = 1u << 4,    /* close the connection after this response */
       TL__R_HAS_CLEN = 1u << 5, /* user set Content-Length */
       TL__R_HAS_CTYPE = 1u << 6,
       TL__R_NO_BODY = 1u << 7, /* HEAD, 204, 304, 1xx */
       TL__R_FILE = 1u << 9,    /* a file body is being sent */
       TL__R_WANT_DRAIN = 1u << 10,
       TL__R_ABORTED = 1u << 11, /* the client left before the end */
       TL__R_COLLECT = 1u << 12, /* filter output goes to fbuf (tl_res_send) */
       TL__R_FAILED = 1u << 13,  /* tl_res_fail ran: the chain stops */
       /* Error middleware is running. */
       TL__R_IN_ERROR = 1u << 14,
};

typedef struct tl__finish_hook {
  tl_res_finish_cb cb;
  void *arg;
  struct tl__finish_hook *next;
} tl__finish_hook;

struct tl_res {
  tl__hconn *h;
  int status;
  unsigned flags;
  tl__buf hdrs; /* "Name: value\r\n" lines, reused across requests */
  tl_res_drain_cb drain_cb;
  void *drain_arg;
  tl_res_abort_cb abort_cb;
  void *abort_arg;
  int file_fd;
  int64_t file_off, file_end;
  uint64_t body_bytes;    /* body bytes queued so far */
  tl__finish_hook *hooks; /* newest first; arena memory */
  const tl_res_filter *filter;
  void *filter_ctx;
  int filter_state; /* 0 undecided, 1 engaged, 2 declined */
  tl__buf fbuf;     /* filtered body of a tl_res_send */
};

struct tl__hconn {
  tl__conn conn; /* first: the core's view of us */
  tl__http *http;
  llhttp_t parser;
  int phase;
  bool in_process; /* inside process(): it moves on by itself after a
                      response finishes (else the core wakes us) */
  bool reparse;    /* head was incomplete: re-parse from the start */
  bool shutting_down;
  bool out_paused; /* reading and parsing stopped: output backed up */
  int err_status;  /* status chosen by a callback that failed parsing */
  const char *err_reason;
  /* Where the current message lives: the receive buffer during a read,
   * else `in`. Offsets in tl_req are relative to `msg`. */
  char *msg;
  tl__buf in;       /* carried input (see conn.c) */
  tl__buf later;    /* bytes that arrived behind a deferred request */
  size_t parse_pos; /* offset from msg where unparsed input starts */
  size_t avail;     /* bytes from msg that are available */
  /* Framing checks llhttp may not make (see "Framing" in conn.c). */
  const char *xbeg, *xend; /* the bytes llhttp_execute has now */
  char tail[4];            /* the last bytes it had before them */
  uint8_t ntail;
  uint8_t crlf_due;     /* bytes of the CRLF after chunk data still to see */
  uint8_t chunk_line;   /* a chunk size line ended: 1 data, 2 trailers next */
  bool chunked;         /* the message has a chunked body */
  size_t trailer_bytes; /* of a chunked body's trailers, which are dropped */
  /* The current request's body limit: its route's, else the app's. */
  uint64_t body_limit;
  /* A body reader (tl_req_body_stream) and a streamed body (conn.c,
   * "Streamed bodies"). */
  struct {
    tl_body_data_cb data;
    tl_body_end_cb end;
    void *arg;
    uint64_t seen;     /* body bytes parsed (phase STREAM) */
    char *piece;       /* parsed, de-chunked, not yet handed over */
    size_t piece_len;
    tl__buf held;      /* raw input waiting for a reader or a resume */
    bool set;          /* a reader is set */
    bool paused;       /* it returned TL_BODY_PAUSE */
    bool in_cb;        /* inside its on_data */
    bool resumed;      /* resumed inside on_data */
    bool end_due;      /* the body is complete; on_end(0) waits for resume */
    bool replay;       /* deliver the buffered body (on_wake) */
    bool ended;        /* on_end ran */
  } bs;
  tl__arena arena;
  tl_req req;
  tl_res res;
  /* An upgrade in progress: the protocol's state (the WebSocket block
   * waiting for the handler's decision) and how to release it when the
   * connection or the response ends first. */
  void *up_pending;
  void (*up_release)(tl__hconn *h);
  char *up_protocol; /* the subprotocol the handler chose (owned) */
  /* Entries req.hdrs has room for: hdr_store's, or max_headers while a
   * request with more header lines than hdr_store holds is parsed (an
   * array of its own, freed when the next request begins or the
   * connection closes). */
  uint32_t hdr_cap;
  /* The first min(max_headers, TL__HDRS_INLINE) header lines: enough
   * for browsers' requests, and a connection that waits costs little. */
  tl__hdr hdr_store[];
};
#define TL__HDRS_INLINE 32

/* conn.c: a new connection block of `srv` for `http` (tl__http *), the
 * server's factory. */
tl__conn *tl__hconn_new(tl__server *srv, void *http);
void tl__http_settings_init(llhttp_settings_t *s);

/* Releases an upgrade in progress (up_pending), if any. */
void tl__hconn_upgrade_release(tl__hconn *h);

/* request.c: bytes of the target before '?' (*q: the '?' or NULL). */
size_t tl__req_path_len(const tl_req *req, const char **q);
/* A header's value ("" for an empty one). */
const char *tl__req_hdr_value(const tl_req *req, const tl__hdr *hd);

/* dispatch.c: routing (done when the head is complete), the chain. */
void tl__route_req(tl_req *r);
void tl__dispatch(tl__hconn *h);
void tl__req_reset(tl_req *req);

/* error.c: answers a failed request through the error middleware, then
 * talon's own page (talon/error.h). `req` is NULL when the request could
 * not be read far enough. `failure`: headers set so far are discarded
 * (not for 404 and 405). */
void tl__error_run(tl__hconn *h, tl_req *req, int status, int code,
                   const char *message, bool failure);
/* Whether any error middleware could run for a request that matched no
 * route (the app's). */
bool tl__error_hooked(const tl__http *http);
/* Answers a request that could not be read with `status` (error
 * middleware, else a short text page) and ends the connection. */
void tl__res_send_error(tl__hconn *h, int status, const char *reason);

/* response.c */
void tl__res_init(tl_res *res, tl__hconn *h);
void tl__res_reset(tl_res *res);
const char *tl__status_reason(int status);
void tl__res_on_drain(tl__hconn *h);
void tl__res_abort(tl__hconn *h);
/* The response became a 101 and the socket moved to a WebSocket: mark it
 * finished and run its finish hooks. */
void tl__res_upgraded(tl_res *res);

#endif
