/* talon — HTTPS and WSS: TLS terminated in talon, on OpenSSL.
 *
 *   char err[256];
 *   tl_tls *tls = tl_tls_new(&(tl_tls_config){
 *       .cert = {.cert_file = "cert.pem", .key_file = "key.pem"}},
 *       err, sizeof err);
 *   if (!tls) { fprintf(stderr, "tls: %s\n", err); return 1; }
 *   tl_app_add_listener(app, "0.0.0.0", 3443, tls);  // HTTPS beside ...
 *   tl_tls_free(tls);                      // (the app keeps a reference)
 *   return tl_app_listen(app, "0.0.0.0", 3000);     // ... plain HTTP
 *
 * A tl_tls is a server TLS context: certificates and policy, shared by
 * every listener (and worker) it is given to. TLS 1.2 is the minimum, 1.3
 * is preferred; ALPN offers only "http/1.1" (a client that offers ALPN
 * without it, e.g. h2 only, fails the handshake); session resumption is
 * on (tickets and a server-side cache); renegotiation is refused; TLS
 * compression is off. Every HTTP and WebSocket feature works the same
 * over TLS: a callback's output is encrypted at the loop turn's flush
 * into as few records as possible.
 *
 * Threads: tl_tls_new, tl_tls_reload and tl_tls_free may be called from
 * any thread; a context is safe to share between threads (each
 * connection has its own OpenSSL object, made from the current
 * certificates when it is accepted).
 */
#ifndef TALON_TLS_H
#define TALON_TLS_H

#include <stdbool.h>

#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tl_tls tl_tls;

/* A certificate and its key, in PEM files. Every path is copied; the
 * files are read by tl_tls_new() and again by tl_tls_reload(). */
typedef struct tl_tls_cert {
  /* The certificate, optionally followed by its intermediates. */
  const char *cert_file;
  /* Its private key (unencrypted PEM). */
  const char *key_file;
  /* More intermediates, if they are in a file of their own. [NULL] */
  const char *chain_file;
  /* For the certificates of tl_tls_config.sni: the server names (SNI) it
   * answers, a NULL-terminated list; "*.example.com" matches one label.
   * NULL: the DNS names of its subjectAltName. Ignored for the default
   * certificate, which answers every name no other one does. */
  const char *const *names;
} tl_tls_cert;

/* Options for tl_tls_new(). A zero field means the default, in brackets. */
typedef struct tl_tls_config {
  /* The default certificate (required). */
  tl_tls_cert cert;
  /* More certificates, chosen by the server name the client asks for
   * (SNI). [none] */
  const tl_tls_cert *sni;
  size_t nsni;
  /* PEM file of CAs: clients are asked for a certificate, which is
   * verified against them. [NULL: no client certificates] */
  const char *client_ca_file;
  /* With client_ca_file: a client without a valid certificate fails the
   * handshake. [false: the certificate is optional; a handler sees
   * whether one was verified in tl_tls_info.client_verified] */
  bool client_cert_required;
  /* A connection that has not finished its handshake this long after it
   * was accepted is closed (and logged). [10000 ms] */
  unsigned handshake_timeout_ms;
  /* OpenSSL cipher lists for TLS 1.2 and TLS 1.3. [OpenSSL's defaults] */
  const char *ciphers;
  const char *ciphersuites;
  /* Where talon reports what goes wrong on a TLS connection (a failed
   * handshake and why, a handshake timeout, plain HTTP sent to the TLS
   * port), one line without a newline, at most about 10 lines a second
   * (the rest are counted and reported as suppressed). Called on the
   * connection's loop thread; `line` is valid only during the call.
   * [NULL: the line goes to the log hooks of the app that accepted the
   * connection (tl_app_on_log, which the logger middleware uses),
   * prefixed "tls: "; with no hook, nowhere: talon prints nothing] */
  void (*log)(void *arg, const char *line);
  void *log_arg;
} tl_tls_config;

/* A new TLS context with `config` copied and its files loaded. Returns
 * NULL if a file cannot be read, a key does not match its certificate,
 * an option is invalid or memory ran out; then a message saying which is
 * written into `err` (`errsize` bytes, may be NULL). The caller owns one
 * reference: tl_tls_free() it when done; listeners keep their own. Any
 * thread. */
TL_EXTERN tl_tls *tl_tls_new(const tl_tls_config *config, char *err,
                             size_t errsize);

/* Reads every certificate, key and CA file again (e.g. after a renewal,
 * on SIGHUP) and, if all load, makes them the ones new connections get;
 * connections already open keep theirs, and sessions stay resumable (the
 * ticket keys carry over). If anything fails, nothing changes: returns
 * TL_EINVAL with the reason in `err`. 0 on success. Safe from any thread,
 * also while listeners accept on other threads. */
TL_EXTERN int tl_tls_reload(tl_tls *tls, char *err, size_t errsize);

/* Drops the caller's reference; the context goes when the last listener
 * that uses it has stopped. NULL is a no-op. Any thread. */
TL_EXTERN void tl_tls_free(tl_tls *tls);

/* Adds a listener on `host`:`port` that tl_app_listen() (or
 * tl_app_listen_tls()) opens beside its own, with TLS when `tls` is not
 * NULL (the app takes its own reference), plain when it is. `host` takes
 * every form tl_app_listen() does (an address, a name, "unix:/path",
 * "fd:N", "systemd[:NAME]"), so one app can serve TCP, TLS and unix
 * sockets together; TLS works on a unix socket too. Call before
 * listening. Listeners are numbered in the order they are added, from 1
 * (tl_app_listener_port). Returns 0, TL_EINVAL (NULL app, bad host form
 * or port), UV_ENAMETOOLONG (a unix path of 108 bytes or more),
 * TL_ESTATE (listening) or TL_ENOMEM; names are resolved and sockets
 * opened at listen, which returns those errors. */
TL_EXTERN int tl_app_add_listener(tl_app *app, const char *host, int port,
                                  tl_tls *tls);

/* tl_app_listen() with TLS on its own listener (`tls` required; the app
 * keeps a reference while it runs). Same returns. */
TL_EXTERN int tl_app_listen_tls(tl_app *app, const char *host, int port,
                                tl_tls *tls);

/* The bound port of listener `i` while listening (0: the one of the
 * listen call, 1...: the added ones in order; a name with several
 * addresses has one port for all), else 0 (also for a unix socket). */
TL_EXTERN int tl_app_listener_port(const tl_app *app, size_t i);

/* Whether the request came over TLS that talon terminated. */
TL_EXTERN bool tl_req_is_tls(const tl_req *req);

/* The server name the client asked for (SNI), or NULL (plain, or none
 * sent). Lives as long as the connection; copy it to keep it. */
TL_EXTERN const char *tl_req_server_name(const tl_req *req);

/* What was negotiated on a TLS connection. Strings are static or live as
 * long as the connection. */
typedef struct tl_tls_info {
  const char *version;      /* "TLSv1.3", "TLSv1.2" */
  const char *cipher;       /* "TLS_AES_256_GCM_SHA384", ... */
  const char *server_name;  /* SNI, or NULL */
  const char *alpn;         /* "http/1.1", or NULL if the client sent none */
  bool resumed;             /* the session was resumed */
  bool client_verified;     /* a client certificate was sent and verified */
  bool ktls_send;           /* the kernel encrypts what is sent (false
                               for now: talon does not enable kernel TLS
                               yet, see docs/tls.md) */
  char client_subject[256]; /* the client certificate's subject, or "" */
} tl_tls_info;

/* Fills `info` for the request's connection. Returns 0, or TL_ENOENT when
 * the request did not come over TLS. */
TL_EXTERN int tl_req_tls_info(const tl_req *req, tl_tls_info *info);

#ifdef __cplusplus
}
#endif
#endif /* TALON_TLS_H */
