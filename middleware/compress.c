/* talon — response compression (contract in include/talon/mw/compress.h).
 *
 * The middleware only reads Accept-Encoding and installs a body filter;
 * everything that depends on the response (status, Content-Type, the body
 * length) is decided in the filter's begin, which the core calls just
 * before the head goes out, when the handler has set its headers. The
 * zlib stream is allocated there, only for responses that get compressed,
 * and freed by a finish hook, which the core runs for every finished
 * response, aborted ones included. */
#define ZLIB_CONST
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/compress.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_LEVEL 6
#define DEFAULT_THRESHOLD 1024
#define WINDOW_BITS 15
#define MEM_LEVEL 8
#define OUT_CHUNK 16384

enum { ENC_NONE = 0, ENC_GZIP = 1, ENC_DEFLATE = 2 };

typedef struct zopts {
  int level;
  size_t threshold;
  tl_compress_type_fn compressible;
  void *compressible_arg;
  bool no_deflate;
} zopts;

/* Per request (tl_req_alloc): what the client accepts, and the stream
 * once engaged. */
typedef struct zctx {
  const zopts *c;
  int enc;
  z_stream *z;
} zctx;

/* ---- header parsing -------------------------------------------------- */

/* Quality of each coding we can produce, from one Accept-Encoding value.
 * -1 means "not mentioned". A malformed element counts as q=0 (refused):
 * an odd header must never make us send a coding the client cannot
 * read. */
typedef struct accept_q {
  int gzip, deflate, star;
} accept_q;

static void parse_accept(const char *s, accept_q *aq) {
  tl_slice v;
  int q;
  while (tl_accept_next(&s, &v, &q)) {
    if (q < 0)
      q = 0;
    int *slot = NULL;
    if (tl_str_ieq(v.ptr, v.len, "gzip") || tl_str_ieq(v.ptr, v.len, "x-gzip"))
      slot = &aq->gzip;
    else if (tl_str_ieq(v.ptr, v.len, "deflate"))
      slot = &aq->deflate;
    else if (tl_str_ieq(v.ptr, v.len, "*"))
      slot = &aq->star;
    /* A coding named twice: the most restrictive mention wins. */
    if (slot && (*slot < 0 || q < *slot))
      *slot = q;
  }
}

static int choose_encoding(const tl_req *req, bool no_deflate) {
  accept_q aq = {-1, -1, -1};
  const char *v;
  bool any = false;
  for (size_t i = 0; (v = tl_req_header_at(req, "Accept-Encoding", i)); i++) {
    parse_accept(v, &aq);
    any = true;
  }
  if (!any)
    return ENC_NONE;
  int star = aq.star < 0 ? 0 : aq.star;
  int qg = aq.gzip < 0 ? star : aq.gzip;
  int qd = aq.deflate < 0 ? star : aq.deflate;
  if (no_deflate)
    qd = 0;
  if (qg == 0 && qd == 0)
    return ENC_NONE;
  return qg >= qd ? ENC_GZIP : ENC_DEFLATE;
}

bool tl_compress_type_default(const char *content_type) {
  tl_slice mt = tl_media_type(content_type);
  const char *ct = mt.ptr;
  size_t n = mt.len;
  const char *slash = n ? memchr(ct, '/', n) : NULL;
  if (!slash || slash == ct || slash + 1 == ct + n)
    return false;
  if (tl_str_ieq(ct, (size_t)(slash - ct), "text"))
    return true;
  static const char *const exact[] = {"application/json",
                                      "application/javascript",
                                      "application/xml", "image/svg+xml"};
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (tl_str_ieq(ct, n, exact[i]))
      return true;
  size_t sub = (size_t)(ct + n - (slash + 1));
  if (sub > 5 && tl_str_ieq(ct + n - 5, 5, "+json"))
    return true;
  if (sub > 4 && tl_str_ieq(ct + n - 4, 4, "+xml"))
    return true;
  return false;
}

/* ---- the filter ------------------------------------------------------ */

static void zctx_finish(tl_res *res, void *arg) {
  (void)res;
  zctx *zc = arg;
  if (zc->z) {
    deflateEnd(zc->z);
    free(zc->z);
    zc->z = NULL;
  }
}

static void add_vary(tl_res *res) {
  const char *vary = tl_res_get_header(res, "Vary");
  if (tl_token_list_has(vary, "accept-encoding") ||
      tl_token_list_has(vary, "*"))
    return;
  tl_res_header(res, "Vary", "Accept-Encoding");
}

static int filter_begin(tl_res *res, void *ctx, int64_t body_len) {
  zctx *zc = ctx;
  const zopts *c = zc->c;
  /* Responses whose bytes must stay as they are. */
  if (tl_res_get_status(res) == 206 ||
      tl_res_has_header(res, "Content-Encoding") ||
      tl_res_has_header(res, "Content-Range"))
    return 0;
  const char *cc = tl_res_get_header(res, "Cache-Control");
  if (tl_token_list_has(cc, "no-transform"))
    return 0;
  /* A streamed response with a length the handler promised: engaging
   * would make it chunked against the handler's wish. */
  if (body_len < 0 && tl_res_has_header(res, "Content-Length"))
    return 0;
  const char *ct = tl_res_get_header(res, "Content-Type");
  bool ok = c->compressible ? c->compressible(ct, c->compressible_arg)
                            : tl_compress_type_default(ct);
  if (!ok)
    return 0;
  /* From here the answer depends on Accept-Encoding (and the size). */
  add_vary(res);
  if (zc->enc == ENC_NONE || body_len == 0 ||
      (body_len > 0 && (uint64_t)body_len < c->threshold))
    return 0;
  z_stream *z = calloc(1, sizeof *z);
  if (!z)
    return 0;
  int bits = zc->enc == ENC_GZIP ? WINDOW_BITS + 16 : WINDOW_BITS;
  if (deflateInit2(z, c->level, Z_DEFLATED, bits, MEM_LEVEL,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    free(z);
    return 0; /* out of memory: send the body as it is */
  }
  zc->z = z;
  if (tl_res_on_finish(res, zctx_finish, zc)) {
    zctx_finish(res, zc);
    return 0;
  }
  /* On failure the finish hook still frees the stream. */
  if (tl_res_header(res, "Content-Encoding",
                    zc->enc == ENC_GZIP ? "gzip" : "deflate"))
    return 0;
  return 1;
}

/* Runs deflate over `len` bytes with `flush` and passes all output on. */
static int pump(tl_res *res, z_stream *z, const unsigned char *in, size_t len,
                int flush) {
  unsigned char out[OUT_CHUNK];
  for (;;) {
    /* avail_in is a uInt: feed huge bodies in slices, flushing only with
     * the last. */
    size_t slice = len > UINT_MAX / 2 ? UINT_MAX / 2 : len;
    int f = slice == len ? flush : Z_NO_FLUSH;
    z->next_in = in;
    z->avail_in = (uInt)slice;
    int r;
    do {
      z->next_out = out;
      z->avail_out = sizeof out;
      r = deflate(z, f);
      if (r == Z_STREAM_ERROR)
        return TL_EIO;
      size_t have = sizeof out - z->avail_out;
      if (have) {
        int err = tl_res_filter_out(res, out, have);
        if (err)
          return err;
      }
    } while (z->avail_out == 0 && r != Z_STREAM_END);
    in += slice;
    len -= slice;
    if (len == 0)
      return (flush == Z_FINISH && r != Z_STREAM_END) ? TL_EIO : 0;
  }
}

static int filter_data(tl_res *res, void *ctx, const void *data, size_t len,
                       bool last) {
  zctx *zc = ctx;
  if (!zc->z)
    return TL_ESTATE;
  if (!last && len == 0)
    return 0; /* a Z_SYNC_FLUSH of nothing would still cost 5 bytes */
  return pump(res, zc->z, data, len, last ? Z_FINISH : Z_SYNC_FLUSH);
}

static const tl_res_filter FILTER = {.begin = filter_begin,
                                     .data = filter_data};

/* ---- the middleware -------------------------------------------------- */

static int compress_fn(tl_req *req, tl_res *res, void *ctx) {
  const zopts *c = ctx;
  if (strcmp(tl_req_method(req), "HEAD") == 0)
    return TL_NEXT; /* no body is sent, so nothing to filter */
  zctx *zc = tl_req_alloc(req, sizeof *zc);
  if (!zc)
    return TL_NEXT; /* compression is optional: never fail the request */
  zc->c = c;
  zc->enc = choose_encoding(req, c->no_deflate);
  zc->z = NULL;
  /* TL_EEXIST: another middleware filters this response; leave it. */
  (void)tl_res_set_filter(res, &FILTER, zc);
  return TL_NEXT;
}

static void compress_free(void *ctx) {
  free(ctx);
}

tl_middleware tl_compress(const tl_compress_options *opts) {
  tl_middleware mw = {
      .fn = NULL, .ctx = NULL, .free = NULL, .name = "compress"};
  tl_compress_options o = {0};
  if (opts)
    o = *opts;
  zopts *c = calloc(1, sizeof *c);
  if (!c) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  c->level = o.level >= 1 && o.level <= 9 ? o.level : DEFAULT_LEVEL;
  c->threshold = o.threshold ? o.threshold : DEFAULT_THRESHOLD;
  c->compressible = o.compressible;
  c->compressible_arg = o.compressible_arg;
  c->no_deflate = o.no_deflate != 0;
  mw.fn = compress_fn;
  mw.ctx = c;
  mw.free = compress_free;
  return mw;
}
