/* Static file middleware. Written against the public headers only.
 *
 * Path safety, in order:
 *  1. The path is percent-decoded here from the raw target (not taken from
 *     tl_req_path), so a decoded NUL is seen and refused (400) instead of
 *     silently cutting the string.
 *  2. Segments are checked one by one: "" and "." are dropped (so "//x"
 *     is "/x"), ".." is refused (403), a backslash is refused (400), and a
 *     segment starting with '.' follows the dotfile policy.
 *  3. The file is reached by walking the segments with openat(O_PATH |
 *     O_NOFOLLOW) from the root, one component at a time, so no symlink is
 *     followed by accident. When the walk meets a symlink and the policy
 *     allows links inside the root, realpath() resolves the whole path, the
 *     result must lie under the realpath'd root, and the walk is redone on
 *     that symlink-free path (a link appearing in between is a miss).
 *  4. The descriptor found by the walk is what gets served: talon's
 *     tl_res_send_file_range() takes a path, so it is given
 *     /proc/self/fd/N, which reopens that very inode. Without /proc the
 *     checked path itself is passed (a small race window remains there).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/static.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

typedef struct mime_entry {
  char *ext;
  char *type;
} mime_entry;

typedef struct static_ctx {
  char *root; /* realpath'd, no trailing slash unless "/" */
  size_t root_len;
  char *prefix; /* "" or "/x" without trailing slash */
  size_t prefix_len;
  char *index;         /* NULL: disabled */
  char *cache_control; /* NULL: none */
  char *default_type;
  mime_entry *mime;
  size_t nmime;
  tl_static_dotfiles dotfiles;
  tl_static_symlinks symlinks;
  tl_static_etag etag;
  bool last_modified, precompressed, dir_redirect, fallthrough;
  bool have_proc;
  tl_static_headers_fn set_headers;
  void *set_headers_arg;
} static_ctx;

/* ---- MIME types -----------------------------------------------------------
 */

static const struct {
  const char *ext, *type;
} builtin_mime[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"cjs", "text/javascript; charset=utf-8"},
    {"json", "application/json; charset=utf-8"},
    {"map", "application/json; charset=utf-8"},
    {"webmanifest", "application/manifest+json; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml; charset=utf-8"},
    {"svg", "image/svg+xml; charset=utf-8"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"bmp", "image/bmp"},
    {"wasm", "application/wasm"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
};

/* The extension of the last segment of `path`, or NULL. */
static const char *path_ext(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  const char *dot = strrchr(base, '.');
  return dot && dot[1] ? dot + 1 : NULL;
}

const char *tl_static_mime_lookup(const char *path) {
  const char *ext = path ? path_ext(path) : NULL;
  if (!ext)
    return NULL;
  for (size_t i = 0; i < sizeof builtin_mime / sizeof builtin_mime[0]; i++)
    if (strcasecmp(ext, builtin_mime[i].ext) == 0)
      return builtin_mime[i].type;
  return NULL;
}

static const char *content_type(const static_ctx *c, const char *name) {
  const char *ext = path_ext(name);
  if (ext)
    for (size_t i = 0; i < c->nmime; i++)
      if (strcasecmp(ext, c->mime[i].ext) == 0)
        return c->mime[i].type;
  const char *t = tl_static_mime_lookup(name);
  return t ? t : c->default_type;
}

/* ---- construction -----------------------------------------------------------
 */

static void static_free(void *p) {
  static_ctx *c = p;
  if (!c)
    return;
  free(c->root);
  free(c->prefix);
  free(c->index);
  free(c->cache_control);
  free(c->default_type);
  for (size_t i = 0; i < c->nmime; i++) {
    free(c->mime[i].ext);
    free(c->mime[i].type);
  }
  free(c->mime);
  free(c);
}

static int static_mw(tl_req *req, tl_res *res, void *ctx);

/* strdup that treats NULL as "no string" and reports failure in *ok. */
static char *dup_or_null(const char *s, bool *ok) {
  if (!s)
    return NULL;
  char *d = strdup(s);
  if (!d)
    *ok = false;
  return d;
}

tl_middleware tl_static(const char *root, const tl_static_options *opts) {
  tl_middleware fail = {0};
  static const tl_static_options defaults;
  if (!opts)
    opts = &defaults;
  if (!root || !*root)
    return fail;
  const char *prefix = opts->prefix ? opts->prefix : "";
  if (*prefix && *prefix != '/')
    return fail;
  if ((unsigned)opts->dotfiles > TL_STATIC_DOTFILES_ALLOW ||
      (unsigned)opts->symlinks > TL_STATIC_SYMLINKS_DENY ||
      (unsigned)opts->etag > TL_STATIC_ETAG_OFF)
    return fail;

  static_ctx *c = calloc(1, sizeof *c);
  if (!c) {
    fail.error = TL_ENOMEM; /* tl_app_use reports it */
    return fail;
  }
  bool ok = true;
  c->root = realpath(root, NULL);
  struct stat st;
  if (!c->root || stat(c->root, &st) != 0 || !S_ISDIR(st.st_mode)) {
    static_free(c);
    return fail;
  }
  c->root_len = strlen(c->root);

  size_t plen = strlen(prefix);
  while (plen > 0 && prefix[plen - 1] == '/')
    plen--;
  c->prefix = strndup(prefix, plen);
  c->prefix_len = plen;
  if (!c->prefix)
    ok = false;

  const char *index = opts->index ? opts->index : "index.html";
  if (*index) {
    /* An index name is one plain file name. */
    if (strchr(index, '/') || strcmp(index, ".") == 0 ||
        strcmp(index, "..") == 0) {
      static_free(c);
      return fail;
    }
    c->index = dup_or_null(index, &ok);
  }

  if (opts->cache_control) {
    if (*opts->cache_control)
      c->cache_control = dup_or_null(opts->cache_control, &ok);
  } else {
    char cc[96];
    snprintf(cc, sizeof cc, "public, max-age=%u%s", opts->max_age,
             opts->immutable ? ", immutable" : "");
    c->cache_control = dup_or_null(cc, &ok);
  }
  c->default_type = dup_or_null(opts->default_type ? opts->default_type
                                                   : "application/octet-stream",
                                &ok);

  if (opts->mime_types) {
    size_t n = 0;
    while (opts->mime_types[n].ext)
      n++;
    if (n) {
      c->mime = calloc(n, sizeof *c->mime);
      if (!c->mime)
        ok = false;
      for (size_t i = 0; ok && i < n; i++) {
        const char *ext = opts->mime_types[i].ext;
        if (*ext == '.')
          ext++;
        c->mime[i].ext = dup_or_null(ext, &ok);
        c->mime[i].type =
            dup_or_null(opts->mime_types[i].type ? opts->mime_types[i].type
                                                 : "application/octet-stream",
                        &ok);
        c->nmime = i + 1;
      }
    }
  }
  if (!ok) {
    static_free(c);
    return fail;
  }

  c->dotfiles = opts->dotfiles;
  c->symlinks = opts->symlinks;
  c->etag = opts->etag;
  c->last_modified = !opts->no_last_modified;
  c->precompressed = !opts->no_precompressed;
  c->dir_redirect = !opts->no_dir_redirect;
  c->fallthrough = !opts->no_fallthrough;
  c->set_headers = opts->set_headers;
  c->set_headers_arg = opts->set_headers_arg;
  c->have_proc = access("/proc/self/fd", X_OK) == 0;

  tl_middleware mw = {
      .fn = static_mw, .ctx = c, .free = static_free, .name = "static"};
  return mw;
}

/* ---- small answers ----------------------------------------------------------
 */

static int answer(tl_res *res, int status, const char *text) {
  tl_res_status(res, status);
  int err = tl_res_text(res, text);
  return err && err != TL_ECLOSED ? err : TL_DONE;
}

static int miss(const static_ctx *c, tl_res *res) {
  return c->fallthrough ? TL_NEXT : answer(res, 404, "Not Found\n");
}

/* ---- path decoding and checks -----------------------------------------------
 */

enum {
  PATH_OK = 0,
  PATH_BAD = 1,       /* NUL or backslash: 400 */
  PATH_TRAVERSAL = 2, /* "..": 403 */
  PATH_DOTFILE = 3,   /* a segment starting with '.' */
  PATH_TOOLONG = 4    /* cannot exist: a miss */
};

/* Turns the decoded path `p` (length n) into `out`, the relative path
 * under the root: segments joined by '/', without "" and "." segments.
 * `out` has room for `size` bytes. */
static int normalize(const char *p, size_t n, char *out, size_t size,
                     size_t *out_len) {
  if (memchr(p, '\0', n) || memchr(p, '\\', n))
    return PATH_BAD;
  size_t o = 0;
  int dot = PATH_OK;
  size_t i = 0;
  while (i < n) {
    while (i < n && p[i] == '/')
      i++;
    size_t s = i;
    while (i < n && p[i] != '/')
      i++;
    size_t len = i - s;
    if (len == 0 || (len == 1 && p[s] == '.'))
      continue;
    if (len == 2 && p[s] == '.' && p[s + 1] == '.')
      return PATH_TRAVERSAL;
    if (p[s] == '.')
      dot = PATH_DOTFILE;
    if (len > NAME_MAX || o + len + 2 > size)
      return PATH_TOOLONG;
    if (o)
      out[o++] = '/';
    memcpy(out + o, p + s, len);
    o += len;
  }
  out[o] = '\0';
  *out_len = o;
  return dot;
}

static bool has_dot_segment(const char *rel) {
  for (const char *p = rel; *p; p++)
    if (*p == '.' && (p == rel || p[-1] == '/'))
      return true;
  return false;
}

/* ---- resolution
 * --------------------------------------------------------------- */

enum {
  WALK_OK = 0,
  WALK_MISS = 1,
  WALK_FORBIDDEN = 2,
  WALK_SYMLINK = 3,
  WALK_DOTFILE = 4
};

typedef struct found {
  int fd;    /* O_PATH descriptor of the file or directory */
  int dirfd; /* O_PATH descriptor of its parent (-1 for the root) */
  struct stat st;
  char rel[PATH_MAX]; /* symlink-free path under the root ("" = root) */
} found;

static void found_close(found *f) {
  if (f->fd >= 0)
    close(f->fd);
  if (f->dirfd >= 0)
    close(f->dirfd);
  f->fd = f->dirfd = -1;
}

static int errno_walk(int e) {
  switch (e) {
  case EACCES:
  case EPERM: return WALK_FORBIDDEN;
  case ENOENT:
  case ENOTDIR:
  case ENAMETOOLONG:
  case ELOOP:
  case EXDEV: return WALK_MISS;
  default: return -e;
  }
}

/* Walks `rel` from the root without following any symlink. On WALK_OK,
 * `f` holds the descriptors (f->rel is not touched). */
static int walk(const static_ctx *c, const char *rel, found *f) {
  f->fd = f->dirfd = -1;
  int cur = open(c->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0)
    return errno_walk(errno);
  int parent = -1;
  char comp[NAME_MAX + 1];
  const char *p = rel;
  struct stat st;
  if (fstat(cur, &st) != 0) {
    int e = errno;
    close(cur);
    return errno_walk(e);
  }
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (len > NAME_MAX) {
      close(cur);
      if (parent >= 0)
        close(parent);
      return WALK_MISS;
    }
    memcpy(comp, p, len);
    comp[len] = '\0';
    p += len;
    if (*p == '/')
      p++;
    if (!S_ISDIR(st.st_mode)) {
      close(cur);
      if (parent >= 0)
        close(parent);
      return WALK_MISS;
    }
    int next = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    int r = 0;
    if (next < 0)
      r = errno_walk(errno);
    else if (fstat(next, &st) != 0)
      r = errno_walk(errno);
    else if (S_ISLNK(st.st_mode))
      r = WALK_SYMLINK;
    if (r) {
      if (next >= 0)
        close(next);
      close(cur);
      if (parent >= 0)
        close(parent);
      return r;
    }
    if (parent >= 0)
      close(parent);
    parent = cur;
    cur = next;
  }
  f->fd = cur;
  f->dirfd = parent;
  f->st = st;
  return WALK_OK;
}

/* Resolves `rel` (normalized, relative to the root) to a file or
 * directory under the root, following symlinks only as the policy allows
 * and never out of the root. */
static int resolve(const static_ctx *c, const char *rel, found *f) {
  int r = walk(c, rel, f);
  if (r == WALK_OK) {
    snprintf(f->rel, sizeof f->rel, "%s", rel);
    return WALK_OK;
  }
  if (r != WALK_SYMLINK)
    return r;
  if (c->symlinks == TL_STATIC_SYMLINKS_DENY)
    return WALK_MISS;
  char full[PATH_MAX], real[PATH_MAX];
  if ((size_t)snprintf(full, sizeof full, "%s/%s", c->root, rel) >= sizeof full)
    return WALK_MISS;
  if (!realpath(full, real))
    return errno_walk(errno);
  const char *rest;
  if (c->root_len == 1) { /* the root is "/" */
    rest = real + 1;
  } else if (strncmp(real, c->root, c->root_len) == 0 &&
             (real[c->root_len] == '/' || real[c->root_len] == '\0')) {
    rest = real + c->root_len + (real[c->root_len] == '/');
  } else {
    return WALK_MISS; /* the link leads out of the root */
  }
  if (c->dotfiles != TL_STATIC_DOTFILES_ALLOW && has_dot_segment(rest))
    return WALK_DOTFILE;
  r = walk(c, rest, f);
  if (r == WALK_SYMLINK)
    return WALK_MISS; /* a link appeared since realpath(): a race */
  if (r == WALK_OK)
    snprintf(f->rel, sizeof f->rel, "%s", rest);
  return r;
}

/* Opens the sibling `<name><suffix>` of the file `f` if it is a regular
 * file (never through a symlink). Returns an O_PATH fd or -1. */
static int open_sibling(const found *f, const char *suffix, struct stat *st) {
  if (f->dirfd < 0)
    return -1;
  const char *base = strrchr(f->rel, '/');
  base = base ? base + 1 : f->rel;
  char name[NAME_MAX + 8];
  if ((size_t)snprintf(name, sizeof name, "%s%s", base, suffix) > NAME_MAX)
    return -1;
  int fd = openat(f->dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    close(fd);
    return -1;
  }
  return fd;
}

/* ---- header parsing
 * ------------------------------------------------------------ */

static const char *skip_ows(const char *p) {
  while (*p == ' ' || *p == '\t')
    p++;
  return p;
}

enum { ENC_IDENTITY = 0, ENC_BR = 1, ENC_GZIP = 2 };

/* Reads every Accept-Encoding header; sets the qvalues (thousandths) the
 * client gives br and gzip, after applying "*". A malformed element is
 * ignored; a coding named twice counts as first named. */
static void accept_encoding(const tl_req *req, int *q_br, int *q_gz) {
  int br = -1, gz = -1, star = -1;
  const char *h;
  for (size_t k = 0; (h = tl_req_header_at(req, "Accept-Encoding", k)); k++) {
    tl_slice v;
    int q;
    while (tl_accept_next(&h, &v, &q)) {
      int *slot = NULL;
      if (tl_str_ieq(v.ptr, v.len, "br"))
        slot = &br;
      else if (tl_str_ieq(v.ptr, v.len, "gzip") ||
               tl_str_ieq(v.ptr, v.len, "x-gzip"))
        slot = &gz;
      else if (tl_str_ieq(v.ptr, v.len, "*"))
        slot = &star;
      if (slot && q >= 0 && *slot < 0)
        *slot = q;
    }
  }
  *q_br = br >= 0 ? br : star >= 0 ? star : 0;
  *q_gz = gz >= 0 ? gz : star >= 0 ? star : 0;
}

static int digits(const char *p, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

static int month_index(const char *p) {
  static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  for (int i = 0; i < 12; i++)
    if (strncmp(p, names + 3 * i, 3) == 0)
      return i;
  return -1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* "hh:mm:ss" into seconds of the day, or -1. */
static int parse_clock(const char *p) {
  int h = digits(p, 2), m = digits(p + 3, 2), s = digits(p + 6, 2);
  if (h < 0 || m < 0 || s < 0 || p[2] != ':' || p[5] != ':' || h > 23 ||
      m > 59 || s > 60)
    return -1;
  return h * 3600 + m * 60 + s;
}

/* An HTTP-date (RFC 9110 5.6.7: IMF-fixdate, and the obsolete RFC 850
 * and asctime forms) as Unix seconds, or -1 when it is none of them. */
static int64_t parse_http_date(const char *s) {
  size_t n = strlen(s);
  int day, mon, year, secs;
  const char *comma = strchr(s, ',');
  if (comma) {
    const char *p = comma + 1;
    if (*p != ' ')
      return -1;
    p++;
    size_t rest = n - (size_t)(p - s);
    if (rest == 24 && p[2] == ' ' && p[6] == ' ' && p[11] == ' ' &&
        strcmp(p + 20, " GMT") == 0) {
      /* IMF-fixdate: "06 Nov 1994 08:49:37 GMT" */
      day = digits(p, 2);
      mon = month_index(p + 3);
      year = digits(p + 7, 4);
      secs = parse_clock(p + 12);
    } else if (rest == 22 && p[2] == '-' && p[6] == '-' && p[9] == ' ' &&
               strcmp(p + 18, " GMT") == 0) {
      /* RFC 850: "06-Nov-94 08:49:37 GMT" */
      day = digits(p, 2);
      mon = month_index(p + 3);
      year = digits(p + 7, 2);
      if (year >= 0)
        year += year < 70 ? 2000 : 1900;
      secs = parse_clock(p + 10);
    } else {
      return -1;
    }
  } else if (n == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' &&
             s[19] == ' ') {
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    mon = month_index(s + 4);
    day = s[8] == ' ' ? digits(s + 9, 1) : digits(s + 8, 2);
    secs = parse_clock(s + 11);
    year = digits(s + 20, 4);
  } else {
    return -1;
  }
  if (day < 1 || day > 31 || mon < 0 || year < 0 || secs < 0)
    return -1;
  return days_from_civil(year, mon + 1, day) * 86400 + secs;
}

/* IMF-fixdate of `t`, with English names whatever the locale. */
static void format_http_date(int64_t t, char out[64]) {
  static const char wd[] = "SunMonTueWedThuFriSat";
  static const char mn[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm)) {
    snprintf(out, 64, "Thu, 01 Jan 1970 00:00:00 GMT");
    return;
  }
  snprintf(out, 64, "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT",
           wd + 3 * (tm.tm_wday % 7), tm.tm_mday, mn + 3 * (tm.tm_mon % 12),
           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Whether the entity-tag list `v` (not "*") holds a tag matching `etag`
 * (NULL: none can), by strong or weak comparison (RFC 9110 8.8.3.2).
 * Malformed input ends the list. */
static bool etag_list_any(const char *v, const char *etag, bool strong) {
  if (!etag)
    return false;
  bool etag_weak = etag[0] == 'W';
  const char *eop = etag_weak ? etag + 2 : etag;
  size_t elen = strlen(eop);
  const char *p = v;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    if (!*p)
      return false;
    bool weak = false;
    if (p[0] == 'W' && p[1] == '/') {
      weak = true;
      p += 2;
    }
    if (*p != '"')
      return false;
    const char *q = strchr(p + 1, '"');
    if (!q)
      return false;
    size_t len = (size_t)(q + 1 - p);
    if (len == elen && memcmp(p, eop, len) == 0 &&
        (!strong || (!weak && !etag_weak)))
      return true;
    p = q + 1;
  }
}

static bool is_star(const char *v) {
  return v[0] == '*' && v[1] == '\0';
}

/* Decimal digits [p, end) as a number (saturating at INT64_MAX); -1 when
 * empty, -2 when not all digits. */
static int64_t parse_pos(const char *p, const char *end) {
  if (p == end)
    return -1;
  int64_t v = 0;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9')
      return -2;
    v = v > (INT64_MAX - 9) / 10 ? INT64_MAX : v * 10 + (*p - '0');
  }
  return v;
}

/* Parses a single byte range of "bytes=..." against `size`. Returns 1 with
 * [*first, *last] for a satisfiable range, 0 when the header must be
 * ignored (bad syntax, other unit, several ranges), -1 when unsatisfiable. */
static int parse_range(const char *v, int64_t size, int64_t *first,
                       int64_t *last) {
  if (strncasecmp(v, "bytes", 5) != 0)
    return 0;
  const char *p = skip_ows(v + 5);
  if (*p != '=')
    return 0;
  p++;
  /* Exactly one non-empty element: empty list elements are allowed. */
  const char *start, *other;
  size_t n, more;
  if (!tl_token_list_next(&p, &start, &n))
    return 0;
  if (tl_token_list_next(&p, &other, &more))
    return 0; /* several ranges: served whole (RFC 9110 14.2 allows it) */
  const char *end = start + n;
  const char *dash = memchr(start, '-', (size_t)(end - start));
  if (!dash)
    return 0;
  int64_t a = parse_pos(start, dash), b = parse_pos(dash + 1, end);
  if (a == -2 || b == -2)
    return 0;
  if (a < 0 && b < 0)
    return 0;
  if (a < 0) { /* suffix: the last b bytes */
    if (b == 0 || size == 0)
      return -1;
    *first = b >= size ? 0 : size - b;
    *last = size - 1;
    return 1;
  }
  if (b >= 0 && b < a)
    return 0;
  if (a >= size)
    return -1;
  *first = a;
  *last = b < 0 || b >= size ? size - 1 : b;
  return 1;
}

/* ---- the middleware
 * ------------------------------------------------------------ */

static void etag_of(const static_ctx *c, const struct stat *st,
                    const char *suffix, char out[80]) {
  if (c->etag == TL_STATIC_ETAG_OFF) {
    out[0] = '\0';
    return;
  }
  unsigned long long ns =
      (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
      (unsigned long long)st->st_mtim.tv_nsec;
  snprintf(out, 80, "%s\"%llx-%llx%s\"",
           c->etag == TL_STATIC_ETAG_WEAK ? "W/" : "",
           (unsigned long long)st->st_size, ns, suffix);
}

/* The 301 to the slash form of a directory URL: the raw path as received
 * (leading slashes collapsed, so "//host" cannot become a
 * protocol-relative URL) plus "/", plus the query. */
static int redirect_slash(tl_req *req, tl_res *res, const char *raw,
                          size_t raw_len, const char *query) {
  while (raw_len > 1 && raw[0] == '/' && raw[1] == '/') {
    raw++;
    raw_len--;
  }
  size_t qlen = strlen(query);
  char *loc = tl_req_alloc(req, raw_len + qlen + 3);
  if (!loc)
    return TL_ENOMEM;
  memcpy(loc, raw, raw_len);
  size_t o = raw_len;
  loc[o++] = '/';
  if (qlen) {
    loc[o++] = '?';
    memcpy(loc + o, query, qlen);
    o += qlen;
  }
  loc[o] = '\0';
  int err = tl_res_redirect(res, 301, loc);
  return err && err != TL_ECLOSED ? err : TL_DONE;
}

static int static_mw(tl_req *req, tl_res *res, void *ctx) {
  static_ctx *c = ctx;
  const char *method = tl_req_method(req);
  bool is_get = strcmp(method, "GET") == 0;
  bool is_head = strcmp(method, "HEAD") == 0;

  /* The path part of the raw target. Other forms ("*", absolute-form)
   * are not ours. */
  const char *target = tl_req_target(req);
  if (target[0] != '/')
    return TL_NEXT;
  size_t raw_len = strcspn(target, "?#");
  const char *query = tl_req_query_string(req);

  char *dec = tl_req_alloc(req, raw_len + 1);
  if (!dec)
    return TL_ENOMEM;
  /* Decoding never grows the text: raw_len + 1 bytes always suffice. */
  size_t dlen = 0;
  tl_pct_decode(dec, raw_len + 1, target, raw_len, 0, &dlen);
  const char *path = dec;
  if (c->prefix_len) {
    if (dlen < c->prefix_len || memcmp(dec, c->prefix, c->prefix_len) != 0 ||
        (dlen > c->prefix_len && dec[c->prefix_len] != '/'))
      return TL_NEXT;
    path += c->prefix_len;
    dlen -= c->prefix_len;
  }

  if (!is_get && !is_head) {
    if (c->fallthrough)
      return TL_NEXT;
    tl_res_header(res, "Allow", "GET, HEAD");
    return answer(res, 405, "Method Not Allowed\n");
  }

  /* With a prefix, an empty rest is the prefix without its slash. */
  bool trailing = dlen > 0 && path[dlen - 1] == '/';
  char rel[PATH_MAX];
  size_t rel_len = 0;
  int pr = normalize(path, dlen, rel, sizeof rel - NAME_MAX - 2, &rel_len);
  switch (pr) {
  case PATH_BAD: return answer(res, 400, "Bad Request\n");
  case PATH_TRAVERSAL: return answer(res, 403, "Forbidden\n");
  case PATH_TOOLONG: return miss(c, res);
  case PATH_DOTFILE:
    if (c->dotfiles == TL_STATIC_DOTFILES_DENY)
      return answer(res, 403, "Forbidden\n");
    if (c->dotfiles == TL_STATIC_DOTFILES_IGNORE)
      return miss(c, res);
    break;
  default: break;
  }
  if (c->root_len + rel_len + 2 > PATH_MAX)
    return miss(c, res);

  found f;
  int r = resolve(c, rel, &f);
  /* The name whose extension gives the Content-Type: the one asked for. */
  const char *name = rel;
  if (r == WALK_OK && S_ISDIR(f.st.st_mode)) {
    if (!c->index) {
      found_close(&f);
      return miss(c, res);
    }
    if (!trailing && c->dir_redirect) {
      found_close(&f);
      return redirect_slash(req, res, target, raw_len, query);
    }
    char irel[PATH_MAX];
    int n = snprintf(irel, sizeof irel, "%s%s%s", f.rel, *f.rel ? "/" : "",
                     c->index);
    found_close(&f);
    if (n < 0 || (size_t)n >= sizeof irel)
      return miss(c, res);
    r = resolve(c, irel, &f);
    name = c->index;
    if (r == WALK_OK && !S_ISREG(f.st.st_mode)) {
      found_close(&f);
      return miss(c, res);
    }
  } else if (r == WALK_OK && (!S_ISREG(f.st.st_mode) || trailing)) {
    /* Not a regular file (FIFO, device, socket), or "file.txt/". */
    found_close(&f);
    return miss(c, res);
  }
  switch (r) {
  case WALK_OK: break;
  case WALK_MISS: return miss(c, res);
  case WALK_FORBIDDEN: return answer(res, 403, "Forbidden\n");
  case WALK_DOTFILE:
    if (c->dotfiles == TL_STATIC_DOTFILES_DENY)
      return answer(res, 403, "Forbidden\n");
    return miss(c, res);
  default: return r; /* an unexpected errno: 500 */
  }

  /* Choose the representation: a precompressed sibling when the client
   * takes it, never for a GET with Range (ranges are of the identity
   * file). */
  const char *range = is_get ? tl_req_header(req, "Range") : NULL;
  int enc = ENC_IDENTITY;
  int serve_fd = f.fd;
  struct stat st = f.st;
  if (c->precompressed && !range) {
    int q_br, q_gz;
    accept_encoding(req, &q_br, &q_gz);
    int order[2] = {ENC_BR, ENC_GZIP};
    if (q_gz > q_br) {
      order[0] = ENC_GZIP;
      order[1] = ENC_BR;
    }
    for (int i = 0; i < 2 && enc == ENC_IDENTITY; i++) {
      int q = order[i] == ENC_BR ? q_br : q_gz;
      if (q <= 0)
        continue;
      struct stat vst;
      int vfd = open_sibling(&f, order[i] == ENC_BR ? ".br" : ".gz", &vst);
      if (vfd >= 0) {
        enc = order[i];
        serve_fd = vfd;
        st = vst;
      }
    }
  }
  const char *suffix = enc == ENC_BR ? "-br" : enc == ENC_GZIP ? "-gz" : "";

  char etag[80], lastmod[64];
  etag_of(c, &st, suffix, etag);
  int64_t mtime = (int64_t)st.st_mtim.tv_sec;
  format_http_date(mtime, lastmod);

  /* Headers shared by 200, 206, 304, 412 and 416. */
  if (c->precompressed)
    tl_res_header(res, "Vary", "Accept-Encoding");
  if (*etag)
    tl_res_header(res, "ETag", etag);
  if (c->last_modified)
    tl_res_header(res, "Last-Modified", lastmod);
  if (c->cache_control && !tl_res_has_header(res, "Cache-Control"))
    tl_res_header(res, "Cache-Control", c->cache_control);

  int status = 200;
  int64_t first = 0, last = st.st_size - 1;

  /* Preconditions in the order of RFC 9110 13.2.2. */
  const char *h;
  if ((h = tl_req_header(req, "If-Match"))) {
    if (!is_star(h) && !etag_list_any(h, *etag ? etag : NULL, true))
      status = 412;
  } else if (c->last_modified &&
             (h = tl_req_header(req, "If-Unmodified-Since"))) {
    int64_t t = parse_http_date(h);
    if (t >= 0 && mtime > t)
      status = 412;
  }
  if (status == 200) {
    if ((h = tl_req_header(req, "If-None-Match"))) {
      if (is_star(h) || etag_list_any(h, *etag ? etag : NULL, false))
        status = 304;
    } else if (c->last_modified &&
               (h = tl_req_header(req, "If-Modified-Since"))) {
      int64_t t = parse_http_date(h);
      if (t >= 0 && mtime <= t)
        status = 304;
    }
  }
  if (status == 200 && range) {
    bool use = true;
    if ((h = tl_req_header(req, "If-Range"))) {
      if (h[0] == '"' || (h[0] == 'W' && h[1] == '/'))
        use = *etag && etag[0] == '"' && strcmp(h, etag) == 0;
      else
        use = c->last_modified && parse_http_date(h) == mtime;
    }
    if (use) {
      int pr2 = parse_range(range, st.st_size, &first, &last);
      if (pr2 > 0)
        status = 206;
      else if (pr2 < 0)
        status = 416;
    }
  }

  int ret = TL_DONE;
  if (status != 200 && status != 206) {
    if (status == 416)
      tl_res_headerf(res, "Content-Range", "bytes */%lld",
                     (long long)st.st_size);
    tl_res_status(res, status);
    int err = tl_res_send(res, NULL, 0);
    if (err && err != TL_ECLOSED)
      ret = err;
    goto out;
  }

  tl_res_header(res, "Accept-Ranges", "bytes");
  if (!tl_res_has_header(res, "Content-Type"))
    tl_res_header(res, "Content-Type", content_type(c, name));
  if (enc != ENC_IDENTITY)
    tl_res_header(res, "Content-Encoding", enc == ENC_BR ? "br" : "gzip");
  if (status == 206) {
    tl_res_status(res, 206);
    tl_res_headerf(res, "Content-Range", "bytes %lld-%lld/%lld",
                   (long long)first, (long long)last, (long long)st.st_size);
  }

  char disk[PATH_MAX + 8];
  snprintf(disk, sizeof disk, "%s%s%s%s", c->root, c->root_len > 1 ? "/" : "",
           f.rel, suffix[0] ? (enc == ENC_BR ? ".br" : ".gz") : "");
  if (c->set_headers)
    c->set_headers(req, res, disk, c->set_headers_arg);

  int64_t off = status == 206 ? first : 0;
  int64_t len = status == 206 ? last - first + 1 : -1;
  int err = TL_ENOENT;
  if (c->have_proc) {
    char proc[40];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", serve_fd);
    err = tl_res_send_file_range(res, proc, off, len);
  }
  if (err == TL_ENOENT)
    err = tl_res_send_file_range(res, disk, off, len);
  if (err == TL_ENOENT && !tl_res_finished(res)) {
    /* The file vanished between the checks and the open. */
    ret = miss(c, res);
  } else if (err && err != TL_ECLOSED) {
    ret = err;
  }

out:
  if (serve_fd != f.fd)
    close(serve_fd);
  found_close(&f);
  return ret;
}
