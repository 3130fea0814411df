/* What a request knows of the TLS under it (talon/tls.h). */
#include "core/tls.h"
#include "http/http.h"

bool tl_req_is_tls(const tl_req *req) {
  return req && tl__conn_tls(&req->h->conn) != NULL;
}

const char *tl_req_server_name(const tl_req *req) {
  const tl__tls *t = req ? tl__conn_tls(&req->h->conn) : NULL;
  return t ? tl__tls_server_name(t) : NULL;
}

int tl_req_tls_info(const tl_req *req, tl_tls_info *info) {
  const tl__tls *t = req ? tl__conn_tls(&req->h->conn) : NULL;
  if (!t)
    return TL_ENOENT;
  tl__tls_info(t, info);
  return 0;
}
