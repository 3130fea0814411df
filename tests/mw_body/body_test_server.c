/* Test server for the body parser middleware (tests/mw_body).
 *
 *   body_test_server PORT UPLOAD_DIR
 *
 * Every handler answers with a JSON description of what the parsers
 * produced; byte strings (field names and values, file names) are given in
 * hex so the suite can compare exact bytes. */
#define _GNU_SOURCE /* the pthread types uv.h needs under -std=c11 */
#include <talon.h>
#include <talon/mw.h>

#define TEST_SERVER_NAME "body_test_server"
#include "test_server.h"
#include <talon/mw/body.h>
#include <uv.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *upload_dir;

static json_t *hex(const char *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *s = malloc(2 * n + 1);
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[(unsigned char)p[i] >> 4];
    s[2 * i + 1] = digits[(unsigned char)p[i] & 15];
  }
  s[2 * n] = '\0';
  json_t *j = json_string(s);
  free(s);
  return j;
}

static json_t *hexs(const char *s) {
  return s ? hex(s, strlen(s)) : json_null();
}

static void send_json(tl_res *res, json_t *o) {
  char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  json_decref(o);
  tl_res_json(res, s);
  free(s);
}

/* FNV-1a 64 of a file, or -1 if it cannot be read. */
static json_t *file_info(const tl_upload *u) {
  json_t *o = json_object();
  json_object_set_new(o, "field", hexs(u->field));
  json_object_set_new(o, "filename", hexs(u->filename));
  json_object_set_new(o, "content_type", json_string(u->content_type));
  json_object_set_new(o, "path", json_string(u->path));
  json_object_set_new(o, "size", json_integer((json_int_t)u->size));
  struct stat st;
  if (stat(u->path, &st) == 0) {
    json_object_set_new(o, "mode", json_integer(st.st_mode & 0777));
    json_object_set_new(o, "disk_size", json_integer(st.st_size));
  }
  FILE *f = fopen(u->path, "rb");
  if (f) {
    unsigned long long h = 14695981039346656037ULL;
    int c;
    while ((c = getc(f)) != EOF)
      h = (h ^ (unsigned)c) * 1099511628211ULL;
    fclose(f);
    char buf[32];
    snprintf(buf, sizeof buf, "%016llx", h);
    json_object_set_new(o, "fnv", json_string(buf));
  }
  return o;
}

static json_t *describe(tl_req *req) {
  json_t *o = json_object();
  json_t *fields = json_array();
  tl_slice n, v;
  for (size_t i = 0; tl_req_form_field(req, i, &n, &v) == 0; i++) {
    json_t *pair = json_array();
    json_array_append_new(pair, hex(n.ptr, n.len));
    json_array_append_new(pair, hex(v.ptr, v.len));
    json_array_append_new(fields, pair);
  }
  json_object_set_new(o, "fields", fields);
  json_object_set_new(o, "count",
                      json_integer((json_int_t)tl_req_form_count(req, NULL)));
  json_object_set_new(o, "count_a",
                      json_integer((json_int_t)tl_req_form_count(req, "a")));
  json_object_set_new(o, "a", hexs(tl_req_form(req, "a")));
  json_object_set_new(o, "a1", hexs(tl_req_form_at(req, "a", 1)));
  json_t *files = json_array();
  size_t nf = tl_req_file_count(req);
  for (size_t i = 0; i < nf; i++)
    json_array_append_new(files, file_info(tl_req_file_at(req, i)));
  json_object_set_new(o, "files", files);
  const tl_upload *first = tl_req_file(req, "file");
  json_object_set_new(
      o, "file_field_index",
      json_integer(first ? (json_int_t)(first - tl_req_file_at(req, 0)) : -1));
  json_t *j = tl_req_json(req);
  json_object_set(o, "json", j ? j : json_null());
  json_object_set_new(o, "has_json", json_boolean(j != NULL));
  return o;
}

static void show(tl_req *req, tl_res *res) {
  send_json(res, describe(req));
}

static void show_keep(tl_req *req, tl_res *res) {
  size_t n = tl_req_file_count(req);
  int bad = 0;
  for (size_t i = 0; i < n; i++)
    if (tl_upload_keep(req, tl_req_file_at(req, i)))
      bad++;
  tl_upload fake = {0};
  json_t *o = describe(req);
  json_object_set_new(o, "keep_errors", json_integer(bad));
  json_object_set_new(o, "keep_fake", json_integer(tl_upload_keep(req, &fake)));
  send_json(res, o);
}

/* The parsers' `error` option: the refusal as JSON, with the parser's
 * status and message and the option's error_arg. */
static void error_json(tl_req *req, tl_res *res, int status,
                       const char *message, void *arg) {
  send_json(res, json_pack("{s:i, s:s, s:s}", "status", status, "message",
                           message, "arg", (const char *)arg));
}

/* An `error` hook that answers nothing: the status goes out, bodiless. */
static void error_silent(tl_req *req, tl_res *res, int status,
                         const char *message, void *arg) {}

#define ROUTE(method, path, h, ...)                                            \
  do {                                                                         \
    tl_middleware mw_[] = {__VA_ARGS__};                                       \
    if (tl_app_route(app, method, path, h, mw_, sizeof mw_ / sizeof *mw_))     \
      return 3;                                                                \
  } while (0)

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORT UPLOAD_DIR\n", argv[0]);
    return 2;
  }
  upload_dir = argv[2];
  tl_app_config cfg = {.max_body_bytes = 512 * 1024,
                       .shutdown_timeout_ms = 1000,
                       .on_listen = on_listen};
  tl_app *app = tl_app_new(&cfg);

  tl_body_json_options jreq = {
      .require = 1, .max_depth = 16, .max_bytes = 64 * 1024};
  tl_body_json_options jopt = {.reject_duplicates = 1};
  tl_body_urlencoded_options ureq = {
      .require = 1, .max_fields = 20, .max_bytes = 4096};
  tl_body_multipart_options mreq = {.require = 1,
                                    .dir = upload_dir,
                                    .max_file_bytes = 100000,
                                    .max_files = 3,
                                    .max_fields = 5,
                                    .max_total_bytes = 150000};
  tl_body_multipart_options many = {.dir = upload_dir};
  tl_body_json_options jhook = jreq;
  jhook.error = error_json;
  jhook.error_arg = "json";
  tl_body_json_options jsilent = jreq;
  jsilent.error = error_silent;
  tl_body_urlencoded_options uhook = ureq;
  uhook.error = error_json;
  uhook.error_arg = "form";
  tl_body_multipart_options mhook = mreq;
  mhook.error = error_json;
  mhook.error_arg = "upload";

  ROUTE("POST", "/json", show, tl_body_json(&jreq));
  ROUTE("POST", "/json-opt", show, tl_body_json(&jopt));
  ROUTE("POST", "/form", show, tl_body_urlencoded(&ureq));
  ROUTE("POST", "/upload", show, tl_body_multipart(&mreq));
  ROUTE("POST", "/upload-keep", show_keep, tl_body_multipart(&mreq));
  ROUTE("POST", "/json-hook", show, tl_body_json(&jhook));
  ROUTE("POST", "/json-silent", show, tl_body_json(&jsilent));
  ROUTE("POST", "/form-hook", show, tl_body_urlencoded(&uhook));
  ROUTE("POST", "/upload-hook", show, tl_body_multipart(&mhook));
  /* All three, none required: each passes other types through. */
  ROUTE("POST", "/any", show, tl_body_json(NULL), tl_body_urlencoded(NULL),
        tl_body_multipart(&many));
  int rc = tl_app_listen(app, "127.0.0.1", atoi(argv[1]));
  tl_app_free(app);
  return rc ? 1 : 0;
}
