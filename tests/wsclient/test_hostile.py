"""Hostile servers written for the client: each is a Python function on a
raw socket (RawServer) that answers the client's handshake with
hand-made bytes. The client must fail cleanly, with the right reason or
close code, leak nothing (ASan) and exit."""
import time
import zlib

from conftest import (HOST, frame, read_frame, read_head,  # noqa: F401
                      upgrade_answer)


def served(sock, srv, extra=b"", then=b""):
    line, h = read_head(sock)
    srv.requests.append((line, h))
    sock.sendall(upgrade_answer(h, extra) + then)
    return h


def expect_close_frame(sock):
    """Reads the client's frames until its close; returns the code."""
    while True:
        fin, op, data, masked = read_frame(sock)
        assert masked
        if op == 8:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def test_request_is_well_formed_and_frames_masked(probe, raw_server):
    seen = []

    def h(sock, srv):
        line, hd = read_head(sock)
        seen.append((line, hd))
        sock.sendall(upgrade_answer(hd))
        frames = [read_frame(sock) for _ in range(3)]
        seen.append(frames)
        sock.sendall(frame(1, b"ok"))
        seen.append(expect_close_frame(sock))
        sock.sendall(frame(8, (1000).to_bytes(2, "big")))
    srv = raw_server(h)
    r = probe(srv.url("/path?q=1"), ["text aaaa", "text aaaa", "binary 01",
                                     "await 1", "close 1000"],
              args=["-H", "Cookie: a=b", "-H", "Authorization: Bearer t"])
    assert r.one("close")["code"] == 1000
    line, hd = seen[0]
    assert line == "GET /path?q=1 HTTP/1.1"
    assert hd["host"] == f"{HOST}:{srv.port}"
    assert hd["upgrade"].lower() == "websocket"
    assert hd["sec-websocket-version"] == "13"
    assert len(hd["sec-websocket-key"]) == 24
    assert hd["cookie"] == "a=b" and hd["authorization"] == "Bearer t"
    assert "sec-websocket-extensions" not in hd
    frames = seen[1]
    assert all(f[3] for f in frames)  # every client frame is masked
    assert [f[2] for f in frames] == [b"aaaa", b"aaaa", b"\x01"]
    assert seen[2] == 1000


def test_ipv6_literal_and_host_header(probe, raw_server):
    hosts = []

    def h(sock, srv):
        hosts.append(served(sock, srv, then=frame(1, b"v6"))["host"])
        expect_close_frame(sock)
        sock.sendall(frame(8, (1000).to_bytes(2, "big")))
    srv = raw_server(h, host="::1")
    r = probe(srv.url("/six"), ["await 1", "close 1000"])
    assert r.messages()[0]["data"] == "v6"
    assert hosts == [f"[::1]:{srv.port}"]


def test_masks_differ_per_frame(probe, raw_server):
    masks = []

    def h(sock, srv):
        served(sock, srv)
        buf = b""
        while len(masks) < 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 6 and len(buf) >= 6 + (buf[1] & 0x7f):
                n = buf[1] & 0x7f
                masks.append(buf[2:6])
                buf = buf[6 + n:]
        sock.sendall(frame(8, (1000).to_bytes(2, "big")))
    srv = raw_server(h)
    probe(srv.url(), ["text same"] * 20)
    assert len(masks) == 20
    assert len(set(masks)) >= 19  # a fresh 32-bit mask per frame


def test_masked_frame_from_server_is_1002(probe, raw_server):
    codes = []

    def h(sock, srv):
        served(sock, srv, then=frame(1, b"masked!", mask=b"abcd"))
        codes.append(expect_close_frame(sock))
    srv = raw_server(h)
    r = probe(srv.url(), ["await 1"])
    assert r.one("close")["code"] == 1002
    assert not r.messages()
    time.sleep(0.1)
    assert codes == [1002]


def test_invalid_utf8_is_1007(probe, raw_server):
    def h(sock, srv):
        served(sock, srv, then=frame(1, b"ok") + frame(1, b"\xc3\x28"))
        expect_close_frame(sock)
    srv = raw_server(h)
    r = probe(srv.url(), ["await 5"])
    assert [m["data"] for m in r.messages()] == ["ok"]
    assert r.one("close")["code"] == 1007


def test_fragments_and_control_frames_between(probe, raw_server):
    def h(sock, srv):
        served(sock, srv, then=frame(1, b"frag", fin=False) +
               frame(9, b"p") + frame(0, b"men", fin=False) +
               frame(0, b"ted"))
        # The client answers the ping with its pong.
        fin, op, data, masked = read_frame(sock)
        srv.requests.append((op, data))
        sock.sendall(frame(8, (1000).to_bytes(2, "big")))
        expect_close_frame(sock)
    srv = raw_server(h)
    r = probe(srv.url(), ["await 1"])
    assert r.messages()[0]["data"] == "fragmented"
    assert r.one("ping")["data"] == "p"
    assert srv.requests[1] == (10, b"p")
    assert r.one("close")["code"] == 1000


def test_bad_fragments_and_control_frames_are_1002(probe, raw_server):
    bad = [frame(0, b"cont without start"),
           frame(9, b"x" * 126),               # control over 125
           frame(9, b"p", fin=False),          # fragmented control
           frame(3, b"op 3"),                  # reserved opcode
           frame(1, b"a", fin=False) + frame(1, b"b")]  # new msg in msg
    for b in bad:
        def h(sock, srv, b=b):
            served(sock, srv, then=b)
            expect_close_frame(sock)
        srv = raw_server(h)
        r = probe(srv.url(), ["await 1"])
        assert r.one("close")["code"] == 1002, b


def test_oversize_frame_is_1009_before_its_bytes(probe, raw_server):
    def h(sock, srv):
        # Announces 1 GiB; sends only the header.
        served(sock, srv, then=bytes([0x82, 127]) +
               (1 << 30).to_bytes(8, "big"))
        expect_close_frame(sock)
    srv = raw_server(h)
    r = probe(srv.url(), ["await 1"], args=["--max-payload", "65536"])
    assert r.one("close")["code"] == 1009


def test_endless_101_head(probe, raw_server):
    def h(sock, srv):
        read_head(sock)
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        try:
            for _ in range(2000):
                sock.sendall(b"X-Filler: " + b"y" * 100 + b"\r\n")
        except OSError:
            pass
    srv = raw_server(h)
    r = probe(srv.url(), [])
    f = r.one("fail")
    assert f["reason"] == "response" and "16 KiB" in f["message"]


def test_server_that_never_answers(probe, raw_server):
    def h(sock, srv):
        read_head(sock)
        time.sleep(3)
    srv = raw_server(h)
    t = time.monotonic()
    r = probe(srv.url(), [], args=["--handshake-ms", "600"])
    f = r.one("fail")
    assert f["reason"] == "timeout" and f["code"] == "ETIMEDOUT"
    assert "handshake" in f["message"]
    assert time.monotonic() - t < 2.5


def test_server_closes_during_handshake(probe, raw_server):
    def h(sock, srv):
        read_head(sock)
        sock.close()
    srv = raw_server(h)
    f = probe(srv.url(), []).one("fail")
    assert f["reason"] == "closed"


def test_not_http(probe, raw_server):
    def h(sock, srv):
        read_head(sock)
        sock.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
    srv = raw_server(h)
    assert probe(srv.url(), []).one("fail")["reason"] == "response"


def test_bad_accept_key(probe, raw_server):
    def h(sock, srv):
        _, hd = read_head(sock)
        sock.sendall(upgrade_answer(hd, accept="dGhlIHNhbXBsZSBub25jZQ=="))
    srv = raw_server(h)
    f = probe(srv.url(), []).one("fail")
    assert f["reason"] == "accept" and f["status"] == 101


def test_missing_upgrade_header(probe, raw_server):
    def h(sock, srv):
        _, hd = read_head(sock)
        from conftest import accept_key
        sock.sendall(b"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " +
                     accept_key(hd["sec-websocket-key"]).encode() +
                     b"\r\n\r\n")
    srv = raw_server(h)
    assert probe(srv.url(), []).one("fail")["reason"] == "accept"


def test_unoffered_extension_and_subprotocol(probe, raw_server):
    def ext(sock, srv):
        served(sock, srv, extra=b"Sec-WebSocket-Extensions: "
               b"permessage-deflate\r\n")
    srv = raw_server(ext)
    assert probe(srv.url(), []).one("fail")["reason"] == "extension"

    def proto(sock, srv):
        served(sock, srv, extra=b"Sec-WebSocket-Protocol: evil\r\n")
    srv = raw_server(proto)
    assert probe(srv.url(), [], args=["-s", "good"]
                 ).one("fail")["reason"] == "subprotocol"
    srv = raw_server(proto)
    assert probe(srv.url(), []).one("fail")["reason"] == "subprotocol"


def test_extension_with_bad_parameters(probe, raw_server):
    def h(sock, srv):
        served(sock, srv, extra=b"Sec-WebSocket-Extensions: "
               b"permessage-deflate; x_unknown\r\n")
    srv = raw_server(h)
    assert probe(srv.url(), [], args=["--deflate", "shared"]
                 ).one("fail")["reason"] == "extension"


def test_deflate_offer_and_server_context_takeover(probe, raw_server):
    """A server that keeps its compression context (no
    server_no_context_takeover in its answer) gets a dedicated inflater:
    two messages, the second referring back to the first, inflate
    right."""
    offers = []

    def h(sock, srv):
        line, hd = read_head(sock)
        offers.append(hd.get("sec-websocket-extensions"))
        sock.sendall(upgrade_answer(
            hd, b"Sec-WebSocket-Extensions: permessage-deflate\r\n"))
        z = zlib.compressobj(wbits=-15)
        for text in (b"hello hello hello", b"hello hello hello again"):
            c = z.compress(text) + z.flush(zlib.Z_SYNC_FLUSH)
            sock.sendall(frame(1, c[:-4], rsv1=True))
        expect_close_frame(sock)
    srv = raw_server(h)
    r = probe(srv.url(), ["await 2", "close 1000"],
              args=["--deflate", "shared"])
    assert offers[0] == ("permessage-deflate; server_no_context_takeover; "
                         "client_no_context_takeover; client_max_window_bits")
    assert [m["data"] for m in r.messages()] == [
        "hello hello hello", "hello hello hello again"]


def test_server_window_asked_for_and_not_honoured(probe, raw_server):
    offers = []

    def h(sock, srv, answer):
        _, hd = read_head(sock)
        offers.append(hd.get("sec-websocket-extensions"))
        sock.sendall(upgrade_answer(hd, b"Sec-WebSocket-Extensions: " +
                                    answer + b"\r\n"))
    for answer in (b"permessage-deflate; server_no_context_takeover",
                   b"permessage-deflate; server_max_window_bits=12"):
        srv = raw_server(lambda s, v, a=answer: h(s, v, a))
        f = probe(srv.url(), [], args=["--deflate", "shared",
                                       "--server-window", "11"]).one("fail")
        assert f["reason"] == "extension", answer
    assert offers[0].endswith("; server_max_window_bits=11")


def test_deflate_bomb_bounded_by_max_payload(probe, raw_server):
    def h(sock, srv):
        served(sock, srv, extra=b"Sec-WebSocket-Extensions: "
               b"permessage-deflate; server_no_context_takeover\r\n")
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        c = z.compress(b"\0" * (64 << 20)) + z.flush(zlib.Z_SYNC_FLUSH)
        sock.sendall(frame(2, c[:-4], rsv1=True))  # ~64 KB -> 64 MiB
        expect_close_frame(sock)
    srv = raw_server(h)
    t = time.monotonic()
    r = probe(srv.url(), ["await 1"],
              args=["--deflate", "shared", "--max-payload", "1000000"])
    assert r.one("close")["code"] == 1009
    assert not r.messages()
    assert time.monotonic() - t < 5


def test_compressed_frame_without_extension_is_1002(probe, raw_server):
    def h(sock, srv):
        served(sock, srv, then=frame(1, b"x", rsv1=True))
        expect_close_frame(sock)
    srv = raw_server(h)
    assert probe(srv.url(), ["await 1"]).one("close")["code"] == 1002


def test_server_that_resets_after_open(probe, raw_server):
    import socket as s_

    def h(sock, srv):
        served(sock, srv)
        sock.setsockopt(s_.SOL_SOCKET, s_.SO_LINGER,
                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    srv = raw_server(h)
    r = probe(srv.url(), ["await 1"])
    assert r.one("close")["code"] == 1006
