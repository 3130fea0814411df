/* The TLS engine: contexts (certificates, SNI, client certificates,
 * reload) and per-connection OpenSSL objects that speak through memory.
 *
 * Why memory and not the socket: libuv owns the socket and reads into
 * the loop's one receive buffer, and talon's output is corked and
 * flushed once per loop turn. So ciphertext is handed to OpenSSL from
 * that buffer (only what a paused reader leaves unused is copied), and
 * what OpenSSL writes goes into a buffer the connection flushes like any
 * other output. A small BIO of our own does both; a BIO pair or
 * BIO_s_mem would keep a growing buffer on every connection.
 *
 * A context holds a generation: the default SSL_CTX and one per SNI
 * certificate, built from the files. A reload builds a new generation
 * and swaps it in under the lock; each connection keeps a reference to
 * the generation it started with, so the SNI callback, which runs during
 * the handshake, never sees a generation go away under it.
 */
#include "core/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "talon/common.h"

#define DEFAULT_HANDSHAKE_MS 10000
#define LOG_PER_SECOND 10

typedef struct sni_entry {
  char *name; /* lower case; "*.x" for a wildcard */
  SSL_CTX *ctx;
} sni_entry;

typedef struct tls_gen {
  int refs; /* atomic */
  SSL_CTX *def;
  sni_entry *names;
  size_t nnames;
  SSL_CTX **ctxs; /* every SSL_CTX of the generation but def */
  size_t nctxs;
} tls_gen;

/* A copy of a tl_tls_cert: every string owned. */
typedef struct cert_spec {
  char *cert_file, *key_file, *chain_file;
  char **names; /* NULL-terminated, or NULL */
} cert_spec;

struct tl_tls {
  int refs; /* atomic */
  pthread_mutex_t lock;
  tls_gen *gen; /* current; under lock */
  cert_spec def;
  cert_spec *sni;
  size_t nsni;
  char *client_ca_file;
  bool client_cert_required;
  unsigned handshake_timeout_ms;
  char *ciphers, *ciphersuites;
  void (*log)(void *arg, const char *line);
  void *log_arg;
  BIO_METHOD *bio_method;
  /* The log's rate limit; under lock. */
  time_t log_second;
  unsigned log_count, log_suppressed;
};

struct tl__tls {
  SSL *ssl;
  tl_tls *ctx;
  tls_gen *gen;
  const char *in; /* input not used yet: borrowed, or inside `kept` */
  size_t in_len;
  bool in_kept;
  bool hs_done, seen, failed, closed, out_err;
  bool client;                    /* tl__tls_new_client */
  tl__tls_client_ctx *client_ctx; /* a client's (a reference) */
  tl__buf kept;
  tl__buf *out; /* where the BIO writes, during a call */
  const char *err;
  tl__tls_clock clock;
  char errbuf[160];
};

/* ---- small helpers --------------------------------------------------- */

static void set_err(char *err, size_t size, const char *fmt, const char *a,
                    const char *b) {
  if (err && size)
    snprintf(err, size, fmt, a ? a : "", b ? b : "");
}

/* OpenSSL's reason for the last failure, then its queue is emptied. */
static const char *ssl_reason(char *buf, size_t size) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (r) {
    snprintf(buf, size, "%s", r);
  } else if (e) {
    ERR_error_string_n(e, buf, size);
  } else {
    snprintf(buf, size, "unknown error");
  }
  ERR_clear_error();
  return buf;
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

static void gen_unref(tls_gen *g) {
  if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  SSL_CTX_free(g->def);
  for (size_t i = 0; i < g->nctxs; i++)
    SSL_CTX_free(g->ctxs[i]);
  for (size_t i = 0; i < g->nnames; i++)
    free(g->names[i].name);
  free(g->ctxs);
  free(g->names);
  free(g);
}

static tls_gen *gen_ref(tl_tls *ctx) {
  pthread_mutex_lock(&ctx->lock);
  tls_gen *g = ctx->gen;
  __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&ctx->lock);
  return g;
}

/* ---- the BIO: ciphertext through memory ------------------------------ */

static int bio_write(BIO *b, const char *p, int n) {
  tl__tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (!t->out || tl__buf_append(t->out, p, (size_t)n) != 0) {
    t->out_err = true;
    return -1;
  }
  return n;
}

static int bio_read(BIO *b, char *p, int n) {
  tl__tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->in_len == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t k = t->in_len < (size_t)n ? t->in_len : (size_t)n;
  memcpy(p, t->in, k);
  t->in += k;
  t->in_len -= k;
  return (int)k;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  tl__tls *t = BIO_get_data(b);
  switch (cmd) {
  case BIO_CTRL_FLUSH: return 1;
  case BIO_CTRL_PENDING: return t ? (long)t->in_len : 0;
  case BIO_CTRL_WPENDING: return 0;
  default: return 0;
  }
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int bio_destroy(BIO *b) {
  BIO_set_data(b, NULL);
  return 1;
}

static BIO_METHOD *new_bio_method(int type) {
  BIO_METHOD *m = BIO_meth_new(type, "talon memory");
  if (!m)
    return NULL;
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  BIO_meth_set_destroy(m, bio_destroy);
  return m;
}

/* ---- callbacks during the handshake ---------------------------------- */

/* ALPN: HTTP/1.1 only. A client that offers protocols but not this one
 * (h2 only) gets a fatal no_application_protocol alert. */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  for (unsigned i = 0; i < inlen;) {
    unsigned l = in[i];
    if (i + 1 + l > inlen)
      break;
    if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + l;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static bool name_matches(const char *pattern, const char *name) {
  if (pattern[0] == '*' && pattern[1] == '.') {
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcasecmp(dot + 1, pattern + 2) == 0;
  }
  return strcasecmp(pattern, name) == 0;
}

/* SNI: the certificate for the name, exact names before wildcards; the
 * default one when none matches. */
static int on_servername(SSL *ssl, int *alert, void *arg) {
  tl__tls *t = SSL_get_app_data(ssl);
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!t || !name)
    return SSL_TLSEXT_ERR_OK;
  const tls_gen *g = t->gen;
  SSL_CTX *found = NULL;
  for (int pass = 0; pass < 2 && !found; pass++) {
    for (size_t i = 0; i < g->nnames; i++) {
      bool wild = g->names[i].name[0] == '*';
      if (wild == (pass == 1) && name_matches(g->names[i].name, name)) {
        found = g->names[i].ctx;
        break;
      }
    }
  }
  if (found && found != SSL_get_SSL_CTX(ssl))
    SSL_set_SSL_CTX(ssl, found);
  return SSL_TLSEXT_ERR_OK;
}

/* ---- building a generation ------------------------------------------- */

static int load_chain_file(SSL_CTX *c, const char *path, char *err,
                           size_t errsize) {
  BIO *b = BIO_new_file(path, "r");
  if (!b) {
    char r[128];
    set_err(err, errsize, "%s: %s", path, ssl_reason(r, sizeof r));
    return TL_EINVAL;
  }
  int n = 0;
  X509 *x;
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (!SSL_CTX_add0_chain_cert(c, x)) {
      X509_free(x);
      BIO_free(b);
      set_err(err, errsize, "%s: %s", path, "cannot add to the chain");
      return TL_EINVAL;
    }
    n++;
  }
  ERR_clear_error(); /* the end of the file */
  BIO_free(b);
  if (n == 0) {
    set_err(err, errsize, "%s: %s", path, "no certificate in the file");
    return TL_EINVAL;
  }
  return 0;
}

static SSL_CTX *make_ctx(const tl_tls *ctx, const cert_spec *cs, char *err,
                         size_t errsize) {
  char r[160];
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (!c) {
    set_err(err, errsize, "%s%s", "out of memory", NULL);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  /* Renegotiation is refused (OpenSSL 3 refuses a client's by default;
   * NO_RENEGOTIATION also answers a request with an alert). */
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE);
  /* Idle connections give their read and write buffers back. Output is
   * always handed over whole (our BIO never refuses), so OpenSSL never
   * has to retry a write from a moved buffer. */
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_id_context(c, (const unsigned char *)"talon", 5);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_num_tickets(c, 1);
  SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
  SSL_CTX_set_tlsext_servername_callback(c, on_servername);
  if (ctx->ciphers && !SSL_CTX_set_cipher_list(c, ctx->ciphers)) {
    set_err(err, errsize, "ciphers \"%s\": %s", ctx->ciphers,
            ssl_reason(r, sizeof r));
    goto fail;
  }
  if (ctx->ciphersuites && !SSL_CTX_set_ciphersuites(c, ctx->ciphersuites)) {
    set_err(err, errsize, "ciphersuites \"%s\": %s", ctx->ciphersuites,
            ssl_reason(r, sizeof r));
    goto fail;
  }
  if (!cs->cert_file || !cs->key_file) {
    set_err(err, errsize, "%s%s", "a certificate needs cert_file and key_file",
            NULL);
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(c, cs->cert_file) != 1) {
    set_err(err, errsize, "%s: %s", cs->cert_file, ssl_reason(r, sizeof r));
    goto fail;
  }
  if (cs->chain_file && load_chain_file(c, cs->chain_file, err, errsize))
    goto fail;
  if (SSL_CTX_use_PrivateKey_file(c, cs->key_file, SSL_FILETYPE_PEM) != 1) {
    set_err(err, errsize, "%s: %s", cs->key_file, ssl_reason(r, sizeof r));
    goto fail;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    set_err(err, errsize, "%s: %s", cs->key_file,
            "the key does not match the certificate");
    ERR_clear_error();
    goto fail;
  }
  if (ctx->client_ca_file) {
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ctx->client_ca_file);
    if (!names ||
        SSL_CTX_load_verify_locations(c, ctx->client_ca_file, NULL) != 1) {
      sk_X509_NAME_pop_free(names, X509_NAME_free);
      set_err(err, errsize, "%s: %s", ctx->client_ca_file,
              ssl_reason(r, sizeof r));
      goto fail;
    }
    SSL_CTX_set_client_CA_list(c, names);
    SSL_CTX_set_verify(
        c,
        SSL_VERIFY_PEER |
            (ctx->client_cert_required ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        NULL);
  }
  return c;
fail:
  SSL_CTX_free(c);
  return NULL;
}

static int add_name(tls_gen *g, const char *name, size_t len, SSL_CTX *c) {
  sni_entry *n = realloc(g->names, (g->nnames + 1) * sizeof *n);
  if (!n)
    return TL_ENOMEM;
  g->names = n;
  char *s = malloc(len + 1);
  if (!s)
    return TL_ENOMEM;
  memcpy(s, name, len);
  s[len] = '\0';
  n[g->nnames++] = (sni_entry){s, c};
  return 0;
}

/* The DNS names of the certificate's subjectAltName. */
static int add_san_names(tls_gen *g, SSL_CTX *c) {
  X509 *x = SSL_CTX_get0_certificate(c);
  GENERAL_NAMES *san =
      x ? X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL) : NULL;
  int err = 0;
  for (int i = 0; san && !err && i < sk_GENERAL_NAME_num(san); i++) {
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
    if (gn->type != GEN_DNS)
      continue;
    const ASN1_STRING *s = gn->d.dNSName;
    err = add_name(g, (const char *)ASN1_STRING_get0_data(s),
                   (size_t)ASN1_STRING_length(s), c);
  }
  GENERAL_NAMES_free(san);
  return err;
}

static tls_gen *gen_build(const tl_tls *ctx, char *err, size_t errsize) {
  tls_gen *g = calloc(1, sizeof *g);
  if (!g || (ctx->nsni && !(g->ctxs = calloc(ctx->nsni, sizeof *g->ctxs)))) {
    free(g);
    set_err(err, errsize, "%s%s", "out of memory", NULL);
    return NULL;
  }
  g->refs = 1;
  if (!(g->def = make_ctx(ctx, &ctx->def, err, errsize)))
    goto fail;
  for (size_t i = 0; i < ctx->nsni; i++) {
    SSL_CTX *c = make_ctx(ctx, &ctx->sni[i], err, errsize);
    if (!c)
      goto fail;
    g->ctxs[g->nctxs++] = c;
    int e = 0;
    if (ctx->sni[i].names) {
      for (char **n = ctx->sni[i].names; *n && !e; n++)
        e = add_name(g, *n, strlen(*n), c);
    } else {
      e = add_san_names(g, c);
    }
    if (e) {
      set_err(err, errsize, "%s%s", "out of memory", NULL);
      goto fail;
    }
  }
  return g;
fail:
  gen_unref(g);
  return NULL;
}

/* ---- contexts --------------------------------------------------------- */

static void spec_free(cert_spec *s) {
  free(s->cert_file);
  free(s->key_file);
  free(s->chain_file);
  if (s->names)
    for (char **n = s->names; *n; n++)
      free(*n);
  free(s->names);
}

static int spec_copy(cert_spec *d, const tl_tls_cert *s) {
  d->cert_file = dup_or_null(s->cert_file);
  d->key_file = dup_or_null(s->key_file);
  d->chain_file = dup_or_null(s->chain_file);
  if ((s->cert_file && !d->cert_file) || (s->key_file && !d->key_file) ||
      (s->chain_file && !d->chain_file))
    return TL_ENOMEM;
  if (s->names) {
    size_t n = 0;
    while (s->names[n])
      n++;
    if (!(d->names = calloc(n + 1, sizeof *d->names)))
      return TL_ENOMEM;
    for (size_t i = 0; i < n; i++)
      if (!(d->names[i] = strdup(s->names[i])))
        return TL_ENOMEM;
  }
  return 0;
}

static void ctx_free(tl_tls *ctx) {
  gen_unref(ctx->gen);
  spec_free(&ctx->def);
  for (size_t i = 0; i < ctx->nsni; i++)
    spec_free(&ctx->sni[i]);
  free(ctx->sni);
  free(ctx->client_ca_file);
  free(ctx->ciphers);
  free(ctx->ciphersuites);
  if (ctx->bio_method)
    BIO_meth_free(ctx->bio_method);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
}

tl_tls *tl_tls_new(const tl_tls_config *cfg, char *err, size_t errsize) {
  if (!cfg) {
    set_err(err, errsize, "%s%s", "no configuration", NULL);
    return NULL;
  }
  tl_tls *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    set_err(err, errsize, "%s%s", "out of memory", NULL);
    return NULL;
  }
  pthread_mutex_init(&ctx->lock, NULL);
  ctx->refs = 1;
  ctx->client_cert_required = cfg->client_cert_required;
  ctx->handshake_timeout_ms = cfg->handshake_timeout_ms
                                  ? cfg->handshake_timeout_ms
                                  : DEFAULT_HANDSHAKE_MS;
  ctx->log = cfg->log;
  ctx->log_arg = cfg->log_arg;
  bool oom = spec_copy(&ctx->def, &cfg->cert) != 0;
  if (cfg->nsni) {
    ctx->sni = calloc(cfg->nsni, sizeof *ctx->sni);
    oom |= !ctx->sni;
    for (size_t i = 0; ctx->sni && i < cfg->nsni; i++, ctx->nsni++)
      oom |= spec_copy(&ctx->sni[i], &cfg->sni[i]) != 0;
  }
  ctx->client_ca_file = dup_or_null(cfg->client_ca_file);
  ctx->ciphers = dup_or_null(cfg->ciphers);
  ctx->ciphersuites = dup_or_null(cfg->ciphersuites);
  oom |= (cfg->client_ca_file && !ctx->client_ca_file) ||
         (cfg->ciphers && !ctx->ciphers) ||
         (cfg->ciphersuites && !ctx->ciphersuites);
  ctx->bio_method = new_bio_method(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK);
  oom |= !ctx->bio_method;
  if (oom) {
    set_err(err, errsize, "%s%s", "out of memory", NULL);
    ctx_free(ctx);
    return NULL;
  }
  if (!(ctx->gen = gen_build(ctx, err, errsize))) {
    ctx_free(ctx);
    return NULL;
  }
  return ctx;
}

int tl_tls_reload(tl_tls *ctx, char *err, size_t errsize) {
  if (!ctx)
    return TL_EINVAL;
  tls_gen *g = gen_build(ctx, err, errsize);
  if (!g)
    return TL_EINVAL;
  pthread_mutex_lock(&ctx->lock);
  tls_gen *old = ctx->gen;
  /* Tickets issued before the reload stay valid: the ticket keys carry
   * over (the server-side session cache does not). */
  unsigned char keys[80];
  if (SSL_CTX_get_tlsext_ticket_keys(old->def, keys, sizeof keys) == 1)
    SSL_CTX_set_tlsext_ticket_keys(g->def, keys, sizeof keys);
  OPENSSL_cleanse(keys, sizeof keys);
  ctx->gen = g;
  pthread_mutex_unlock(&ctx->lock);
  gen_unref(old);
  return 0;
}

tl_tls *tl__tls_ref(tl_tls *ctx) {
  if (ctx)
    __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
  return ctx;
}

void tl_tls_free(tl_tls *ctx) {
  if (ctx && __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) == 0)
    ctx_free(ctx);
}

unsigned tl__tls_handshake_timeout(const tl_tls *ctx) {
  return ctx->handshake_timeout_ms;
}

void tl__tls_log(tl_tls *ctx, const char *peer, const char *what,
                 void (*sink)(void *arg, const char *line), void *arg) {
  /* The context's own log takes the lines as they were ("PEER: WHAT"). */
  const char *tag = ctx->log ? "" : "tls: ";
  if (ctx->log) {
    sink = ctx->log;
    arg = ctx->log_arg;
  }
  if (!sink)
    return; /* the library prints nothing itself */
  time_t now = time(NULL);
  unsigned suppressed = 0;
  bool say;
  pthread_mutex_lock(&ctx->lock);
  if (now != ctx->log_second) {
    suppressed = ctx->log_suppressed;
    ctx->log_second = now;
    ctx->log_count = 0;
    ctx->log_suppressed = 0;
  }
  say = ctx->log_count < LOG_PER_SECOND;
  if (say)
    ctx->log_count++;
  else
    ctx->log_suppressed++;
  pthread_mutex_unlock(&ctx->lock);
  char line[384];
  if (suppressed) {
    snprintf(line, sizeof line, "%s%u more lines suppressed", tag, suppressed);
    sink(arg, line);
  }
  if (!say)
    return;
  snprintf(line, sizeof line, "%s%s: %s", tag, peer && *peer ? peer : "?",
           what);
  sink(arg, line);
}

/* ---- connections ------------------------------------------------------ */

tl__tls *tl__tls_new_server(tl_tls *ctx) {
  tl__tls *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->gen = gen_ref(ctx);
  t->ctx = tl__tls_ref(ctx);
  BIO *b = NULL;
  if (!(t->ssl = SSL_new(t->gen->def)) || !(b = BIO_new(ctx->bio_method))) {
    ERR_clear_error();
    tl__tls_free(t);
    return NULL;
  }
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b); /* one BIO both ways: SSL owns it */
  SSL_set_app_data(t->ssl, t);
  SSL_set_accept_state(t->ssl);
  return t;
}

/* ---- the client side -------------------------------------------------- */

/* Whether `host` is an IP address literal (no SNI; checked as an IP). */
static bool is_ip_literal(const char *host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host, buf) == 1 ||
         inet_pton(AF_INET6, host, buf) == 1;
}


/* A client's trust settings, shared by the connections of one loop that
 * use the same ones: loading the system's CA store takes about 20 ms,
 * too long to pay per connection on the loop. */
struct tl__tls_client_ctx {
  unsigned refs; /* one loop's: no atomics */
  SSL_CTX *ssl_ctx;
  /* The memory BIO's method, of the plain source/sink type: a fresh type
   * index per context would run out (OpenSSL has a few hundred). */
  BIO_METHOD *bio_method;
};

tl__tls_client_ctx *tl__tls_client_ctx_new(const char *ca_file, bool verify,
                                           char *err, size_t errsize) {
  tl__tls_client_ctx *cc = calloc(1, sizeof *cc);
  const char *why = "out of memory";
  if (!cc)
    goto fail;
  cc->refs = 1;
  SSL_CTX *sc = cc->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (!sc || !(cc->bio_method = new_bio_method(BIO_TYPE_SOURCE_SINK)))
    goto fail;
  SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
  SSL_CTX_set_options(sc, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (verify) {
    if (ca_file ? SSL_CTX_load_verify_locations(sc, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(sc) != 1) {
      why = ca_file ? "cannot load the CA file" : "cannot load the CA store";
      goto fail;
    }
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
  } else {
    SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
  }
  static const unsigned char alpn[] = "\x08http/1.1";
  if (SSL_CTX_set_alpn_protos(sc, alpn, sizeof alpn - 1) != 0)
    goto fail;
  return cc;
fail:
  if (err && errsize) {
    char r[160];
    if (ERR_peek_last_error())
      snprintf(err, errsize, "%s: %s", why, ssl_reason(r, sizeof r));
    else
      snprintf(err, errsize, "%s", why);
  }
  ERR_clear_error();
  tl__tls_client_ctx_free(cc);
  return NULL;
}

void tl__tls_client_ctx_free(tl__tls_client_ctx *cc) {
  if (!cc || --cc->refs > 0)
    return;
  SSL_CTX_free(cc->ssl_ctx);
  if (cc->bio_method)
    BIO_meth_free(cc->bio_method);
  free(cc);
}

tl__tls *tl__tls_new_client(tl__tls_client_ctx *cc, const char *host,
                            bool verify) {
  tl__tls *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->client = true;
  t->client_ctx = cc;
  cc->refs++;
  BIO *b = NULL;
  if (!(t->ssl = SSL_new(cc->ssl_ctx)) || !(b = BIO_new(cc->bio_method)))
    goto fail;
  BIO_set_data(b, t);
  SSL_set_bio(t->ssl, b, b);
  SSL_set_app_data(t->ssl, t);
  bool ip = is_ip_literal(host);
  if (!ip && SSL_set_tlsext_host_name(t->ssl, host) != 1)
    goto fail;
  if (verify) {
    /* The certificate must name the host: a DNS name (wildcards of one
     * label), or for an address literal an IP subjectAltName. */
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
            : X509_VERIFY_PARAM_set1_host(vp, host, 0)) != 1)
      goto fail;
  }
  SSL_set_connect_state(t->ssl);
  return t;
fail:
  ERR_clear_error();
  tl__tls_free(t);
  return NULL;
}

bool tl__tls_is_client(const tl__tls *t) {
  return t->client;
}

bool tl__tls_failed(const tl__tls *t) {
  return t->failed;
}

void tl__tls_free(tl__tls *t) {
  if (!t)
    return;
  if (t->ssl)
    SSL_free(t->ssl);
  tl__tls_client_ctx_free(t->client_ctx);
  gen_unref(t->gen);
  tl_tls_free(t->ctx);
  tl__buf_free(&t->kept);
  free(t);
}

tl_tls *tl__tls_ctx(const tl__tls *t) {
  return t->ctx;
}

tl__tls_clock *tl__tls_clock_of(tl__tls *t) {
  return &t->clock;
}

int tl__tls_input(tl__tls *t, const char *p, size_t n) {
  if (t->in_len == 0) {
    t->in = p;
    t->in_len = n;
    t->in_kept = false;
    return 0;
  }
  if (!t->in_kept) {
    int err = tl__tls_keep_input(t);
    if (err)
      return err;
  }
  size_t off = (size_t)(t->in - t->kept.data);
  if (tl__buf_append(&t->kept, p, n))
    return TL_ENOMEM;
  t->in = t->kept.data + off;
  t->in_len += n;
  return 0;
}

int tl__tls_keep_input(tl__tls *t) {
  if (t->in_len == 0) {
    /* Nothing left: an idle connection keeps no buffer. */
    tl__buf_free(&t->kept);
    t->in = NULL;
    t->in_kept = false;
    return 0;
  }
  if (t->in_kept) {
    size_t off = (size_t)(t->in - t->kept.data);
    if (off > t->kept.len / 2) {
      tl__buf_consume(&t->kept, off);
      t->in = t->kept.data;
    }
    return 0;
  }
  t->kept.len = 0;
  if (tl__buf_append(&t->kept, t->in, t->in_len))
    return TL_ENOMEM;
  t->in = t->kept.data;
  t->in_kept = true;
  return 0;
}

static int fail(tl__tls *t, int e) {
  t->failed = true;
  if (t->out_err) {
    t->err = "out of memory";
    ERR_clear_error();
  } else if (e == SSL_ERROR_SSL && t->client && !t->hs_done &&
             SSL_get_verify_result(t->ssl) != X509_V_OK) {
    /* Say which check refused the server's certificate. */
    snprintf(t->errbuf, sizeof t->errbuf, "certificate verify failed: %s",
             X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
    ERR_clear_error();
    t->err = t->errbuf;
  } else if (e == SSL_ERROR_SSL) {
    t->err = ssl_reason(t->errbuf, sizeof t->errbuf);
  } else {
    t->err = "protocol error";
    ERR_clear_error();
  }
  return TL__TLS_FAIL;
}

/* Plain HTTP starts with a method in capitals; a TLS record with its
 * type (22 for a handshake). */
static bool looks_like_http(const char *p, size_t n) {
  return n > 0 && p[0] >= 'A' && p[0] <= 'Z';
}

int tl__tls_read(tl__tls *t, char *buf, size_t cap, size_t *got, tl__buf *out) {
  *got = 0;
  if (t->failed)
    return TL__TLS_FAIL;
  t->out = out;
  t->out_err = false;
  int st = TL__TLS_AGAIN;
  if (!t->hs_done) {
    if (!t->seen && t->in_len) {
      t->seen = true;
      if (!t->client && looks_like_http(t->in, t->in_len)) {
        t->failed = true;
        t->err = "plain HTTP on the TLS port";
        t->out = NULL;
        return TL__TLS_PLAIN;
      }
    }
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      t->out = NULL;
      if (e == SSL_ERROR_WANT_READ && !t->out_err)
        return TL__TLS_AGAIN;
      return fail(t, e);
    }
    t->hs_done = true;
  }
  while (*got < cap) {
    size_t k = 0;
    if (SSL_read_ex(t->ssl, buf + *got, cap - *got, &k)) {
      *got += k;
      continue;
    }
    int e = SSL_get_error(t->ssl, 0);
    if (e == SSL_ERROR_WANT_READ && !t->out_err)
      st = TL__TLS_AGAIN;
    else if (e == SSL_ERROR_ZERO_RETURN)
      st = TL__TLS_EOF;
    else
      st = fail(t, e);
    break;
  }
  if (*got == cap && st == TL__TLS_AGAIN)
    st = TL__TLS_MORE;
  t->out = NULL;
  return st;
}

int tl__tls_write(tl__tls *t, const void *p, size_t n, tl__buf *out) {
  if (!t->hs_done || t->failed)
    return TL_ESTATE;
  if (n == 0)
    return 0;
  t->out = out;
  t->out_err = false;
  size_t w = 0;
  int ok = SSL_write_ex(t->ssl, p, n, &w);
  t->out = NULL;
  if (!ok || w != n) {
    bool oom = t->out_err;
    fail(t, SSL_get_error(t->ssl, ok));
    return oom ? TL_ENOMEM : TL_ESTATE;
  }
  return 0;
}

void tl__tls_close_notify(tl__tls *t, tl__buf *out) {
  if (!t->hs_done || t->failed || t->closed)
    return;
  t->closed = true;
  t->out = out;
  SSL_shutdown(t->ssl);
  t->out = NULL;
  ERR_clear_error();
}

bool tl__tls_handshaking(const tl__tls *t) {
  return !t->hs_done;
}

bool tl__tls_seen(const tl__tls *t) {
  return t->seen;
}

bool tl__tls_has_input(const tl__tls *t) {
  return t->in_len > 0 || SSL_has_pending(t->ssl);
}

const char *tl__tls_error(const tl__tls *t) {
  return t->err ? t->err : "error";
}

const char *tl__tls_server_name(const tl__tls *t) {
  return SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
}

void tl__tls_info(const tl__tls *t, tl_tls_info *info) {
  memset(info, 0, sizeof *info);
  info->version = SSL_get_version(t->ssl);
  info->cipher = SSL_get_cipher_name(t->ssl);
  info->server_name = tl__tls_server_name(t);
  const unsigned char *alpn = NULL;
  unsigned alen = 0;
  SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
  if (alpn && alen == 8)
    info->alpn = "http/1.1";
  info->resumed = SSL_session_reused(t->ssl) == 1;
  X509 *peer = SSL_get0_peer_certificate(t->ssl);
  if (peer) {
    info->client_verified = SSL_get_verify_result(t->ssl) == X509_V_OK;
    X509_NAME_oneline(X509_get_subject_name(peer), info->client_subject,
                      sizeof info->client_subject);
  }
  info->ktls_send = BIO_get_ktls_send(SSL_get_wbio(t->ssl)) != 0;
}
