/* Pieces every C test server needs (tests/<suite>/<name>_server.c), kept in
 * one place. Define TEST_SERVER_NAME (a string, for error messages) before
 * including this header, and TEST_SERVER_OWN_ON_LISTEN if the server
 * prints its own listening lines. Header-only: each server is one
 * program. */
#ifndef TALON_TESTS_COMMON_TEST_SERVER_H
#define TALON_TESTS_COMMON_TEST_SERVER_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#ifndef TEST_SERVER_NAME
#error "define TEST_SERVER_NAME before including test_server.h"
#endif

#ifndef TEST_SERVER_OWN_ON_LISTEN
/* The line the Python fixture (tests/common/talon_server.py) waits for. */
static void on_listen(tl_app *app, const char *host, int port) {
  (void)app;
  printf("listening on http://%s:%d\n", host, port);
  fflush(stdout);
}
#endif

/* GET /big?n=N: N bytes (default 1000000) of "abc...z" repeated. */
__attribute__((unused)) static void test_big(tl_req *req, tl_res *res) {
  const char *q = tl_req_query(req, "n");
  size_t n = q ? strtoul(q, NULL, 10) : 1000000;
  char *p = malloc(n ? n : 1);
  if (!p) {
    tl_res_status(res, 500);
    tl_res_text(res, "oom");
    return;
  }
  for (size_t i = 0; i < n; i++)
    p[i] = (char)('a' + i % 26);
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_send(res, p, n);
  free(p);
}

/* POST /echo: the body back. */
__attribute__((unused)) static void test_echo(tl_req *req, tl_res *res) {
  tl_slice b = tl_req_body(req);
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_send(res, b.ptr, b.len);
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
