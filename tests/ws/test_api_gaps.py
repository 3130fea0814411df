"""The WebSocket API next to Bun's and uWebSockets': every close code an
endpoint may send, an unsolicited pong, the error handler on read and
write errors, route-level middleware on ws routes, the server-wide count
of open sockets, and what holds when `close` runs inside a tl_ws_send
that crossed close_on_backpressure_limit."""
import errno
import socket
import struct
import time

import pytest

from wsclient import OP_PONG, OP_TEXT, WSClient, http_request

UV_ECONNRESET = -errno.ECONNRESET
UV_EPIPE = -errno.EPIPE
TL_EINVAL = -30002
TL_WS_DROPPED = 0
TL_WS_CLOSED = 3

SENDABLE = [1000, 1001, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
            1014, 3000, 3999, 4000, 4999]
REFUSED = [1, 999, 1002, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000,
           65535, -1]


@pytest.mark.parametrize("code", SENDABLE)
def test_close_accepts_every_sendable_code(srv, code):
    with WSClient.connect(srv.port, "/gaps") as c:
        c.send_text(f"close:{code}")
        ev = c.recv()
        assert ev.code == code, ev
        assert ev.reason == b"by app"
        c.send_close(code)
        assert c.wait_eof(5)


def test_close_refuses_other_codes(srv):
    with WSClient.connect(srv.port, "/gaps") as c:
        for code in REFUSED:
            c.send_text(f"close:{code}")
            assert c.recv_text() == "close-rc:TL_EINVAL", code
        c.echo(b"still open")


def test_unsolicited_pong(srv):
    with WSClient.connect(srv.port, "/gaps") as c:
        c.send_text("pong:heartbeat")
        ev = c.recv()
        assert (ev.opcode, ev.data) == (OP_PONG, b"heartbeat")
        # no ping was sent: the client must not answer it, and the
        # server sent nothing more
        c.echo(b"after pong")
        st = srv.stats()
        assert st["pong_rc"] == 2 + len("heartbeat")
        assert st["pong_big_rc"] == TL_EINVAL  # 126 bytes: too long


def test_open_socket_count(srv):
    def count():
        return srv.stats()["ws_count"]

    srv.wait_stats(lambda s: s["opens"] == s["closes"], timeout=8,
                   what="earlier sockets closed")
    base = count()
    clients = [WSClient.connect(srv.port, "/gaps") for _ in range(3)]
    try:
        clients[0].send_text("count")
        assert clients[0].recv_text() == f"count:{base + 3}"
        assert count() == base + 3
        clients[1].close_handshake()
        clients[2].close()  # no close frame: the EOF closes it
        srv.wait_stats(lambda s: s["ws_count"] == base + 1, timeout=5,
                       what="two closed")
        clients[0].send_text("count")
        assert clients[0].recv_text() == f"count:{base + 1}"
    finally:
        for c in clients:
            c.close()
    srv.wait_stats(lambda s: s["ws_count"] == base, timeout=5,
                   what="all closed")


def reset(sock):
    """Close with RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def test_read_error_reaches_error_handler(srv):
    st0 = srv.stats()
    n = st0["nclose_log"]
    c = WSClient.connect(srv.port, "/gaps")
    c.echo(b"x")
    reset(c.sock)
    e = srv.wait_close_logged(n, "/gaps")
    assert e["code"] == 1006
    st = srv.stats()
    assert st["errors"] == st0["errors"] + 1
    assert st["last_error"] == UV_ECONNRESET


def test_clean_close_is_not_an_error(srv):
    st0 = srv.stats()
    n = st0["nclose_log"]
    with WSClient.connect(srv.port, "/gaps") as c:
        c.close_handshake()
    srv.wait_close_logged(n, "/gaps")
    c = WSClient.connect(srv.port, "/gaps")
    c.close()  # FIN without a close frame
    srv.wait_close_logged(n + 1, "/gaps")
    assert srv.stats()["errors"] == st0["errors"]


def test_write_error_reaches_error_handler(srv):
    st0 = srv.stats()
    n = st0["nclose_log"]
    c = WSClient.connect(srv.port, "/gaps")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send_text("pause-big")
    srv.wait_stats(lambda s: s["big_queued"] == 256, timeout=5,
                   what="16 MiB queued")
    time.sleep(0.2)  # the kernel's buffers fill; the rest waits in libuv
    reset(c.sock)
    e = srv.wait_close_logged(n, "/gaps", timeout=10)
    assert e["code"] == 1006
    st = srv.stats()
    assert st["errors"] == st0["errors"] + 1
    assert st["last_error"] in (UV_ECONNRESET, UV_EPIPE), st["last_error"]


def test_route_level_middleware_refuses(srv):
    r = http_request(srv.port, "/gated", headers={
        "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13"})
    assert r.status == 401
    assert r.body == b"no token\n"
    c = WSClient.connect(srv.port, "/gated?token=bad", expect=401)
    c.close()


def test_route_level_middleware_runs_after_app_level(srv):
    with WSClient.connect(srv.port, "/gated?token=ok&user=ann") as c:
        assert c.recv_text() == "via:route-mw after user=ann"
    with WSClient.connect(srv.port, "/gated?token=ok") as c:
        assert c.recv_text() == "via:route-mw after user=none"


def test_socket_after_close_inside_send(srv):
    """close_on_backpressure_limit: `close` runs inside the send that
    crossed the limit; after that send returned, the socket is still
    readable memory: state CLOSED, sends dropped, the same context."""
    st0 = srv.stats()
    n = st0["nclose_log"]
    c = WSClient.connect(srv.port, "/cobl-after")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        c.send_text("flood")
        e = srv.wait_close_logged(n, "/cobl-after", timeout=10)
        assert e["code"] == 1008
        after = srv.stats()["after"]
        assert after["sends"] > 1
        assert after["close_ran"] == 1          # before the send returned
        assert after["state_in_close"] == TL_WS_CLOSED
        assert after["state"] == TL_WS_CLOSED
        assert after["send_rc"] == TL_WS_DROPPED
        assert after["same_data"] == 1
        assert after["route_ok"] == 1
        ev = c.expect_close(1008, 20)
        assert all(m.opcode != OP_TEXT for m in ev.before)  # "after" not sent
    finally:
        c.close()
