"""The opening handshake: middleware data and the typed context, async
upgrades, subprotocols, origins, 426/400 answers, frames that arrive with
the handshake, HTTP and ws routes on one path, /stop."""
import socket
import time

import pytest

from wsclient import (HOST, OP_PING, OP_PONG, OP_TEXT, WSClient, build_frame,
                      http_request, read_head, read_http_response,
                      upgrade_request, parse_head)


def raw_upgrade(port, path, headers=None, drop=(), version="HTTP/1.1",
                timeout=5.0):
    """Sends an upgrade request; returns the full HTTP response (the
    server closes the connection after a refused upgrade)."""
    data, _ = upgrade_request(port, path, headers, version=version, drop=drop)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        return read_http_response(s, timeout)


# ---- middleware data, context, 401 / Set-Cookie ----------------------------

def test_auth_rejected_without_user(srv):
    r = raw_upgrade(srv.port, "/auth")
    assert r.status == 401, r
    assert r.header("x-auth-error") == "no user"
    assert r.header("sec-websocket-accept") is None
    assert r.header("upgrade") is None


def test_auth_rejected_with_body(srv):
    r = raw_upgrade(srv.port, "/auth?body=1")
    assert r.status == 401, r
    assert r.header("x-auth-error") == "no user"
    assert r.body == b"who are you?\n"
    assert r.header("content-length") == str(len(r.body))


def test_auth_rejected_connection_closed(srv):
    """A refused upgrade closes the connection (the client may already be
    sending frames)."""
    data, _ = upgrade_request(srv.port, "/auth")
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(data + build_frame(OP_TEXT, b"too early"))
        r = read_http_response(s, 5)
        assert r.status == 401
        s.settimeout(3)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass


@pytest.mark.parametrize("how", ["header", "query"])
def test_auth_accepted(srv, how):
    if how == "header":
        c = WSClient.connect(srv.port, "/auth", headers={"X-User": "alice"})
        user = "alice"
    else:
        c = WSClient.connect(srv.port, "/auth?user=bob%20b")
        user = "bob b"
    with c:
        assert c.response.header("set-cookie") == f"session={user}; HttpOnly"
        # open's greeting carries the context value.
        assert c.recv_text() == f"hello {user}"
        c.send_text("whoami")
        assert c.recv_text() == f"user:{user}"
        c.echo(b"echoed")
        c.close_handshake()


def test_auth_context_per_connection(srv):
    cs = [WSClient.connect(srv.port, "/auth", headers={"X-User": f"u{i}"})
          for i in range(5)]
    try:
        for i, c in enumerate(cs):
            assert c.recv_text() == f"hello u{i}"
        for i, c in reversed(list(enumerate(cs))):
            c.send_text("whoami")
            assert c.recv_text() == f"user:u{i}"
    finally:
        for c in cs:
            c.close()


def test_frames_with_handshake_processed_after_open(srv):
    """Frames in the same packet as the handshake: open's greeting first,
    then the answers to those frames, in order."""
    extra = (build_frame(OP_TEXT, b"whoami") + build_frame(OP_PING, b"hs") +
             build_frame(OP_TEXT, b"second"))
    with WSClient.connect(srv.port, "/auth", headers={"X-User": "carol"},
                          extra=extra) as c:
        evs = [c.recv(3) for _ in range(4)]
        assert [(e.opcode, e.data) for e in evs] == [
            (OP_TEXT, b"hello carol"), (OP_TEXT, b"user:carol"),
            (OP_PONG, b"hs"), (OP_TEXT, b"second")]


def test_frames_with_handshake_echo(srv):
    extra = b"".join(build_frame(OP_TEXT, b"m%d" % i) for i in range(50))
    with WSClient.connect(srv.port, "/echo", extra=extra) as c:
        for i in range(50):
            assert c.recv_text() == f"m{i}"


def test_partial_frame_with_handshake(srv):
    """Half a frame arrives with the handshake, the rest later."""
    f = build_frame(OP_TEXT, b"split across the upgrade")
    with WSClient.connect(srv.port, "/echo", extra=f[:5]) as c:
        time.sleep(0.05)
        c.send_raw(f[5:])
        assert c.recv_text() == "split across the upgrade"


def test_close_with_handshake(srv):
    from wsclient import OP_CLOSE, close_payload
    extra = build_frame(OP_CLOSE, close_payload(1000))
    with WSClient.connect(srv.port, "/echo", extra=extra) as c:
        c.expect_close(1000)
        assert c.wait_eof(3)


# ---- async upgrade ---------------------------------------------------------------

def test_async_accepted(srv):
    st0 = srv.stats()
    t0 = time.monotonic()
    with WSClient.connect(srv.port, "/async?decision=accept&delay=50") as c:
        assert time.monotonic() - t0 >= 0.04
        assert c.recv_text() == "async-open"
        c.echo(b"after async accept")
        c.close_handshake()
    st = srv.stats()
    assert st["async_accepts"] == st0["async_accepts"] + 1
    assert st["async_accept_rc"] == 0


def test_async_accepted_frames_with_handshake(srv):
    """Frames sent right behind the handshake wait for the deferred
    accept and are processed after open."""
    extra = build_frame(OP_TEXT, b"early one") + build_frame(OP_TEXT, b"two")
    with WSClient.connect(srv.port, "/async?decision=accept&delay=50",
                          extra=extra) as c:
        assert c.recv_text() == "async-open"
        assert c.recv_text() == "early one"
        assert c.recv_text() == "two"


def test_async_accepted_frames_during_wait(srv):
    """Frames sent after the handshake while the upgrade is pending."""
    data, key = upgrade_request(srv.port, "/async?decision=accept&delay=200")
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(data)
        time.sleep(0.05)
        s.sendall(build_frame(OP_TEXT, b"sent while pending"))
        head, rest = read_head(s, 5)
        status, _, _ = parse_head(head)
        assert status == 101, head
        c = WSClient(s, rest)
        assert c.recv_text() == "async-open"
        assert c.recv_text() == "sent while pending"


@pytest.mark.parametrize("status", [401, 403, 409, 503])
def test_async_rejected(srv, status):
    r = raw_upgrade(srv.port, f"/async?decision=reject&status={status}")
    assert r.status == status, r
    assert r.header("x-async") == "rejected"
    assert r.body == b"rejected later\n"
    assert r.header("sec-websocket-accept") is None


def test_async_abandoned(srv):
    st0 = srv.stats()
    data, _ = upgrade_request(srv.port, "/async?decision=accept&delay=400")
    s = socket.create_connection((HOST, srv.port), timeout=5)
    s.sendall(data)
    time.sleep(0.05)
    s.close()
    st = srv.wait_stats(lambda x: x["aborts"] >= st0["aborts"] + 1,
                        what="abort callback")
    assert st["aborts"] == st0["aborts"] + 1
    time.sleep(0.5)  # past the timer: it must not fire
    st = srv.stats()
    assert st["async_accepts"] == st0["async_accepts"]
    assert st["opens"] == st0["opens"]
    # The server keeps working.
    with WSClient.connect(srv.port, "/async?delay=10") as c:
        assert c.recv_text() == "async-open"
        c.echo(b"still working")


def test_async_abandoned_many(srv):
    st0 = srv.stats()
    for _ in range(10):
        data, _ = upgrade_request(srv.port, "/async?delay=300")
        s = socket.create_connection((HOST, srv.port), timeout=5)
        s.sendall(data)
        s.close()
    srv.wait_stats(lambda x: x["aborts"] >= st0["aborts"] + 10,
                   what="10 abort callbacks")
    with WSClient.connect(srv.port, "/echo") as c:
        c.echo(b"ok")


# ---- subprotocols ----------------------------------------------------------------

@pytest.mark.parametrize("offer", ["chat.v2", "chat.v1, chat.v2",
                                   "chat.v2 ,other", ["chat.v1", "chat.v2"]])
def test_protocol_chosen(srv, offer):
    with WSClient.connect(srv.port, "/proto",
                          headers={"Sec-WebSocket-Protocol": offer}) as c:
        assert c.response.header("sec-websocket-protocol") == "chat.v2"
        assert len(c.response.header_all("sec-websocket-protocol")) == 1
        assert c.recv_text() == "proto:chat.v2"
    assert srv.stats()["select_bad_rc"] == -30002  # TL_EINVAL


@pytest.mark.parametrize("offer", [None, "chat.v1", "chat.v22, xchat.v2",
                                   "CHAT.V2"])
def test_protocol_absent(srv, offer):
    with WSClient.connect(srv.port, "/proto",
                          headers={"Sec-WebSocket-Protocol": offer}) as c:
        assert c.response.header("sec-websocket-protocol") is None
        assert c.recv_text() == "proto:none"


# ---- origin ------------------------------------------------------------------------

@pytest.mark.parametrize("origin", ["http://evil.example",
                                    "http://good.example.evil",
                                    "https://good.example", "null", ""])
def test_origin_refused(srv, origin):
    st0 = srv.stats()
    r = raw_upgrade(srv.port, "/origin", headers={"Origin": origin})
    assert r.status == 403, r
    assert r.header("sec-websocket-accept") is None
    assert srv.stats()["opens"] == st0["opens"]


def test_origin_allowed(srv):
    with WSClient.connect(srv.port, "/origin",
                          headers={"Origin": "http://good.example"}) as c:
        c.echo(b"good origin")


def test_origin_absent_allowed(srv):
    with WSClient.connect(srv.port, "/origin") as c:
        c.echo(b"no origin")


def test_origin_other_route_unrestricted(srv):
    with WSClient.connect(srv.port, "/echo",
                          headers={"Origin": "http://evil.example"}) as c:
        c.echo(b"any origin here")


# ---- HTTP answers --------------------------------------------------------------------

def test_plain_get_ws_only_426(srv):
    r = http_request(srv.port, "/wsonly")
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"
    assert (r.header("upgrade") or "").lower() == "websocket"


def test_head_ws_only_426(srv):
    r = http_request(srv.port, "/wsonly", method="HEAD")
    assert r.status == 426, r


def test_post_ws_only_not_upgraded(srv):
    r = http_request(srv.port, "/wsonly", method="POST",
                     headers={"Content-Length": "0"})
    assert r.status in (405, 426), r


def test_ws_only_upgrades(srv):
    with WSClient.connect(srv.port, "/wsonly") as c:
        c.echo(b"no context block")
        c.close_handshake()


def test_both_routes_http(srv):
    r = http_request(srv.port, "/both")
    assert r.status == 200, r
    assert r.body == b"plain http on /both\n"


def test_both_routes_ws(srv):
    with WSClient.connect(srv.port, "/both") as c:
        c.echo(b"ws on /both")
        c.close_handshake()


def test_unknown_path_upgrade_404(srv):
    r = raw_upgrade(srv.port, "/no-such-ws")
    assert r.status == 404, r


@pytest.mark.parametrize("ver", ["8", "12", "14", "13, 8"])
def test_version_not_13(srv, ver):
    r = raw_upgrade(srv.port, "/echo", headers={"Sec-WebSocket-Version": ver})
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"


def test_version_missing(srv):
    r = raw_upgrade(srv.port, "/echo", drop=("Sec-WebSocket-Version",))
    assert r.status == 426, r
    assert r.header("sec-websocket-version") == "13"


@pytest.mark.parametrize("key", [None, "", "abc", "dGhlIHNhbXBsZSBub25jZQ=",
                                 "dGhlIHNhbXBsZSBub25jZQ===",
                                 "dGhlIHNhbXBsZSBub25jZ!==",
                                 "dGhlIHNhbXBsZSBub25jZQ"])
def test_bad_key_400(srv, key):
    if key is None:
        r = raw_upgrade(srv.port, "/echo", drop=("Sec-WebSocket-Key",))
    else:
        r = raw_upgrade(srv.port, "/echo",
                        headers={"Sec-WebSocket-Key": key})
    assert r.status == 400, r


@pytest.mark.parametrize("keys", [
    ["dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwgJCgsMDQ4PEA=="],
    ["dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=="],
], ids=["different", "same"])
def test_two_keys_400(srv, keys):
    """RFC 6455 11.3.1: Sec-WebSocket-Key appears once. Which of two the
    101 answers would depend on who reads them: no 101 at all."""
    st0 = srv.stats()
    r = raw_upgrade(srv.port, "/echo", headers={"Sec-WebSocket-Key": keys})
    assert r.status == 400, r
    assert r.header("sec-websocket-accept") is None
    assert srv.stats()["opens"] == st0["opens"]


@pytest.mark.parametrize("host", [None, ["a.example", "b.example"]],
                         ids=["none", "two"])
def test_host_missing_or_repeated_400(srv, host):
    """An upgrade is an HTTP/1.1 request: exactly one Host (an origin
    check that compares Origin with Host must not pick one of two)."""
    st0 = srv.stats()
    r = raw_upgrade(srv.port, "/echo", headers={"Host": host})
    assert r.status == 400, r
    assert r.header("sec-websocket-accept") is None
    assert srv.stats()["opens"] == st0["opens"]


def test_rfc_sample_key(srv):
    """RFC 6455's example key gives its example accept value."""
    data, _ = upgrade_request(srv.port, "/echo",
                              key="dGhlIHNhbXBsZSBub25jZQ==")
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(data)
        head, _ = read_head(s)
        status, _, hdrs = parse_head(head)
        assert status == 101
        assert dict(hdrs)["sec-websocket-accept"] == \
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_http10_upgrade_400(srv):
    r = raw_upgrade(srv.port, "/echo", version="HTTP/1.0")
    assert r.status == 400, r


@pytest.mark.parametrize("conn", ["keep-alive", "close", "upgraded", None])
def test_connection_without_upgrade_400(srv, conn):
    r = raw_upgrade(srv.port, "/echo", headers={"Connection": conn})
    assert r.status == 400, r


@pytest.mark.parametrize("conn", ["keep-alive, Upgrade", "UPGRADE",
                                  "upgrade,keep-alive"])
def test_connection_token_list(srv, conn):
    with WSClient.connect(srv.port, "/echo",
                          headers={"Connection": conn}) as c:
        c.echo(b"token list ok")


def test_upgrade_token_case(srv):
    with WSClient.connect(srv.port, "/echo",
                          headers={"Upgrade": "WebSocket"}) as c:
        c.echo(b"case-insensitive upgrade token")


def test_upgrade_after_keepalive_request(srv):
    """An HTTP request, then an upgrade on the same connection."""
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(b"GET /both HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_http_response(s)
        assert r.status == 200 and r.body == b"plain http on /both\n"
        data, _ = upgrade_request(srv.port, "/echo")
        s.sendall(data)
        head, rest = read_head(s)
        assert parse_head(head)[0] == 101, head
        c = WSClient(s, rest)
        c.echo(b"upgraded second")


def test_pipelined_request_and_upgrade(srv):
    """A GET and an upgrade in one write: the GET's answer first, then
    the 101."""
    data, _ = upgrade_request(srv.port, "/echo")
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(b"GET /both HTTP/1.1\r\nHost: x\r\n\r\n" + data +
                  build_frame(OP_TEXT, b"after both"))
        r = read_http_response(s)
        assert r.status == 200 and r.body == b"plain http on /both\n", r
        buf = r.rest
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        i = buf.index(b"\r\n\r\n") + 4
        assert parse_head(buf[:i])[0] == 101, buf
        c = WSClient(s, buf[i:])
        assert c.recv_text() == "after both"


# ---- stop --------------------------------------------------------------------------

def test_stop_route_with_open_socket(start_server):
    s = start_server()
    c = WSClient.connect(s.port, "/echo")
    c.echo(b"before stop")
    r = http_request(s.port, "/stop")
    assert r.status == 200
    # The open socket is closed with 1001 (going away).
    c.expect_close(1001, 5)
    c.send_close(1001)
    assert c.wait_eof(5)
    c.close()
    assert s.wait_exit(10) == 0


@pytest.mark.parametrize("empty", ["X-Empty:", "X-Empty: ", "X-Empty:\t"])
def test_empty_header_value_before_ws_headers(srv, empty):
    """An unrelated header with an empty value, right before the
    WebSocket headers, must not disturb them."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    req = ("GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\n" + empty + "\r\n"
           "Sec-WebSocket-Key: " + key + "\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(req)
        head, _ = read_head(s)
        assert parse_head(head)[0] == 101, head
