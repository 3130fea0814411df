/* Client-side WebSocket echo load on talon's client (tl_ws_connect): N
 * sockets to an echo server, each with one SIZE-byte text message in
 * flight, for WARMUP + DURATION seconds; every echo is checked (length
 * and bytes). Prints one line:
 *
 *   talon-client msgs/s=<n> p50_us=<n> p99_us=<n> errors=<n>
 *
 *   wsclient_load URL CONNECTIONS SIZE DURATION_S WARMUP_S
 *
 * bench/wsclient.sh runs it beside the Node `ws` and Bun clients doing the
 * same (bench/wsclient.mjs, under node and under bun).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>

#define MAX_SAMPLES (4u << 20)

typedef struct conn {
  uint64_t sent_at;
} conn;

static tl_app *app;
static char *payload;
static size_t size;
static unsigned nconns, open_count, closed_count;
static uint64_t start_ns, measure_from, measure_to, count, errors;
static uint32_t *samples; /* round trips in microseconds */
static size_t nsamples;
static bool done;

static void send_one(tl_ws *ws) {
  conn *c = tl_ws_data(ws);
  c->sent_at = tl_hrtime();
  if (tl_ws_send(ws, payload, size, TL_WS_TEXT) <= 0)
    errors++;
}

static void finish(void) {
  done = true;
  tl_app_stop(app);
}

static void on_open(tl_ws *ws) {
  if (++open_count == nconns)
    start_ns = tl_hrtime();
  send_one(ws);
}

static void on_message(tl_ws *ws, const void *data, size_t len, tl_opcode op) {
  conn *c = tl_ws_data(ws);
  uint64_t now = tl_hrtime();
  if (len != size || op != TL_WS_TEXT || memcmp(data, payload, size) != 0)
    errors++;
  if (start_ns && now >= measure_from && now < measure_to) {
    count++;
    if (nsamples < MAX_SAMPLES)
      samples[nsamples++] = (uint32_t)((now - c->sent_at) / 1000);
  }
  if (done)
    return;
  if (measure_to && now >= measure_to) {
    finish();
    return;
  }
  send_one(ws);
}

static void on_close(tl_ws *ws, int code, const char *reason, size_t len) {
  if (!done)
    errors++;
  if (++closed_count == nconns && !done)
    finish();
}

static void on_fail(tl_app *a, const tl_ws_connect_failure *f, void *data) {
  fprintf(stderr, "wsclient_load: %s: %s\n", f->url, f->message);
  errors++;
  finish();
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static void on_tick(tl_timer *t, void *arg) {
  /* The measure window starts once every socket is open. */
  uint64_t warm = *(uint64_t *)arg;
  if (start_ns && !measure_from) {
    measure_from = start_ns + warm;
    measure_to = measure_from + ((uint64_t *)arg)[1];
  }
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: wsclient_load URL CONNECTIONS SIZE DURATION_S "
                    "WARMUP_S\n");
    return 2;
  }
  const char *url = argv[1];
  nconns = (unsigned)atoi(argv[2]);
  size = (size_t)atol(argv[3]);
  static uint64_t window[2];
  window[1] = (uint64_t)atoi(argv[4]) * 1000000000ull;
  window[0] = (uint64_t)atoi(argv[5]) * 1000000000ull;
  payload = malloc(size);
  samples = malloc(MAX_SAMPLES * sizeof *samples);
  for (size_t i = 0; i < size; i++)
    payload[i] = (char)('a' + i % 26);
  app = tl_app_new(NULL);
  static const tl_ws_handlers h = {.open = on_open,
                                   .message = on_message,
                                   .close = on_close,
                                   .idle_timeout_s = TL_WS_NO_TIMEOUT};
  tl_ws_client_options o = {.on_fail = on_fail};
  for (unsigned i = 0; i < nconns; i++)
    if (tl_ws_connect(app, url, &h, sizeof(conn), &o) != 0)
      return 1;
  tl_timer_start(app, 10, 10, on_tick, window);
  tl_app_run(app);
  double secs = (double)window[1] / 1e9;
  qsort(samples, nsamples, sizeof *samples, cmp_u32);
  uint32_t p50 = nsamples ? samples[nsamples / 2] : 0;
  uint32_t p99 = nsamples ? samples[nsamples * 99 / 100] : 0;
  printf("talon-client msgs/s=%.0f p50_us=%u p99_us=%u errors=%llu\n",
         (double)count / secs, p50, p99, (unsigned long long)errors);
  tl_app_free(app);
  free(payload);
  free(samples);
  return errors ? 1 : 0;
}
