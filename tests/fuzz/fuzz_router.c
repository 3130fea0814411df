/* libFuzzer harness for the route tree and the query helpers: the first
 * part of the input (up to a NUL) is a list of patterns separated by
 * newlines, the rest is matched as a path with every method slot, and
 * looked up as a query string. Checks what the contract promises: params
 * are slices of the path, codes are 0/404/405. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/rtree.h"
#include "talon/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t plen = nul ? (size_t)(nul - data) : size / 2;
  tl__rtree *t = tl__rtree_new();
  if (!t)
    return 0;
  char *pats = malloc(plen + 1);
  memcpy(pats, data, plen);
  pats[plen] = '\0';
  char *save = NULL;
  int slot = 0;
  for (char *p = strtok_r(pats, "\n", &save); p;
       p = strtok_r(NULL, "\n", &save))
    tl__rtree_add(t, slot++ % TL__M_COUNT, p, strlen(p), p);
  size_t off = nul ? plen + 1 : plen;
  size_t n = size - off;
  char *path = malloc(n ? n : 1);
  memcpy(path, data + off, n);
  for (int s = -1; s < TL__M_COUNT; s++) {
    tl__rmatch m;
    int rc = tl__rtree_match(t, s, path, n, &m);
    if (rc != 0 && rc != 404 && rc != 405)
      abort();
    if (rc == 0) {
      if (!m.value || m.nparams > TL__MAX_PARAMS)
        abort();
      for (size_t i = 0; i < m.nparams; i++)
        if (m.params[i].value < path ||
            m.params[i].value + m.params[i].value_len > path + n)
          abort();
    }
  }
  tl_slice v;
  if (tl_form_find(path, n, "a", &v) &&
      (v.ptr < path || v.ptr + v.len > path + n))
    abort();
  char *dec = malloc(n + 1);
  size_t dl = 0;
  if (tl_pct_decode(dec, n + 1, path, n, TL_PCT_FORM, &dl) != 0 || dl > n)
    abort();
  free(dec);
  free(path);
  free(pats);
  tl__rtree_free(t);
  return 0;
}
