/* rest: a JSON CRUD API for a to-do list, kept in memory.
 *
 *   GET    /api/todos          the list (?done=true|false filters)
 *   POST   /api/todos          {"title": "...", "done": false}: 201, Location
 *   GET    /api/todos/:id      one item, 404 if there is none
 *   PUT    /api/todos/:id      replace: "title" and "done" both required
 *   PATCH  /api/todos/:id      update: "title" and/or "done"
 *   DELETE /api/todos/:id      204
 *
 * Errors are JSON {"error": "..."} (application/json): 400 for a missing
 * body or malformed JSON, 415 for a body that is not JSON, 413 for one
 * over 64 KiB (tl_body_json finds those three; its `error` option has
 * them answered in JSON too), 422 for a JSON value that does not fit (not
 * an object, a field of the wrong type, an empty or too long title), 404
 * for unknown ids and paths. Answers talon gives before the API code
 * runs stay short text: 405 with an Allow header from the router for a
 * known path with another method (DELETE /api/todos), 429 from the rate
 * limit, and 413 for a body over the app's max_body_bytes (1 MiB).
 *
 * App middleware, in this order:
 *   tl_request_id   every response carries X-Request-Id (the caller's,
 *                   when sane, or a fresh UUID);
 *   tl_logger       one access-log line per request on stdout;
 *   tl_cors         browsers on CORS_ORIGIN may call the API (preflights
 *                   answered; default http://localhost:3000; "*" for any);
 *   tl_rate_limit   RATE_BURST requests at once per client IP [20],
 *                   refilled at RATE_LIMIT per second [10]; then 429.
 *
 * JSON is parsed by tl_body_json and built with jansson (the library
 * talon's JSON parser uses): include <jansson.h>, link jansson.
 *
 * Usage: rest [PORT]   (or PORT=..., HOST=... in the environment)
 *   curl -i localhost:3000/api/todos -H 'Content-Type: application/json' \
 *        -d '{"title":"write docs"}'
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <talon.h>
#include <talon/mw.h>

#include "common.h"

#define MAX_TITLE 200 /* bytes of a title */
#define MAX_TODOS 10000

/* ---- the store: a growable array, in id order ---------------------------- */

typedef struct {
  long long id;
  char *title;
  bool done;
} todo;

static struct {
  todo *items;
  size_t len, cap;
  long long next_id;
} store = {.next_id = 1};

static todo *store_find(long long id, size_t *index) {
  for (size_t i = 0; i < store.len; i++)
    if (store.items[i].id == id) {
      if (index)
        *index = i;
      return &store.items[i];
    }
  return NULL;
}

static todo *store_add(const char *title, bool done) {
  if (store.len == store.cap) {
    size_t cap = store.cap ? store.cap * 2 : 16;
    todo *items = realloc(store.items, cap * sizeof *items);
    if (!items)
      return NULL;
    store.items = items;
    store.cap = cap;
  }
  char *copy = strdup(title);
  if (!copy)
    return NULL;
  todo *t = &store.items[store.len++];
  *t = (todo){.id = store.next_id++, .title = copy, .done = done};
  return t;
}

static void store_remove(size_t i) {
  free(store.items[i].title);
  memmove(&store.items[i], &store.items[i + 1],
          (store.len - i - 1) * sizeof *store.items);
  store.len--;
}

static void store_free(void) {
  for (size_t i = 0; i < store.len; i++)
    free(store.items[i].title);
  free(store.items);
}

/* ---- JSON answers -------------------------------------------------------- */

/* Sends `doc` (stolen: decref'd here) with `status`. */
static void send_json(tl_res *res, int status, json_t *doc) {
  char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
  json_decref(doc);
  if (!text) {
    tl_res_status(res, 500);
    tl_res_json(res, "{\"error\":\"out of memory\"}");
    return;
  }
  tl_res_status(res, status);
  tl_res_json(res, text);
  free(text);
}

static void send_error(tl_res *res, int status, const char *msg) {
  send_json(res, status, json_pack("{s:s}", "error", msg));
}

/* tl_body_json's refusals (malformed JSON, wrong Content-Type, too
 * large), in the API's JSON instead of the parser's text/plain. */
static void body_error(tl_req *req, tl_res *res, int status,
                       const char *message, void *arg) {
  send_error(res, status, message);
}

static json_t *todo_json(const todo *t) {
  return json_pack("{s:I, s:s, s:b}", "id", (json_int_t)t->id, "title",
                   t->title, "done", t->done);
}

/* The :id parameter as a positive number, or 0 if it is not one. */
static long long param_id(tl_req *req) {
  const char *s = tl_req_param(req, "id");
  if (!s || *s < '1' || *s > '9')
    return 0;
  char *end;
  errno = 0;
  long long id = strtoll(s, &end, 10);
  return (*end || errno) ? 0 : id;
}

/* The item named by :id, or NULL after answering 404. */
static todo *find_or_404(tl_req *req, tl_res *res, size_t *index) {
  todo *t = store_find(param_id(req), index);
  if (!t)
    send_error(res, 404, "no such todo");
  return t;
}

/* ---- validation ---------------------------------------------------------- */

/* The fields a client may send. `has_*` tell which were present. */
typedef struct {
  const char *title;
  bool done;
  bool has_title, has_done;
} todo_input;

/* What the body is for: POST needs a title ("done" defaults to false),
 * PUT needs both fields, PATCH at least one. */
typedef enum { CREATE, REPLACE, UPDATE } input_mode;

/* Reads the request's JSON object into `in` by the rules of `mode`.
 * Returns 0, or answers 400/422 and returns -1. (tl_body_json already
 * refused malformed JSON, and strings with \u0000 in them.) */
static int read_input(tl_req *req, tl_res *res, todo_input *in,
                      input_mode mode) {
  json_t *doc = tl_req_json(req); /* borrowed: freed with the request */
  if (!doc) {
    send_error(res, 400, "a JSON body is required");
    return -1;
  }
  if (!json_is_object(doc)) {
    send_error(res, 422, "the body must be a JSON object");
    return -1;
  }
  json_t *title = json_object_get(doc, "title");
  json_t *done = json_object_get(doc, "done");
  *in = (todo_input){0};
  if (title) {
    if (!json_is_string(title)) {
      send_error(res, 422, "\"title\" must be a string");
      return -1;
    }
    size_t n = json_string_length(title);
    if (n == 0 || n > MAX_TITLE) {
      send_error(res, 422, "\"title\" must have 1 to 200 bytes");
      return -1;
    }
    in->title = json_string_value(title);
    in->has_title = true;
  }
  if (done) {
    if (!json_is_boolean(done)) {
      send_error(res, 422, "\"done\" must be true or false");
      return -1;
    }
    in->done = json_is_true(done);
    in->has_done = true;
  }
  if ((mode == CREATE || mode == REPLACE) && !in->has_title) {
    send_error(res, 422, "\"title\" is required");
    return -1;
  }
  if (mode == REPLACE && !in->has_done) {
    send_error(res, 422, "\"done\" is required");
    return -1;
  }
  if (mode == UPDATE && !in->has_title && !in->has_done) {
    send_error(res, 422, "nothing to update: send \"title\" or \"done\"");
    return -1;
  }
  return 0;
}

/* ---- handlers ------------------------------------------------------------ */

static void list_todos(tl_req *req, tl_res *res) {
  const char *filter = tl_req_query(req, "done");
  if (filter && strcmp(filter, "true") != 0 && strcmp(filter, "false") != 0) {
    send_error(res, 400, "?done= must be true or false");
    return;
  }
  json_t *list = json_array();
  for (size_t i = 0; list && i < store.len; i++) {
    const todo *t = &store.items[i];
    if (filter && t->done != (strcmp(filter, "true") == 0))
      continue;
    json_array_append_new(list, todo_json(t));
  }
  tl_res_headerf(res, "X-Total-Count", "%zu", list ? json_array_size(list) : 0);
  send_json(res, 200, list);
}

static void get_todo(tl_req *req, tl_res *res) {
  todo *t = find_or_404(req, res, NULL);
  if (t)
    send_json(res, 200, todo_json(t));
}

static void create_todo(tl_req *req, tl_res *res) {
  todo_input in;
  if (read_input(req, res, &in, CREATE))
    return;
  if (store.len >= MAX_TODOS) {
    send_error(res, 507, "the list is full");
    return;
  }
  todo *t = store_add(in.title, in.has_done && in.done);
  if (!t) {
    send_error(res, 500, "out of memory");
    return;
  }
  tl_res_headerf(res, "Location", "/api/todos/%lld", t->id);
  send_json(res, 201, todo_json(t));
}

/* PUT and PATCH: the same code, different rules for missing fields. */
static void change_todo(tl_req *req, tl_res *res, input_mode mode) {
  todo *t = find_or_404(req, res, NULL);
  todo_input in;
  if (!t || read_input(req, res, &in, mode))
    return;
  if (in.has_title) {
    char *copy = strdup(in.title);
    if (!copy) {
      send_error(res, 500, "out of memory");
      return;
    }
    free(t->title);
    t->title = copy;
  }
  if (in.has_done)
    t->done = in.done;
  send_json(res, 200, todo_json(t));
}

static void replace_todo(tl_req *req, tl_res *res) {
  change_todo(req, res, REPLACE);
}

static void update_todo(tl_req *req, tl_res *res) {
  change_todo(req, res, UPDATE);
}

static void delete_todo(tl_req *req, tl_res *res) {
  size_t i;
  if (!find_or_404(req, res, &i))
    return;
  store_remove(i);
  tl_res_status(res, 204);
  tl_res_end(res, NULL, 0);
}

/* Unknown paths: JSON too, like every other answer of the API. */
static void not_found(tl_req *req, tl_res *res) {
  send_error(res, 404, "not found");
}

/* ---- setup --------------------------------------------------------------- */

static void on_listen(tl_app *app, const char *host, int port) {
  /* It flushes stdout: the logger writes to stdout's descriptor
   * directly, and this line must come first. */
  example_print_listening("rest", host, port);
}

static double env_number(const char *name, double def) {
  const char *s = getenv(name);
  char *end;
  double v = s && *s ? strtod(s, &end) : def;
  return (s && *s && (*end || v <= 0)) ? def : v;
}

int main(int argc, char **argv) {
  example_opts o;
  int rc =
      example_args(argc, argv, "rest",
                   "  CORS_ORIGIN     the origin browsers may call from "
                   "[http://localhost:3000; * for any]\n"
                   "  RATE_LIMIT      requests per second per client [10]\n"
                   "  RATE_BURST      requests at once per client [20]\n",
                   &o);
  if (rc >= 0)
    return rc;
  const char *origin = getenv("CORS_ORIGIN");
  if (!origin || !*origin)
    origin = "http://localhost:3000";

  tl_app *app = tl_app_new(&(tl_app_config){.on_listen = on_listen, .workers = o.workers});
  if (!app)
    return 1;
  int redis_rc = example_redis(app, "rest");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }

  /* App middleware runs for every request, also unmatched ones, so 404s,
   * 405s and 429s carry a request id and CORS headers too. Each
   * constructor copies its options; tl_app_use fails (TL_EINVAL) if one
   * could not be built. */
  const char *origins[] = {origin, NULL};
  tl_rate_limit_options rl = {
      .rate = env_number("RATE_LIMIT", 10),
      .burst = (unsigned)env_number("RATE_BURST", 20),
      .headers = TL_RATE_LIMIT_HEADERS_IETF, /* RateLimit-* on answers */
  };
  int err = 0;
  if (tl_app_use(app, tl_request_id(NULL)) ||
      tl_app_use(app, tl_logger(&(tl_logger_options){.utc = 1})) ||
      tl_app_use(app, tl_cors(&(tl_cors_options){
                          .origins = origins,
                          .exposed_headers = "X-Request-Id, X-Total-Count, "
                                             "Location",
                          .max_age = 600})) ||
      tl_app_use(app, tl_rate_limit(&rl))) {
    fprintf(stderr, "rest: cannot set up middleware\n");
    err = 1;
  }

  /* The JSON parser only on the routes that take a body. require: a body
   * that is not JSON gets 415; max_bytes: 64 KiB is plenty for a todo;
   * error: its refusals are answered by body_error, in JSON. */
  tl_body_json_options jo = {
      .require = 1, .max_bytes = 64 << 10, .max_depth = 8, .error = body_error};
  tl_router *api = tl_router_new();
  if (!err && api) {
    tl_middleware post_mw[] = {tl_body_json(&jo)};
    tl_middleware put_mw[] = {tl_body_json(&jo)};
    tl_middleware patch_mw[] = {tl_body_json(&jo)};
    tl_router_get(api, "/todos", list_todos);
    tl_router_route(api, "POST", "/todos", create_todo, post_mw, 1);
    tl_router_get(api, "/todos/:id", get_todo);
    tl_router_route(api, "PUT", "/todos/:id", replace_todo, put_mw, 1);
    tl_router_route(api, "PATCH", "/todos/:id", update_todo, patch_mw, 1);
    tl_router_delete(api, "/todos/:id", delete_todo);
    if (tl_app_mount(app, "/api", api)) {
      tl_router_free(api);
      err = 1;
    }
  } else {
    tl_router_free(api);
    err = 1;
  }
  tl_app_not_found(app, not_found);

  if (!err) {
    rc = tl_app_listen(app, o.host, o.port);
    if (rc) {
      fprintf(stderr, "rest: %s\n", tl_strerror(rc));
      err = 1;
    }
  }
  tl_app_free(app);
  store_free();
  return err;
}
