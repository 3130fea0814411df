/* Security response headers; the contract is in
 * include/talon/mw/security.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <talon.h>
#include <talon/mw.h>
#include <talon/mw/security.h>

/* At most this many headers: nosniff, frame, referrer, CSP, COOP, CORP. */
#define MAX_FIXED 6

typedef struct hdr {
  const char *name; /* static */
  char *value;
} hdr;

typedef struct shield {
  hdr fixed[MAX_FIXED]; /* sent on every response */
  size_t nfixed;
  char *hsts; /* NULL: never */
  bool trust_proxy;
} shield;

static void shield_free(void *p) {
  shield *s = p;
  if (!s)
    return;
  for (size_t i = 0; i < s->nfixed; i++)
    free(s->fixed[i].value);
  free(s->hsts);
  free(s);
}

static bool add_fixed(shield *s, const char *name, const char *value) {
  if (strpbrk(value, "\r\n"))
    return false;
  char *v = strdup(value);
  if (!v)
    return false;
  s->fixed[s->nfixed].name = name;
  s->fixed[s->nfixed].value = v;
  s->nfixed++;
  return true;
}

/* Whether the request reached the client-facing server over TLS: TLS
 * that talon terminated, or a trusted proxy's word (the first
 * X-Forwarded-Proto value). */
static bool came_over_tls(const shield *s, const tl_req *req) {
  if (tl_req_is_tls(req))
    return true;
  if (!s->trust_proxy)
    return false;
  const char *p = tl_req_header(req, "X-Forwarded-Proto"), *first;
  size_t n;
  return tl_token_list_next(&p, &first, &n) && tl_str_ieq(first, n, "https");
}

static int add_once(tl_res *res, const char *name, const char *value) {
  if (tl_res_has_header(res, name))
    return 0;
  return tl_res_header(res, name, value);
}

static int shield_run(tl_req *req, tl_res *res, void *ctx) {
  const shield *s = ctx;
  for (size_t i = 0; i < s->nfixed; i++) {
    int err = add_once(res, s->fixed[i].name, s->fixed[i].value);
    if (err)
      return err;
  }
  if (s->hsts && came_over_tls(s, req)) {
    int err = add_once(res, "Strict-Transport-Security", s->hsts);
    if (err)
      return err;
  }
  return TL_NEXT;
}

tl_middleware tl_security_headers(const tl_security_headers_options *opts) {
  static const tl_security_headers_options defaults;
  tl_middleware mw = {.name = "security_headers"};
  if (!opts)
    opts = &defaults;
  if (opts->frame_options < TL_FRAME_DENY || opts->frame_options > TL_FRAME_OFF)
    return mw;
  shield *s = calloc(1, sizeof *s);
  if (!s) {
    mw.error = TL_ENOMEM; /* tl_app_use reports it */
    return mw;
  }
  bool ok = true;
  if (!opts->no_nosniff)
    ok = add_fixed(s, "X-Content-Type-Options", "nosniff");
  if (ok && opts->frame_options != TL_FRAME_OFF)
    ok =
        add_fixed(s, "X-Frame-Options",
                  opts->frame_options == TL_FRAME_DENY ? "DENY" : "SAMEORIGIN");
  const char *ref =
      opts->referrer_policy ? opts->referrer_policy : "no-referrer";
  if (ok && *ref)
    ok = add_fixed(s, "Referrer-Policy", ref);
  if (ok && opts->csp && *opts->csp)
    ok = add_fixed(s,
                   opts->csp_report_only ? "Content-Security-Policy-Report-Only"
                                         : "Content-Security-Policy",
                   opts->csp);
  if (ok && opts->coop && *opts->coop)
    ok = add_fixed(s, "Cross-Origin-Opener-Policy", opts->coop);
  if (ok && opts->corp && *opts->corp)
    ok = add_fixed(s, "Cross-Origin-Resource-Policy", opts->corp);
  if (ok && opts->hsts_max_age) {
    char buf[96];
    snprintf(buf, sizeof buf, "max-age=%u%s%s", opts->hsts_max_age,
             opts->hsts_include_subdomains ? "; includeSubDomains" : "",
             opts->hsts_preload ? "; preload" : "");
    ok = (s->hsts = strdup(buf)) != NULL;
  }
  s->trust_proxy = opts->trust_proxy;
  if (!ok) {
    shield_free(s);
    return mw;
  }
  mw.fn = shield_run;
  mw.ctx = s;
  mw.free = shield_free;
  return mw;
}
