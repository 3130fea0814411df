"""Server lifecycle: graceful shutdown (tl_app_stop, SIGTERM), the
shutdown timeout, max_connections. Each test runs its own server."""
import signal
import socket
import time

import pytest

from conftest import (SHUTDOWN_TIMEOUT, Closed, Conn, build_request, get)


def connect_refused_or_closed(port):
    """True if a new connection is refused, or accepted and closed with no
    response to a request."""
    try:
        c = Conn(port, timeout=2)
    except ConnectionRefusedError:
        return True
    with c:
        try:
            c.send(build_request("GET", "/hello"))
        except (BrokenPipeError, ConnectionResetError):
            return True
        return c.wait_closed(2)


@pytest.mark.parametrize("how", ["route", "sigterm"])
def test_graceful_shutdown_inflight_finishes(start_server, how):
    s = start_server()
    inflight = Conn(s.port, timeout=5)
    idle = Conn(s.port, timeout=5)
    try:
        assert idle.request("GET", "/hello").status == 200
        inflight.send(build_request("GET", "/async?ms=400&id=inflight"))
        time.sleep(0.05)
        t0 = time.monotonic()
        if how == "route":
            s.stopping = True
            r = get(s.port, "/stop")
            assert (r.status, r.text) == (200, "stopping")
        else:
            s.send_signal(signal.SIGTERM)
        # the idle keep-alive connection is closed promptly
        assert idle.wait_closed(1.0), "idle connection not closed on shutdown"
        assert time.monotonic() - t0 < 0.35
        # new connections are refused while the in-flight one finishes
        assert connect_refused_or_closed(s.port)
        r = inflight.read_response(timeout=3)
        assert (r.status, r.text) == (200, "async:inflight")
        assert r.header("Connection") == "close"
        assert inflight.wait_closed(2)
        rc = s.wait_exit(5)
        assert rc == 0
        assert time.monotonic() - t0 < 2.0
        s.check_clean_exit()
    finally:
        inflight.close()
        idle.close()


def test_shutdown_pipelined_requests_behind_inflight(start_server):
    """A request being handled when shutdown starts completes; the
    connection closes after it."""
    s = start_server()
    with Conn(s.port, timeout=5) as c:
        c.send(build_request("GET", "/async?ms=300&id=a"))
        time.sleep(0.05)
        s.stopping = True
        assert get(s.port, "/stop").text == "stopping"
        r = c.read_response(timeout=3)
        assert r.text == "async:a"
        assert r.header("Connection") == "close"
        assert c.wait_closed(2)
    assert s.wait_exit(5) == 0
    s.check_clean_exit()


def test_shutdown_timeout_closes_slow_requests(start_server):
    s = start_server()
    with Conn(s.port, timeout=6) as c:
        c.send(build_request("GET", "/async?ms=5000&id=slow"))
        time.sleep(0.05)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        try:
            data = c.read_until_close(timeout=5)
        except ConnectionResetError:
            data = b""
        dt = time.monotonic() - t0
        assert data == b"", f"unexpected response {data!r}"
        assert SHUTDOWN_TIMEOUT * 0.8 <= dt <= SHUTDOWN_TIMEOUT + 1.0, dt
    assert s.wait_exit(5) == 0
    assert time.monotonic() - t0 <= SHUTDOWN_TIMEOUT + 1.5
    s.check_clean_exit()


def test_shutdown_during_big_stream(start_server):
    s = start_server()
    with Conn(s.port, timeout=10, rcvbuf=16384) as c:
        c.send(build_request("GET", "/big?bytes=%d" % (64 << 20)))
        time.sleep(0.1)
        c.sock.recv(4096)
        t0 = time.monotonic()
        s.send_signal(signal.SIGTERM)
        assert s.wait_exit(SHUTDOWN_TIMEOUT + 4) == 0
        assert time.monotonic() - t0 <= SHUTDOWN_TIMEOUT + 1.5
    s.check_clean_exit()


def test_shutdown_with_partial_request(start_server):
    """A connection in the middle of sending a head does not keep the
    server alive past the shutdown timeout, and gets no 200."""
    s = start_server()
    with Conn(s.port, timeout=5) as c:
        c.send(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.05)
        s.send_signal(signal.SIGTERM)
        assert s.wait_exit(SHUTDOWN_TIMEOUT + 3) == 0
    s.check_clean_exit()


def test_sigint_stops(start_server):
    s = start_server()
    assert get(s.port, "/hello").status == 200
    s.send_signal(signal.SIGINT)
    assert s.wait_exit(5) == 0
    s.check_clean_exit()


def test_max_connections(start_server):
    s = start_server(env={"TALON_TEST_MAX_CONN": "3"})
    conns = [Conn(s.port, timeout=3) for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            assert c.request("GET", f"/echo?i={i}").json()["qs"] == f"i={i}"
        # a fourth is accepted and closed at once, without a response
        extra = Conn(s.port, timeout=3)
        with extra:
            try:
                extra.send(build_request("GET", "/hello"))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert extra.wait_closed(2), "connection over max_connections not closed"
        # the three still work
        for c in conns:
            assert c.request("GET", "/hello").status == 200
        # closing one makes room, promptly (the server sees the FIN)
        conns[0].close()
        t0 = time.monotonic()
        while True:
            time.sleep(0.05)
            with Conn(s.port, timeout=3) as c:
                try:
                    r = c.request("GET", "/hello")
                    break
                except Closed:
                    pass
            assert time.monotonic() - t0 < 0.4, \
                "slot of a closed connection not freed within 0.4 s"
        assert r.body == b"hello, world\n"
    finally:
        for c in conns:
            c.close()


def test_many_connections(start_server):
    s = start_server()
    conns = []
    try:
        for i in range(200):
            conns.append(Conn(s.port, timeout=5))
        for i, c in enumerate(conns):
            c.send(build_request("GET", f"/p/{i}"))
        for i, c in enumerate(conns):
            assert c.read_response().text == f"param:{i}"
    finally:
        for c in conns:
            c.close()
    assert get(s.port, "/hello").status == 200
