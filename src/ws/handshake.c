#include "ws/handshake.h"

#include <openssl/evp.h>
#include <string.h>

#include "talon/common.h"
#include "talon/util.h"

static bool is_b64(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

bool tl__ws_key_valid(const char *key, size_t len) {
  if (!key || len != 24 || key[22] != '=' || key[23] != '=')
    return false;
  for (size_t i = 0; i < 22; i++)
    if (!is_b64((unsigned char)key[i]))
      return false;
  return true;
}

int tl__ws_accept_key(const char *key, size_t len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char buf[64 + sizeof guid];
  if (!key || len > 64)
    return TL_EINVAL;
  memcpy(buf, key, len);
  memcpy(buf + len, guid, sizeof guid - 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(buf, len + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL) ||
      mdlen != 20)
    return TL_ENOMEM;
  /* 20 bytes encode to 28 characters plus the NUL EVP writes. */
  EVP_EncodeBlock((unsigned char *)out, md, 20);
  out[28] = '\0';
  return 0;
}

bool tl__ws_protocol_listed(const char *list, const char *name) {
  size_t nl = strlen(name), len;
  const char *e;
  while (tl_token_list_next(&list, &e, &len))
    if (len == nl && memcmp(e, name, nl) == 0)
      return true;
  return false;
}
