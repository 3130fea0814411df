/* talon — request body parsers (contract in include/talon/mw/body.h).
 *
 * JSON and URL-encoded forms work on the body talon has buffered
 * (tl_req_body). Multipart is incremental: on a streamed route it reads
 * the body as it arrives (tl_req_body_stream) and writes files as their
 * bytes come; on a buffered one it is fed the whole body at once.
 *
 * Parsed data is request-scoped: strings go into the request arena
 * (tl_req_alloc), the field and upload arrays into a malloc'd store hung
 * on the request with tl_req_set, whose free function runs when the
 * request ends. Temporary files are removed by a finish hook (so they are
 * gone when the client has its answer) and, as a fallback, by the store's
 * free function. */
#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/body.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORM_KEY "talon.body.form"
#define JSON_KEY "talon.body.json"

#define MiB (1024 * 1024)
#define PART_HEADERS_MAX 8192
#define JANSSON_MAX_DEPTH 2048

/* ---- the per-request store ------------------------------------------ */

typedef struct form_field {
  tl_slice name, value;
} form_field;

typedef struct upload_rec {
  tl_upload pub;
  bool keep;
  bool removed;
} upload_rec;

typedef struct store {
  form_field *f;
  size_t nf, capf;
  upload_rec *u;
  size_t nu, capu;
  bool hooked; /* finish hook registered */
} store;

static void remove_files(store *s) {
  for (size_t i = 0; i < s->nu; i++) {
    upload_rec *u = &s->u[i];
    if (!u->keep && !u->removed && u->pub.path)
      unlink(u->pub.path);
    u->removed = true;
  }
}

static void store_free(void *p) {
  store *s = p;
  remove_files(s);
  free(s->f);
  free(s->u);
  free(s);
}

static void store_on_finish(tl_res *res, void *arg) {
  remove_files(arg);
}

static store *get_store(const tl_req *req) {
  return tl_req_get(req, FORM_KEY);
}

static store *make_store(tl_req *req) {
  store *s = get_store(req);
  if (s)
    return s;
  s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  if (tl_req_set(req, FORM_KEY, s, store_free)) {
    free(s);
    return NULL;
  }
  return s;
}

static int add_field(store *s, const char *name, size_t nlen, const char *value,
                     size_t vlen) {
  if (s->nf == s->capf) {
    size_t cap = s->capf ? s->capf * 2 : 16;
    form_field *f = realloc(s->f, cap * sizeof *f);
    if (!f)
      return TL_ENOMEM;
    s->f = f;
    s->capf = cap;
  }
  s->f[s->nf++] = (form_field){{name, nlen}, {value, vlen}};
  return 0;
}

/* A NUL-terminated arena copy. */
static char *req_strndup(tl_req *req, const char *p, size_t n) {
  char *d = tl_req_alloc(req, n + 1);
  if (d) {
    memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

/* ---- responses ------------------------------------------------------- */

/* The application's answer to refusals (the `error` option), if any. */
typedef struct err_hook {
  tl_body_error_fn fn;
  void *arg;
} err_hook;

/* Answers a refusal: with the application's hook when there is one (it
 * gets the message without its newline), else as short text. Once the
 * hook has answered, `res` may already serve the next pipelined request,
 * so nothing here looks at it again; a hook that did not answer leaves
 * the chain's TL_DONE rule to send the status with an empty body. */
static int fail(const err_hook *h, tl_res *res, int status, const char *msg) {
  tl_res_status(res, status);
  tl_res_header(res, "X-Content-Type-Options", "nosniff");
  if (h->fn) {
    char line[320];
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
      n--;
    if (n >= sizeof line)
      n = sizeof line - 1;
    memcpy(line, msg, n);
    line[n] = '\0';
    h->fn(tl_res_req(res), res, status, line, h->arg);
    return TL_DONE;
  }
  tl_res_text(res, msg);
  return TL_DONE;
}

/* ---- Content-Type ---------------------------------------------------- */

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

/* Whether the media type of the Content-Type `ct` (NULL: none) is
 * `type`, ignoring case. */
static bool media_type_is(const char *ct, const char *type) {
  tl_slice mt = tl_media_type(ct);
  return tl_str_ieq(mt.ptr, mt.len, type);
}

/* Parameter `name` of a header value of the form `x; a=b; c="d"` (the
 * part before the first ';' is skipped). The value, unquoted and
 * unescaped, goes into `out` (at most `size`-1 bytes). Returns 1 if found,
 * 0 if absent, -1 if the parameters are malformed (unterminated quote, no
 * '=', value too long). */
static int header_param(const char *v, const char *name, char *out,
                        size_t size) {
  const char *p = strchr(v, ';');
  int found = 0;
  while (p && *p == ';') {
    p = skip_ws(p + 1);
    if (!*p)
      break; /* a trailing ';' */
    const char *k = p;
    while (tl_is_tchar((unsigned char)*p))
      p++;
    size_t klen = (size_t)(p - k);
    p = skip_ws(p);
    if (!klen || *p != '=')
      return -1;
    p = skip_ws(p + 1);
    bool match = !found && tl_str_ieq(k, klen, name);
    size_t o = 0;
    if (*p == '"') {
      p++;
      while (*p && *p != '"') {
        char c = *p++;
        /* A backslash escapes only '"' and '\': Windows browsers have
         * sent raw backslashes in paths. */
        if (c == '\\' && (*p == '"' || *p == '\\'))
          c = *p++;
        if (match) {
          if (o + 1 >= size)
            return -1;
          out[o++] = c;
        }
      }
      if (*p != '"')
        return -1;
      p++;
    } else {
      const char *s = p;
      while (tl_is_tchar((unsigned char)*p))
        p++;
      if (p == s)
        return -1;
      if (match) {
        if ((size_t)(p - s) >= size)
          return -1;
        memcpy(out, s, (size_t)(p - s));
        o = (size_t)(p - s);
      }
    }
    if (match) {
      out[o] = '\0';
      found = 1;
    }
    p = skip_ws(p);
    if (*p && *p != ';')
      return -1;
  }
  return found;
}

/* ---- JSON ------------------------------------------------------------ */

typedef struct json_ctx {
  size_t max_bytes;
  unsigned max_depth;
  int require;
  int reject_duplicates;
  err_hook err;
} json_ctx;

/* application/json or application/<something>+json. */
static bool is_json_type(const char *ct) {
  tl_slice mt = tl_media_type(ct);
  const char *p = mt.ptr;
  size_t n = mt.len;
  if (tl_str_ieq(p, n, "application/json"))
    return true;
  return n > 17 && tl_str_ieq(p, 12, "application/") &&
         tl_str_ieq(p + n - 5, 5, "+json");
}

/* Whether arrays/objects nest deeper than `max` (a scan that only tracks
 * strings, so it is cheap and runs before jansson recurses). */
static bool too_deep(const char *p, size_t n, unsigned max) {
  unsigned depth = 0;
  bool in_str = false;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max)
        return true;
    } else if ((c == ']' || c == '}') && depth) {
      depth--;
    }
  }
  return false;
}

static void json_free(void *p) {
  json_decref(p);
}

static int json_fn(tl_req *req, tl_res *res, void *ctx) {
  json_ctx *c = ctx;
  tl_slice body = tl_req_body(req);
  if (!body.len)
    return TL_NEXT;
  const char *ct = tl_req_header(req, "Content-Type");
  if (!is_json_type(ct))
    return c->require ? fail(&c->err, res, 415, "expected a JSON body\n")
                      : TL_NEXT;
  char cs[32];
  if (header_param(ct, "charset", cs, sizeof cs) == 1 &&
      strcasecmp(cs, "utf-8") != 0 && strcasecmp(cs, "utf8") != 0)
    return fail(&c->err, res, 415, "JSON must be UTF-8\n");
  if (body.len > c->max_bytes)
    return fail(&c->err, res, 413, "JSON body too large\n");
  if (too_deep(body.ptr, body.len, c->max_depth))
    return fail(&c->err, res, 400, "invalid JSON: nesting too deep\n");
  json_error_t err;
  size_t flags = JSON_DECODE_ANY;
  if (c->reject_duplicates)
    flags |= JSON_REJECT_DUPLICATES;
  json_t *root = json_loadb(body.ptr, body.len, flags, &err);
  if (!root) {
    char msg[300];
    snprintf(msg, sizeof msg,
             "invalid JSON: %s at line %d, column %d (byte %d)\n", err.text,
             err.line, err.column, err.position);
    return fail(&c->err, res, 400, msg);
  }
  if (tl_req_set(req, JSON_KEY, root, json_free)) {
    json_decref(root);
    return TL_ENOMEM;
  }
  return TL_NEXT;
}

tl_middleware tl_body_json(const tl_body_json_options *opts) {
  tl_middleware mw = {
      .fn = NULL, .ctx = NULL, .free = free, .name = "body_json"};
  json_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  tl_body_json_options o = {0};
  if (opts)
    o = *opts;
  c->max_bytes = o.max_bytes ? o.max_bytes : MiB;
  c->max_depth = o.max_depth ? o.max_depth : 64;
  if (c->max_depth > JANSSON_MAX_DEPTH)
    c->max_depth = JANSSON_MAX_DEPTH;
  c->require = o.require;
  c->reject_duplicates = o.reject_duplicates;
  c->err = (err_hook){o.error, o.error_arg};
  mw.fn = json_fn;
  mw.ctx = c;
  return mw;
}

json_t *tl_req_json(const tl_req *req) {
  return tl_req_get(req, JSON_KEY);
}

/* ---- application/x-www-form-urlencoded ------------------------------ */

typedef struct urlenc_ctx {
  size_t max_bytes;
  unsigned max_fields;
  int require;
  err_hook err;
} urlenc_ctx;

/* Form-decodes `in` ('+' is a space; a bad % escape stays as it is) into
 * *out, NUL-terminated, and moves *out past it; `len` gets the decoded
 * length. Decoding never grows the text, so the room is always there. */
static char *take_decoded(char **out, tl_slice in, size_t *len) {
  char *s = *out;
  tl_pct_decode(s, in.len + 1, in.ptr, in.len, TL_PCT_FORM, len);
  *out += *len + 1;
  return s;
}

static int urlenc_fn(tl_req *req, tl_res *res, void *ctx) {
  urlenc_ctx *c = ctx;
  tl_slice body = tl_req_body(req);
  if (!body.len)
    return TL_NEXT;
  if (!media_type_is(tl_req_header(req, "Content-Type"),
                     "application/x-www-form-urlencoded"))
    return c->require ? fail(&c->err, res, 415, "expected a URL-encoded form\n")
                      : TL_NEXT;
  if (body.len > c->max_bytes)
    return fail(&c->err, res, 413, "form too large\n");
  size_t npairs = 0, pos = 0;
  tl_slice k, v;
  while (tl_form_next(body.ptr, body.len, &pos, &k, &v))
    npairs++;
  if (npairs > c->max_fields)
    return fail(&c->err, res, 413, "too many form fields\n");
  store *s = make_store(req);
  /* Decoded names and values never outgrow their encoded form; each pair
   * needs two NULs more than its bytes. */
  char *out = s ? tl_req_alloc(req, body.len + 2 * npairs + 1) : NULL;
  if (!out)
    return TL_ENOMEM;
  pos = 0;
  while (tl_form_next(body.ptr, body.len, &pos, &k, &v)) {
    size_t nl, vl;
    char *name = take_decoded(&out, k, &nl);
    char *value = take_decoded(&out, v, &vl);
    if (add_field(s, name, nl, value, vl))
      return TL_ENOMEM;
  }
  return TL_NEXT;
}

tl_middleware tl_body_urlencoded(const tl_body_urlencoded_options *opts) {
  tl_middleware mw = {
      .fn = NULL, .ctx = NULL, .free = free, .name = "body_urlencoded"};
  urlenc_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  tl_body_urlencoded_options o = {0};
  if (opts)
    o = *opts;
  c->max_bytes = o.max_bytes ? o.max_bytes : MiB;
  c->max_fields = o.max_fields ? o.max_fields : 1000;
  c->require = o.require;
  c->err = (err_hook){o.error, o.error_arg};
  mw.fn = urlenc_fn;
  mw.ctx = c;
  return mw;
}

const char *tl_req_form(const tl_req *req, const char *name) {
  return tl_req_form_at(req, name, 0);
}

size_t tl_req_form_count(const tl_req *req, const char *name) {
  store *s = get_store(req);
  if (!s)
    return 0;
  if (!name)
    return s->nf;
  size_t n = 0;
  for (size_t i = 0; i < s->nf; i++)
    if (strcmp(s->f[i].name.ptr, name) == 0)
      n++;
  return n;
}

const char *tl_req_form_at(const tl_req *req, const char *name, size_t index) {
  store *s = get_store(req);
  if (!s || !name)
    return NULL;
  for (size_t i = 0; i < s->nf; i++)
    if (strcmp(s->f[i].name.ptr, name) == 0 && index-- == 0)
      return s->f[i].value.ptr;
  return NULL;
}

int tl_req_form_field(const tl_req *req, size_t i, tl_slice *name,
                      tl_slice *value) {
  store *s = get_store(req);
  if (!s || i >= s->nf)
    return TL_ENOENT;
  if (name)
    *name = s->f[i].name;
  if (value)
    *value = s->f[i].value;
  return 0;
}

/* ---- multipart/form-data -------------------------------------------- */

typedef struct mp_ctx {
  char *dir;
  uint64_t max_file_bytes;
  unsigned max_files;
  unsigned max_fields;
  uint64_t max_total_bytes;
  int require;
  err_hook err;
} mp_ctx;

static void mp_free(void *p) {
  mp_ctx *c = p;
  if (c)
    free(c->dir);
  free(c);
}

/* The client's file name without directories or control bytes. */
static char *sanitize_filename(tl_req *req, const char *name) {
  const char *base = name;
  for (const char *p = name; *p; p++)
    if (*p == '/' || *p == '\\')
      base = p + 1;
  size_t n = strlen(base);
  char *out = tl_req_alloc(req, n + 1);
  if (!out)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)base[i];
    if (c >= 0x20 && c != 0x7f)
      out[o++] = (char)c;
  }
  out[o] = '\0';
  if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
    out[0] = '\0';
  return out;
}

typedef struct part {
  char name[512];
  char filename[1024];
  char ctype[256];
  bool has_filename;
  bool has_disposition;
} part;

/* Parses the header block [p, end) of one part (CRLF-separated lines).
 * Returns 0 or -1 if malformed. */
static int parse_part_headers(const char *p, const char *end, part *pt) {
  char line[PART_HEADERS_MAX + 1];
  memset(pt, 0, sizeof *pt);
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!eol)
      eol = end;
    size_t n = (size_t)(eol - p);
    if (n > PART_HEADERS_MAX || memchr(p, '\0', n) || memchr(p, '\n', n) ||
        memchr(p, '\r', n))
      return -1; /* bare CR/LF or NUL: header smuggling */
    memcpy(line, p, n);
    line[n] = '\0';
    p = eol + 2;
    char *colon = strchr(line, ':');
    if (!colon || colon == line)
      return -1;
    if (!tl_is_token(line, (size_t)(colon - line)))
      return -1; /* also rejects obs-fold continuation lines */
    *colon = '\0';
    const char *v = skip_ws(colon + 1);
    size_t vl = strlen(v);
    while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
      vl--;
    ((char *)v)[vl] = '\0';
    if (strcasecmp(line, "Content-Disposition") == 0) {
      if (pt->has_disposition)
        return -1;
      pt->has_disposition = true;
      if (!tl_str_ieq(v, strcspn(v, "; \t"), "form-data"))
        return -1;
      if (header_param(v, "name", pt->name, sizeof pt->name) != 1)
        return -1;
      int r = header_param(v, "filename", pt->filename, sizeof pt->filename);
      if (r < 0)
        return -1;
      pt->has_filename = r == 1;
    } else if (strcasecmp(line, "Content-Type") == 0) {
      if (vl >= sizeof pt->ctype)
        return -1;
      memcpy(pt->ctype, v, vl + 1);
    }
  }
  return pt->has_disposition ? 0 : -1;
}

/* Room for one more upload, made before its file exists so that a failed
 * allocation cannot leave an unrecorded file behind. */
static int reserve_upload(store *s) {
  if (s->nu < s->capu)
    return 0;
  size_t cap = s->capu ? s->capu * 2 : 4;
  upload_rec *u = realloc(s->u, cap * sizeof *u);
  if (!u)
    return TL_ENOMEM;
  s->u = u;
  s->capu = cap;
  return 0;
}

static int add_upload(store *s, tl_req *req, const part *pt, const char *path,
                      uint64_t size) {
  upload_rec *u = &s->u[s->nu];
  memset(u, 0, sizeof *u);
  u->pub.path = path;
  s->nu++; /* counted now, so the file is removed on any later error */
  u->pub.field = req_strndup(req, pt->name, strlen(pt->name));
  u->pub.filename = sanitize_filename(req, pt->filename);
  u->pub.content_type = pt->ctype[0]
                            ? req_strndup(req, pt->ctype, strlen(pt->ctype))
                            : "application/octet-stream";
  u->pub.size = size;
  if (!u->pub.field || !u->pub.filename || !u->pub.content_type)
    return TL_ENOMEM;
  return 0;
}

/* The parser is incremental: it is fed the body in pieces as they
 * arrive (a streamed route, through tl_req_body_stream) or all at once (a
 * buffered body), and writes each file part to its file as its bytes
 * come. Bytes it cannot decide on yet (a part's head, what may be the
 * start of a delimiter) wait in `buf`, at most a part head's worth. */
enum { MP_PRE, MP_DELIM_END, MP_HEADERS, MP_BODY, MP_DONE };

typedef struct mp_state {
  mp_ctx *c;
  store *s;
  tl_req *req;
  tl_res *res;
  char delim[80]; /* "\r\n--" boundary */
  size_t dl;
  char tmpl[4200];
  size_t tn;
  int st;
  char *buf; /* undecided bytes */
  size_t len, cap;
  bool started; /* past the body's first bytes */
  part pt;
  int fd;          /* the file part being written, or -1 */
  size_t upload;   /* its index in the store */
  bool file_part;  /* the current part is a file */
  uint64_t part_bytes;
  char *field; /* a field's value so far */
  size_t field_len, field_cap;
  unsigned nfiles, nfields;
  uint64_t total;
  int status; /* 0, or the HTTP status of a refusal (with msg) */
  const char *msg;
  bool answered;
} mp_state;

static int mp_refuse(mp_state *m, int status, const char *msg) {
  m->status = status;
  m->msg = msg;
  return -1;
}

static void mp_close_file(mp_state *m) {
  if (m->fd >= 0)
    close(m->fd);
  m->fd = -1;
}

static void mp_state_free(void *p) {
  mp_state *m = p;
  mp_close_file(m);
  free(m->buf);
  free(m->field);
  free(m);
}

/* Creates the file of the current part, recorded in the store at once so
 * that any later error, or the client leaving, removes it. */
static int mp_open_file(mp_state *m) {
  if (++m->nfiles > m->c->max_files)
    return mp_refuse(m, 413, "multipart: too many files\n");
  char *path = tl_req_alloc(m->req, m->tn + 1);
  if (!path || reserve_upload(m->s))
    return mp_refuse(m, 500, NULL);
  if (!m->s->hooked) /* removal at finish; the store's free is the fallback */
    m->s->hooked = tl_res_on_finish(m->res, store_on_finish, m->s) == 0;
  memcpy(path, m->tmpl, m->tn + 1);
  m->fd = mkostemp(path, O_CLOEXEC);
  if (m->fd < 0)
    return mp_refuse(m, 500, "multipart: cannot store the upload\n");
  fchmod(m->fd, 0600); /* mkstemp's mode already; whatever the umask */
  m->upload = m->s->nu;
  if (add_upload(m->s, m->req, &m->pt, path, 0))
    return mp_refuse(m, 500, NULL);
  return 0;
}

/* Content bytes of the current part. */
static int mp_content(mp_state *m, const char *p, size_t n) {
  if (n == 0)
    return 0;
  m->part_bytes += n;
  m->total += n;
  if (m->file_part) {
    if (m->fd < 0 && m->part_bytes == n && mp_open_file(m))
      return -1;
    if (m->part_bytes > m->c->max_file_bytes)
      return mp_refuse(m, 413, "multipart: file too large\n");
  }
  if (m->total > m->c->max_total_bytes)
    return mp_refuse(m, 413, "multipart: form too large\n");
  if (!m->file_part) {
    if (m->field_len + n > m->field_cap) {
      size_t cap = m->field_cap ? m->field_cap : 256;
      while (cap < m->field_len + n)
        cap *= 2;
      char *f = realloc(m->field, cap);
      if (!f)
        return mp_refuse(m, 500, NULL);
      m->field = f;
      m->field_cap = cap;
    }
    memcpy(m->field + m->field_len, p, n);
    m->field_len += n;
    return 0;
  }
  while (n > 0) {
    ssize_t w = write(m->fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return mp_refuse(m, 500, "multipart: cannot store the upload\n");
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int mp_part_begin(mp_state *m, const char *p, const char *hend) {
  if (parse_part_headers(p, hend, &m->pt))
    return mp_refuse(m, 400, "multipart: bad part headers\n");
  m->file_part = m->pt.has_filename;
  m->part_bytes = 0;
  m->field_len = 0;
  if (!m->file_part && ++m->nfields > m->c->max_fields)
    return mp_refuse(m, 413, "multipart: too many fields\n");
  return 0;
}

static int mp_part_end(mp_state *m) {
  if (!m->file_part) {
    const char *name = req_strndup(m->req, m->pt.name, strlen(m->pt.name));
    char *value = req_strndup(m->req, m->field ? m->field : "", m->field_len);
    if (!name || !value ||
        add_field(m->s, name, strlen(name), value, m->field_len))
      return mp_refuse(m, 500, NULL);
    return 0;
  }
  if (m->fd < 0) {
    if (!m->pt.filename[0])
      return 0; /* an empty file input */
    if (mp_open_file(m))
      return -1;
  }
  m->s->u[m->upload].pub.size = m->part_bytes;
  if (close(m->fd)) {
    m->fd = -1;
    return mp_refuse(m, 500, "multipart: cannot store the upload\n");
  }
  m->fd = -1;
  return 0;
}

/* Parses [p, p+n); returns the bytes consumed (the rest must be offered
 * again with more), or -1 with m->status set. `final`: nothing follows. */
static ptrdiff_t mp_run(mp_state *m, const char *p, size_t n, bool final) {
  const char *start = p, *end = p + n;
  size_t dl = m->dl;
  for (;;) {
    size_t left = (size_t)(end - p);
    switch (m->st) {
    case MP_PRE: {
      if (!m->started) {
        /* The first delimiter may start the body (no CRLF before it). */
        if (left < dl - 2 && !final && memcmp(p, m->delim + 2, left) == 0)
          return p - start; /* could still be the opening delimiter */
        m->started = true;
        if (left >= dl - 2 && memcmp(p, m->delim + 2, dl - 2) == 0) {
          p += dl - 2;
          m->st = MP_DELIM_END;
          continue;
        }
      }
      const char *d = memmem(p, left, m->delim, dl);
      if (d) {
        p = d + dl;
        m->st = MP_DELIM_END;
        continue;
      }
      if (final)
        return mp_refuse(m, 400, "multipart: boundary not found\n");
      /* The preamble is ignored; keep what may start a delimiter. */
      return left > dl ? (ptrdiff_t)(left - (dl - 1)) + (p - start)
                       : p - start;
    }
    case MP_DELIM_END:
      /* After a delimiter: "--" closes, else optional padding and CRLF. */
      if (left >= 2 && p[0] == '-' && p[1] == '-') {
        m->st = MP_DONE;
        continue;
      }
      while (p < end && (*p == ' ' || *p == '\t'))
        p++;
      left = (size_t)(end - p);
      if (left >= 2 && p[0] == '\r' && p[1] == '\n') {
        p += 2;
        m->st = MP_HEADERS;
        continue;
      }
      if (left == 0 || (left == 1 && (*p == '\r' || *p == '-'))) {
        if (final)
          return mp_refuse(m, 400, "multipart: missing closing boundary\n");
        return p - start;
      }
      return mp_refuse(m, 400, "multipart: bad boundary line\n");
    case MP_HEADERS: {
      /* Part headers end at an empty line; "\r\n" right away means none. */
      const char *hend = NULL;
      size_t skip = 4;
      if (left >= 2 && p[0] == '\r' && p[1] == '\n') {
        hend = p;
        skip = 2;
      } else if (left >= 2 || final) {
        size_t room = left < PART_HEADERS_MAX + 4 ? left : PART_HEADERS_MAX + 4;
        hend = memmem(p, room, "\r\n\r\n", 4);
        if (!hend && (final || left >= PART_HEADERS_MAX + 4))
          return mp_refuse(
              m, 400, "multipart: part headers too long or unterminated\n");
      }
      if (!hend)
        return p - start;
      if (mp_part_begin(m, p, hend))
        return -1;
      p = hend + skip;
      m->st = MP_BODY;
      continue;
    }
    case MP_BODY: {
      const char *d = memmem(p, left, m->delim, dl);
      if (d) {
        if (mp_content(m, p, (size_t)(d - p)) || mp_part_end(m))
          return -1;
        p = d + dl;
        m->st = MP_DELIM_END;
        continue;
      }
      if (final)
        return mp_refuse(m, 400, "multipart: missing closing boundary\n");
      /* All but what may be the start of a delimiter. */
      size_t sure = left >= dl ? left - (dl - 1) : 0;
      if (mp_content(m, p, sure))
        return -1;
      return (p + sure) - start;
    }
    default: /* MP_DONE: the epilogue is ignored */
      return (ptrdiff_t)n;
    }
  }
}

/* Room for `n` more bytes in m->buf, which is kept across pieces (a
 * streamed body would otherwise cost an allocation per read). */
static int mp_reserve(mp_state *m, size_t n) {
  if (m->len + n <= m->cap)
    return 0;
  size_t cap = m->cap ? m->cap : 16384;
  while (cap < m->len + n)
    cap *= 2;
  char *b = realloc(m->buf, cap);
  if (!b)
    return mp_refuse(m, 500, NULL);
  m->buf = b;
  m->cap = cap;
  return 0;
}

/* Feeds `n` bytes: straight from `p` when nothing waits, else after what
 * waits. Returns 0 or -1 (m->status). */
static int mp_feed(mp_state *m, const char *p, size_t n, bool final) {
  if (m->len == 0) {
    ptrdiff_t used = mp_run(m, p, n, final);
    if (used < 0)
      return -1;
    p += used;
    n -= (size_t)used;
    if (n == 0)
      return 0;
    /* Kept for the next piece (at most a part head's worth). */
    if (mp_reserve(m, n))
      return -1;
    memcpy(m->buf, p, n);
    m->len = n;
    return 0;
  }
  if (mp_reserve(m, n))
    return -1;
  if (n)
    memcpy(m->buf + m->len, p, n);
  m->len += n;
  ptrdiff_t used = mp_run(m, m->buf, m->len, final);
  if (used < 0)
    return -1;
  m->len -= (size_t)used;
  memmove(m->buf, m->buf + used, m->len);
  return 0;
}

/* A refusal: every file of the request goes, then the answer. */
static int mp_fail(mp_state *m) {
  mp_close_file(m);
  remove_files(m->s);
  m->answered = true;
  if (!m->msg)
    return TL_ENOMEM;
  return fail(&m->c->err, m->res, m->status, m->msg);
}

static int mp_on_data(tl_req *req, tl_res *res, const void *data, size_t len,
                      void *arg) {
  mp_state *m = arg;
  if (!m->answered && mp_feed(m, data, len, false)) {
    if (mp_fail(m) == TL_ENOMEM) {
      tl_res_status(res, 500);
      tl_res_text(res, "Internal Server Error\n");
    }
  }
  return TL_BODY_NEXT;
}

static void mp_on_end(tl_req *req, tl_res *res, int err, void *arg) {
  mp_state *m = arg;
  if (m->answered)
    return;
  if (err) {
    /* Cut short (too large, malformed, timed out, or the client left):
     * nothing of it stays. talon answers unless this does. */
    mp_close_file(m);
    remove_files(m->s);
    if (err == TL_ETOOBIG)
      fail(&m->c->err, res, 413, "multipart: body too large\n");
    return;
  }
  if (mp_feed(m, NULL, 0, true)) {
    if (mp_fail(m) == TL_ENOMEM) {
      tl_res_status(res, 500);
      tl_res_text(res, "Internal Server Error\n");
    }
    return;
  }
  tl_next(req, res);
}

static int mp_fn(tl_req *req, tl_res *res, void *ctx) {
  mp_ctx *c = ctx;
  tl_slice body = tl_req_body(req);
  bool streamed = tl_req_body_pending(req);
  if (!body.len && !streamed)
    return TL_NEXT;
  const char *ct = tl_req_header(req, "Content-Type");
  if (!media_type_is(ct, "multipart/form-data"))
    return c->require
               ? fail(&c->err, res, 415, "expected multipart/form-data\n")
               : TL_NEXT;
  char boundary[72];
  int r = header_param(ct, "boundary", boundary, sizeof boundary);
  size_t bl = r == 1 ? strlen(boundary) : 0;
  /* RFC 2046: 1 to 70 characters, not ending in a space. */
  if (r != 1 || bl < 1 || bl > 70 || boundary[bl - 1] == ' ')
    return fail(&c->err, res, 400, "multipart: missing or invalid boundary\n");
  store *s = make_store(req);
  mp_state *m = s ? calloc(1, sizeof *m) : NULL;
  if (!m)
    return TL_ENOMEM;
  if (tl_req_set(req, "talon.body.multipart", m, mp_state_free)) {
    free(m);
    return TL_ENOMEM;
  }
  m->c = c;
  m->s = s;
  m->req = req;
  m->res = res;
  m->fd = -1;
  m->dl = (size_t)snprintf(m->delim, sizeof m->delim, "\r\n--%s", boundary);
  int tn = snprintf(m->tmpl, sizeof m->tmpl, "%s/talon-upload-XXXXXX", c->dir);
  if (tn < 0 || (size_t)tn >= sizeof m->tmpl)
    return fail(&c->err, res, 500,
                "multipart: upload directory path too long\n");
  m->tn = (size_t)tn;
  if (streamed) {
    /* Parts go to their files as the body arrives; the chain goes on
     * (tl_next) once it has ended well. */
    int err = tl_req_body_stream(req, mp_on_data, mp_on_end, m);
    return err ? err : TL_PENDING;
  }
  if (mp_feed(m, body.ptr, body.len, true))
    return mp_fail(m);
  return TL_NEXT;
}

tl_middleware tl_body_multipart(const tl_body_multipart_options *opts) {
  tl_middleware mw = {
      .fn = NULL, .ctx = NULL, .free = mp_free, .name = "body_multipart"};
  mp_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  tl_body_multipart_options o = {0};
  if (opts)
    o = *opts;
  c->dir = strdup(o.dir && *o.dir ? o.dir : "/tmp");
  if (!c->dir) {
    free(c);
    return mw;
  }
  size_t dl = strlen(c->dir);
  while (dl > 1 && c->dir[dl - 1] == '/')
    c->dir[--dl] = '\0';
  c->max_file_bytes = o.max_file_bytes ? o.max_file_bytes : 10 * (uint64_t)MiB;
  c->max_files = o.max_files ? o.max_files : 16;
  c->max_fields = o.max_fields ? o.max_fields : 1000;
  c->max_total_bytes =
      o.max_total_bytes ? o.max_total_bytes : 50 * (uint64_t)MiB;
  c->require = o.require;
  c->err = (err_hook){o.error, o.error_arg};
  mw.fn = mp_fn;
  mw.ctx = c;
  return mw;
}

size_t tl_req_file_count(const tl_req *req) {
  store *s = get_store(req);
  return s ? s->nu : 0;
}

const tl_upload *tl_req_file_at(const tl_req *req, size_t i) {
  store *s = get_store(req);
  return s && i < s->nu ? &s->u[i].pub : NULL;
}

const tl_upload *tl_req_file(const tl_req *req, const char *field) {
  store *s = get_store(req);
  if (!s || !field)
    return NULL;
  for (size_t i = 0; i < s->nu; i++)
    if (strcmp(s->u[i].pub.field, field) == 0)
      return &s->u[i].pub;
  return NULL;
}

int tl_upload_keep(tl_req *req, const tl_upload *upload) {
  store *s = get_store(req);
  if (!s || !upload)
    return TL_EINVAL;
  for (size_t i = 0; i < s->nu; i++)
    if (&s->u[i].pub == upload) {
      s->u[i].keep = true;
      return 0;
    }
  return TL_EINVAL;
}
