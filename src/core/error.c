#include <uv.h>

#include "talon/common.h"

const char *tl_strerror(int err) {
  switch (err) {
  case 0: return "success";
#define TL__ERR_MSG(name, val, msg)                                            \
  case TL_E##name: return msg;
    TL_ERRNO_MAP(TL__ERR_MSG)
#undef TL__ERR_MSG
  }
  /* Everything else is a libuv (negative errno) code, passed through. */
  return uv_strerror(err);
}

const char *tl_err_name(int err) {
  switch (err) {
  case 0: return "OK";
#define TL__ERR_NAME(name, val, msg)                                           \
  case TL_E##name: return "TL_E" #name;
    TL_ERRNO_MAP(TL__ERR_NAME)
#undef TL__ERR_NAME
  }
  return uv_err_name(err);
}
