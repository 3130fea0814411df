/* Route tree: a radix tree whose static edges hold arbitrary byte runs
 * (possibly spanning several segments), with at most one ":param" child
 * and one trailing "*" child per node.
 *
 * Shape of the tree. The root has an empty label; every pattern starts
 * with '/', so its children start with '/'. A static node's label is the
 * run of bytes on the edge from its parent; static siblings differ in
 * their first byte, so at most one of them can match at a given position.
 * A param or wildcard child only hangs off a node whose path so far ends
 * with '/', because ':' and '*' are only special at the start of a
 * segment; splitting an edge keeps the children with the lower half, so
 * that property survives splits.
 *
 * Matching is a depth-first search that tries, at each node, the exact
 * end of the path, then the static child, then the param child, then the
 * wildcard child. Since branching only happens at segment starts, this
 * order is "static > :param > *, segment by segment", and a failed branch
 * backtracks to the next alternative. Every node is reached at one path
 * position only (static labels and params consume a fixed number of
 * bytes), so the search visits each node at most once. The search is
 * iterative: nodes keep a parent pointer and the captured values (kept in
 * the caller's tl__rmatch) tell how far to rewind, so matching uses
 * neither recursion nor the heap.
 *
 * Decisions not fixed by the header:
 *   - A trailing wildcard also matches the path without its last '/':
 *     "/files/" followed by "*" matches "/files", with an empty value, as
 *     if the path were "/files/" (as in find-my-way). That match belongs
 *     to the static branch, so it beats "/:x" for that path, but an exact
 *     "/files" route is tried before it.
 *   - On 405, `allow` has the HEAD bit whenever it has the GET bit. It
 *     never has the ALL bit: an ALL route serves every method, so a path
 *     with one never yields 405.
 *   - A '*' anywhere but as the whole last segment is refused, so a
 *     literal '*' cannot be routed. A NUL byte in a pattern is refused
 *     too, since parameter names are NUL-terminated.
 *   - Param names are not checked for uniqueness within a route.
 *   - tl__rtree_match() returns 404 for an empty path or one that does not
 *     start with '/', and treats a slot outside 0..TL__M_ALL as
 *     TL__M_OTHER (only the ALL route serves it).
 *   - tl__rtree_slot_name() returns NULL for a slot outside
 *     0..TL__M_ALL.
 */
#include "rtree.h"

#include <stdlib.h>
#include <string.h>

#include "talon/common.h"

enum { KIND_STATIC, KIND_PARAM, KIND_WILD };

/* Search phases at a node, in precedence order; UP means "all
 * alternatives tried, go back to the parent". */
enum { PH_ENTER, PH_STATIC, PH_PARAM, PH_WILD, PH_UP };

/* One route: a value and the names of its captures, in path order. The
 * names of params are stored after the array; the wildcard's name is the
 * literal "*". Allocated in one block. */
typedef struct rroute {
  void *value;
  size_t nnames;
  const char *names[];
} rroute;

typedef struct rnode rnode;
struct rnode {
  rnode *parent;
  /* Static children and, in one block with them, the first byte of each
   * one's label, so a lookup is one memchr over a few bytes. Unsorted:
   * order among static siblings does not matter since their first bytes
   * differ. */
  rnode **kids;
  unsigned char *first;
  size_t nkids;
  size_t capkids;
  rnode *param;
  rnode *wild;
  rroute *routes[TL__M_COUNT];
  int kind;
  size_t label_len;
  char label[]; /* static nodes only; not NUL-terminated */
};

struct tl__rtree {
  rnode *root;
};

static const char *const slot_names[TL__M_COUNT] = {
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*", "WS"};

int tl__rtree_method_slot(const char *method) {
  int i;
  if (method == NULL)
    return -1;
  for (i = 0; i < TL__M_COUNT; i++)
    if (strcmp(method, slot_names[i]) == 0)
      return i;
  return -1;
}

const char *tl__rtree_slot_name(int slot) {
  if (slot < 0 || slot >= TL__M_COUNT)
    return NULL;
  return slot_names[slot];
}

static rnode *node_new(int kind, const char *label, size_t len) {
  rnode *n = calloc(1, sizeof(*n) + len);
  if (n == NULL)
    return NULL;
  n->kind = kind;
  n->label_len = len;
  if (len > 0)
    memcpy(n->label, label, len);
  return n;
}

/* Frees a node's own memory, not its children. */
static void node_free(rnode *n) {
  int s;
  for (s = 0; s < TL__M_COUNT; s++)
    free(n->routes[s]);
  free(n->kids);
  free(n);
}

static rnode *find_kid(const rnode *n, unsigned char c) {
  const unsigned char *p;
  if (n->nkids == 0)
    return NULL;
  p = memchr(n->first, c, n->nkids);
  return p != NULL ? n->kids[p - n->first] : NULL;
}

/* Makes room for one more static child. The children live in a fresh
 * block, so the node is unchanged if allocation fails; there are at most
 * 256 of them (one per first byte). */
static int reserve_kid(rnode *n) {
  size_t cap;
  rnode **kids;
  unsigned char *first;

  if (n->nkids < n->capkids)
    return 0;
  cap = n->capkids != 0 ? n->capkids * 2 : 2;
  kids = malloc(cap * (sizeof(*kids) + 1));
  if (kids == NULL)
    return TL_ENOMEM;
  first = (unsigned char *)(kids + cap);
  if (n->nkids > 0) {
    memcpy(kids, n->kids, n->nkids * sizeof(*kids));
    memcpy(first, n->first, n->nkids);
  }
  free(n->kids);
  n->kids = kids;
  n->first = first;
  n->capkids = cap;
  return 0;
}

static void add_kid(rnode *n, rnode *kid) {
  kid->parent = n;
  n->first[n->nkids] = (unsigned char)kid->label[0];
  n->kids[n->nkids++] = kid;
}

/* Splits the edge to `kid` (a static child of `n`) after `at` bytes, and
 * returns the new node that ends there. Every allocation happens before
 * the tree is touched, so a failure leaves it as it was. */
static rnode *split(rnode *n, rnode *kid, size_t at) {
  rnode *mid = node_new(KIND_STATIC, kid->label, at);
  size_t i;

  if (mid == NULL)
    return NULL;
  if (reserve_kid(mid) != 0) {
    free(mid);
    return NULL;
  }
  for (i = 0; n->kids[i] != kid; i++)
    ;
  n->kids[i] = mid; /* same first byte, so n->first[i] stays */
  mid->parent = n;
  kid->label_len -= at;
  memmove(kid->label, kid->label + at, kid->label_len);
  add_kid(mid, kid);
  return mid;
}

/* Walks the static run s[0..len) down from `n`, splitting edges and adding
 * a node where needed, and returns the node where it ends. On failure the
 * nodes already added or split stay: they carry no route, so the tree
 * still matches exactly what it did. */
static rnode *insert_static(rnode *n, const char *s, size_t len) {
  while (len > 0) {
    rnode *kid = find_kid(n, (unsigned char)s[0]);
    size_t k;

    if (kid == NULL) {
      if (reserve_kid(n) != 0)
        return NULL;
      kid = node_new(KIND_STATIC, s, len);
      if (kid == NULL)
        return NULL;
      add_kid(n, kid);
      return kid;
    }
    for (k = 1; k < kid->label_len && k < len && kid->label[k] == s[k]; k++)
      ;
    if (k < kid->label_len) {
      kid = split(n, kid, k);
      if (kid == NULL)
        return NULL;
    }
    n = kid;
    s += k;
    len -= k;
  }
  return n;
}

static rnode *special_kid(rnode *n, int kind) {
  rnode **slot = kind == KIND_PARAM ? &n->param : &n->wild;
  if (*slot == NULL) {
    *slot = node_new(kind, NULL, 0);
    if (*slot == NULL)
      return NULL;
    (*slot)->parent = n;
  }
  return *slot;
}

static int seg_special(const char *p, size_t i) {
  return i > 0 && p[i - 1] == '/' && (p[i] == ':' || p[i] == '*');
}

/* Checks a pattern and counts its captures and the bytes their names need
 * (NULs included). */
static int validate(const char *p, size_t len, size_t *ncap,
                    size_t *name_bytes) {
  size_t s = 1;

  *ncap = 0;
  *name_bytes = 0;
  if (len == 0 || p[0] != '/' || memchr(p, '\0', len) != NULL)
    return TL_EINVAL;
  for (;;) {
    const char *slash = memchr(p + s, '/', len - s);
    size_t e = slash != NULL ? (size_t)(slash - p) : len;

    if (e > s && memchr(p + s, '*', e - s) != NULL) {
      if (e - s != 1 || e != len)
        return TL_EINVAL;
      ++*ncap;
    } else if (e > s && p[s] == ':') {
      if (e - s == 1)
        return TL_EINVAL;
      ++*ncap;
      *name_bytes += e - s; /* the name plus its NUL */
    }
    if (e == len)
      break;
    s = e + 1;
  }
  return *ncap > TL__MAX_PARAMS ? TL_EINVAL : 0;
}

static rroute *route_new(const char *p, size_t len, size_t ncap,
                         size_t name_bytes, void *value) {
  rroute *r = malloc(sizeof(*r) + ncap * sizeof(r->names[0]) + name_bytes);
  char *out;
  size_t i, k = 0;

  if (r == NULL)
    return NULL;
  r->value = value;
  r->nnames = ncap;
  out = (char *)(r->names + ncap);
  for (i = 1; i < len; i++) {
    if (!seg_special(p, i))
      continue;
    if (p[i] == '*') {
      r->names[k++] = "*";
    } else {
      const char *slash = memchr(p + i, '/', len - i);
      size_t e = slash != NULL ? (size_t)(slash - p) : len;
      memcpy(out, p + i + 1, e - i - 1);
      out[e - i - 1] = '\0';
      r->names[k++] = out;
      out += e - i;
    }
  }
  return r;
}

tl__rtree *tl__rtree_new(void) {
  tl__rtree *t = malloc(sizeof(*t));
  if (t == NULL)
    return NULL;
  t->root = node_new(KIND_STATIC, NULL, 0);
  if (t->root == NULL) {
    free(t);
    return NULL;
  }
  return t;
}

/* Frees post-order without recursion: detach a child and descend into it,
 * free a node once it has none left and climb to its parent. */
void tl__rtree_free(tl__rtree *t) {
  rnode *n;

  if (t == NULL)
    return;
  n = t->root;
  while (n != NULL) {
    rnode *next;
    if (n->nkids > 0) {
      next = n->kids[--n->nkids];
    } else if (n->param != NULL) {
      next = n->param;
      n->param = NULL;
    } else if (n->wild != NULL) {
      next = n->wild;
      n->wild = NULL;
    } else {
      next = n->parent;
      node_free(n);
    }
    n = next;
  }
  free(t);
}

int tl__rtree_add(tl__rtree *t, int slot, const char *pattern, size_t len,
                  void *value) {
  size_t ncap, name_bytes, i = 0;
  rroute *r;
  rnode *n;
  int rc;

  if (t == NULL || pattern == NULL || slot < 0 || slot >= TL__M_COUNT)
    return TL_EINVAL;
  rc = validate(pattern, len, &ncap, &name_bytes);
  if (rc != 0)
    return rc;
  /* The route is allocated first so that, once the walk succeeds, storing
   * it cannot fail. */
  r = route_new(pattern, len, ncap, name_bytes, value);
  if (r == NULL)
    return TL_ENOMEM;
  n = t->root;
  while (i < len && n != NULL) {
    if (seg_special(pattern, i) && pattern[i] == '*') {
      n = special_kid(n, KIND_WILD);
      i = len; /* validate() made sure it is last */
    } else if (seg_special(pattern, i)) {
      const char *slash = memchr(pattern + i, '/', len - i);
      n = special_kid(n, KIND_PARAM);
      i = slash != NULL ? (size_t)(slash - pattern) : len;
    } else {
      size_t e = i + 1;
      while (e < len && !seg_special(pattern, e))
        e++;
      n = insert_static(n, pattern + i, e - i);
      i = e;
    }
  }
  if (n == NULL) {
    free(r);
    return TL_ENOMEM;
  }
  if (n->routes[slot] != NULL) {
    free(r);
    return TL_EEXIST;
  }
  n->routes[slot] = r;
  return 0;
}

/* The route of `n` that serves `slot`: its own, else GET for HEAD, else
 * ALL. */
static const rroute *pick(const rnode *n, int slot, int *used) {
  if (slot == TL__M_UPGRADE) {
    *used = slot;
    return n->routes[TL__M_UPGRADE];
  }
  if (slot >= 0 && slot < TL__M_ALL && n->routes[slot] != NULL) {
    *used = slot;
    return n->routes[slot];
  }
  if (slot == TL__M_HEAD && n->routes[TL__M_GET] != NULL) {
    *used = TL__M_GET;
    return n->routes[TL__M_GET];
  }
  *used = TL__M_ALL;
  return n->routes[TL__M_ALL];
}

/* The path ends at `n` with k captures in m->params. Returns 1 and fills
 * `m` if a route serves `slot`; else records the node's methods in
 * `allow` (and `found` if it has any route at all) and returns 0. */
static int terminal(const rnode *n, int slot, size_t k, tl__rmatch *m,
                    unsigned *allow, int *found) {
  int used, s;
  const rroute *r = pick(n, slot, &used);
  size_t i;

  if (r != NULL) {
    for (i = 0; i < k; i++)
      m->params[i].name = r->names[i];
    m->value = r->value;
    m->method_slot = used;
    m->nparams = k;
    return 1;
  }
  for (s = 0; s < TL__M_COUNT; s++) {
    if (n->routes[s] != NULL) {
      *allow |= 1u << s;
      *found = 1;
    }
  }
  return 0;
}

int tl__rtree_match(const tl__rtree *t, int slot, const char *path, size_t len,
                    tl__rmatch *m) {
  const rnode *n = t->root;
  size_t pos = 0, k = 0;
  int phase = PH_ENTER, found = 0;
  unsigned allow = 0;

  m->value = NULL;
  m->method_slot = -1;
  m->allow = 0;
  m->nparams = 0;
  if (path == NULL || len == 0 || path[0] != '/')
    return 404;
  if (slot < 0 || slot >= TL__M_COUNT)
    slot = TL__M_OTHER;

  for (;;) {
    if (phase == PH_ENTER && pos == len &&
        terminal(n, slot, k, m, &allow, &found))
      return 0;

    if (phase <= PH_STATIC) {
      /* At the end of the path, look for a "/" edge: its node may hold a
       * wildcard that matches the empty rest. */
      size_t rest = len - pos;
      const rnode *kid =
          find_kid(n, pos < len ? (unsigned char)path[pos] : '/');
      if (kid != NULL) {
        if (kid->label_len <= rest &&
            memcmp(kid->label, path + pos, kid->label_len) == 0) {
          n = kid;
          pos += kid->label_len;
          phase = PH_ENTER;
          continue;
        }
        /* A trailing wildcard matching "/files": the path stops just
         * before the edge's final '/'. */
        if (kid->wild != NULL && k < TL__MAX_PARAMS &&
            kid->label_len == rest + 1 && kid->label[rest] == '/' &&
            memcmp(kid->label, path + pos, rest) == 0) {
          m->params[k].value = path + len;
          m->params[k].value_len = 0;
          if (terminal(kid->wild, slot, k + 1, m, &allow, &found))
            return 0;
        }
      }
    }

    if (phase <= PH_PARAM && n->param != NULL && k < TL__MAX_PARAMS &&
        pos < len && path[pos] != '/') {
      const char *slash = memchr(path + pos, '/', len - pos);
      size_t e = slash != NULL ? (size_t)(slash - path) : len;
      m->params[k].value = path + pos;
      m->params[k].value_len = e - pos;
      k++;
      n = n->param;
      pos = e;
      phase = PH_ENTER;
      continue;
    }

    if (phase <= PH_WILD && n->wild != NULL && k < TL__MAX_PARAMS) {
      m->params[k].value = path + pos;
      m->params[k].value_len = len - pos;
      if (terminal(n->wild, slot, k + 1, m, &allow, &found))
        return 0;
    }

    /* Every alternative here failed: rewind to the parent and resume
     * after the alternative that led here. */
    if (n->parent == NULL)
      break;
    if (n->kind == KIND_STATIC) {
      pos -= n->label_len;
      phase = PH_PARAM;
    } else {
      k--;
      pos -= m->params[k].value_len;
      phase = PH_WILD;
    }
    n = n->parent;
  }

  if (!found)
    return 404;
  if (allow & (1u << TL__M_GET))
    allow |= 1u << TL__M_HEAD;
  m->allow = allow;
  return 405;
}
