#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (committed; run
again after changing a seed here). Deterministic: fixed masks, no clock,
no randomness; the compressed seeds come from Python's zlib, so their bytes
may differ with another zlib version, which does not matter to a fuzzer.

    python3 tests/fuzz/make_seeds.py

Each seed starts with the control bytes its harness documents (split mode,
limits, ...), then the payload."""
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def pmd_deflate(msg, bits=15):
    """One permessage-deflate payload: raw deflate, sync flush, tail cut."""
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = c.compress(msg) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


MASK = b"\x37\xfa\x21\x3d"


def frame(op, payload, fin=True, rsv1=False, mask=True):
    """A client frame (masked with a fixed key)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def crlf(s):
    return s.replace("\n", "\r\n").encode()


def http_seeds():
    t = "fuzz_http"
    whole, pieces, lines, rst = b"\x00\x00", b"\x01\x07", b"\x02\x00", b"\x04\x00"
    write(t, "get_root", whole + crlf("GET / HTTP/1.1\nHost: a\n\n"))
    write(t, "pipelined", whole + crlf(
        "GET /users/42?q=a%20b+c&q=2 HTTP/1.1\nHost: a\n"
        "Cookie: sid=abc; theme=\"dark\"; bad name=1\n\n"
        "GET /users/7/posts/9 HTTP/1.1\nHost: a\n\n"
        "HEAD /big HTTP/1.1\nHost: a\nAccept-Encoding: gzip\n\n"
        "GET /big HTTP/1.1\nHost: a\nAccept-Encoding: deflate, gzip;q=0.5\n\n"
        "GET /files/a/b%2Fc.txt HTTP/1.1\nHost: a\n\n"
        "GET /nope HTTP/1.1\nHost: a\n\n"
        "POST / HTTP/1.1\nHost: a\nContent-Length: 0\n\n"))
    write(t, "split_pieces", pieces + crlf(
        "GET /users/x%41y?q=1 HTTP/1.1\nHost: a\nX-Long: " + "v" * 40 +
        "\n\nGET /defer HTTP/1.1\nHost: a\n\n"))
    write(t, "split_lines", lines + crlf(
        "POST /echo HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n"
        "Content-Type: text/plain\nAccept-Encoding: gzip\n\n"
        "5\nhello\n4;ext=1\n, wo\n0\nX-Trailer: 1\n\n"))
    js = b'{"a":[1,2.5,"x\\u00e9"],"b":{"c":null}}'
    write(t, "json", whole + crlf(
        "POST /items HTTP/1.1\nHost: a\nContent-Type: application/json\n"
        "Content-Length: %d\n\n" % len(js)) + js)
    write(t, "json_deep", whole + crlf(
        "POST /items HTTP/1.1\nHost: a\n"
        "Content-Type: application/vnd.x+json; charset=utf-8\n"
        "Content-Length: 20\n\n") + b"[[[[[[[[[[]]]]]]]]]]")
    form = b"a=1&b=x+y%21&a=2&&c"
    write(t, "urlencoded", whole + crlf(
        "POST /form HTTP/1.1\nHost: a\n"
        "Content-Type: application/x-www-form-urlencoded\n"
        "Content-Length: %d\n\n" % len(form)) + form)
    mp = crlf(
        "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nvalue one\n"
        "--XyZ\nContent-Disposition: form-data; name=\"f\"; filename=\"../x.txt\"\n"
        "Content-Type: text/plain\n\nfile body\n--XyZ--\n")
    write(t, "multipart", whole + crlf(
        "POST /form HTTP/1.1\nHost: a\n"
        "Content-Type: multipart/form-data; boundary=XyZ\n"
        "Content-Length: %d\n\n" % len(mp)) + mp)
    write(t, "expect_continue", whole + crlf(
        "PUT /echo HTTP/1.1\nHost: a\nExpect: 100-continue\n"
        "Content-Length: 3\n\nabc"))
    write(t, "http10_stream", whole + crlf(
        "GET /stream HTTP/1.0\n\n"
        "GET /stream HTTP/1.1\nHost: a\nConnection: close\n\n"))
    write(t, "api_cors", whole + crlf(
        "OPTIONS /api/any HTTP/1.1\nHost: a\nOrigin: https://x.example\n"
        "Access-Control-Request-Method: PUT\n"
        "Access-Control-Request-Headers: x-a, content-type\n\n"
        "DELETE /api/thing/7 HTTP/1.1\nHost: a\nOrigin: null\n\n"
        "GET /api/v1/p/q HTTP/1.1\nHost: a\n\n"
        "PATCH /api/thing HTTP/1.1\nHost: a\n\n"))
    write(t, "redirect_inject", whole + crlf(
        "GET /redirect?to=/a%0d%0aSet-Cookie:%20x=1 HTTP/1.1\nHost: a\n\n"
        "GET /users/1?q=%0d%0aX:%201 HTTP/1.1\nHost: a\n\n"))
    write(t, "limits", whole + crlf(
        "GET /" + "u" * 300 + " HTTP/1.1\nHost: a\n\n"))
    write(t, "too_many_headers", whole + crlf(
        "GET / HTTP/1.1\nHost: a\n" +
        "".join("H%d: v\n" % i for i in range(30)) + "\n"))
    write(t, "body_too_big", whole + crlf(
        "POST /echo HTTP/1.1\nHost: a\nContent-Length: 5000\n\n") + b"z" * 100)
    write(t, "bad_request", whole + b"GET / HTTP/1.1\nHost: a\n\n\x00\x01junk\r\n\r\n")
    write(t, "reset", rst + crlf("GET /defer HTTP/1.1\nHost: a\n\n"
                                 "GET /big HTTP/1.1\nHost: a\n\n"))

    key = "dGhlIHNhbXBsZSBub25jZQ=="
    up = ("GET /ws%s HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Key: " + key + "\nSec-WebSocket-Version: 13\n%s\n")
    frames = (frame(1, b"hello") + frame(1, b"sub news") + frame(9, b"p") +
              frame(2, b"\x00\x01", fin=False) + frame(0, b"\x02") +
              frame(1, b"pub some news for the room") + frame(1, b"ping") +
              frame(8, struct.pack(">H", 1000) + b"bye"))
    write(t, "ws_plain", whole + crlf(up % ("", "Sec-WebSocket-Protocol: x, chat\n")) + frames)
    z = pmd_deflate(b"a compressed message, a compressed message")
    zframes = (frame(1, z, rsv1=True) + frame(1, b"plain") +
               frame(2, pmd_deflate(b"\x00" * 300), rsv1=True) +
               frame(1, b"close"))
    write(t, "ws_deflate", whole + crlf(up % (
        "", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, "
        "permessage-deflate\n")) + zframes)
    write(t, "ws_deflate_pieces", pieces + crlf(up % (
        "", "Sec-WebSocket-Extensions: permessage-deflate; "
        "server_no_context_takeover; server_max_window_bits=10\n")) + zframes)
    write(t, "ws_chat", whole + crlf(
        up.replace("/ws", "/chat") % (
            "", "Sec-WebSocket-Extensions: permessage-deflate\n"))
        + frame(1, pmd_deflate(b"x" * 400), rsv1=True) + frame(1, b"y" * 300))
    write(t, "ws_bad", whole + crlf(up % ("?deny=1", "")) +
          crlf("GET /ws HTTP/1.1\nHost: a\nUpgrade: websocket\n"
               "Connection: upgrade\n\n") +
          crlf(up % ("", "")) + frame(1, b"\xff\xfe") + frame(1, b"unmasked", mask=False))


def ws_parser_seeds():
    t = "fuzz_ws_parser"
    # byte 0: limits/rsv1/stop; bytes 1-3: piece sizes (see the harness)
    write(t, "text", b"\x00\x02\x03\x05" + frame(1, b"hello world"))
    write(t, "fragments", b"\x02\x80\x00\x00" + frame(1, b"frag", fin=False) +
          frame(9, b"ping") + frame(0, b"ment") + frame(8, b"\x03\xe8ok"))
    write(t, "compressed", b"\x05\x10\x01\x02" +
          frame(1, pmd_deflate(b"zzzzzzzzzzzzzzzzzzzzz"), rsv1=True))
    write(t, "long", b"\x03\x7f\x20\x40" + frame(2, bytes(range(256)) * 2))
    # A ping longer than the 16-byte message limit, fed in pieces, inside a
    # fragmented message: the spanning buffer holds both.
    write(t, "ping_spans_small_limit", b"\x01\x02\x03\x04" +
          frame(1, b"0123456789", fin=False) + frame(9, b"p" * 100) +
          frame(0, b"ab"))
    write(t, "bad_close", b"\x00\x00\x00\x00" + frame(8, b"\x03\xed\xff"))


def router_seeds():
    t = "fuzz_router"
    write(t, "params", b"/users/:id\n/users/me\n/users/:id/posts/:post\n/files/*\n/\n"
          b"\x00/users/42/posts/7")
    write(t, "wildcard", b"/a/*\n/a/b/c\n/:x/b/:y\n\x00/a/b/d?a=1&b=%41")
    write(t, "static", b"/\n/a\n/a/\n/ab\n\x00/a/")


def query_seeds():
    t = "fuzz_query"
    write(t, "query", b"\x00a=1&b=x+y%20z&a=2&&c&%61=3&d=%zz%4")
    write(t, "pairs", b"\x01key\nk=v\nk=w\nsp ace=a&b\nu\xc3\xa9=%\n=empty\n")
    write(t, "list", b"\x00gzip, deflate;q=0.5 ,, br\t, x-gzip ,")


def cookie_seeds():
    t = "fuzz_cookie"
    write(t, "basic", b"\x00\x00sid=abc; theme=\"dark\"; a=b=c; bad name=x; =empty;"
          b" ok=\n x = y ;z=\"q\nsid=second\x00name=value")
    write(t, "attrs", b"\x04\x7fa=1;b=2\x00__Host-id=xyz")
    write(t, "capped", b"\x13\x00" + b"; ".join(b"c%d=%d" % (i, i) for i in range(20)) +
          b"\x00__Secure-s=1")
    write(t, "signed", b"\x04\x21tok=abc.\x00tok=abc")
    # More valid pairs than the default budget of 128: later ones are
    # ignored (a harness once took that for a parser bug).
    write(t, "over_default_cap", b"\x00\x00" +
          b"; ".join(b"k%d=%d" % (i % 40, i) for i in range(150)) + b"\x00k1=v")
    write(t, "bad_value", b"\x00\x00x=a\x01b; y=\"unterminated\x00a b=c d")


def multipart_seeds():
    t = "fuzz_multipart"
    mp = crlf(
        "preamble\n--b0undary\nContent-Disposition: form-data; name=\"a\"\n\nfield one\n"
        "--b0undary\nContent-Disposition: form-data; name=\"f\"; filename=\"C:\\\\x\\\\y.txt\"\n"
        "Content-Type: text/plain\n\nfile\x00body\n"
        "--b0undary\nContent-Disposition: form-data; name=\"e\"; filename=\"\"\n\n\n"
        "--b0undary--\nepilogue")
    write(t, "multipart", b"\x00multipart/form-data; boundary=b0undary\n" + mp)
    write(t, "multipart_keep", b"\x20Multipart/Form-Data; boundary=\"b0undary\"; x=y\n" + mp)
    write(t, "multipart_small", b"\x04multipart/form-data; boundary=b0undary\n" + mp)
    # Chain with `require`: multipart stores a kept file, then the
    # urlencoded parser answers 415 while that file legitimately exists.
    write(t, "chain_keep_415", b"\x2bmultipart/form-data; boundary=b0undary\n" + mp)
    write(t, "multipart_bad", b"\x00multipart/form-data; boundary=q\n" + crlf(
        "--q\nContent-Disposition: attachment\n\nx\n--q"))
    write(t, "urlencoded", b"\x01application/x-www-form-urlencoded\n"
          b"a=1&b=%41%zz+c&&=x&d")
    write(t, "json", b"\x02application/json; charset=UTF-8\n"
          b'{"a":1,"a":[true,false,null,"\\u0041"],"b":{"c":-1.5e3}}')
    write(t, "json_dup", b"\x12application/json\n{\"a\":1,\"a\":2}")
    write(t, "chain", b"\x0bapplication/x-www-form-urlencoded\nq=1")


def pmd_seeds():
    t = "fuzz_pmd_inflate"
    text = b"permessage-deflate seed text, repeated: " * 4
    # flags: bit0 reset, bits1-2 window, bits3-4 limit, bit5 round trip,
    # bit6 negotiate
    write(t, "inflate", b"\x1e\x00" + pmd_deflate(text))
    write(t, "inflate_small_limit", b"\x06\x00" + pmd_deflate(text))
    two = pmd_deflate(b"first message first message")
    write(t, "inflate_pieces", b"\x1f\x10" + two + two)
    c = zlib.compressobj(6, zlib.DEFLATED, -9)
    w9 = c.compress(b"window nine " * 10) + c.flush(zlib.Z_FINISH)
    write(t, "inflate_final_block", b"\x18\x00" + w9)
    # A fixed block ('a'), then the header of a block left open: the
    # stream once took it as "a" while the one-call path ignored the open
    # block (a CI fuzz run found the disagreement).
    write(t, "inflate_open_block", b"\x1f\x00\x4a\x04\x08")
    write(t, "round_trip", b"\x3e\x20" + text)
    write(t, "round_trip_reset", b"\x21\x08" + bytes(range(200)))
    write(t, "negotiate", b"\x5e\x00permessage-deflate; client_max_window_bits; "
          b"server_max_window_bits=\"10\", permessage-deflate; server_no_context_takeover")


if __name__ == "__main__":
    # The targets written here start afresh; fuzz_tls's seeds are made by
    # hand (tests/fuzz/README.md) and stay.
    for t in ("fuzz_http", "fuzz_ws_parser", "fuzz_router", "fuzz_query",
              "fuzz_cookie", "fuzz_multipart", "fuzz_pmd_inflate"):
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    http_seeds()
    ws_parser_seeds()
    router_seeds()
    query_seeds()
    cookie_seeds()
    multipart_seeds()
    pmd_seeds()
