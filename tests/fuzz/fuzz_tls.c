/* libFuzzer target for the TLS glue (src/core/tls.c): the server-side
 * engine that conn.c drives, fed through memory exactly as the
 * connection feeds it (borrowed input, kept remainders, a plaintext
 * buffer of a fuzzed size, ciphertext out into a buffer).
 *
 * The first call makes a throwaway EC key and self-signed certificate
 * (written to temporary files for tl_tls_new, then removed) and a client
 * SSL_CTX. Each input:
 *   byte 0 bit 0: 0 = raw mode: the rest is what a client sends, fed in
 *     pieces of (byte 1 & 63) + 1 bytes, read with a plaintext buffer of
 *     (byte 2) + 1 bytes; the engine must fail, want more, or answer
 *     plain HTTP, never crash or leak;
 *   1 = session mode: a real OpenSSL client completes a handshake with
 *     the engine (its flights delivered in pieces), then the rest is
 *     application data: the client encrypts it in records of fuzzed
 *     sizes, the records reach the engine in fuzzed pieces (bit 1 flips
 *     one byte of one record: the engine must then fail, not deliver
 *     garbage), and the plaintext must come out exactly; the engine then
 *     writes it back and the client must read the same bytes; bit 2 ends
 *     with close_notify from the client (the engine reports EOF).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/tls.h"

static tl_tls *g_srv;
static SSL_CTX *g_cli;

static void quiet(void *arg, const char *line) {}

static void cleanup(void) {
  tl_tls_free(g_srv);
  SSL_CTX_free(g_cli);
}

static void init(void) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                             (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, n);
  X509_sign(x, key, EVP_sha256());
  char cert[] = "/tmp/fuzz_tls_certXXXXXX", kf[] = "/tmp/fuzz_tls_keyXXXXXX";
  int cfd = mkstemp(cert), kfd = mkstemp(kf);
  FILE *cf = fdopen(cfd, "w"), *kff = fdopen(kfd, "w");
  PEM_write_X509(cf, x);
  PEM_write_PrivateKey(kff, key, NULL, NULL, 0, NULL, NULL);
  fclose(cf);
  fclose(kff);
  char err[256];
  g_srv =
      tl_tls_new(&(tl_tls_config){.cert = {.cert_file = cert, .key_file = kf},
                                  .log = quiet},
                 err, sizeof err);
  unlink(cert);
  unlink(kf);
  if (!g_srv) {
    fprintf(stderr, "fuzz_tls: %s\n", err);
    abort();
  }
  X509_free(x);
  EVP_PKEY_free(key);
  g_cli = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(g_cli, SSL_VERIFY_NONE, NULL);
  atexit(cleanup);
}

/* Feeds `len` bytes to the engine in pieces of `piece`, reading with a
 * buffer of `cap` after each; plaintext goes to `plain` (may be NULL);
 * ciphertext the engine produced is appended to `back`. Returns the last
 * status. */
static int feed(tl__tls *t, const uint8_t *p, size_t len, size_t piece,
                size_t cap, tl__buf *plain, tl__buf *back) {
  char *buf = malloc(cap);
  int st = TL__TLS_AGAIN;
  for (size_t off = 0; off < len || st == TL__TLS_MORE;) {
    size_t k = len - off < piece ? len - off : piece;
    if (k && tl__tls_input(t, (const char *)p + off, k) != 0)
      abort();
    off += k;
    do {
      size_t got = 0;
      st = tl__tls_read(t, buf, cap, &got, back);
      if (got > cap)
        abort();
      if (got && plain)
        tl__buf_append(plain, buf, got);
      else if (got && !plain)
        abort(); /* plaintext before any handshake: impossible */
    } while (st == TL__TLS_MORE);
    /* The borrowed input is about to go: keep the rest, as conn.c does. */
    if (tl__tls_keep_input(t) != 0)
      abort();
    if (st == TL__TLS_FAIL || st == TL__TLS_PLAIN || st == TL__TLS_EOF)
      break;
  }
  free(buf);
  return st;
}

static void raw_mode(const uint8_t *data, size_t size) {
  if (size < 3)
    return;
  size_t piece = (data[1] & 63) + 1, cap = (size_t)data[2] + 1;
  tl__tls *t = tl__tls_new_server(g_srv);
  tl__buf back = {0};
  int st = feed(t, data + 3, size - 3, piece, cap, NULL, &back);
  if (st == TL__TLS_PLAIN && !(data[3] >= 'A' && data[3] <= 'Z'))
    abort();
  if (!tl__tls_handshaking(t))
    abort(); /* no client can finish a handshake with fuzz alone */
  tl__buf_free(&back);
  tl__tls_free(t);
}

/* Moves what the client BIO holds to `out`. */
static void drain_bio(BIO *b, tl__buf *out) {
  char tmp[4096];
  int n;
  while ((n = BIO_read(b, tmp, sizeof tmp)) > 0)
    tl__buf_append(out, tmp, (size_t)n);
}

static void session_mode(const uint8_t *data, size_t size) {
  if (size < 4)
    return;
  uint8_t flags = data[0], piece_b = data[1], cap_b = data[2], rec_b = data[3];
  const uint8_t *app = data + 4;
  size_t applen = size - 4;
  size_t piece = (size_t)(piece_b & 127) + 1;
  size_t cap = (size_t)cap_b * 64 + 1;
  tl__tls *t = tl__tls_new_server(g_srv);
  SSL *c = SSL_new(g_cli);
  BIO *cin = BIO_new(BIO_s_mem()), *cout = BIO_new(BIO_s_mem());
  SSL_set_bio(c, cin, cout);
  SSL_set_connect_state(c);
  SSL_set_tlsext_host_name(c, "localhost");
  tl__buf wire = {0}, back = {0}, plain = {0};
  /* The handshake: flights back and forth until both are done. */
  for (int round = 0; round < 8; round++) {
    int r = SSL_do_handshake(c);
    wire.len = 0;
    drain_bio(cout, &wire);
    back.len = 0;
    int st = feed(t, (const uint8_t *)wire.data, wire.len, piece, cap, &plain,
                  &back);
    if (st == TL__TLS_FAIL)
      abort(); /* a real client must get through */
    BIO_write(cin, back.data, (int)back.len);
    if (r == 1 && !tl__tls_handshaking(t))
      break;
  }
  if (tl__tls_handshaking(t) || !SSL_is_init_finished(c))
    abort();
  /* Application data, in records of fuzzed sizes. */
  size_t rec = (size_t)rec_b * 97 + 1;
  wire.len = 0;
  for (size_t off = 0; off < applen; off += rec) {
    size_t k = applen - off < rec ? applen - off : rec;
    if (SSL_write(c, app + off, (int)k) != (int)k)
      abort();
    drain_bio(cout, &wire);
  }
  bool flip = (flags & 2) && wire.len > 0;
  if (flip)
    wire.data[(size_t)piece_b * 31 % wire.len] ^= 0x40;
  if (flags & 4) {
    SSL_shutdown(c);
    drain_bio(cout, &wire);
  }
  back.len = 0;
  plain.len = 0;
  int st =
      feed(t, (const uint8_t *)wire.data, wire.len, piece, cap, &plain, &back);
  if (!flip) {
    if (st == TL__TLS_FAIL || plain.len != applen ||
        (applen && memcmp(plain.data, app, applen) != 0))
      abort();
    if ((flags & 4) && st != TL__TLS_EOF)
      abort();
    /* And back: the engine encrypts, the client must read it all. */
    if (!(flags & 4) && applen) {
      back.len = 0;
      if (tl__tls_write(t, app, applen, &back) != 0)
        abort();
      BIO_write(cin, back.data, (int)back.len);
      tl__buf got = {0};
      char tmp[4096];
      int n;
      while ((n = SSL_read(c, tmp, sizeof tmp)) > 0)
        tl__buf_append(&got, tmp, (size_t)n);
      if (got.len != applen || memcmp(got.data, app, applen) != 0)
        abort();
      tl__buf_free(&got);
    }
  } else if (plain.len > applen) {
    abort();
  }
  back.len = 0;
  tl__tls_close_notify(t, &back);
  ERR_clear_error();
  tl__buf_free(&wire);
  tl__buf_free(&back);
  tl__buf_free(&plain);
  SSL_free(c);
  tl__tls_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_srv)
    init();
  if (size < 1)
    return 0;
  if (data[0] & 1)
    session_mode(data, size);
  else
    raw_mode(data, size);
  ERR_clear_error();
  return 0;
}
