/* The app's listeners: the listen call's own and the ones added with
 * tl_app_add_listener, each plain or TLS (talon/tls.h), each a host as
 * the user wrote it. At listen they become the sockets the servers open
 * (core/listen.h): an address, or every address a name resolves to; a
 * unix socket file ("unix:/path"); a descriptor the process was given
 * ("fd:N"), or every one systemd passed ("systemd", "systemd:NAME").
 * Names are resolved here, synchronously, before any loop runs: listening
 * happens before serving, so nothing waits for the lookup but the listen
 * call itself, which must return its result. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "app/app.h"
#include "core/listen.h"
#include "core/tls.h"

#define UNIX_PREFIX "unix:"
#define FD_PREFIX "fd:"
#define SYSTEMD "systemd"
#define SD_LISTEN_FDS_START 3

/* Room for the listen call's own at [0]. */
static int ensure_first(tl_app *app) {
  if (app->listen)
    return 0;
  if (!(app->listen = calloc(1, sizeof *app->listen)))
    return TL_ENOMEM;
  app->nlisten = 1;
  return 0;
}

static bool prefixed(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Decimal digits only, at most `max`; -1 otherwise. */
static long digits(const char *s, long max) {
  long v = 0;
  if (!*s)
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    v = v * 10 + (*s - '0');
    if (v > max)
      return -1;
  }
  return v;
}

/* What can be checked without the network or the environment: the form
 * of a unix path, an fd number, a systemd name; the port of a TCP host. */
static int check_host(const char *host, int port) {
  size_t n = strlen(host);
  if (n >= TL__HOST_MAX)
    return TL_EINVAL;
  if (prefixed(host, UNIX_PREFIX)) {
    size_t len = n - strlen(UNIX_PREFIX);
    if (len == 0)
      return TL_EINVAL;
    return len < sizeof(((struct sockaddr_un *)0)->sun_path) ? 0
                                                             : UV_ENAMETOOLONG;
  }
  if (prefixed(host, FD_PREFIX))
    return digits(host + strlen(FD_PREFIX), 1L << 30) < 0 ? TL_EINVAL : 0;
  if (strcmp(host, SYSTEMD) == 0)
    return 0;
  if (prefixed(host, SYSTEMD ":"))
    return host[strlen(SYSTEMD ":")] ? 0 : TL_EINVAL;
  return port < 0 || port > 65535 ? TL_EINVAL : 0;
}

static int set_listener(tl__app_listener *l, const char *host, int port) {
  if (!host)
    host = "";
  int err = check_host(host, port);
  if (err)
    return err;
  memcpy(l->host, host, strlen(host) + 1);
  l->port = port;
  return 0;
}

int tl_app_add_listener(tl_app *app, const char *host, int port, tl_tls *tls) {
  if (!app)
    return TL_EINVAL;
  if (atomic_load(&app->running))
    return TL_ESTATE;
  int err = ensure_first(app);
  if (err)
    return err;
  tl__app_listener l = {0};
  if ((err = set_listener(&l, host, port)))
    return err;
  tl__app_listener *n = realloc(app->listen, (app->nlisten + 1) * sizeof *n);
  if (!n)
    return TL_ENOMEM;
  app->listen = n;
  l.tls = tl__tls_ref(tls);
  n[app->nlisten++] = l;
  return 0;
}

/* ---- resolving: the sockets to open ------------------------------------- */

typedef struct spec_list {
  tl__listen_spec *v;
  size_t n, cap;
} spec_list;

/* A new spec for listener `index`, zeroed but for that, its TLS and the
 * kind; NULL on out of memory. */
static tl__listen_spec *add_spec(spec_list *sl, int kind, size_t index,
                                 tl_tls *tls) {
  if (sl->n == sl->cap) {
    size_t cap = sl->cap ? 2 * sl->cap : 4;
    tl__listen_spec *v = realloc(sl->v, cap * sizeof *v);
    if (!v)
      return NULL;
    sl->v = v;
    sl->cap = cap;
  }
  tl__listen_spec *sp = &sl->v[sl->n++];
  memset(sp, 0, sizeof *sp);
  sp->kind = kind;
  sp->index = index;
  sp->tls = tls;
  return sp;
}

/* The sockets systemd passed, as sd_listen_fds(1) takes them: only when
 * LISTEN_PID is this process; the three variables are unset either way
 * (a child started later must not take the sockets for its own), and the
 * descriptors get FD_CLOEXEC. Read once per app: a later listen of the
 * same app finds the same sockets. */
static void read_systemd(tl_app *app) {
  if (app->sd_read)
    return;
  app->sd_read = true;
  const char *pid = getenv("LISTEN_PID");
  const char *fds = getenv("LISTEN_FDS");
  const char *names = getenv("LISTEN_FDNAMES");
  long p = pid ? digits(pid, 1L << 30) : -1;
  long n = fds ? digits(fds, 1L << 16) : -1;
  if (p == (long)getpid() && n > 0) {
    app->sd_nfds = (int)n;
    app->sd_names = names ? strdup(names) : NULL;
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
      fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

/* Whether the `i`th name of LISTEN_FDNAMES (colon-separated) is `name`. */
static bool sd_name_is(const char *names, int i, const char *name) {
  if (!names)
    return false;
  for (; i > 0; i--) {
    names = strchr(names, ':');
    if (!names)
      return false;
    names++;
  }
  size_t len = strcspn(names, ":");
  return strlen(name) == len && strncmp(names, name, len) == 0;
}

static int resolve_systemd(tl_app *app, spec_list *sl, size_t index,
                           const tl__app_listener *l) {
  read_systemd(app);
  const char *name =
      l->host[strlen(SYSTEMD)] == ':' ? l->host + strlen(SYSTEMD ":") : NULL;
  size_t before = sl->n;
  for (int i = 0; i < app->sd_nfds; i++) {
    if (name && !sd_name_is(app->sd_names, i, name))
      continue;
    tl__listen_spec *sp = add_spec(sl, TL__LISTEN_FD, index, l->tls);
    if (!sp)
      return TL_ENOMEM;
    sp->fd = SD_LISTEN_FDS_START + i;
  }
  return sl->n > before ? 0 : TL_ENOENT;
}

/* Whether `sl` holds listener `index`'s socket on `ss` already. */
static bool has_addr(const spec_list *sl, size_t index,
                     const struct sockaddr *sa, size_t len) {
  for (size_t i = 0; i < sl->n; i++)
    if (sl->v[i].index == index && memcmp(&sl->v[i].addr, sa, len) == 0)
      return true;
  return false;
}

/* A name: every address it resolves to (127.0.0.1 and ::1 for localhost
 * when the hosts file gives both), each its own socket on one port; the
 * IPv6 ones IPv6-only then, so that they do not take the IPv4 ones'
 * place. An address this machine lacks is skipped when another binds. */
static int resolve_name(uv_loop_t *loop, spec_list *sl, size_t index,
                        const tl__app_listener *l) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE};
  uv_getaddrinfo_t req;
  int err = uv_getaddrinfo(loop, &req, NULL, l->host, NULL, &hints);
  if (err)
    return err;
  size_t before = sl->n;
  bool v4 = false, v6 = false;
  for (struct addrinfo *ai = req.addrinfo; ai; ai = ai->ai_next) {
    if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
        ai->ai_addrlen > sizeof(struct sockaddr_storage))
      continue;
    struct sockaddr_storage ss = {0};
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    tl__addr_set_port(&ss, l->port);
    if (has_addr(sl, index, (struct sockaddr *)&ss, sizeof ss))
      continue;
    tl__listen_spec *sp = add_spec(sl, TL__LISTEN_INET, index, l->tls);
    if (!sp) {
      err = TL_ENOMEM;
      break;
    }
    sp->addr = ss;
    v4 |= ss.ss_family == AF_INET;
    v6 |= ss.ss_family == AF_INET6;
  }
  uv_freeaddrinfo(req.addrinfo);
  if (err)
    return err;
  if (sl->n == before)
    return UV_EAI_NONAME; /* no IPv4 or IPv6 address */
  for (size_t i = before; i < sl->n; i++) {
    sl->v[i].v6only = v4 && v6;
    sl->v[i].optional = sl->n - before > 1;
  }
  return 0;
}

static int resolve_one(tl_app *app, uv_loop_t *loop, spec_list *sl,
                       size_t index) {
  const tl__app_listener *l = &app->listen[index];
  const char *host = l->host;
  if (prefixed(host, UNIX_PREFIX)) {
    tl__listen_spec *sp = add_spec(sl, TL__LISTEN_UNIX, index, l->tls);
    if (!sp)
      return TL_ENOMEM;
    /* check_host made sure the path fits. */
    snprintf(sp->path, sizeof sp->path, "%s", host + strlen(UNIX_PREFIX));
    sp->mode = app->opt.unix_mode;
    return 0;
  }
  if (prefixed(host, FD_PREFIX)) {
    tl__listen_spec *sp = add_spec(sl, TL__LISTEN_FD, index, l->tls);
    if (!sp)
      return TL_ENOMEM;
    sp->fd = (int)digits(host + strlen(FD_PREFIX), 1L << 30);
    return 0;
  }
  if (strcmp(host, SYSTEMD) == 0 || prefixed(host, SYSTEMD ":"))
    return resolve_systemd(app, sl, index, l);
  /* A numeric address: no lookup. "::" is dual stack. */
  struct sockaddr_storage ss = {0};
  if (uv_ip4_addr(*host ? host : "0.0.0.0", l->port,
                  (struct sockaddr_in *)&ss) == 0 ||
      uv_ip6_addr(host, l->port, (struct sockaddr_in6 *)&ss) == 0) {
    tl__listen_spec *sp = add_spec(sl, TL__LISTEN_INET, index, l->tls);
    if (!sp)
      return TL_ENOMEM;
    sp->addr = ss;
    return 0;
  }
  return resolve_name(loop, sl, index, l);
}

int tl__app_listen_prepare(tl_app *app, uv_loop_t *loop, const char *host,
                           int port, tl_tls *tls) {
  int err = ensure_first(app);
  if (err)
    return err;
  if ((err = set_listener(&app->listen[0], host, port)))
    return err;
  app->listen[0].tls = tl__tls_ref(tls);
  spec_list sl = {0};
  for (size_t i = 0; !err && i < app->nlisten; i++)
    err = resolve_one(app, loop, &sl, i);
  if (err) {
    free(sl.v);
    return err;
  }
  app->open = sl.v;
  app->nopen = sl.n;
  return 0;
}

void tl__app_listen_done(tl_app *app) {
  if (app->listen) {
    tl_tls_free(app->listen[0].tls);
    app->listen[0].tls = NULL;
  }
  free(app->open);
  app->open = NULL;
  app->nopen = 0;
}

int tl_app_listener_port(const tl_app *app, size_t i) {
  return app ? tl__server_listener_port(&app->workers[0].srv, i) : 0;
}

void tl__app_listeners_free(tl_app *app) {
  for (size_t i = 0; i < app->nlisten; i++)
    tl_tls_free(app->listen[i].tls);
  free(app->listen);
  app->listen = NULL;
  app->nlisten = 0;
  free(app->sd_names);
  app->sd_names = NULL;
}
