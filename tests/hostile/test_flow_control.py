"""What a WebSocket peer that does not read may cost: the memory its
backlog pins, and the reading it makes the server do.

    pytest -s tests/hostile/test_flow_control.py --hostile-server PATH
"""
import socket
import threading
import time

import pytest

from conftest import (ECHO_MAX_BACKPRESSURE, FEED_MAX_BACKPRESSURE, KiB, MiB,
                      OP_BINARY, Canaries, WSClient, after_attack, asan_slack,
                      build_frame, report_memory, scaled, ws_connect)


# About 12 MB of frames in every case: more than the kernel's send buffer
# for the subscriber can grow to (tcp_wmem's 4 MiB), so that the
# subscriber's backlog, not the kernel, takes the overflow and drops are
# sure (with 30,000 24-byte messages, 3 MB, an autotuned buffer took it
# all and nothing was dropped).
@pytest.mark.parametrize("size,count", [(24, 120000), (1000, 3000),
                                        (3000, 1000)])
def test_small_publishes_to_a_subscriber_that_never_reads(srv, size, count):
    """One /feed subscriber never reads while publishers on /pub send
    thousands of small messages, one frame per write, so that most loop
    turns publish only a message or two. Each turn's frames share one
    block of at least 4 KiB; the slow subscriber's backlog
    (max_backpressure 256 KiB of frames) must not pin a whole block per
    turn, whatever the message size. Its pinned memory may be at most
    about twice what it counts. Bound: 8 MiB (before the fix, with 24-byte
    messages: about 4 KiB per queued turn, 15 MiB here)."""
    npub = 4
    # Not scaled down under ASan: fewer messages would fit in the socket
    # buffers and never reach the limit.
    per = scaled(srv, count, asan_default=1.0)
    base = srv.rss_kib()
    slow = ws_connect(srv.port, "/feed", rcvbuf=4096)
    srv.wait_stats(lambda st: st["feed_subscribers"] == 1, what="subscriber")
    frame = build_frame(OP_BINARY, bytes(size), mask=True)
    errors = []

    def publisher():
        try:
            c = WSClient.connect(srv.port, "/pub")
            for _ in range(per):
                c.sock.sendall(frame)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    with Canaries(srv) as can:
        threads = [threading.Thread(target=publisher) for _ in range(npub)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            can.sample()
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert not errors, errors
        print(f"  published in {time.monotonic() - t0:.1f} s")
        srv.wait_stats(lambda st: st["ws_messages"] >= npub * per,
                       what="every message published")
        can.sample()
        st = srv.stats()
        # The subscriber's backlog filled up: most messages were dropped
        # for it, so the limit was what bounded it.
        assert st["ws_dropped"] > 0, st
    slow.close()
    report_memory(f"{size}-byte publishes, subscriber never reads", base,
                  can.peak_rss, 8 * 1024 + asan_slack(srv),
                  f"{npub * per} messages, max_backpressure "
                  f"{FEED_MAX_BACKPRESSURE // KiB} KiB, "
                  f"{st['ws_dropped']} dropped")
    after_attack(srv)


def test_echo_flood_never_read_stops_reading(srv):
    """A client floods /echo with 512 KiB messages and never reads the
    echoes. Once its backlog passes half of max_backpressure (1 MiB),
    or an echo is dropped, the server must stop reading from it: the
    client's writes then block, after at most the server's limit plus
    the kernel's socket buffers (a few MiB on loopback). Before the fix
    the server read on at full speed (GiB within seconds), dropping
    every echo. Bound: 64 MiB sent in 4 s."""
    msg = build_frame(OP_BINARY, bytes(512 * KiB), mask=True)
    c = ws_connect(srv.port, "/echo", rcvbuf=4096)
    c.sock.settimeout(0.5)
    sent = 0
    stalled = False
    with Canaries(srv) as can:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline and sent < 64 * MiB:
            try:
                n = c.sock.send(msg)
            except socket.timeout:
                stalled = True
                continue
            sent += n
        can.sample()
        st = srv.stats()
    print(f"  flood: {sent / MiB:.1f} MiB sent, stalled {stalled}, "
          f"{st['ws_messages']} messages read, {st['ws_dropped']} dropped")
    assert stalled and sent < 64 * MiB, \
        f"the server kept reading: {sent / MiB:.1f} MiB taken in 4 s"
    c.close()
    after_attack(srv)


def test_paused_flood_resumes_when_the_client_reads(srv):
    """Flow control, not a cut: the flooding client of the previous test
    starts reading, and the server reads again and echoes every message
    it did not drop, in order."""
    n = 40
    c = ws_connect(srv.port, "/echo", rcvbuf=4096)
    payloads = [i.to_bytes(4, "big") + bytes(256 * KiB - 4) for i in range(n)]

    def flood():
        for p in payloads:
            c.sock.sendall(build_frame(OP_BINARY, p, mask=True))

    t = threading.Thread(target=flood)
    t.start()
    time.sleep(1.0)  # the server pauses reading; the flood blocks
    got = []
    while len(got) < n:
        try:
            ev = c.recv_data(5.0)
        except Exception:  # noqa: BLE001 - a timeout ends it
            break
        got.append(int.from_bytes(ev.data[:4], "big"))
    t.join(10)
    assert not t.is_alive(), "the flood never finished: reading stayed paused"
    assert got == sorted(set(got)) and got, got
    c.close()
    print(f"  resumed: {len(got)} of {n} echoes back, in order")
    after_attack(srv)
