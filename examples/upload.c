/* upload: file uploads with multipart/form-data.
 *
 *   GET  /               a form to upload files, and the files so far
 *   POST /upload         multipart form, any number of file fields (at most
 *                        4 files of 8 MiB each); every file is stored under
 *                        a generated name. Answers JSON (201), or, for a
 *                        browser's form post, redirects back to /
 *   GET  /files          the stored files, as JSON
 *   GET  /files/:name    one stored file
 *
 * Files go to UPLOAD_DIR (default ./uploads, created at start). talon's
 * multipart parser writes each file part to a temporary file while it
 * reads the body; this example has it do that in UPLOAD_DIR/.tmp (the same
 * file system, so a rename moves the file without copying), then claims
 * the temporary file with tl_upload_keep() and renames it. Files it does
 * not claim, and all files of a request that fails (413 over a limit, 400
 * malformed), are removed by talon: nothing is left behind in .tmp.
 *
 * The stored name is never the client's file name: it is a timestamp and
 * random hex, plus the client's extension if that is short and
 * alphanumeric ("20240501-101502-9f86d081884c7d65.png"). So no client can
 * pick a path, overwrite a file or plant ".htaccess".
 *
 * Limits: /upload is a streamed route (tl_route_options.stream_body):
 * the multipart parser runs as the body arrives and writes each file to
 * disk as it comes, so an upload costs about 64 KiB of memory whatever its
 * size. The route's max_body_bytes is what the multipart limits allow plus
 * room for the form's own bytes (over it, 413); every other route keeps
 * the app's 1 MiB.
 *
 * Usage: upload [PORT]   (or PORT=..., HOST=..., UPLOAD_DIR=...)
 *   curl -F file=@photo.jpg -F file=@notes.txt localhost:3000/upload
 */
#define _DEFAULT_SOURCE /* getrandom, dirent d_type, strdup */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include <talon.h>
#include <talon/mw.h>

#include "common.h"

#define MAX_FILE_BYTES (8u << 20) /* one file */
#define MAX_FILES 4               /* files per request */
#define MAX_BODY_BYTES ((size_t)MAX_FILES * MAX_FILE_BYTES + (64u << 10))

static char upload_dir[4096]; /* where files are stored */
static char tmp_dir[4096];    /* where talon writes parts: upload_dir/.tmp */

/* ---- names --------------------------------------------------------------- */

/* Whether `name` could be one of ours: letters, digits, '-', '.', not
 * starting with '.'. Used for GET /files/:name, so "../x" and ".tmp" are
 * refused before they reach the file system. */
static int stored_name_ok(const char *name) {
  if (!name || !*name || *name == '.' || strlen(name) > 64)
    return 0;
  for (const char *p = name; *p; p++)
    if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
        !(*p >= '0' && *p <= '9') && *p != '-' && *p != '.')
      return 0;
  return 1;
}

/* A fresh name for a file the client called `client_name`:
 * "YYYYMMDD-HHMMSS-<16 random hex>[.ext]", where ext is the client's
 * extension when it has 1 to 8 letters or digits (lower-cased). */
static int new_name(char *out, size_t size, const char *client_name) {
  unsigned char rnd[8];
  if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
    return -1;
  char ext[10] = "";
  const char *dot = client_name ? strrchr(client_name, '.') : NULL;
  if (dot && dot[1] && strlen(dot + 1) <= 8) {
    size_t n = 0;
    ext[n++] = '.';
    for (const char *p = dot + 1; *p; p++) {
      char c = *p;
      if (c >= 'A' && c <= 'Z')
        c = (char)(c - 'A' + 'a');
      if (!(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9')) {
        n = 0; /* not a plain extension: drop it */
        break;
      }
      ext[n++] = c;
    }
    ext[n] = '\0';
  }
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  int len = snprintf(out, size,
                     "%04d%02d%02d-%02d%02d%02d-"
                     "%02x%02x%02x%02x%02x%02x%02x%02x%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2], rnd[3],
                     rnd[4], rnd[5], rnd[6], rnd[7], ext);
  return len > 0 && (size_t)len < size ? 0 : -1;
}

/* Writes `s` into `out` as the inside of a JSON string. Client file names
 * are client input: quotes, backslashes and control bytes are escaped. */
static size_t json_str(char *out, size_t size, const char *s) {
  size_t o = 0;
  for (; *s && o + 7 < size; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
  return o;
}

/* ---- a growable text buffer for the JSON answers ------------------------- */

typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} text;

static void append(text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void append(text *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = t->failed ? 0
                      : vsnprintf(t->data ? t->data + t->len : NULL,
                                  t->data ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (t->failed || n < 0) {
      t->failed = 1;
      return;
    }
    if (t->data && t->len + (size_t)n < t->cap) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = (t->cap ? t->cap * 2 : 1024) + (size_t)n;
    char *d = realloc(t->data, cap);
    if (!d) {
      t->failed = 1;
      return;
    }
    t->data = d;
    t->cap = cap;
  }
}

static void send_text_json(tl_res *res, int status, text *t) {
  if (t->failed) {
    tl_res_status(res, 500);
    tl_res_text(res, "out of memory\n");
  } else {
    tl_res_status(res, status);
    tl_res_json(res, t->data);
  }
  free(t->data);
}

/* ---- handlers ------------------------------------------------------------ */

static const char page[] =
    "<!doctype html><meta charset=utf-8><title>talon upload</title>\n"
    "<style>body{font:16px system-ui;margin:2em auto;max-width:40em}"
    "</style>\n"
    "<h1>Upload files</h1>\n"
    "<form method=post action=/upload enctype=multipart/form-data>\n"
    "<input type=file name=file multiple> <button>upload</button>\n"
    "<p><small>At most 4 files of 8 MiB each.</small></p></form>\n"
    "<h2>Stored</h2><ul id=files></ul>\n"
    "<script>\n"
    "fetch('/files').then(r => r.json()).then(list => {\n"
    "  const ul = document.getElementById('files');\n"
    "  for (const f of list) {\n"
    "    const li = document.createElement('li'), a = "
    "document.createElement('a');\n"
    "    a.href = '/files/' + f.name; a.textContent = f.name;\n"
    "    li.append(a, ` (${f.size} bytes)`); ul.append(li);\n"
    "  }\n"
    "});\n"
    "</script>\n";

static void index_page(tl_req *req, tl_res *res) {
  tl_res_header(res, "Content-Type", "text/html; charset=utf-8");
  tl_res_send(res, page, sizeof page - 1);
}

static void upload(tl_req *req, tl_res *res) {
  size_t n = tl_req_file_count(req);
  if (n == 0) {
    tl_res_status(res, 400);
    tl_res_text(res, "no file in the form (use a file field)\n");
    return;
  }
  text out = {0};
  append(&out, "{\"saved\":[");
  for (size_t i = 0; i < n; i++) {
    const tl_upload *u = tl_req_file_at(req, i);
    char name[64], dest[4200], client[512], field[256];
    /* Claim the temporary file (else talon removes it when the response
     * finishes), then move it to its final name. */
    if (new_name(name, sizeof name, u->filename) ||
        (size_t)snprintf(dest, sizeof dest, "%s/%s", upload_dir, name) >=
            sizeof dest ||
        tl_upload_keep(req, u) != 0) {
      out.failed = 1; /* u is still talon's: it removes the file */
      break;
    }
    if (rename(u->path, dest) != 0) {
      fprintf(stderr, "upload: rename %s: %s\n", u->path, strerror(errno));
      remove(u->path); /* ours now: do not leave it behind */
      out.failed = 1;
      break;
    }
    json_str(client, sizeof client, u->filename);
    json_str(field, sizeof field, u->field);
    append(&out,
           "%s{\"name\":\"%s\",\"filename\":\"%s\",\"size\":%llu,"
           "\"field\":\"%s\"}",
           i ? "," : "", name, client, (unsigned long long)u->size, field);
  }
  append(&out, "]}");
  /* A browser's form post navigates: send it back to the page. */
  const char *accept = tl_req_header(req, "accept");
  if (!out.failed && accept && strstr(accept, "text/html")) {
    free(out.data);
    tl_res_redirect(res, 303, "/");
    return;
  }
  send_text_json(res, out.failed ? 500 : 201, &out);
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists upload_dir (our names only; .tmp and anything else skipped). */
static void list_files(tl_req *req, tl_res *res) {
  DIR *d = opendir(upload_dir);
  if (!d) {
    tl_res_status(res, 500);
    tl_res_text(res, "cannot read the upload directory\n");
    return;
  }
  char **names = NULL;
  size_t len = 0, cap = 0;
  int failed = 0;
  struct dirent *e;
  while (!failed && (e = readdir(d))) {
    if (!stored_name_ok(e->d_name))
      continue;
    if (len == cap) {
      cap = cap ? cap * 2 : 32;
      char **p = realloc(names, cap * sizeof *p);
      if (!p) {
        failed = 1;
        break;
      }
      names = p;
    }
    if (!(names[len] = strdup(e->d_name)))
      failed = 1;
    else
      len++;
  }
  closedir(d);
  qsort(names, len, sizeof *names, by_name);
  text out = {.failed = failed};
  append(&out, "[");
  int first = 1;
  for (size_t i = 0; i < len; i++) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", upload_dir, names[i]);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      append(&out, "%s{\"name\":\"%s\",\"size\":%lld}", first ? "" : ",",
             names[i], (long long)st.st_size);
      first = 0;
    }
    free(names[i]);
  }
  free(names);
  append(&out, "]");
  send_text_json(res, 200, &out);
}

static void get_file(tl_req *req, tl_res *res) {
  const char *name = tl_req_param(req, "name");
  char path[4200];
  struct stat st;
  if (!stored_name_ok(name) ||
      (size_t)snprintf(path, sizeof path, "%s/%s", upload_dir, name) >=
          sizeof path ||
      stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    tl_res_status(res, 404);
    tl_res_text(res, "no such file\n");
    return;
  }
  /* Served as bytes to download, never rendered as a page of ours. */
  tl_res_header(res, "Content-Type", "application/octet-stream");
  tl_res_header(res, "Content-Disposition", "attachment");
  tl_res_header(res, "X-Content-Type-Options", "nosniff");
  if (tl_res_send_file(res, path) != 0) { /* removed since the stat */
    tl_res_status(res, 500);
    tl_res_end(res, NULL, 0);
  }
}

/* ---- setup --------------------------------------------------------------- */

static int make_dir(const char *path) {
  if (mkdir(path, 0700) == 0 || errno == EEXIST)
    return 0;
  fprintf(stderr, "upload: mkdir %s: %s\n", path, strerror(errno));
  return -1;
}

static void on_listen(tl_app *app, const char *host, int port) {
  example_print_listening("upload", host, port);
  printf("upload: files in %s\n", upload_dir);
  fflush(stdout);
  example_print_tls(app, "upload", host);
}

int main(int argc, char **argv) {
  example_opts o;
  int rc = example_args(
      argc, argv, "upload",
      "  UPLOAD_DIR      where files are stored [./uploads]\n", &o);
  if (rc >= 0)
    return rc;
  const char *dir = getenv("UPLOAD_DIR");
  if (!dir || !*dir)
    dir = "./uploads";
  if ((size_t)snprintf(upload_dir, sizeof upload_dir, "%s", dir) >=
          sizeof upload_dir ||
      (size_t)snprintf(tmp_dir, sizeof tmp_dir, "%s/.tmp", dir) >=
          sizeof tmp_dir) {
    fprintf(stderr, "upload: UPLOAD_DIR is too long\n");
    return 1;
  }
  if (make_dir(upload_dir) || make_dir(tmp_dir))
    return 1;

  tl_app *app = tl_app_new(
      &(tl_app_config){.on_listen = on_listen, .workers = o.workers});
  if (!app)
    return 1;
  int redis_rc = example_redis(app, "upload");
  if (redis_rc >= 0) {
    tl_app_free(app);
    return redis_rc;
  }

  tl_body_multipart_options mo = {
      .dir = tmp_dir,
      .max_file_bytes = MAX_FILE_BYTES, /* one file over: 413 */
      .max_files = MAX_FILES,           /* a fifth file: 413 */
      .max_fields = 32,
      .max_total_bytes = (uint64_t)MAX_FILES * MAX_FILE_BYTES,
      .require = 1, /* anything but multipart/form-data: 415 */
  };
  tl_middleware mw[] = {tl_body_multipart(&mo)};
  int err = tl_app_get(app, "/", index_page) ||
            tl_app_route_opts(app, "POST", "/upload", upload, mw, 1,
                              &(tl_route_options){
                                  .stream_body = 1,
                                  .max_body_bytes = MAX_BODY_BYTES,
                              }) ||
            tl_app_get(app, "/files", list_files) ||
            tl_app_get(app, "/files/:name", get_file);
  if (err)
    fprintf(stderr, "upload: cannot set up routes\n");
  else if (example_tls(app, "upload", o.host))
    err = 1;
  else if ((err = tl_app_listen(app, o.host, o.port)))
    fprintf(stderr, "upload: %s\n", tl_strerror(err));
  tl_app_free(app);
  return err ? 1 : 0;
}
