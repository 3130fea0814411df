/* static_test_server: a talon app serving one folder through several
 * tl_static() instances with different options, for tests/mw_static.
 *
 * Usage: static_test_server [PORT] [ROOT]   (ROOT or TALON_STATIC_ROOT)
 * Prints "listening on http://127.0.0.1:PORT" once it accepts connections,
 * after "ctor-checks ok" when the constructor's error cases behave.
 *
 * Middleware, in order (app level, each falls through on a miss):
 *   /            defaults
 *   /deny/...    dotfiles DENY
 *   /allow/...   dotfiles ALLOW
 *   /nofollow/.. symlinks DENY
 *   /strict/...  no_fallthrough (404 / 405 itself)
 *   /noindex/..  index ""
 *   /noredir/..  no_dir_redirect
 *   /cache/...   max_age 3600, immutable
 *   /weak/...    weak ETags, no Last-Modified
 *   /nogz/...    no precompressed siblings
 *   /custom/...  cache_control "no-cache", mime "foo", default type,
 *                index "home.htm", set_headers adds X-Static-File
 * Routes: GET /routed, GET /strict/route, POST /hello.txt; not found:
 * 404 "app 404\n".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "static_test_server"
#include "test_server.h"
#include <talon/mw/static.h>

static void routed(tl_req *req, tl_res *res) {
  tl_res_text(res, "routed\n");
}

/* The app's own 404, told apart from the middleware's "Not Found\n". */
static void not_found(tl_req *req, tl_res *res) {
  tl_res_status(res, 404);
  tl_res_text(res, "app 404\n");
}

static void posted(tl_req *req, tl_res *res) {
  tl_res_text(res, "posted\n");
}

static void add_file_header(tl_req *req, tl_res *res, const char *path,
                            void *arg) {
  const char *base = strrchr(path, '/');
  tl_res_header(res, "X-Static-File", base ? base + 1 : path);
  tl_res_header(res, "X-Static-Arg", (const char *)arg);
}

static int use(tl_app *app, const char *root, const char *prefix,
               tl_static_options o) {
  o.prefix = prefix;
  int err = tl_app_use(app, tl_static(root, &o));
  if (err)
    fprintf(stderr, "tl_app_use(%s): %s\n", prefix, tl_strerror(err));
  return err;
}

/* The constructor's documented failures: fn == NULL, tl_app_use refuses. */
static int ctor_checks(tl_app *app, const char *root) {
  char file[4096];
  snprintf(file, sizeof file, "%s/hello.txt", root);
  tl_static_options bad_prefix = {.prefix = "nope"};
  tl_static_options bad_index = {.index = "../x"};
  tl_middleware cases[] = {
      tl_static(NULL, NULL),
      tl_static("/nonexistent/talon-static-root", NULL),
      tl_static(file, NULL),
      tl_static(root, &bad_prefix),
      tl_static(root, &bad_index),
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].fn || cases[i].ctx) {
      fprintf(stderr, "ctor case %zu did not fail\n", i);
      return 1;
    }
    if (tl_app_use(app, cases[i]) != TL_EINVAL) {
      fprintf(stderr, "tl_app_use accepted failed case %zu\n", i);
      return 1;
    }
  }
  if (strcmp(tl_static_mime_lookup("a/b.HTML"), "text/html; charset=utf-8") ||
      tl_static_mime_lookup("noext") || tl_static_mime_lookup("a.zzz")) {
    fprintf(stderr, "tl_static_mime_lookup\n");
    return 1;
  }
  printf("ctor-checks ok\n");
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  const char *root = argc > 2 ? argv[2] : getenv("TALON_STATIC_ROOT");
  if (!root) {
    fprintf(stderr, "usage: static_test_server PORT ROOT\n");
    return 2;
  }
  tl_app_config cfg = {.on_listen = on_listen};
  tl_app *app = tl_app_new(&cfg);
  if (!app)
    return 1;
  if (ctor_checks(app, root)) {
    tl_app_free(app);
    return 1;
  }

  static const tl_static_mime extra[] = {{"foo", "application/x-foo"},
                                         {".TXT", "text/x-custom-txt"},
                                         {NULL, NULL}};
  static char arg[] = "arg-ok";
  int err = 0;
  err |= use(app, root, NULL, (tl_static_options){0});
  err |= use(app, root, "/deny",
             (tl_static_options){.dotfiles = TL_STATIC_DOTFILES_DENY});
  err |= use(app, root, "/allow/",
             (tl_static_options){.dotfiles = TL_STATIC_DOTFILES_ALLOW});
  err |= use(app, root, "/nofollow",
             (tl_static_options){.symlinks = TL_STATIC_SYMLINKS_DENY});
  err |= use(app, root, "/strict", (tl_static_options){.no_fallthrough = 1});
  err |= use(app, root, "/noindex", (tl_static_options){.index = ""});
  err |= use(app, root, "/noredir", (tl_static_options){.no_dir_redirect = 1});
  err |= use(app, root, "/cache",
             (tl_static_options){.max_age = 3600, .immutable = 1});
  err |= use(
      app, root, "/weak",
      (tl_static_options){.etag = TL_STATIC_ETAG_WEAK, .no_last_modified = 1});
  err |= use(app, root, "/nogz", (tl_static_options){.no_precompressed = 1});
  err |= use(app, root, "/custom",
             (tl_static_options){.cache_control = "no-cache",
                                 .mime_types = extra,
                                 .default_type = "text/x-unknown",
                                 .index = "home.htm",
                                 .set_headers = add_file_header,
                                 .set_headers_arg = arg});
  tl_app_not_found(app, not_found);
  err |= tl_app_get(app, "/routed", routed);
  err |= tl_app_get(app, "/strict/route", routed);
  err |= tl_app_post(app, "/hello.txt", posted);
  if (err) {
    tl_app_free(app);
    return 1;
  }
  err = tl_app_listen(app, "127.0.0.1", port);
  tl_app_free(app);
  if (err) {
    fprintf(stderr, "listen: %s\n", tl_strerror(err));
    return 1;
  }
  return 0;
}
