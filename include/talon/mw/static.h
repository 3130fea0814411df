/* talon — static file middleware.
 *
 *   tl_app_use(app, tl_static("public", NULL));
 *
 * Serves the files under a folder for GET and HEAD: safe path resolution
 * (no `..`, no NUL, no symlink that leaves the folder, dotfiles hidden by
 * default), index files, MIME types, ETag / Last-Modified with conditional
 * requests (304 / 412), single byte ranges (206 / 416) and precompressed
 * `.br` / `.gz` siblings. Files go out with tl_res_send_file_range()
 * (sendfile(2) for large ones). A request it cannot answer (no such file,
 * another method, a path outside its prefix) continues down the chain
 * (TL_NEXT), so routes and the app's 404 still run.
 *
 * File system calls (open, stat, realpath) run on the loop thread: they are
 * fast on local disks, but a slow network file system stalls the loop.
 * See docs/middleware/static.md for the full behaviour.
 */
#ifndef TALON_MW_STATIC_H
#define TALON_MW_STATIC_H

#include "../app.h"
#include "../http.h"
#include "../middleware.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What to do with a path that has a segment starting with '.' (".env",
 * ".git/config"), in the request or in the target of a followed symlink.
 * The root folder's own path may contain dots. */
typedef enum {
  TL_STATIC_DOTFILES_IGNORE = 0, /* as if absent: TL_NEXT (or 404) */
  TL_STATIC_DOTFILES_DENY = 1,   /* 403 Forbidden */
  TL_STATIC_DOTFILES_ALLOW = 2   /* serve them like any file */
} tl_static_dotfiles;

/* Symbolic links found under the root. A link whose target lies outside
 * the root folder is never followed (the request is a miss). */
typedef enum {
  TL_STATIC_SYMLINKS_INSIDE = 0, /* follow links whose target stays inside */
  TL_STATIC_SYMLINKS_DENY = 1    /* never follow any link: a miss */
} tl_static_symlinks;

/* The ETag validator, computed from the served file's size and
 * modification time (nanoseconds), with "-br" / "-gz" appended for a
 * precompressed variant. */
typedef enum {
  TL_STATIC_ETAG_STRONG = 0, /* "1a2b-17c3..." (usable with If-Range) */
  TL_STATIC_ETAG_WEAK = 1,   /* W/"1a2b-17c3..." */
  TL_STATIC_ETAG_OFF = 2     /* no ETag header */
} tl_static_etag;

/* One extra MIME mapping: `ext` without the dot ("md"), matched
 * case-insensitively; `type` is the full Content-Type value. */
typedef struct tl_static_mime {
  const char *ext;
  const char *type;
} tl_static_mime;

/* Called before a file's 200 or 206 answer goes out (not for 304, 412,
 * 416 or redirects), after the middleware's own headers are set, so it can
 * add more (Content-Disposition, ...). `path` is the absolute path of the
 * file on disk that is about to be sent (the .br/.gz sibling when one is
 * served), valid during the call only. `arg` is set_headers_arg. */
typedef void (*tl_static_headers_fn)(tl_req *req, tl_res *res, const char *path,
                                     void *arg);

/* Options for tl_static(). A zero field means the default in brackets. */
typedef struct tl_static_options {
  /* URL prefix the folder is served under ("/assets": "/assets/app.js" is
   * <root>/app.js); compared with the percent-decoded path, on a segment
   * boundary. Requests outside it always get TL_NEXT. ["" : the whole
   * path space] */
  const char *prefix;
  /* File served for a directory URL ending in '/'. "" disables index
   * files (directory URLs are then misses). No directory listings are
   * ever produced. ["index.html"] */
  const char *index;
  /* Dotfile policy. [TL_STATIC_DOTFILES_IGNORE] */
  tl_static_dotfiles dotfiles;
  /* Symlink policy. [TL_STATIC_SYMLINKS_INSIDE] */
  tl_static_symlinks symlinks;
  /* ETag kind. [TL_STATIC_ETAG_STRONG] */
  tl_static_etag etag;
  /* Non-zero: no Last-Modified header (If-Modified-Since, If-Unmodified-
   * Since and date If-Range are then ignored). [0] */
  int no_last_modified;
  /* Non-zero: never look for `.br` / `.gz` siblings and send no
   * `Vary: Accept-Encoding`. [0: precompressed siblings on] */
  int no_precompressed;
  /* Non-zero: a directory URL without its trailing slash is served its
   * index file directly instead of a 301 to the slash form (relative links
   * in that page then resolve against the parent). [0: redirect] */
  int no_dir_redirect;
  /* Non-zero: answer misses itself with 404 and other methods with 405
   * (Allow: GET, HEAD) instead of TL_NEXT; meant for a middleware with a
   * prefix of its own. [0: fall through] */
  int no_fallthrough;
  /* Cache-Control: max-age in seconds. [0] */
  unsigned max_age;
  /* Non-zero: append ", immutable" to the Cache-Control value. [0] */
  int immutable;
  /* The Cache-Control value verbatim (overrides max_age and immutable);
   * "" sends none. [NULL: "public, max-age=<max_age>[, immutable]"]. A
   * Cache-Control header already set by earlier middleware is kept and
   * this one is not added. */
  const char *cache_control;
  /* Extra MIME mappings, looked up before the built-in table; an array
   * ended by an entry whose ext is NULL. [NULL] */
  const tl_static_mime *mime_types;
  /* Content-Type for an unknown extension. ["application/octet-stream"] */
  const char *default_type;
  /* See tl_static_headers_fn. [NULL] */
  tl_static_headers_fn set_headers;
  void *set_headers_arg;
} tl_static_options;

/* A static file middleware serving the folder `root` (a relative path is
 * resolved against the current directory now; `root` must exist and be a
 * directory when this is called). `opts` may be NULL (all defaults).
 * Every string of `opts` (prefix, index, cache_control, default_type and
 * the mime_types entries) is copied; only set_headers_arg stays borrowed
 * (it is passed back as is). The returned value goes to tl_app_use,
 * tl_router_use or a route's middleware array, which take ownership of its
 * context (freed with the app).
 *
 * Errors: when memory runs out, `root` is NULL, does not exist or is not a
 * directory, or `prefix` does not start with '/', the returned middleware
 * has fn == NULL and ctx == NULL (tl_app_use then returns TL_EINVAL);
 * nothing needs freeing. */
TL_EXTERN tl_middleware tl_static(const char *root,
                                  const tl_static_options *opts);

/* The built-in Content-Type for the extension of `path` (the text after
 * the last '.' of its last segment, case-insensitive): "text/html;
 * charset=utf-8" for "a/b.HTML". Returns a static string, or NULL for an
 * unknown or missing extension. */
TL_EXTERN const char *tl_static_mime_lookup(const char *path);

#ifdef __cplusplus
}
#endif
#endif /* TALON_MW_STATIC_H */
