/* talon — common definitions: export macro, error codes, string slices.
 *
 * Error convention (used by every talon function that can fail):
 *   - an `int` return of 0 (or a non-negative count) means success;
 *   - a negative value is an error code: one of the TL_E* codes below, or a
 *     libuv error (negative errno, e.g. UV_EADDRINUSE) passed through as is.
 *   tl_strerror() and tl_err_name() name any of them.
 */
#ifndef TALON_COMMON_H
#define TALON_COMMON_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define TL_EXTERN __attribute__((visibility("default")))
#else
#define TL_EXTERN
#endif

/* X-macro: name, value, message. Values below -30000 never collide with
 * errno-based libuv codes, which are passed through unchanged. */
#define TL_ERRNO_MAP(X)                                                        \
  X(NOMEM, -30001, "out of memory")                                            \
  X(INVAL, -30002, "invalid argument")                                         \
  X(EXIST, -30003, "already exists")                                           \
  X(NOENT, -30004, "not found")                                                \
  X(STATE, -30005, "operation not allowed in the current state")               \
  X(CLOSED, -30006, "connection closed")                                       \
  X(TOOBIG, -30007, "value too large")                                         \
  X(AGAIN, -30008, "resource temporarily unavailable")                         \
  X(IO, -30009, "input/output error")

typedef enum {
#define TL__ERRNO_ENUM(name, val, msg) TL_E##name = val,
  TL_ERRNO_MAP(TL__ERRNO_ENUM)
#undef TL__ERRNO_ENUM
      TL_OK = 0
} tl_errno;

/* Send results: one convention for every send, HTTP and WebSocket
 * (tl_res_write, tl_ws_send and its variants, tl_ws_ping, tl_ws_publish,
 * tl_app_publish), with Bun's three outcomes:
 *   > 0 (below TL_SEND_BACKPRESSURE)  accepted, and the peer keeps up: the
 *                         value is the bytes accepted (a frame's header
 *                         included; at most INT_MAX - 1);
 *   TL_SEND_BACKPRESSURE  accepted and queued, but the peer is behind: send
 *                         no more until the drain callback (Bun's -1);
 *   TL_SEND_DROPPED (0)   not sent: over a limit, or closing (Bun's 0);
 *   < 0                   an error (TL_E*): nothing was sent.
 * So `rc > 0` means "accepted", and no send result is ever negative
 * unless it is an error code. */
#define TL_SEND_DROPPED 0
#define TL_SEND_BACKPRESSURE INT_MAX

/* A human-readable message for `err` (a TL_E* or libuv code). Never NULL;
 * the string is static. */
TL_EXTERN const char *tl_strerror(int err);

/* The symbolic name of `err` ("TL_ENOMEM", "EADDRINUSE", ...). Never NULL;
 * the string is static. */
TL_EXTERN const char *tl_err_name(int err);

/* A borrowed byte slice. `ptr` is not NUL-terminated unless stated; its
 * lifetime is stated by the function that returns it. */
typedef struct tl_slice {
  const char *ptr;
  size_t len;
} tl_slice;

#ifdef __cplusplus
}
#endif
#endif /* TALON_COMMON_H */
