/* talon — response compression middleware (gzip, deflate).
 *
 *   tl_app_use(app, tl_compress(NULL));
 *
 * Compresses response bodies with zlib, through the core's response body
 * filter (tl_res_set_filter), when all of these hold:
 *   - the client accepts gzip or deflate in Accept-Encoding with q > 0
 *     (q-values are honoured; "*" covers codings not listed; the highest q
 *     wins and gzip wins a tie; no header, or only identity: no coding);
 *   - the request is not HEAD, and the status has a body and is not 206
 *     (204, 304, 1xx never have one);
 *   - the response has no Content-Encoding and no Content-Range header,
 *     and its (first) Cache-Control header has no "no-transform";
 *   - its Content-Type is compressible (by default text/<any>,
 *     application/json, application/javascript, application/xml,
 *     image/svg+xml and any type ending in +json or +xml; see the
 *     `compressible` option);
 *   - the body given to tl_res_send() is at least `threshold` bytes, or
 *     the response is streamed (tl_res_write / tl_res_end after a write:
 *     length unknown, always compressed, sent chunked) without a
 *     Content-Length set by the handler.
 * The handler must set Content-Type before the body is sent (tl_res_text
 * and tl_res_json set it). A compressed response gets Content-Encoding and
 * its Content-Length is the compressed length. Every response of a
 * compressible type (that is not excluded by the rules above) gets
 * `Vary: Accept-Encoding`, whatever the client sent and whatever the
 * size, since another request for it could be answered differently;
 * unless a Vary header that names Accept-Encoding or "*" was set already.
 *
 * Streamed responses: every tl_res_write() is compressed and flushed
 * (Z_SYNC_FLUSH), so what was written reaches the client at once (server
 * sent events keep working); tl_res_end() finishes the stream.
 *
 * Not compressed: file bodies (tl_res_send_file*; the core does not filter
 * them: use the static middleware's precompressed .gz/.br siblings), and
 * responses of a request whose response already has another body filter
 * (one filter per response: the first middleware to install one wins).
 *
 * Memory: nothing is allocated for a response that is not compressed
 * except a few bytes of request memory. A compressed response holds one
 * zlib deflate stream (window 15, memLevel 8: about 256 KiB + 6 KiB, i.e.
 * (1 << 17) + (1 << 17) plus zlib's state) from the moment the head is
 * written until the response finishes, and a 16 KiB stack buffer while
 * compressing. For tl_res_send() the compressed body is also buffered
 * whole by the core before it is written (to send a Content-Length).
 *
 * Strong ETags set by the handler are left as they are (the core has no
 * way to change a header already added); compressed and identity answers
 * then share the validator, which is harmless for If-None-Match but means
 * an ETag-based cache should also honour Vary.
 */
#ifndef TALON_MW_COMPRESS_H
#define TALON_MW_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "../app.h"
#include "../http.h"
#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Decides from a response's Content-Type whether it is worth compressing.
 * `content_type` is the header's value as set by the handler (parameters
 * such as "; charset=utf-8" included), or NULL when none was set; valid
 * during the call only. `arg` is compressible_arg. Return true to allow
 * compression (the other rules still apply). */
typedef bool (*tl_compress_type_fn)(const char *content_type, void *arg);

/* Options for tl_compress(). A zero field means the default in brackets. */
typedef struct tl_compress_options {
  /* zlib compression level, 1 (fastest) .. 9 (smallest); values outside
   * that range mean the default. [6] */
  int level;
  /* Bodies given to tl_res_send() shorter than this many bytes are sent
   * as they are (an empty body is never compressed). Streamed bodies are
   * always compressed. [1024] */
  size_t threshold;
  /* The type predicate, replacing the default list; NULL: the default,
   * tl_compress_type_default(). A custom predicate can call
   * tl_compress_type_default() to extend the list. [NULL] */
  tl_compress_type_fn compressible;
  /* Passed to `compressible`; borrowed (it must outlive the app). [NULL] */
  void *compressible_arg;
  /* Never answer with "deflate" (only gzip). [0: deflate allowed] */
  int no_deflate;
} tl_compress_options;

/* The compression middleware for `opts` (NULL: all defaults). `opts` is
 * copied; `compressible_arg` stays borrowed. Use one returned value in one
 * app (tl_app_use, tl_router_use or a route's middleware array); the app
 * frees it. On allocation failure the returned value's fn is NULL
 * (tl_app_use() then returns TL_EINVAL). */
TL_EXTERN tl_middleware tl_compress(const tl_compress_options *opts);

/* The default type predicate: true for text/<any>, application/json,
 * application/javascript, application/xml, image/svg+xml and any type
 * whose subtype ends in "+json" or "+xml" (case-insensitive, parameters
 * ignored); false for NULL and everything else. */
TL_EXTERN bool tl_compress_type_default(const char *content_type);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_COMPRESS_H */
