/* Allocation-failure injection (see fault.h). Not thread-safe, like the
 * rest of a talon app: one loop thread allocates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* This file calls the real allocator. */
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup

#include "core/fault.h"

static int armed;
static unsigned long calls;      /* allocations since arming */
static unsigned long fail_at;    /* 0: never */
static unsigned long fail_count; /* how many from fail_at */
static unsigned long failed;

static unsigned long env_ulong(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  if (!v || !*v)
    return dflt;
  char *end;
  unsigned long n = strtoul(v, &end, 10);
  return *end ? dflt : n;
}

void tl__fault_arm(void) {
  armed = 1;
  calls = 0;
  failed = 0;
  fail_at = env_ulong("TALON_FAULT_AT", 0);
  fail_count = env_ulong("TALON_FAULT_COUNT", 1);
}

void tl__fault_report(void) {
  if (env_ulong("TALON_FAULT_REPORT", 0))
    fprintf(stderr, "talon-fault: armed %lu calls, %lu failed\n", calls,
            failed);
}

/* Whether this allocation fails. */
static int fail_now(void) {
  if (!armed)
    return 0;
  calls++;
  if (fail_at && calls >= fail_at && calls - fail_at < fail_count) {
    failed++;
    return 1;
  }
  return 0;
}

void *tl__fault_malloc(size_t n) {
  return fail_now() ? NULL : malloc(n);
}

void *tl__fault_calloc(size_t n, size_t size) {
  return fail_now() ? NULL : calloc(n, size);
}

void *tl__fault_realloc(void *p, size_t n) {
  /* realloc(p, 0) frees in glibc; it is not an allocation that can fail. */
  if (n && fail_now())
    return NULL;
  return realloc(p, n);
}

char *tl__fault_strdup(const char *s) {
  return fail_now() ? NULL : strdup(s);
}

char *tl__fault_strndup(const char *s, size_t n) {
  return fail_now() ? NULL : strndup(s, n);
}
