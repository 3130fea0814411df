/* The test client's private header (testkit/, not installed): the
 * tl_test state and the socket, HTTP and buffer helpers its files share.
 * Written against the public headers only. */
#ifndef TALON_TESTKIT_TESTKIT_H
#define TALON_TESTKIT_TESTKIT_H

#include <talon.h>
#include <talon/test.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TL__T_MAX_HEAD (64 * 1024)

/* A running test: the app's thread, and what it reported. */
struct tl_test {
  tl_app *app;
  char host[64];
  unsigned timeout_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int port;  /* set once the app listens */
  bool done; /* tl_app_listen returned */
  int rc;    /* what it returned */
};

/* A client connection with a deadline for every wait, and what was
 * received but not yet consumed: buf[pos, len). */
typedef struct tl__t_conn {
  int fd;
  uint64_t deadline;
  char *buf;
  size_t len, pos, cap;
} tl__t_conn;

/* A growing NUL-terminated byte string; `oom` sticks after a failure. */
typedef struct tl__t_sbuf {
  char *p;
  size_t len, cap;
  bool oom;
} tl__t_sbuf;

/* A monotonic clock in ms. */
uint64_t tl__t_now_ms(void);

/* Socket helpers (http.c). Errors: 0 or a negative
 * TL_E* / errno code (-ETIMEDOUT at the deadline). */
int tl__t_dial(tl_test *t, tl__t_conn *c);
void tl__t_hang_up(tl__t_conn *c);
int tl__t_send_all(tl__t_conn *c, const void *p, size_t n);
/* Receives more: > 0 bytes, 0 at the peer's end, or an error. */
ssize_t tl__t_fill(tl__t_conn *c);
/* Makes `n` bytes available at buf + pos: 0, TL_ECLOSED or an error. */
int tl__t_need(tl__t_conn *c, size_t n);

void tl__t_sb_add(tl__t_sbuf *b, const void *p, size_t n);
void tl__t_sb_str(tl__t_sbuf *b, const char *s);

/* A request head without its final CRLF: request line, Host unless
 * given, the caller's lines. TL_EINVAL for CR/LF in any of them. */
int tl__t_build_head(tl_test *t, tl__t_sbuf *b, const char *method,
                     const char *target, const char *const *headers);
/* Reads an answer's head (1xx skipped but 101) into `res`, then its body
 * (framed as the head says; none for HEAD, 1xx, 204, 304). */
int tl__t_read_head(tl__t_conn *c, tl_test_response *res);
int tl__t_read_body(tl__t_conn *c, const char *method, tl_test_response *res);

#endif
