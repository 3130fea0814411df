"""Inflating is bounded per loop turn. A message of ~65 KB on the wire can
inflate to 64 MiB (/sink's max_payload); talon inflates at most 1 MiB per
connection per loop turn, does not read that socket meanwhile, and goes
on in later turns, so other clients are served in between. Checked here:

  - a canary client's ping and echo round trips on another socket stay
    fast while an attacker sends maximal compressed messages (inflated in
    one go, sixteen of them held the loop for over a second);
  - the attacker's messages still arrive whole and in order, with
    whatever followed them in the same read (the route answers each
    message with its length and CRC-32), on a dedicated and a shared
    decompressor, with context takeover across a message inflated over
    several turns;
  - failures found turns into a message (too big, corrupt, not UTF-8)
    close the socket as they do in one go; a client that leaves, or a
    server that stops, in the middle of one leaks nothing (ASan's leak
    check at teardown).
"""
import os
import socket
import struct
import threading
import time
import zlib

import pytest

from conftest import ServerProcess
from dclient import (OP_BINARY, OP_PING, OP_PONG, OP_TEXT, DClient,
                     build_frame, deflate_raw)
from pmdmodel import PMD
from talon_server import skip_if_wrapped

MiB = 1024 * 1024
SINK_MAX = 64 * MiB  # deflate_test_server's /sink max_payload
# The canary's worst round trip allowed while the attack runs. talon's
# slices take a millisecond or two and the delivery of one 64 MiB message
# (the route's CRC-32 of it) a few tens: measured worst 70-95 ms on a
# loaded two-core VM, against 1.6-2.0 s when whole messages were inflated
# in one go. Under ASan a slice that grows the message's buffer copies it
# (glibc's realloc remaps large blocks instead), up to 70 ms for 32 MiB:
# measured worst about 200 ms, against 4-5 s inflating in one go.
CANARY_BOUND = 0.25
CANARY_BOUND_ASAN = 1.0


def compress_fresh(data, level=9):
    """`data` as one message from a fresh compressor (valid whether or not
    the server keeps context: it refers to nothing before it)."""
    return deflate_raw(data, level=level)


@pytest.fixture(scope="module")
def bomb():
    """64 MiB of zeros as one compressed message (about 65 KB)."""
    z = compress_fresh(b"\0" * SINK_MAX)
    assert len(z) < 100 * 1024, len(z)
    return z


def sink_reply(data):
    return b"len=%d crc=%08x" % (len(data), zlib.crc32(data))


ZERO_REPLY = b"len=%d crc=%08x" % (SINK_MAX, zlib.crc32(b"\0" * SINK_MAX))


class Canary(threading.Thread):
    """Ping and echo round trips on /plain, back to back, until stopped;
    records every round trip's time."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.c = DClient.connect(port, "/plain")
        self.times = []
        self.error = None
        self.stop = threading.Event()

    def run(self):
        i = 0
        try:
            while not self.stop.is_set():
                i += 1
                tag = b"c%d" % i
                t0 = time.monotonic()
                self.c.send_frame(OP_PING, tag)
                while True:
                    _, _, op, payload = self.c.recv_frame(10)
                    if op == OP_PONG and payload == tag:
                        break
                t1 = time.monotonic()
                self.c.echo(tag * 10, compress=False)
                t2 = time.monotonic()
                self.times += [t1 - t0, t2 - t1]
                time.sleep(0.005)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def finish(self):
        self.stop.set()
        self.join(20)
        self.c.close()
        assert self.error is None, f"canary failed: {self.error!r}"


def read_replies(c, n, timeout):
    """n data messages from `c`, each within `timeout` seconds."""
    return [c.recv_msg(timeout).data for _ in range(n)]


@skip_if_wrapped("asserts round-trip times")
@pytest.mark.parametrize("route", ["/sink", "/sink-shared"])
def test_canary_latency_under_bombs(fresh_srv, bomb, route):
    """An attacker sends sixteen messages that inflate to 64 MiB each,
    back to back (two of them text, which is validated as it inflates);
    a canary's round trips on another socket stay under CANARY_BOUND and
    every bomb is delivered whole."""
    srv = fresh_srv
    n = 16
    with DClient.connect(srv.port, route, PMD) as att:
        assert att.pmd is not None
        can = Canary(srv.port)
        can.start()
        time.sleep(0.2)  # a few quiet rounds first
        t0 = time.monotonic()
        frames = [build_frame(OP_TEXT if i % 8 == 3 else OP_BINARY, bomb,
                              rsv1=True) for i in range(n)]
        sender = threading.Thread(target=att.send_raw,
                                  args=(b"".join(frames),), daemon=True)
        sender.start()
        replies = read_replies(att, n, 60)
        took = time.monotonic() - t0
        sender.join(10)
        time.sleep(0.1)
        can.finish()
    assert replies == [ZERO_REPLY] * n
    worst = max(can.times)
    rounds = len(can.times) // 2
    print(f"\n  {route}: {n} x 64 MiB in {took:.2f}s; canary {rounds} "
          f"rounds, worst {worst * 1000:.1f} ms, median "
          f"{sorted(can.times)[len(can.times) // 2] * 1000:.2f} ms")
    bound = CANARY_BOUND_ASAN if srv.sanitized() else CANARY_BOUND
    assert rounds >= 5, f"only {rounds} canary rounds"
    assert worst < bound, \
        f"a canary round trip took {worst * 1000:.0f} ms while {n} " \
        f"64 MiB messages were inflated ({took:.2f}s)"


@pytest.mark.parametrize("route", ["/sink", "/sink-shared"])
def test_order_kept_around_a_long_inflate(srv, route):
    """In one write: a bomb, a small compressed message, a ping, an
    uncompressed message, a bomb, a message fragmented into three frames,
    a 4 MiB text message and a short one. All are compressed by one
    compressor that keeps its context when the route allows it (so each
    message refers back into the ones before, bombs included). Everything
    is answered in order (the pong after the first bomb's answer)."""
    with DClient.connect(srv.port, route, PMD) as c:
        small = b"small compressed " * 20
        text = os.urandom(1 << 20).hex().encode() * 2  # 4 MiB of hex text
        zeros = b"\0" * SINK_MAX
        out = build_frame(OP_BINARY, c.compress(zeros), rsv1=True)
        out += build_frame(OP_TEXT, c.compress(small), rsv1=True)
        out += build_frame(OP_PING, b"between")
        out += build_frame(OP_BINARY, b"plain bytes")
        out += build_frame(OP_BINARY, c.compress(zeros), rsv1=True)
        z = c.compress(small + b"!")
        out += build_frame(OP_TEXT, z[:3], fin=False, rsv1=True)
        out += build_frame(0, z[3:10], fin=False)
        out += build_frame(0, z[10:], fin=True)
        out += build_frame(OP_TEXT, c.compress(text), rsv1=True)
        out += build_frame(OP_TEXT, c.compress(text[:1000]), rsv1=True)
        c.send_raw(out)
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 8:
            _, _, op, payload = c.recv_frame(deadline - time.monotonic())
            if op == OP_PONG:
                got.append(("pong", payload))
            else:
                got.append(("msg", payload))
        assert got == [
            ("msg", ZERO_REPLY), ("msg", sink_reply(small)),
            ("pong", b"between"), ("msg", sink_reply(b"plain bytes")),
            ("msg", ZERO_REPLY), ("msg", sink_reply(small + b"!")),
            ("msg", sink_reply(text)), ("msg", sink_reply(text[:1000]))]
        c.send_close(1000)
        c.expect_close(1000)


def check_logged(srv, route, code):
    srv.wait_stats(lambda st: any(e["route"] == route and e["code"] == code
                                  for e in st["close_log"]),
                   what=f"close {code} on {route}")


@pytest.mark.parametrize("route", ["/sink", "/sink-shared"])
def test_too_big_found_turns_in(srv, route):
    """A message that inflates past 64 MiB gets 1009 once the limit is
    passed, many turns into it."""
    z = compress_fresh(b"\0" * (SINK_MAX + 1))
    with DClient.connect(srv.port, route, PMD) as c:
        c.send_raw(build_frame(OP_BINARY, z, rsv1=True))
        c.expect_close(1009, timeout=30)
        assert c.wait_eof()
    check_logged(srv, route, 1009)


@pytest.mark.parametrize("route", ["/sink", "/sink-shared"])
def test_corrupt_found_turns_in(srv, route):
    """Valid deflate data for 8 MiB, then garbage: 1007."""
    z = compress_fresh(b"a" * (8 * MiB), level=1)
    with DClient.connect(srv.port, route, PMD) as c:
        c.send_raw(build_frame(OP_BINARY, z + b"\xff\xff\xff\xff\xff",
                               rsv1=True))
        c.expect_close(1007, timeout=30)
    check_logged(srv, route, 1007)


@pytest.mark.parametrize("route", ["/sink", "/sink-shared"])
def test_invalid_utf8_found_turns_in(srv, route):
    """A compressed text message whose bytes stop being UTF-8 after 6 MiB
    (and one cut inside a sequence at its very end): 1007, like the
    parser's check of uncompressed text."""
    for bad in (b"x" * (6 * MiB) + b"\xc3\x28" + b"y" * MiB,
                b"x" * (3 * MiB) + b"\xe2\x82"):
        with DClient.connect(srv.port, route, PMD) as c:
            c.send_raw(build_frame(OP_TEXT, compress_fresh(bad), rsv1=True))
            c.expect_close(1007, timeout=30)
    check_logged(srv, route, 1007)


def test_client_leaves_mid_inflate(srv, bomb):
    """Clients that send bombs and reset the connection at once, or close
    it cleanly behind the bombs: the server frees the message in
    progress (ASan's leak check at teardown) and serves the next
    client."""
    for route in ("/sink", "/sink-shared"):
        for how in ("reset", "close-frame"):
            c = DClient.connect(srv.port, route, PMD)
            data = build_frame(OP_BINARY, bomb, rsv1=True) * 4
            if how == "close-frame":
                data += build_frame(8, struct.pack("!H", 1000))
            c.send_raw(data)
            if how == "reset":
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
            c.close()
    with DClient.connect(srv.port, "/sink", PMD) as c:
        c.send_raw(build_frame(OP_BINARY, bomb, rsv1=True))
        assert c.recv_msg(30).data == ZERO_REPLY


def test_stop_mid_inflate(server_bin, bomb):
    """SIGTERM while a client's bombs are being inflated: the server
    closes the socket and exits cleanly, with nothing leaked."""
    s = ServerProcess([server_bin, "0"], name="deflate_test_server")
    try:
        s.start()
        c = DClient.connect(s.port, "/sink", PMD)
        c.send_raw(build_frame(OP_BINARY, bomb, rsv1=True) * 8)
        assert c.recv_msg(30).data == ZERO_REPLY  # the rest is under way
        s.stop()
        s.check_clean_exit()
        c.close()
    finally:
        s.close()
