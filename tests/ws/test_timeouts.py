"""Idle timeout (with and without server pings) and max lifetime. talon
checks deadlines on a sweep (at most once a second with the default
HTTP timeouts), so a 1 s timeout fires within about 1-2 s."""
import asyncio
import time

import pytest
import websockets

from wsclient import OP_PING, OP_PONG, OP_TEXT, Closed, Timeout, WSClient


def wait_close_or_eof(c, timeout):
    """Returns ('close', code) or ('eof', None) and the time it took."""
    t0 = time.monotonic()
    try:
        while True:
            ev = c.recv(max(0.0, timeout - (time.monotonic() - t0)))
            if ev.opcode == 8:
                return ("close", ev.code), time.monotonic() - t0
    except Closed:
        return ("eof", None), time.monotonic() - t0


def test_idle_timeout_closes_silent_client(srv):
    n = srv.stats()["nclose_log"]
    t0 = time.monotonic()
    with WSClient.connect(srv.port, "/idle") as c:
        what, _ = wait_close_or_eof(c, 4.0)
        took = time.monotonic() - t0
        assert what in (("close", 1001), ("eof", None)), what
        assert 0.9 <= took <= 2.6, took
        if what[0] == "close":
            assert c.wait_eof(3)
    srv.wait_close_logged(n, "/idle")


def test_idle_timeout_reset_by_traffic(srv):
    with WSClient.connect(srv.port, "/idle") as c:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.6:
            c.echo(b"keepalive")
            time.sleep(0.3)
        c.echo(b"still here after 2.6 s")
        c.close_handshake()


def test_idle_timeout_pings_count_as_traffic(srv):
    with WSClient.connect(srv.port, "/idle") as c:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.6:
            c.send_frame(OP_PING, b"k")
            assert c.recv(2).opcode == OP_PONG
            time.sleep(0.3)
        c.echo(b"alive")


def test_send_pings_client_answers(srv):
    """With send_pings the server pings a quiet client; answering pongs
    keeps it connected well past the idle timeout."""
    with WSClient.connect(srv.port, "/idle-ping") as c:
        pings = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.2:
            try:
                ev = c.recv(0.2)
            except Timeout:
                continue
            assert ev.opcode == OP_PING, ev
            pings += 1
            c.send_frame(OP_PONG, ev.data)
        assert pings >= 2, pings
        c.echo(b"still connected")
        c.close_handshake()


def test_send_pings_client_silent(srv):
    """A client that does not answer the server's pings is closed."""
    t0 = time.monotonic()
    with WSClient.connect(srv.port, "/idle-ping") as c:
        pings = 0
        result = None
        while time.monotonic() - t0 < 5:
            try:
                ev = c.recv(5 - (time.monotonic() - t0))
            except Closed:
                result = ("eof", None)
                break
            if ev.opcode == OP_PING:
                pings += 1
                continue
            assert ev.opcode == 8, ev
            result = ("close", ev.code)
            break
        took = time.monotonic() - t0
        assert pings >= 1
        assert result in (("close", 1001), ("eof", None)), result
        assert took <= 4.0, took


def test_send_pings_websockets_client(srv):
    """python websockets answers pings by itself: the connection survives
    3 s of silence on a 1 s idle timeout."""
    async def run():
        async with websockets.connect(
                f"ws://127.0.0.1:{srv.port}/idle-ping", ping_interval=None,
                open_timeout=5, close_timeout=5) as ws:
            await asyncio.sleep(3.0)
            await ws.send("after silence")
            got = await asyncio.wait_for(ws.recv(), 5)
            assert got == "after silence"
    asyncio.run(run())


@pytest.mark.parametrize("path", ["/lifetime", "/lifetime-noidle"])
def test_max_lifetime(srv, path):
    """max_lifetime_s = 1: closed with 1000 after about 1 s even while
    busy (and also when idle timeouts are off); the server then waits for
    our close."""
    n = srv.stats()["nclose_log"]
    with WSClient.connect(srv.port, path) as c:
        t0 = time.monotonic()
        ev = None
        while time.monotonic() - t0 < 4:
            c.send_frame(OP_TEXT, b"busy")
            ev = c.recv(1)
            if ev.opcode == 8:
                break
            assert ev.data == b"busy"
            time.sleep(0.1)
        took = time.monotonic() - t0
        assert ev is not None and ev.opcode == 8, ev
        assert ev.code == 1000, ev
        assert 0.9 <= took <= 2.6, took
        c.send_close(1000)
        assert c.wait_eof(3)
    assert srv.wait_close_logged(n, path)["code"] == 1000
