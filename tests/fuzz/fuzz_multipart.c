/* libFuzzer target for the body middleware (middleware/body.c):
 * multipart/form-data above all, and the URL-encoded and JSON parsers.
 * The middleware runs against the fake request of fake_http.c.
 *
 * Input: byte 0 = flags; then the Content-Type value up to the first
 * '\n'; the rest is the body.
 *   flags bits 0-1: 0 multipart, 1 urlencoded, 2 JSON, 3 all three in a
 *     chain (multipart, urlencoded, JSON);
 *   flags bit 2: small limits (few fields and files, short bodies);
 *   flags bit 3: `require` (other types get 415);
 *   flags bit 4: JSON reject_duplicates;
 *   flags bit 5: keep the first upload with tl_upload_keep().
 *
 * Checks:
 *  - a middleware either passes (TL_NEXT) or answers (TL_DONE) with 400,
 *    413, 415 or 500 and a finished response (TL_ENOMEM only when memory
 *    ran out);
 *  - after the multipart parser's own answer, no upload file is left in
 *    the upload directory; after the request ends, none is left unless
 *    kept;
 *  - after a pass: every upload's file exists with the recorded size and
 *    its content appears in the body; multipart field values appear in
 *    the body; urlencoded gives one field per non-empty '&' piece, none
 *    longer than its piece; the limits are honoured;
 *  - a JSON body that passed with a JSON type has a parsed tree.
 * Uploads go to a private directory under /dev/shm (else /tmp), removed
 * at exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/body.h>

#include "fake_http.h"

static char dir[64];

static void remove_dir(void) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
      if (e->d_name[0] != '.') {
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
      }
    closedir(d);
  }
  rmdir(dir);
}

static void make_dir(void) {
  snprintf(dir, sizeof dir, "%s/talon-fuzz-XXXXXX",
           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
  if (!mkdtemp(dir))
    abort();
  atexit(remove_dir);
}

static size_t files_in_dir(void) {
  DIR *d = opendir(dir);
  if (!d)
    abort();
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static bool in_body(tl_slice body, const char *p, size_t n) {
  return n == 0 || memmem(body.ptr, body.len, p, n) != NULL;
}

static bool read_file_in_body(const char *path, uint64_t size, tl_slice body) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return false;
  char *buf = malloc(size ? size : 1);
  if (!buf)
    abort();
  bool ok = fread(buf, 1, size, f) == size && fgetc(f) == EOF &&
            in_body(body, buf, size);
  free(buf);
  fclose(f);
  return ok;
}

static void check_answer(int rc, tl_res *res) {
  if (rc == TL_NEXT)
    return;
  if (rc == TL_ENOMEM)
    return; /* allocator_may_return_null: a failed malloc */
  if (rc != TL_DONE || !fake_res_finished(res))
    abort();
  int st = fake_res_status(res);
  if (st != 400 && st != 413 && st != 415 && st != 500)
    abort();
}

static void check_multipart(tl_req *req, const tl_body_multipart_options *o,
                            bool keep_first, char **kept) {
  tl_slice body = tl_req_body(req);
  size_t nf = tl_req_file_count(req);
  if (nf > o->max_files)
    abort();
  uint64_t total = 0;
  for (size_t i = 0; i < nf; i++) {
    const tl_upload *u = tl_req_file_at(req, i);
    struct stat st;
    if (!u || !u->field || !u->filename || !u->content_type || !u->path ||
        stat(u->path, &st) != 0 || (uint64_t)st.st_size != u->size ||
        u->size > o->max_file_bytes || (st.st_mode & 077) != 0)
      abort();
    if (strchr(u->filename, '/') || strchr(u->filename, '\\') ||
        strcmp(u->filename, ".") == 0 || strcmp(u->filename, "..") == 0)
      abort();
    for (const char *c = u->filename; *c; c++)
      if ((unsigned char)*c < 0x20 || *c == 0x7f)
        abort();
    if (!read_file_in_body(u->path, u->size, body))
      abort();
    if (tl_req_file(req, u->field) == NULL)
      abort();
    total += u->size;
  }
  size_t nfield = tl_req_form_count(req, NULL);
  if (nfield > o->max_fields)
    abort();
  for (size_t i = 0; i < nfield; i++) {
    tl_slice n, v;
    if (tl_req_form_field(req, i, &n, &v) != 0 || n.ptr[n.len] != '\0' ||
        v.ptr[v.len] != '\0' || !in_body(body, v.ptr, v.len))
      abort();
    if (tl_req_form(req, n.ptr) == NULL)
      abort();
    total += v.len;
  }
  if (total > o->max_total_bytes)
    abort();
  if (tl_req_form_field(req, nfield, NULL, NULL) != TL_ENOENT ||
      tl_req_file_at(req, nf) != NULL)
    abort();
  if (keep_first && nf) {
    const tl_upload *u = tl_req_file_at(req, 0);
    if (tl_upload_keep(req, u) != 0)
      abort();
    *kept = strdup(u->path);
  }
}

static void check_urlencoded(tl_req *req, unsigned max_fields) {
  tl_slice body = tl_req_body(req);
  size_t pieces = 0;
  for (size_t i = 0; i < body.len;) {
    const char *amp = memchr(body.ptr + i, '&', body.len - i);
    size_t e = amp ? (size_t)(amp - body.ptr) : body.len;
    pieces += e > i;
    i = e + 1;
  }
  size_t n = tl_req_form_count(req, NULL);
  if (n != pieces || n > max_fields)
    abort();
  for (size_t i = 0; i < n; i++) {
    tl_slice k, v;
    if (tl_req_form_field(req, i, &k, &v) != 0 || k.ptr[k.len] != '\0' ||
        v.ptr[v.len] != '\0' || k.len + v.len > body.len)
      abort();
  }
}

static bool is_type(const char *ct, const char *mt) {
  size_t n = strlen(mt);
  while (*ct == ' ' || *ct == '\t')
    ct++;
  return strncasecmp(ct, mt, n) == 0 &&
         (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0])
    make_dir();
  if (size < 1)
    return 0;
  uint8_t flags = data[0];
  data++;
  size--;
  const uint8_t *nl = memchr(data, '\n', size);
  size_t ctl = nl ? (size_t)(nl - data) : size;
  size_t off = nl ? ctl + 1 : size;

  bool small = flags & 4;
  tl_body_multipart_options mo = {.dir = dir, .require = flags & 8};
  if (small) {
    mo.max_file_bytes = 64;
    mo.max_files = 2;
    mo.max_fields = 3;
    mo.max_total_bytes = 160;
  }
  tl_body_urlencoded_options uo = {.require = flags & 8};
  if (small) {
    uo.max_bytes = 100;
    uo.max_fields = 4;
  }
  tl_body_json_options jo = {.require = flags & 8,
                             .reject_duplicates = flags & 16};
  if (small) {
    jo.max_bytes = 200;
    jo.max_depth = 4;
  }
  tl_middleware chain[3];
  size_t n = 0;
  int which = flags & 3;
  if (which == 0 || which == 3)
    chain[n++] = tl_body_multipart(&mo);
  if (which == 1 || which == 3)
    chain[n++] = tl_body_urlencoded(&uo);
  if (which == 2 || which == 3)
    chain[n++] = tl_body_json(&jo);
  /* The defaults the checks compare with. */
  tl_body_multipart_options eff = {
      .max_file_bytes = small ? 64 : 10 << 20,
      .max_files = small ? 2 : 16,
      .max_fields = small ? 3 : 1000,
      .max_total_bytes = small ? 160 : 50 << 20};

  tl_req *req = fake_req_new();
  fake_req_add_header(req, "Content-Type", (const char *)data, ctl);
  fake_req_set_body(req, data + off, size - off);
  const char *ct = tl_req_header(req, "Content-Type");
  tl_res *res = fake_req_res(req);
  char *kept = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!chain[i].fn)
      abort();
    int rc = chain[i].fn(req, res, chain[i].ctx);
    check_answer(rc, res);
    if (rc != TL_NEXT) {
      /* The multipart parser removes its files before it answers; files
       * it accepted earlier in the chain stay until the request ends. */
      if (strcmp(chain[i].name, "body_multipart") == 0 && files_in_dir() != 0)
        abort();
      break;
    }
    if (size - off == 0)
      continue;
    if (strcmp(chain[i].name, "body_multipart") == 0 &&
        is_type(ct, "multipart/form-data"))
      check_multipart(req, &eff, flags & 32, &kept);
    if (strcmp(chain[i].name, "body_urlencoded") == 0 &&
        is_type(ct, "application/x-www-form-urlencoded"))
      check_urlencoded(req, small ? 4 : 1000);
    if (strcmp(chain[i].name, "body_json") == 0 &&
        is_type(ct, "application/json") && !tl_req_json(req))
      abort();
  }
  fake_req_end(req);
  if (kept) {
    if (access(kept, F_OK) != 0)
      abort(); /* a kept upload survives the request */
    unlink(kept);
    free(kept);
  }
  if (files_in_dir() != 0)
    abort(); /* every other upload is removed when the request ends */
  for (size_t i = 0; i < n; i++)
    chain[i].free(chain[i].ctx);
  return 0;
}
