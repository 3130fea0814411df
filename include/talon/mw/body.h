/* talon — request body parsers: JSON, URL-encoded forms, multipart forms.
 *
 *   tl_body_json_options jo = {.require = 1};
 *   tl_middleware mw[] = {tl_body_json(&jo)};
 *   tl_app_route(app, "POST", "/items", create_item, mw, 1);
 *   ...
 *   json_t *doc = tl_req_json(req);         (jansson; NULL if no body)
 *
 * On an ordinary route talon reads the whole body (up to max_body_bytes,
 * the route's or the app's, else 413 before any middleware runs) before
 * middleware sees the request, and these parsers work on tl_req_body().
 * On a route with tl_route_options.stream_body, tl_body_multipart reads
 * the body as it arrives (tl_req_body_stream) and writes each file part to
 * its file as its bytes come, at bounded memory; the JSON and URL-encoded
 * parsers need the whole body and pass a streamed one through untouched.
 *
 * Common rules for all three:
 *  - Only requests with a non-empty body are examined; others pass through
 *    untouched (the accessors then return NULL / 0).
 *  - A body whose Content-Type is not the parser's passes through untouched,
 *    unless the `require` option is set: then it is answered 415.
 *  - Errors are answered by the middleware itself with a short text/plain
 *    body and the chain stops: 400 malformed, 413 over a limit, 415 wrong
 *    type. Out of memory answers 500 (the middleware returns TL_ENOMEM).
 *    The `error` option (a tl_body_error_fn) answers them instead, e.g. in
 *    JSON for an API whose other errors are JSON.
 *  - Everything parsed lives until the response finishes (request-scoped).
 *    Strings returned are NUL-terminated; do not free them.
 */
#ifndef TALON_MW_BODY_H
#define TALON_MW_BODY_H

#include <stdint.h>

#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Answers a parser's refusal in place of its short text/plain body, e.g.
 * as {"error": "..."} for a JSON API. Called with the status already set
 * on `res` (400, 413 or 415; 500 when an upload cannot be stored) and
 * X-Content-Type-Options: nosniff added; `message` is the text the default
 * answer carries, without its newline (NUL-terminated, valid during the
 * call); `arg` is the option's error_arg. It should finish the response
 * (tl_res_json, tl_res_send, ...; it may also change the status); the
 * chain stops after it, and a response it left unfinished goes out with
 * the status and an empty body. */
typedef void (*tl_body_error_fn)(tl_req *req, tl_res *res, int status,
                                 const char *message, void *arg);

/* ---- JSON (RFC 8259) ---------------------------------------------------- */

/* jansson's node type. Declared, not defined, so this header does not need
 * <jansson.h>; include <jansson.h> (and link -ljansson) to use the tree. */
struct json_t;

typedef struct tl_body_json_options {
  /* Bodies longer than this get 413 [1048576]. (The app's max_body_bytes
   * applies first.) */
  size_t max_bytes;
  /* Arrays/objects nested deeper than this get 400 [64; at most 2048,
   * jansson's own limit]. */
  unsigned max_depth;
  /* Answer 415 to a body whose Content-Type is not JSON [0: pass it]. */
  int require;
  /* Answer 400 to an object with a duplicate key [0: last one wins]. */
  int reject_duplicates;
  /* Answers refusals instead of the text/plain default [NULL]; error_arg
   * is passed to it. */
  tl_body_error_fn error;
  void *error_arg;
} tl_body_json_options;

/* Parses bodies of type application/json or application/<anything>+json
 * (parameters ignored, except a charset other than UTF-8: 415) with
 * jansson. Any JSON value is accepted at the top level (RFC 8259). Invalid
 * UTF-8, "\u0000" in strings, trailing data, and malformed text get 400
 * with jansson's message and position ("invalid JSON: ... at line 1,
 * column 5 (byte 4)"). `opts` (NULL: defaults) is copied. On allocation
 * failure the returned value's fn is NULL (tl_app_use then returns
 * TL_EINVAL). */
TL_EXTERN tl_middleware tl_body_json(const tl_body_json_options *opts);

/* The parsed body of this request: a borrowed `json_t *` (jansson), owned
 * by the request and json_decref'd when the response finishes; take a
 * reference (json_incref) to keep it longer. NULL if tl_body_json did not
 * parse a body for this request. */
TL_EXTERN struct json_t *tl_req_json(const tl_req *req);

/* ---- Forms: application/x-www-form-urlencoded -------------------------- */

typedef struct tl_body_urlencoded_options {
  size_t max_bytes;       /* bodies longer than this: 413 [1048576] */
  unsigned max_fields;    /* more name=value pairs than this: 413 [1000] */
  int require;            /* 415 for a body of another type [0] */
  tl_body_error_fn error; /* answers refusals [NULL: text/plain] */
  void *error_arg;        /* passed to `error` */
} tl_body_urlencoded_options;

/* Parses application/x-www-form-urlencoded bodies (the WHATWG rules: pairs
 * split on '&', empty pairs skipped, '+' is a space, %XX decoded, an
 * invalid % escape kept as is, a pair without '=' has the value "") into
 * the request's form fields, read with tl_req_form*(). `opts` (NULL:
 * defaults) is copied. On allocation failure fn is NULL. */
TL_EXTERN tl_middleware
tl_body_urlencoded(const tl_body_urlencoded_options *opts);

/* The first value of form field `name` (decoded, exact match), or NULL.
 * Fields come from tl_body_urlencoded or from the non-file parts of
 * tl_body_multipart. A value may contain NUL bytes (from %00 or a
 * multipart part): use tl_req_form_field() for its length. */
TL_EXTERN const char *tl_req_form(const tl_req *req, const char *name);

/* The number of fields named `name` (repeated keys: "a=1&a=2" gives 2), or
 * of all fields when `name` is NULL. */
TL_EXTERN size_t tl_req_form_count(const tl_req *req, const char *name);

/* The `index`-th (0-based, in body order) value of field `name`, or NULL. */
TL_EXTERN const char *tl_req_form_at(const tl_req *req, const char *name,
                                     size_t index);

/* Field `i` of all fields (0-based, in body order): name and value slices,
 * NUL-terminated, living until the response finishes. Returns 0, or
 * TL_ENOENT if `i` is out of range. */
TL_EXTERN int tl_req_form_field(const tl_req *req, size_t i, tl_slice *name,
                                tl_slice *value);

/* ---- Forms: multipart/form-data (RFC 7578) ----------------------------- */

typedef struct tl_body_multipart_options {
  /* Directory for uploaded files [/tmp]; copied. Files are created there
   * with mkstemp ("talon-upload-XXXXXX", mode 0600). */
  const char *dir;
  uint64_t max_file_bytes;  /* one file larger: 413 [10485760] */
  unsigned max_files;       /* more file parts: 413 [16] */
  unsigned max_fields;      /* more non-file parts: 413 [1000] */
  uint64_t max_total_bytes; /* all parts' contents together: 413 [52428800] */
  int require;              /* 415 for a body of another type [0] */
  tl_body_error_fn error;   /* answers refusals [NULL: text/plain] */
  void *error_arg;          /* passed to `error` */
} tl_body_multipart_options;

/* Parses multipart/form-data bodies. The boundary comes from the
 * Content-Type (quoted or not, 1 to 70 characters). Each part needs a
 * `Content-Disposition: form-data; name="..."` header; a part with a
 * `filename` parameter is a file, written to a temporary file in `dir`;
 * other parts become form fields (tl_req_form*). A file part with an empty
 * filename and no content (a browser's empty file input) is skipped.
 * Preamble and epilogue are ignored. Answers 400 for a missing or invalid
 * boundary, a part without a valid Content-Disposition, part headers over
 * 8 KiB or malformed, a missing closing boundary; 413 over a limit; 500 if
 * a temporary file cannot be written. On any error every file of the
 * request is removed before the answer. Files are written on the loop
 * thread (write(2) into the page cache: put `dir` on a fast local or tmpfs
 * file system). On a stream_body route the parts are parsed and written
 * as the body arrives and the chain goes on (tl_next) once it has ended;
 * a body cut short (the client left, over max_body_bytes: 413, a timeout)
 * removes every file of the request. `opts` (NULL: defaults) is copied.
 * On allocation failure fn is NULL. */
TL_EXTERN tl_middleware
tl_body_multipart(const tl_body_multipart_options *opts);

/* An uploaded file. All strings are NUL-terminated and live until the
 * response finishes. */
typedef struct tl_upload {
  const char *field;        /* the form field name */
  const char *filename;     /* the client's file name, sanitized: only the
                               part after the last '/' or '\', control bytes
                               removed, "." and ".." become ""; never use it
                               as a path without your own checks */
  const char *content_type; /* the part's Content-Type, or
                               "application/octet-stream" */
  const char *path;         /* the temporary file */
  uint64_t size;            /* bytes in the file */
} tl_upload;

/* The number of uploaded files of this request (0 if none). */
TL_EXTERN size_t tl_req_file_count(const tl_req *req);

/* Uploaded file `i` (0-based, in body order), or NULL. Borrowed; lives
 * until the response finishes. */
TL_EXTERN const tl_upload *tl_req_file_at(const tl_req *req, size_t i);

/* The first uploaded file of field `field`, or NULL. */
TL_EXTERN const tl_upload *tl_req_file(const tl_req *req, const char *field);

/* Temporary files are removed when the response finishes (or is aborted).
 * Claim `upload` to keep its file: talon will not remove it, and the file
 * (at upload->path; copy the path, it is freed with the request) is then
 * yours to rename or delete. Call it before moving the file. Returns 0, or
 * TL_EINVAL if `upload` is not a file of `req`. */
TL_EXTERN int tl_upload_keep(tl_req *req, const tl_upload *upload);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_BODY_H */
