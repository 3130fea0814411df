/* Pieces every C test server needs (tests/<suite>/<name>_server.c), kept in
 * one place. Define TEST_SERVER_NAME (a string, for error messages) before
 * including this header. Header-only: each server is one program. */
#ifndef TALON_TESTS_COMMON_TEST_SERVER_H
#define TALON_TESTS_COMMON_TEST_SERVER_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <talon.h>

#ifndef TEST_SERVER_NAME
#error "define TEST_SERVER_NAME before including test_server.h"
#endif

/* The line the Python fixture (tests/common/talon_server.py) waits for. */
static void on_listen(tl_app *app, const char *host, int port) {
  (void)app;
  printf("listening on http://%s:%d\n", host, port);
  fflush(stdout);
}

/* In main(): a set-up call that fails ends the program with status 1. */
#define CHECK(call)                                                            \
  do {                                                                         \
    int rc_ = (call);                                                          \
    if (rc_ != 0) {                                                            \
      fprintf(stderr, "%s: %s: %s\n", TEST_SERVER_NAME, #call,                 \
              tl_strerror(rc_));                                               \
      return 1;                                                                \
    }                                                                          \
  } while (0)

/* A growing string for JSON answers; abort() on out of memory (a test
 * server has nothing better to do). Free `p` when done. */
typedef struct {
  char *p;
  size_t len, cap;
} sbuf;

__attribute__((format(printf, 2, 3), unused)) static void
sb_printf(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
      abort();
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np)
      abort();
    b->p = np;
    b->cap = cap;
  }
}

#endif
