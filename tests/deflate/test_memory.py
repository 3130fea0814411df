"""Server memory per connection with 1000 connections in each mode:
right after the handshake (idle), after one compressed message each way
(streams created), and once all have closed (given back to the system,
compression windows included). Prints the numbers; the bounds are
generous (no claim on speed)."""
import time

import pytest

from dclient import OP_TEXT, DClient, build_frame
from pmdmodel import PMD
from talon_server import wrapped

N = 1000
# route, offer, bound on KiB per connection once active
MODES = [
    ("/plain", None, 64),
    ("/shared", PMD, 64),
    ("/comp-only", PMD, 1024),
    ("/dedicated", PMD, 1024),
    ("/small-window", PMD, 160),
]
RESULTS = {}


def _open(srv, route, offer, n):
    return [DClient.connect(srv.port, route, offer) for _ in range(n)]


@pytest.mark.parametrize("route,offer,bound", MODES,
                         ids=[m[0] for m in MODES])
def test_rss_per_connection(fresh_srv, route, offer, bound, capsys):
    srv = fresh_srv
    # Warm up: shared streams and scratch buffers exist before we measure.
    warm = DClient.connect(srv.port, route, offer)
    warm.echo(("warm up " * 200).encode())
    rss0 = srv.rss_kib()
    cs = _open(srv, route, offer, N)
    srv.wait_stats(lambda st: st["opens"] >= N + 1, what="all open")
    rss_idle = srv.rss_kib()
    msg = ("a compressible message " * 40).encode()
    for c in cs:
        c.send_msg(msg, OP_TEXT)
    for c in cs:
        assert c.recv_msg().data == msg
    rss_active = srv.rss_kib()
    idle = (rss_idle - rss0) / N
    active = (rss_active - rss0) / N
    RESULTS[route] = (idle, active)
    with capsys.disabled():
        print(f"\n[memory] {route:14s} {N} connections: "
              f"{idle:7.1f} KiB/conn idle, {active:7.1f} KiB/conn after one "
              f"compressed message each way (RSS {rss0} -> {rss_idle} -> "
              f"{rss_active} KiB)")
    for c in cs:
        c.close()
    warm.close()
    srv.wait_stats(lambda st: st["closes"] >= N + 1, timeout=30,
                   what="all closed")
    assert idle < 64, f"{route}: {idle:.1f} KiB per idle connection"
    assert active < bound, f"{route}: {active:.1f} KiB per connection"
    # What the connections held goes back to the system, zlib windows
    # included (the C library would keep freed heap for reuse): within a
    # few sweeps (a second each at most), RSS is back near the base. Not
    # under AddressSanitizer or valgrind, whose allocators keep freed
    # blocks (quarantine) and do not trim.
    if srv.sanitized() or wrapped():
        return
    left = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = (srv.rss_kib() - rss0) / N
        if left < 8:
            break
        time.sleep(0.2)
    with capsys.disabled():
        print(f"[memory] {route:14s} after closing all: {left:7.1f} KiB/conn "
              f"left over the base")
    assert left < 8, f"{route}: {left:.1f} KiB per closed connection kept"
