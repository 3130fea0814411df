/* wsclient: the WebSocket client core shared by the load generators
 * bench/ws_load.c, bench/ws_load_deflate.c and bench/chat_load.c.
 *
 * Independent of talon (it uses none of its code; the clients must not
 * depend on the server they measure): libuv only. It holds error reporting,
 * option parsing, the RFC 6455 client handshake (random key, SHA-1/base64
 * Sec-WebSocket-Accept check), masked frame building, incremental frame
 * parsing over partial reads, a latency histogram, a random generator and
 * CPU accounting. Each program embeds a wsc_conn as the first member of its
 * own connection struct and supplies the message semantics through wsc_ops.
 *
 * Build: gcc -O2 -o PROG PROG.c wsclient.c -luv
 */
#ifndef WSCLIENT_H
#define WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define WSC_HS_MAX 8192 /* handshake response headers */

/* ---- errors and memory ----------------------------------------------------- */

/* Program name in messages ("NAME: error: ..."), and the prefix printed for
 * a connection's errors: a printf format given the connection id twice. */
extern const char *wsc_prog;
extern const char *wsc_conn_fmt; /* default "conn %d: " */

/* Prints "PROG: error: [conn prefix]MESSAGE" on stderr and exits 1 (conn < 0:
 * no connection). */
void wsc_fatal(int conn, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void *wsc_xmalloc(size_t n);
void *wsc_xcalloc(size_t n, size_t size);

/* Command-line values: exit 1 with a message naming `what` when out of range. */
long wsc_parse_int(const char *s, long lo, long hi, const char *what);
double wsc_parse_secs(const char *s, double lo, const char *what);

/* ---- random numbers, CPU time ---------------------------------------------- */

extern uint64_t wsc_rng_state;
void wsc_os_random(void *p, size_t n);
void wsc_rng_seed(void); /* from the OS */
static inline uint64_t wsc_rng(void) { /* xorshift64* */
  wsc_rng_state ^= wsc_rng_state >> 12;
  wsc_rng_state ^= wsc_rng_state << 25;
  wsc_rng_state ^= wsc_rng_state >> 27;
  return wsc_rng_state * 0x2545F4914F6CDD1DULL;
}

double wsc_self_cpu(void); /* this process's user + system CPU seconds */

/* ---- latency histogram (log-linear, < 1% error), in ns ------------------- */

extern uint64_t wsc_hist_n, wsc_hist_max;
extern double wsc_hist_sum;
void wsc_hist_add(uint64_t ns);
double wsc_hist_pct(double p);

/* ---- connections ------------------------------------------------------------ */

enum { WSC_CONNECTING, WSC_HANDSHAKE, WSC_OPEN, WSC_CLOSE_RCVD, WSC_CLOSED };

typedef struct {
  char *p;
  size_t len, cap;
} wsc_buf;

void wsc_buf_reserve(wsc_buf *b, size_t more);

typedef struct wsc_conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  int id;
  int state;
  char accept[32]; /* expected Sec-WebSocket-Accept */
  char *hs;        /* handshake response so far */
  size_t hs_len;
  /* Output: frames are appended to `out`; `wbuf` is being written. */
  wsc_buf out, wbuf;
  int writing;
  int sent_close;
  /* Frame parser. */
  uint8_t hdr[14];
  size_t hdr_len, hdr_need;
  int in_payload;
  int f_fin, f_op;
  uint64_t remaining;
  int in_msg; /* a data message is in progress (maybe fragmented) */
  uint8_t ctrl[125];
  size_t ctrl_len;
} wsc_conn;

/* What a program adds to the shared client (one set per program). */
typedef struct {
  /* Request target of connection c into buf (NULL: wsc_path). */
  void (*target)(wsc_conn *c, char *buf, size_t size);
  /* The handshake is complete; ext is the Sec-WebSocket-Extensions answer
   * or NULL (NULL hook: any extension is an error). */
  void (*handshake_ext)(wsc_conn *c, const char *ext);
  /* After the handshake, before the bytes that followed it are parsed. */
  void (*opened)(wsc_conn *c);
  /* A frame header is complete (wsc_frame_len decodes it). */
  void (*frame_begin)(wsc_conn *c);
  /* Payload bytes of a data frame (control frames are kept in ctrl). */
  void (*frame_data)(wsc_conn *c, const uint8_t *p, size_t n);
  /* The last frame of a data message ended. */
  void (*message_end)(wsc_conn *c, uint64_t now);
  /* The server's close frame came (after ours); extra checks, or NULL. */
  void (*close_check)(wsc_conn *c);
  /* Optional fast path: a whole unfragmented short text frame found in one
   * read is handed over where it lies (instead of frame_* and message_end). */
  void (*short_text)(wsc_conn *c, const uint8_t *p, size_t len, uint64_t now);
  /* The connection's TCP handle is closed. */
  void (*closed)(wsc_conn *c);
} wsc_ops;

extern wsc_ops wsc_hooks;
extern const char *wsc_host, *wsc_path;
extern int wsc_port;
extern const char *wsc_extra_headers; /* request header lines ("" or "X: y\r\n") */

/* Starts connecting c (id and the embedding struct set up by the caller) to
 * addr; the handshake follows on its own. */
void wsc_connect(wsc_conn *c, uv_loop_t *loop, const struct sockaddr_in *addr);
/* Sends what `out` holds unless a write is in progress. */
void wsc_flush(wsc_conn *c);
/* Appends one masked frame (FIN set; RSV1 if rsv1) to `out`. */
void wsc_put_frame(wsc_conn *c, int op, int rsv1, const uint8_t *data, size_t len);
void wsc_send_close(wsc_conn *c); /* close frame 1000 */
void wsc_close(wsc_conn *c);      /* closes TCP */

/* In frame_begin: checks the mask bit and returns the RSV bits. */
int wsc_frame_rsv(wsc_conn *c);
/* In frame_begin, after the RSV check: decodes and checks the length,
 * checks control frames, continuations and reserved opcodes, and returns
 * the payload length. A control frame needs nothing more (f_op >= 8). */
uint64_t wsc_frame_len(wsc_conn *c);

#endif
