/* Allocation-failure injection, for a test build only
 * (-DTALON_FAULT_INJECTION=ON). CMake force-includes this header into
 * every source of the library and of the built-in middleware, so each
 * malloc/calloc/realloc/strdup/strndup they make goes through a counter
 * that can be told to fail. A normal build never sees this file.
 *
 * Control, by environment, read when the server starts listening (the
 * counter is armed then, so app set-up is not counted):
 *   TALON_FAULT_AT=N     the Nth allocation after arming fails (N >= 1)
 *   TALON_FAULT_COUNT=K  and the K-1 after it (default 1)
 *   TALON_FAULT_REPORT=1 print "talon-fault: armed N calls" to stderr
 *                        when the server stops, so a test can learn how
 *                        many allocations a workload makes
 * Allocations by libuv, llhttp, zlib's defaults, OpenSSL and jansson are
 * not counted, except zlib streams created by permessage-deflate, which
 * use these functions when this build is on. */
#ifndef TALON_SRC_CORE_FAULT_H
#define TALON_SRC_CORE_FAULT_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void *tl__fault_malloc(size_t n);
void *tl__fault_calloc(size_t n, size_t size);
void *tl__fault_realloc(void *p, size_t n);
char *tl__fault_strdup(const char *s);
char *tl__fault_strndup(const char *s, size_t n);
/* Arm the counter from the environment (the server calls this once when
 * it starts listening). */
void tl__fault_arm(void);
/* Print the report if asked (the server calls this when it stops). */
void tl__fault_report(void);

#define malloc(n) tl__fault_malloc(n)
#define calloc(n, s) tl__fault_calloc(n, s)
#define realloc(p, n) tl__fault_realloc(p, n)
#define strdup(s) tl__fault_strdup(s)
#define strndup(s, n) tl__fault_strndup(s, n)

#endif
