/* Shared by the examples: reading the port, host and worker count from the
 * command line and the environment, and printing the "listening on" line. Every example
 * had its own copy of this code, and every copy accepted "hello abc" as
 * port 0 (atoi) and printed IPv6 hosts without brackets; one copy here
 * keeps them alike. Like the examples, it uses only the public headers.
 */
#ifndef TALON_EXAMPLES_COMMON_H
#define TALON_EXAMPLES_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <talon.h>
#ifdef TALON_HAVE_REDIS
#include <talon/redis.h>
#endif

#define EXAMPLE_DEFAULT_PORT 3000
#define EXAMPLE_DEFAULT_HOST "0.0.0.0"

/* A URL's "http://HOST:PORT" needs at most this many bytes: an IPv6
 * address with a zone, its '%' escaped, in brackets, and a port. */
#define EXAMPLE_URL_MAX 128

/* Parses decimal digits only, 0 to `max`. atoi() would turn "abc" into
 * 0 (for a port: bind a random one without a word) and "80x" into 80. */
static inline bool example_parse_uint(const char *s, long max, int *out) {
  long v = 0;
  if (!s || !*s)
    return false;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
    v = v * 10 + (*p - '0');
    if (v > max)
      return false;
  }
  *out = (int)v;
  return true;
}

/* A port: 0 to 65535 (0: any free port). */
static inline bool example_parse_port(const char *s, int *port) {
  return example_parse_uint(s, 65535, port);
}

/* A worker count: 0 (one per CPU) to TL_WORKERS_MAX. */
static inline bool example_parse_workers(const char *s, int *workers) {
  if (!example_parse_uint(s, TL_WORKERS_MAX, workers))
    return false;
  if (*workers == 0)
    *workers = TL_WORKERS_AUTO;
  return true;
}

/* The TLS variables (example_tls). */
#define EXAMPLE_TLS_HELP                                                       \
  "  TLS_CERT        PEM certificate (chain): also serve HTTPS/WSS\n"          \
  "  TLS_KEY         its PEM private key\n"                                    \
  "  TLS_PORT        the HTTPS port [3443]; SIGHUP reloads the files\n"        \
  "  TLS_HOST        where HTTPS listens, as HOST [HOST; required when\n"      \
  "                  HOST is a unix socket or inherited]\n"

static inline void example_usage(FILE *f, const char *name,
                                 const char *env_help) {
  fprintf(f,
          "usage: %s [--workers N] [PORT]\n"
          "  PORT            0-65535, 0: any free port [$PORT, else %d]\n"
          "  --workers N     worker threads, 0: one per CPU [$WORKERS, "
          "else 1]\n"
          "environment:\n"
          "  HOST            where to listen [%s]: an address (:: is IPv6\n"
          "                  and IPv4), a name (localhost), unix:/PATH for a\n"
          "                  unix socket, fd:N for an inherited socket,\n"
          "                  systemd for socket activation [the default\n"
          "                  when LISTEN_FDS is set for this process]\n"
          "  WORKERS         worker threads, 0: one per CPU [1]\n"
          "  REDIS_URL       share topics with other processes through "
          "Redis\n"
          "                  (redis://HOST:PORT) [unset: this process "
          "only]\n" EXAMPLE_TLS_HELP "%s",
          name, EXAMPLE_DEFAULT_PORT, EXAMPLE_DEFAULT_HOST,
          env_help ? env_help : "");
}

/* What example_args() read. */
typedef struct example_opts {
  const char *host;
  int port;
  int workers; /* for tl_app_config.workers */
} example_opts;

/* Whether systemd passed this process sockets (LISTEN_FDS set, and
 * LISTEN_PID ours): then the host is "systemd" unless HOST says. */
static inline bool example_socket_activated(void) {
  const char *fds = getenv("LISTEN_FDS"), *pid = getenv("LISTEN_PID");
  int n, p;
  return fds && pid && example_parse_uint(fds, 65536, &n) && n > 0 &&
         example_parse_uint(pid, 1L << 30, &p) && p == (int)getpid();
}

/* Reads the command line and PORT / HOST / WORKERS. The port is the only
 * positional argument, else $PORT (empty counts as unset), else 3000; the
 * host is $HOST, else "systemd" when systemd passed sockets, else 0.0.0.0
 * (any form tl_app_listen() takes: an address, a name, "unix:/path",
 * "fd:N", "systemd[:NAME]"); the worker count is --workers N, else
 * $WORKERS, else 1 (0: one per CPU). `env_help` lists the example's other
 * variables for the usage text (lines of two spaces, the name padded to
 * 16 columns, the meaning and a newline; may be NULL).
 *
 * Returns -1 to go on; otherwise main returns the value: 0 after -h or
 * --help printed the usage, 2 after a bad argument (the usage goes to
 * stderr, as usual for a usage error). */
static inline int example_args(int argc, char **argv, const char *name,
                               const char *env_help, example_opts *o) {
  const char *port_arg = NULL, *workers_arg = NULL;
  bool workers_flag = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      example_usage(stdout, name, env_help);
      return 0;
    }
    if (strcmp(argv[i], "--workers") == 0) {
      if (i + 1 == argc) {
        fprintf(stderr, "%s: --workers needs a number\n", name);
        example_usage(stderr, name, env_help);
        return 2;
      }
      workers_arg = argv[++i];
      workers_flag = true;
    } else if (!port_arg) {
      port_arg = argv[i];
    } else {
      fprintf(stderr, "%s: too many arguments\n", name);
      example_usage(stderr, name, env_help);
      return 2;
    }
  }
  const char *from_env = getenv("PORT");
  const char *s = port_arg ? port_arg : from_env && *from_env ? from_env : NULL;
  o->port = EXAMPLE_DEFAULT_PORT;
  if (s && !example_parse_port(s, &o->port)) {
    fprintf(stderr, "%s: %s%s is not a port (0-65535)\n", name,
            port_arg ? "" : "PORT=", s);
    example_usage(stderr, name, env_help);
    return 2;
  }
  if (!workers_flag) {
    workers_arg = getenv("WORKERS");
    if (workers_arg && !*workers_arg)
      workers_arg = NULL;
  }
  o->workers = 1;
  if (workers_arg && !example_parse_workers(workers_arg, &o->workers)) {
    fprintf(stderr, "%s: %s%s is not a worker count (0-%d)\n", name,
            workers_flag ? "--workers " : "WORKERS=", workers_arg,
            TL_WORKERS_MAX);
    example_usage(stderr, name, env_help);
    return 2;
  }
  o->host = getenv("HOST");
  if (!o->host || !*o->host)
    o->host = example_socket_activated() ? "systemd" : EXAMPLE_DEFAULT_HOST;
  return -1;
}

/* With REDIS_URL set, the app's topics are shared with every process on
 * that Redis (talon/redis.h). Call after tl_app_new(). Returns -1 to go
 * on, or main's exit status (1) after saying why on stderr. */
static inline int example_redis(tl_app *app, const char *name) {
  const char *url = getenv("REDIS_URL");
  if (!url || !*url)
    return -1;
#ifdef TALON_HAVE_REDIS
  int err = tl_redis_attach(app, &(tl_redis_options){.url = url}, NULL);
  if (err) {
    fprintf(stderr, "%s: REDIS_URL=%s: %s\n", name, url, tl_strerror(err));
    return 1;
  }
  return -1;
#else
  (void)app;
  fprintf(stderr,
          "%s: REDIS_URL is set, but this build has no Redis bridge "
          "(hiredis was not found)\n",
          name);
  return 1;
#endif
}

/* The socket path of a "unix:/path" host, or NULL. */
static inline const char *example_unix_path(const char *host) {
  return strncmp(host, "unix:", 5) == 0 ? host + 5 : NULL;
}

/* Whether `host` is a TCP address or name (not a unix socket, not
 * inherited sockets: "fd:N", "systemd[:NAME]"). */
static inline bool example_host_is_tcp(const char *host) {
  return !example_unix_path(host) && strncmp(host, "fd:", 3) != 0 &&
         strncmp(host, "systemd", 7) != 0;
}

/* "http://HOST:PORT" into `buf`: an IPv6 address goes in brackets and the
 * '%' before a zone becomes "%25" (RFC 3986, RFC 6874), so that the URL
 * can be pasted into a browser or curl as printed. A host that is not a
 * TCP address or name (a unix socket, inherited sockets) is copied as it
 * is; returns whether `buf` is an http URL. */
static inline bool example_url(char *buf, size_t size, const char *host,
                               int port) {
  if (!example_host_is_tcp(host)) {
    snprintf(buf, size, "%s", host);
    return false;
  }
  bool v6 = strchr(host, ':') != NULL;
  size_t o = 0;
  int n = snprintf(buf, size, "http://%s", v6 ? "[" : "");
  if (n < 0 || (size_t)n >= size)
    return true;
  o = (size_t)n;
  for (const char *p = host; *p && o + 4 < size; p++) {
    if (*p == '%') {
      memcpy(buf + o, "%25", 3);
      o += 3;
    } else {
      buf[o++] = *p;
    }
  }
  snprintf(buf + o, size - o, "%s:%d", v6 ? "]" : "", port);
  return true;
}

/* "NAME: listening on URL" (`tls`: https), or for a unix socket "NAME:
 * listening on unix:/path" with the curl line that reaches it, or for
 * inherited sockets "NAME: listening on systemd (inherited sockets)". */
static inline void example__print(const char *name, const char *host, int port,
                                  bool tls) {
  char url[EXAMPLE_URL_MAX];
  const char *path = example_unix_path(host);
  if (path)
    printf("%s: listening on %s (curl%s --unix-socket %s %s://localhost/)\n",
           name, host, tls ? " -k" : "", path, tls ? "https" : "http");
  else if (!example_url(url, sizeof url, host, port))
    printf("%s: listening on %s (inherited sockets%s)\n", name, host,
           tls ? ", TLS" : "");
  else
    printf("%s: listening on %s%s\n", name, tls ? "https" : "http", url + 4);
}

/* Prints "NAME: listening on URL" (or the unix socket, or the inherited
 * sockets, see example__print) and flushes stdout: the tests (and
 * whoever starts an example with port 0) read the port from that line,
 * and stdout is a pipe then, which stdio would buffer. */
static inline void example_print_listening(const char *name, const char *host,
                                           int port) {
  example__print(name, host, port, false);
  fflush(stdout);
}

/* HTTPS and WSS from the environment, for every example: with TLS_CERT
 * and TLS_KEY (PEM files; scripts/dev-cert.sh makes a pair for
 * development) the app also listens with TLS on TLS_PORT [3443], same
 * host, and SIGHUP reloads the certificates without a restart. Call
 * before tl_app_listen; returns 0 (also without TLS_CERT), or 1 after
 * printing why TLS cannot start. */
#define EXAMPLE_DEFAULT_TLS_PORT 3443

/* SIGHUP only sets a flag (reloading reads files and allocates, which a
 * signal handler must not do); a timer on the app's loop looks at it.
 * One app per example process, so one state. */
typedef struct example_tls_state {
  tl_tls *tls;
  const char *host; /* where HTTPS listens */
  tl_timer *timer;
  const char *name;
} example_tls_state;

static example_tls_state example__tls;
static volatile sig_atomic_t example__hup;

static inline void example__on_hup(int sig) {
  example__hup = 1;
}

static inline void example__tls_tick(tl_timer *timer, void *arg) {
  if (!example__hup)
    return;
  example__hup = 0;
  char err[256];
  if (tl_tls_reload(example__tls.tls, err, sizeof err) != 0)
    fprintf(stderr, "%s: certificates not reloaded: %s\n", example__tls.name,
            err);
  else
    fprintf(stderr, "%s: certificates reloaded\n", example__tls.name);
}

static inline void example__tls_stop(tl_app *app, void *arg) {
  if (tl_app_worker(app) > 0)
    return; /* the timer is worker 0's; the hook runs on every worker */
  tl_timer_stop(example__tls.timer);
  example__tls.timer = NULL;
  tl_tls_free(example__tls.tls); /* the listener keeps its own */
  example__tls.tls = NULL;
}

static inline int example_tls(tl_app *app, const char *name, const char *host) {
  const char *cert = getenv("TLS_CERT"), *key = getenv("TLS_KEY");
  if (!cert || !*cert)
    return 0;
  const char *tls_host = getenv("TLS_HOST");
  if (tls_host && *tls_host) {
    host = tls_host;
  } else if (!example_host_is_tcp(host)) {
    /* One socket file or inherited socket cannot serve both. */
    fprintf(stderr, "%s: TLS: HOST=%s: set TLS_HOST (where HTTPS listens)\n",
            name, host);
    return 1;
  }
  int port = EXAMPLE_DEFAULT_TLS_PORT;
  const char *p = getenv("TLS_PORT");
  if (p && *p && !example_parse_port(p, &port)) {
    fprintf(stderr, "%s: TLS_PORT=%s is not a port (0-65535)\n", name, p);
    return 1;
  }
  char err[256];
  tl_tls *tls =
      tl_tls_new(&(tl_tls_config){.cert = {.cert_file = cert, .key_file = key}},
                 err, sizeof err);
  if (!tls) {
    fprintf(stderr, "%s: TLS: %s\n", name, err);
    return 1;
  }
  int rc = tl_app_add_listener(app, host, port, tls);
  if (rc) {
    fprintf(stderr, "%s: TLS: %s\n", name, tl_strerror(rc));
    tl_tls_free(tls);
    return 1;
  }
  example__tls.tls = tls;
  example__tls.host = host;
  example__tls.name = name;
  example__tls.timer = tl_timer_start(app, 500, 500, example__tls_tick, NULL);
  tl_app_on_stop(app, example__tls_stop, NULL);
  signal(SIGHUP, example__on_hup);
  return 0;
}

/* Prints "NAME: listening on https://HOST:PORT" (or the unix socket, or
 * the inherited sockets) when example_tls added a TLS listener (call from
 * on_listen, after example_print_listening). `host` is HOST; the line
 * names TLS_HOST when that was set. */
static inline void example_print_tls(tl_app *app, const char *name,
                                     const char *host) {
  if (!example__tls.tls)
    return;
  example__print(name, example__tls.host ? example__tls.host : host,
                 tl_app_listener_port(app, 1), true);
  fflush(stdout);
}

#endif /* TALON_EXAMPLES_COMMON_H */
