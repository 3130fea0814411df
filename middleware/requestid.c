/* Request ids; the contract is in include/talon/mw/requestid.h. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/requestid.h>

#define DEFAULT_MAX 128
#define LIMIT_MAX 1024

typedef struct reqid {
  char *header;
  size_t max_length;
  bool ignore_incoming;
  bool no_echo;
  int format;
} reqid;

static void reqid_free(void *p) {
  reqid *r = p;
  if (r)
    free(r->header);
  free(r);
}

static bool id_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

/* Whether an incoming id may be adopted. The charset keeps log lines and
 * header values free of separators, quotes and control characters. */
static bool id_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n]; n++)
    if (n >= max || !id_char((unsigned char)s[n]))
      return false;
  return n > 0;
}

/* A fresh id in `out` (at least 37 bytes). Returns 0 or TL_EIO. */
static int generate(int format, char *out) {
  static const char hex[] = "0123456789abcdef";
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1)
    return TL_EIO;
  size_t o = 0;
  if (format == TL_REQUEST_ID_UUID) {
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  }
  for (size_t i = 0; i < sizeof b; i++) {
    if (format == TL_REQUEST_ID_UUID && (i == 4 || i == 6 || i == 8 || i == 10))
      out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
  return 0;
}

static int reqid_run(tl_req *req, tl_res *res, void *ctx) {
  const reqid *r = ctx;
  if (tl_req_get(req, TL_REQUEST_ID_KEY))
    return TL_NEXT;
  const char *in = r->ignore_incoming ? NULL : tl_req_header(req, r->header);
  char *id;
  if (in && id_ok(in, r->max_length)) {
    size_t n = strlen(in);
    /* Request strings die with the callback; the id must live as long as
     * the request, so it goes into request memory. */
    if (!(id = tl_req_alloc(req, n + 1)))
      return TL_ENOMEM;
    memcpy(id, in, n + 1);
  } else {
    if (!(id = tl_req_alloc(req, 37)))
      return TL_ENOMEM;
    int err = generate(r->format, id);
    if (err)
      return err;
  }
  int err = tl_req_set(req, TL_REQUEST_ID_KEY, id, NULL);
  if (!err && !r->no_echo)
    err = tl_res_header(res, r->header, id);
  return err ? err : TL_NEXT;
}

tl_middleware tl_request_id(const tl_request_id_options *opts) {
  static const tl_request_id_options defaults;
  tl_middleware mw = {.name = "request_id"};
  if (!opts)
    opts = &defaults;
  const char *header = opts->header ? opts->header : "X-Request-Id";
  if (!tl_is_token(header, strlen(header)) || opts->max_length > LIMIT_MAX ||
      (opts->format != TL_REQUEST_ID_UUID && opts->format != TL_REQUEST_ID_HEX))
    return mw;
  reqid *r = calloc(1, sizeof *r);
  if (!r || !(r->header = strdup(header))) {
    free(r);
    return mw;
  }
  r->max_length = opts->max_length ? opts->max_length : DEFAULT_MAX;
  r->ignore_incoming = opts->ignore_incoming;
  r->no_echo = opts->no_echo;
  r->format = opts->format;
  mw.fn = reqid_run;
  mw.ctx = r;
  mw.free = reqid_free;
  return mw;
}

const char *tl_req_id(tl_req *req) {
  return tl_req_get(req, TL_REQUEST_ID_KEY);
}
