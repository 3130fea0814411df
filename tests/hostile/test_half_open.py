"""Half-open connections: clients that connect and say nothing, send half a
request or half a frame and go silent, stop answering pings, or half-close
TCP. Each is closed by the configured timeout (header 1 s, keep-alive 1 s,
WebSocket idle 1 s; the server's sweep adds up to a tick) or at once when
nothing more can come, and the canaries never notice."""
import select
import socket
import time

import pytest

from conftest import (HEADER_TIMEOUT, HOST, KEEPALIVE_TIMEOUT, SLACK,
                      WS_IDLE_TIMEOUT, Canaries, after_attack, connect,
                      http_get, report_memory, ws_connect)


def wait_all_closed(socks, started, timeout):
    """Reads every socket until the server closes it; returns per socket
    (seconds since `started[i]`, bytes received). Fails if any is still
    open after `timeout` seconds."""
    n = len(socks)
    done = [None] * n
    got = [b""] * n
    deadline = time.monotonic() + timeout
    index = {s.fileno(): i for i, s in enumerate(socks)}
    while any(d is None for d in done):
        left = deadline - time.monotonic()
        open_ = [s for i, s in enumerate(socks) if done[i] is None]
        assert left > 0, f"{len(open_)}/{n} connections still open after " \
                         f"{timeout:.1f}s"
        ready, _, _ = select.select(open_, [], [], min(left, 0.2))
        for s in ready:
            i = index[s.fileno()]
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if chunk:
                got[i] += chunk
            else:
                done[i] = time.monotonic()
    for s in socks:
        s.close()
    return [(done[i] - started[i], got[i]) for i in range(n)]


def summary(results):
    times = sorted(t for t, _ in results)
    return f"closed after {times[0]:.2f}..{times[-1]:.2f}s"


def mem_bound(srv, n):
    # Each connection: its block and small buffers; 64 KiB is generous.
    return n * 64 + (16 if not srv.is_asan() else 64) * 1024


@pytest.mark.parametrize("kind", ["silent", "half-head", "after-response"])
def test_http_half_open(srv, kind):
    """100 connections that go silent: right after connecting (closed
    without a word at the header timeout), in the middle of a head (408
    at the header timeout), or after one complete exchange (closed at the
    keep-alive timeout)."""
    n = 100
    timeout = HEADER_TIMEOUT if kind != "after-response" \
        else KEEPALIVE_TIMEOUT
    base = srv.rss_kib()
    with Canaries(srv) as can:
        socks, started = [], []
        for _ in range(n):
            s = connect(srv.port)
            if kind == "half-head":
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: " + HOST.encode()
                          + b"\r\nX-Half: ")
            elif kind == "after-response":
                s.sendall(http_get("/hello"))
            socks.append(s)
            started.append(time.monotonic())
        can.sample()
        results = wait_all_closed(socks, started, timeout + SLACK + 3)
        can.sample()
    for t, got in results:
        assert t >= timeout * 0.75, f"closed after {t:.2f}s, before the " \
                                    f"{timeout}s timeout"
        assert t <= timeout + SLACK, f"closed only after {t:.2f}s"
        if kind == "silent":
            assert got == b"", got[:200]
        elif kind == "half-head":
            assert got.startswith(b"HTTP/1.1 408 "), got[:200]
        else:
            assert got.startswith(b"HTTP/1.1 200 "), got[:200]
            assert got.endswith(b"\r\n\r\nhello\n"), got[-200:]
    print(f"  {kind}: {n} connections {summary(results)}")
    report_memory(f"http half-open {kind}", base, can.peak_rss,
                  mem_bound(srv, n))
    after_attack(srv)


@pytest.mark.parametrize("kind", ["complete", "half-head"])
def test_http_half_close(srv, kind):
    """50 clients send a request (whole, or half a head) and shut down
    their write side: a whole request is answered, then closed; half a
    head can never complete, so the server closes (answering 400 at most)
    without waiting for a timeout."""
    n = 50
    base = srv.rss_kib()
    with Canaries(srv) as can:
        socks, started = [], []
        for _ in range(n):
            s = connect(srv.port)
            s.sendall(http_get("/hello") if kind == "complete"
                      else b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Half")
            s.shutdown(socket.SHUT_WR)
            socks.append(s)
            started.append(time.monotonic())
        results = wait_all_closed(socks, started, HEADER_TIMEOUT + SLACK)
    for t, got in results:
        if kind == "complete":
            assert got.startswith(b"HTTP/1.1 200 ") and \
                got.endswith(b"hello\n"), got[:300]
        else:
            assert got == b"" or got.startswith(b"HTTP/1.1 400 "), got[:300]
            assert t < HEADER_TIMEOUT * 0.75, \
                f"half-closed half head kept {t:.2f}s (until the timeout)"
    print(f"  half-close {kind}: {n} connections {summary(results)}")
    report_memory(f"http half-close {kind}", base, can.peak_rss,
                  mem_bound(srv, n))
    after_attack(srv)


def control_frames(data):
    """Splits server bytes into (opcode, payload) control frames."""
    out = []
    while data:
        assert len(data) >= 2 and data[1] < 126, data[:20]
        n = data[1]
        out.append((data[0] & 0x0F, data[2:2 + n]))
        assert data[0] & 0x80, "fragmented control frame"
        data = data[2 + n:]
    return out


def ws_results_ok(results, timeout):
    """WebSocket sockets closed by the idle timeout: pings at most, then a
    1001 close frame (or a bare TCP close), within the timeout plus a
    sweep and the slack."""
    for t, got in results:
        assert t >= timeout * 0.75, f"closed after {t:.2f}s, before {timeout}s"
        assert t <= timeout + 1.0 + SLACK, f"closed only after {t:.2f}s"
        frames = control_frames(got)
        assert all(op == 9 for op, _ in frames[:-1]), frames
        if frames and frames[-1][0] != 9:
            assert frames[-1] == (8, b"\x03\xe9" + frames[-1][1][2:]), \
                frames


@pytest.mark.parametrize("kind", ["silent", "half-frame", "no-pongs"])
def test_ws_half_open(srv, kind):
    """20 WebSocket clients go silent: right after the handshake, in the
    middle of a frame, or (on a route that pings) without ever answering a
    ping. The idle timeout (1 s) closes each."""
    n = 20
    path = "/idle-ping" if kind == "no-pongs" else "/idle"
    base = srv.rss_kib()
    st0 = srv.stats()
    with Canaries(srv) as can:
        clients, started = [], []
        for _ in range(n):
            c = ws_connect(srv.port, path)
            if kind == "half-frame":
                c.send_raw(b"\x81\x85\x00")  # 3 of the 11 bytes
            clients.append(c)
            started.append(time.monotonic())
        socks = [c.sock for c in clients]
        results = wait_all_closed(socks, started,
                                  WS_IDLE_TIMEOUT + 1.0 + SLACK + 3)
        can.sample()
    ws_results_ok(results, WS_IDLE_TIMEOUT)
    if kind == "no-pongs":
        pinged = sum(1 for _, got in results if got.startswith(b"\x89"))
        assert pinged == n, f"only {pinged}/{n} were pinged first"
    st = srv.wait_stats(
        lambda st: st["close_codes"]["1001"] - st0["close_codes"]["1001"]
        + st["close_codes"]["1006"] - st0["close_codes"]["1006"] >= n,
        what=f"{n} idle closes")
    print(f"  ws {kind}: {n} sockets {summary(results)}, close codes "
          f"1001 {st['close_codes']['1001']}, 1006 "
          f"{st['close_codes']['1006']}")
    report_memory(f"ws half-open {kind}", base, can.peak_rss,
                  mem_bound(srv, n))
    after_attack(srv)
