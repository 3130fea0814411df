/* talon — the test client's WebSocket (contract in include/talon/test.h):
 * the handshake with its Sec-WebSocket-Accept checked, masked frames out,
 * fragments joined, pings answered, the closing handshake both ways. */
#include "testkit.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---- WebSocket ----------------------------------------------------------- */

struct tl_test_ws {
  unsigned timeout_ms; /* the tl_test's (which may be stopped first) */
  tl__t_conn c;
  int close_code; /* 0 while open */
  char close_reason[124];
  bool sent_close;
  unsigned pongs;
  char *protocol;
  tl__t_sbuf frag; /* a fragmented message so far */
  int frag_op;
};

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int tl_test_ws_open(tl_test *t, const char *target, const char *const *headers,
                    tl_test_ws **out, tl_test_response *refused) {
  if (!t || !out)
    return TL_EINVAL;
  *out = NULL;
  if (refused)
    memset(refused, 0, sizeof *refused);
  unsigned char raw[16];
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
    return -errno;
  char key[32];
  EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
  tl__t_sbuf b = {0};
  int err = tl__t_build_head(t, &b, "GET", target, headers);
  if (err) {
    free(b.p);
    return err;
  }
  tl__t_sb_str(&b, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
  tl__t_sb_str(&b, key);
  tl__t_sb_str(&b, "\r\n\r\n");
  if (b.oom) {
    free(b.p);
    return TL_ENOMEM;
  }
  tl_test_ws *ws = calloc(1, sizeof *ws);
  if (!ws) {
    free(b.p);
    return TL_ENOMEM;
  }
  ws->timeout_ms = t->timeout_ms;
  ws->c.fd = -1;
  tl_test_response res = {0};
  err = tl__t_dial(t, &ws->c);
  if (!err)
    err = tl__t_send_all(&ws->c, b.p, b.len);
  free(b.p);
  if (!err)
    err = tl__t_read_head(&ws->c, &res);
  if (!err && res.status != 101) {
    err = tl__t_read_body(&ws->c, "GET", &res);
    if (!err && refused) {
      *refused = res;
      memset(&res, 0, sizeof res);
    }
    if (!err)
      err = TL_ESTATE;
  }
  if (!err) {
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char src[96], want[32];
    unsigned char sha[SHA_DIGEST_LENGTH];
    snprintf(src, sizeof src, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)src, strlen(src), sha);
    EVP_EncodeBlock((unsigned char *)want, sha, sizeof sha);
    const char *got = tl_test_header_get(&res, "sec-websocket-accept");
    if (!got || strcmp(got, want) != 0)
      err = TL_EIO;
    const char *proto = tl_test_header_get(&res, "sec-websocket-protocol");
    if (!err && proto && !(ws->protocol = strdup(proto)))
      err = TL_ENOMEM;
  }
  tl_test_response_free(&res);
  if (err) {
    tl_test_ws_free(ws);
    return err;
  }
  *out = ws;
  return 0;
}

static int send_frame(tl_test_ws *ws, int op, const void *data, size_t len) {
  if (ws->c.fd < 0 || ws->close_code)
    return TL_ECLOSED;
  unsigned char hdr[14];
  size_t h = 0;
  hdr[h++] = (unsigned char)(0x80 | op);
  if (len < 126) {
    hdr[h++] = (unsigned char)(0x80 | len);
  } else if (len < 65536) {
    hdr[h++] = 0x80 | 126;
    hdr[h++] = (unsigned char)(len >> 8);
    hdr[h++] = (unsigned char)len;
  } else {
    hdr[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      hdr[h++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  unsigned char mask[4];
  if (getrandom(mask, 4, 0) != 4)
    return -errno;
  memcpy(hdr + h, mask, 4);
  h += 4;
  unsigned char *frame = malloc(h + len);
  if (!frame)
    return TL_ENOMEM;
  memcpy(frame, hdr, h);
  const unsigned char *d = data;
  for (size_t i = 0; i < len; i++)
    frame[h + i] = d[i] ^ mask[i & 3];
  /* A send has its own deadline; a pong sent from inside a receive must
   * not move the receive's. */
  uint64_t recv_deadline = ws->c.deadline;
  ws->c.deadline = tl__t_now_ms() + ws->timeout_ms;
  int err = tl__t_send_all(&ws->c, frame, h + len);
  ws->c.deadline = recv_deadline;
  free(frame);
  return err;
}

int tl_test_ws_send(tl_test_ws *ws, tl_opcode op, const void *data,
                    size_t len) {
  if (!ws || (len && !data) ||
      (op != TL_WS_TEXT && op != TL_WS_BINARY && op != TL_WS_PING &&
       op != TL_WS_PONG) ||
      ((op == TL_WS_PING || op == TL_WS_PONG) && len > 125))
    return TL_EINVAL;
  return send_frame(ws, op, data, len);
}

int tl_test_ws_send_text(tl_test_ws *ws, const char *text) {
  if (!text)
    return TL_EINVAL;
  return tl_test_ws_send(ws, TL_WS_TEXT, text, strlen(text));
}

/* The server closed (frame or end): answer a close frame, stop. */
static int closed(tl_test_ws *ws, int code, const char *reason, size_t rlen) {
  ws->close_code = code;
  if (rlen >= sizeof ws->close_reason)
    rlen = sizeof ws->close_reason - 1;
  memcpy(ws->close_reason, reason, rlen);
  ws->close_reason[rlen] = '\0';
  return TL_ECLOSED;
}

/* Reads frames until a whole data message (0), the close (TL_ECLOSED),
 * the deadline or an error. */
static int next_message(tl_test_ws *ws, tl_test_msg *msg) {
  tl__t_conn *c = &ws->c;
  if (ws->close_code)
    return TL_ECLOSED;
  for (;;) {
    int err = tl__t_need(c, 2);
    if (err == TL_ECLOSED)
      return closed(ws, 1006, "", 0);
    if (err)
      return err;
    unsigned char *p = (unsigned char *)c->buf + c->pos;
    bool fin = p[0] & 0x80;
    int op = p[0] & 0x0f;
    if ((p[0] & 0x70) || (p[1] & 0x80))
      return TL_EIO; /* no extension was agreed; servers do not mask */
    uint64_t len = p[1] & 0x7f;
    size_t h = 2;
    if (len == 126)
      h = 4;
    else if (len == 127)
      h = 10;
    if ((err = tl__t_need(c, h)))
      return err == TL_ECLOSED ? closed(ws, 1006, "", 0) : err;
    p = (unsigned char *)c->buf + c->pos;
    if (h == 4)
      len = (uint64_t)p[2] << 8 | p[3];
    else if (h == 10)
      for (int i = 0; i < 8; i++)
        len = (len << 8) | p[2 + i];
    if (len > ((uint64_t)1 << 31))
      return TL_EIO;
    if ((err = tl__t_need(c, h + (size_t)len)))
      return err == TL_ECLOSED ? closed(ws, 1006, "", 0) : err;
    char *data = c->buf + c->pos + h;
    c->pos += h + (size_t)len;
    if (op == TL_WS_PING) {
      if ((err = send_frame(ws, TL_WS_PONG, data, (size_t)len)) &&
          err != TL_ECLOSED)
        return err;
      continue;
    }
    if (op == TL_WS_PONG) {
      ws->pongs++;
      continue;
    }
    if (op == TL_WS_CLOSE) {
      int code = len >= 2 ? ((unsigned char)data[0] << 8 |
                             (unsigned char)data[1])
                          : 1005;
      if (!ws->sent_close) {
        ws->sent_close = true;
        send_frame(ws, TL_WS_CLOSE, data, len >= 2 ? 2 : 0);
      }
      return closed(ws, code, len > 2 ? data + 2 : "",
                    len > 2 ? (size_t)len - 2 : 0);
    }
    if (op == TL_WS_TEXT || op == TL_WS_BINARY) {
      if (ws->frag_op)
        return TL_EIO;
      ws->frag_op = op;
    } else if (op != 0 || !ws->frag_op) {
      return TL_EIO;
    }
    tl__t_sb_add(&ws->frag, data, (size_t)len);
    if (ws->frag.oom)
      return TL_ENOMEM;
    if (!fin)
      continue;
    if (!ws->frag.p)
      tl__t_sb_add(&ws->frag, "", 0);
    msg->op = (tl_opcode)ws->frag_op;
    msg->data = ws->frag.p;
    msg->len = ws->frag.len;
    memset(&ws->frag, 0, sizeof ws->frag);
    ws->frag_op = 0;
    return 0;
  }
}

int tl_test_ws_recv(tl_test_ws *ws, tl_test_msg *msg, unsigned timeout_ms) {
  if (!ws || !msg)
    return TL_EINVAL;
  memset(msg, 0, sizeof *msg);
  ws->c.deadline = tl__t_now_ms() + timeout_ms;
  return next_message(ws, msg);
}

void tl_test_msg_free(tl_test_msg *msg) {
  if (!msg)
    return;
  free(msg->data);
  memset(msg, 0, sizeof *msg);
}

int tl_test_ws_wait_close(tl_test_ws *ws, unsigned timeout_ms) {
  if (!ws)
    return TL_EINVAL;
  ws->c.deadline = tl__t_now_ms() + timeout_ms;
  for (;;) {
    tl_test_msg m = {0};
    int err = next_message(ws, &m);
    tl_test_msg_free(&m);
    if (err == TL_ECLOSED)
      return 0;
    if (err)
      return err;
  }
}

int tl_test_ws_close(tl_test_ws *ws, int code, const char *reason) {
  if (!ws)
    return TL_EINVAL;
  if (ws->close_code)
    return 0;
  unsigned char payload[125];
  size_t n = 0;
  if (code) {
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > 123)
      return TL_EINVAL;
    payload[0] = (unsigned char)(code >> 8);
    payload[1] = (unsigned char)code;
    memcpy(payload + 2, reason ? reason : "", rl);
    n = 2 + rl;
  }
  int err = send_frame(ws, TL_WS_CLOSE, payload, n);
  if (err)
    return err;
  ws->sent_close = true;
  return tl_test_ws_wait_close(ws, ws->timeout_ms);
}

int tl_test_ws_close_code(const tl_test_ws *ws) {
  return ws->close_code;
}

const char *tl_test_ws_close_reason(const tl_test_ws *ws) {
  return ws->close_reason;
}

unsigned tl_test_ws_pongs(const tl_test_ws *ws) {
  return ws->pongs;
}

const char *tl_test_ws_protocol(const tl_test_ws *ws) {
  return ws->protocol;
}

void tl_test_ws_free(tl_test_ws *ws) {
  if (!ws)
    return;
  tl__t_hang_up(&ws->c);
  free(ws->frag.p);
  free(ws->protocol);
  free(ws);
}
