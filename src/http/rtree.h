/* Route tree: a radix tree over path segments. Pure code: no libuv, no
 * HTTP; unit-tested and fuzzed alone.
 *
 * Semantics are those documented in include/talon/router.h (static >
 * :param > trailing *, backtracking, raw path matching, no allocation while
 * matching). Values are opaque pointers owned by the caller.
 */
#ifndef TALON_SRC_HTTP_RTREE_H
#define TALON_SRC_HTTP_RTREE_H

#include <stddef.h>
#include <stdint.h>

/* Method slots. TL__M_ALL is the "*" route, used when the request's own
 * method has no route on the matched path. */
enum {
  TL__M_GET,
  TL__M_HEAD,
  TL__M_POST,
  TL__M_PUT,
  TL__M_PATCH,
  TL__M_DELETE,
  TL__M_OPTIONS,
  TL__M_ALL,
  TL__M_UPGRADE, /* upgrade routes (WebSocket): matched only by an
                    upgrade request, with no fallback to ALL */
  TL__M_COUNT
};
#define TL__M_OTHER (-1) /* a request method without its own slot */

#define TL__MAX_PARAMS 16

typedef struct tl__rtree tl__rtree;

typedef struct tl__rparam {
  const char *name;  /* NUL-terminated, owned by the tree */
  const char *value; /* slice of the matched path (not NUL-terminated) */
  size_t value_len;
} tl__rparam;

typedef struct tl__rmatch {
  void *value;     /* the matched route's value, or NULL */
  int method_slot; /* slot that matched (may be TL__M_GET for HEAD, or
                      TL__M_ALL) */
  unsigned allow;  /* on a path match with no usable method: bit i set
                      for each slot i with a route (for 405 Allow) */
  size_t nparams;
  tl__rparam params[TL__MAX_PARAMS];
} tl__rmatch;

/* Method string ("GET", "*", ...) to slot; -1 if unknown. */
int tl__rtree_method_slot(const char *method);

/* The method name of a slot ("GET" ... "OPTIONS", "*"). */
const char *tl__rtree_slot_name(int slot);

tl__rtree *tl__rtree_new(void);
void tl__rtree_free(tl__rtree *t);

/* Add a route. `pattern` is copied. Returns 0, TL_EINVAL (malformed
 * pattern: not starting with '/', empty ":" name, '*' not the whole last
 * segment, more than TL__MAX_PARAMS params, slot out of range), TL_EEXIST
 * (same slot on the same path shape, regardless of param names; two
 * different names for the param at the same position are allowed and each
 * route keeps its own names), or TL_ENOMEM. */
int tl__rtree_add(tl__rtree *t, int slot, const char *pattern, size_t len,
                  void *value);

/* Match `path` (len bytes, no query string) for `slot` (a request's slot,
 * or TL__M_OTHER). Returns:
 *   0    match: m->value, m->method_slot and m->params are set;
 *   404  no route has this path;
 *   405  the path exists but not for this method: m->allow is set (GET
 *        implies HEAD).
 * HEAD falls back to GET, then to ALL; every method falls back to ALL.
 * Never allocates. */
int tl__rtree_match(const tl__rtree *t, int slot, const char *path, size_t len,
                    tl__rmatch *m);

#endif
