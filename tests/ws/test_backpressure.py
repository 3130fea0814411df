"""Backpressure: a client that stops reading while the server floods
(/flood: max_backpressure 1 MiB, 64 KiB messages), the send results, the
drain callback, bounded server memory, close_on_backpressure_limit."""
import socket
import time

import pytest

from wsclient import OP_BINARY, OP_TEXT, WSClient, build_frame

MSG = 64 * 1024
FRAME = MSG + 10  # 64-bit length form: 10-byte header
MiB = 1024 * 1024
TL_WS_BACKPRESSURE = 2 ** 31 - 1  # TL_SEND_BACKPRESSURE (INT_MAX)
TL_WS_DROPPED = 0


def flood_payload():
    return bytes(i % 251 for i in range(MSG))


PAYLOAD = flood_payload()


def is_asan(srv):
    with open(f"/proc/{srv.proc.pid}/maps") as f:
        return "libasan" in f.read()


def rss_bound(srv, base):
    # ASan's quarantine keeps freed memory resident: allow more there.
    return base + (256 if is_asan(srv) else 48) * 1024


def small_rcvbuf_connect(port, path):
    """Connects with a small receive buffer so the server's writes stall
    early."""
    c = WSClient.connect(port, path)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return c


def check_runs(runs, what):
    """Send results: positive (the frame size), then TL_WS_BACKPRESSURE,
    then one TL_WS_DROPPED at the end."""
    values = [v for v, _ in runs]
    assert runs, f"{what}: no sends recorded"
    assert values[0] == FRAME, f"{what}: first results {runs}"
    assert TL_WS_BACKPRESSURE in values, \
        f"{what}: never returned TL_WS_BACKPRESSURE: {runs}"
    assert values[-1] == TL_WS_DROPPED and runs[-1][1] == 1, \
        f"{what}: does not end with one TL_WS_DROPPED: {runs}"
    # bytes* -> backpressure* -> 0, never back.
    order = [1 if 0 < v < TL_WS_BACKPRESSURE else v for v in values]
    assert order == [1, TL_WS_BACKPRESSURE, TL_WS_DROPPED], \
        f"{what}: results not bytes -> backpressure -> 0: {runs}"
    queued = sum(c for v, c in runs if v != TL_WS_DROPPED)
    return queued


def read_flood(c, queued, timeout=20):
    """Reads `queued` 64 KiB messages, then expects "drained"."""
    for i in range(queued):
        ev = c.recv_data(timeout)
        assert ev.opcode == OP_BINARY and len(ev.data) == MSG, (i, ev)
        assert ev.data == PAYLOAD, i
    ev = c.recv_data(timeout)
    assert ev.opcode == OP_TEXT and ev.data == b"drained", ev


def test_flood_in_one_callback(srv):
    """Sends in one message callback: results go bytes -> backpressure -> 0;
    after the client reads everything, drain fires and "drained" comes."""
    st0 = srv.stats()
    with small_rcvbuf_connect(srv.port, "/flood") as c:
        base = srv.rss_kib()
        c.send_text("flood")
        st = srv.wait_stats(lambda s: s["flood_runs"] == st0["flood_runs"] + 1,
                            what="flood ran")
        time.sleep(0.3)
        assert srv.rss_kib() < rss_bound(srv, base)
        st = srv.stats()
        queued = check_runs(st["flood"], "flood")
        assert st["dropped"] == st0["dropped"] + 1
        assert st["dropped_bytes"] == st0["dropped_bytes"] + MSG
        assert st["drains"] == st0["drains"]  # not before we read
        read_flood(c, queued)
        st = srv.wait_stats(lambda s: s["drains"] == st0["drains"] + 1,
                            what="drain")
        assert st["drained_send_rc"] > 0
        c.echo(b"after the flood")
        c.close_handshake()


def test_flood_from_timer(srv):
    """One send per timer tick (tl_ws_cork): the backlog builds up in the
    kernel and in talon; same results and drain."""
    st0 = srv.stats()
    with small_rcvbuf_connect(srv.port, "/flood") as c:
        base = srv.rss_kib()
        c.send_text("flood-timer")
        srv.wait_stats(
            lambda s: s["flood_timer_runs"] == st0["flood_timer_runs"] + 1
            and s["flood_timer"] and s["flood_timer"][-1][0] == 0,
            timeout=10, what="timer flood reached TL_WS_DROPPED")
        assert srv.rss_kib() < rss_bound(srv, base)
        st = srv.stats()
        queued = check_runs(st["flood_timer"], "flood_timer")
        read_flood(c, queued)
        srv.wait_stats(lambda s: s["drains"] == st0["drains"] + 1,
                       what="drain")
        c.echo(b"after the timer flood")


def test_repeated_floods(srv):
    """Flood, read all, flood again: each round drains."""
    with small_rcvbuf_connect(srv.port, "/flood") as c:
        for round_ in range(3):
            st0 = srv.stats()
            c.send_text("flood")
            srv.wait_stats(
                lambda s: s["flood_runs"] == st0["flood_runs"] + 1,
                what="flood ran")
            queued = check_runs(srv.stats()["flood"], f"round {round_}")
            read_flood(c, queued)
            srv.wait_stats(lambda s: s["drains"] == st0["drains"] + 1,
                           what=f"drain {round_}")


def test_client_sends_without_reading(srv):
    """A client that sends 64 KiB messages to an echo route and never
    reads: the server's memory stays bounded (its echoes are dropped or it
    stops reading), and it keeps serving others."""
    with small_rcvbuf_connect(srv.port, "/flood") as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        base = srv.rss_kib()
        frame = build_frame(OP_BINARY, PAYLOAD)
        c.sock.setblocking(False)
        sent = 0
        t0 = time.monotonic()
        pending = b""
        while sent < 64 * MiB and time.monotonic() - t0 < 4:
            if not pending:
                pending = frame
            try:
                n = c.sock.send(pending)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            pending = pending[n:]
            sent += n
        peak = srv.rss_kib()
        assert peak < rss_bound(srv, base), (base, peak, sent)
        with WSClient.connect(srv.port, "/echo") as other:
            other.echo(b"others are served")
        c.sock.setblocking(True)
    srv.wait_stats(lambda s: s["opens"] == s["closes"], timeout=8,
                   what="flooding client closed")


def test_close_on_backpressure_limit(srv):
    """/cobl: the send over the limit closes the socket with 1008; the
    client still gets what was queued, then the close frame and EOF."""
    st0 = srv.stats()
    n = st0["nclose_log"]
    with small_rcvbuf_connect(srv.port, "/cobl") as c:
        c.send_text("flood")
        srv.wait_stats(lambda s: s["cobl_runs"] == st0["cobl_runs"] + 1,
                       what="cobl flood ran")
        runs = srv.stats()["cobl"]
        assert runs[-1] == [TL_WS_DROPPED, 1], runs
        queued = sum(cnt for v, cnt in runs if v != TL_WS_DROPPED)
        ev = c.expect_close(1008, 20)
        assert len(ev.before) == queued, (len(ev.before), runs)
        assert all(e.data == PAYLOAD for e in ev.before)
        assert c.wait_eof(5)
    e = srv.wait_close_logged(n, "/cobl")
    assert e["code"] == 1008, e
    assert srv.stats()["drains"] == st0["drains"]
