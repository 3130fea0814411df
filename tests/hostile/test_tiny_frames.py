"""Floods of tiny WebSocket frames: 100k 1-byte and 0-byte masked frames in
one write burst, and messages fragmented into thousands of 1-byte
continuation frames (with pings between the fragments). The echoes must
be exact and in order; the server parses them without per-frame memory."""
import struct
import threading
import time

import pytest

from conftest import (Canaries, after_attack, report_memory, scaled,
                      ws_connect)

KEY = b"\x37\xfa\x21\x3d"


def masked(b0, payload):
    """One masked client frame with a payload under 126 bytes."""
    n = len(payload)
    return bytes((b0, 0x80 | n)) + KEY + bytes(
        p ^ KEY[i % 4] for i, p in enumerate(payload))


def server_frame(b0, payload):
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return bytes((b0, 126)) + struct.pack("!H", n) + payload
    return bytes((b0, 127)) + struct.pack("!Q", n) + payload


def exchange(c, data, expected, during=None, timeout=60.0):
    """Writes `data` from a thread while reading; asserts the server's
    bytes are exactly `expected`. `during()` runs once the writer has
    started, before anything is read (the server has stopped reading the
    flood by then: its echoes back up)."""
    err = []

    def write():
        try:
            c.sock.sendall(data)
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=write, daemon=True)
    t.start()
    if during:
        during()
    got = bytearray(c.buf)
    c.buf.clear()
    deadline = time.monotonic() + timeout
    while len(got) < len(expected):
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)}/{len(expected)} echo bytes"
        c.sock.settimeout(left)
        chunk = c.sock.recv(1 << 20)
        assert chunk, f"EOF after {len(got)}/{len(expected)} echo bytes"
        got += chunk
    t.join(timeout)
    assert not err, err
    if bytes(got) != expected:
        i = next(i for i in range(len(expected)) if got[i] != expected[i])
        raise AssertionError(f"echo differs at byte {i}: got "
                             f"{bytes(got[i:i + 20])!r}, expected "
                             f"{expected[i:i + 20]!r}")
    assert len(got) == len(expected), "extra bytes after the echoes"


@pytest.mark.parametrize("size", [1, 0])
def test_many_tiny_frames(srv, size):
    """100k text frames of `size` bytes in one burst: 100k echoes."""
    n = scaled(srv, 100_000, asan_default=1.0)
    letters = [bytes((97 + i % 26,)) * size for i in range(n)]
    data = b"".join(masked(0x81, p) for p in letters)
    expected = b"".join(server_frame(0x81, p) for p in letters)
    base = srv.rss_kib()
    with Canaries(srv) as can:
        with ws_connect(srv.port, "/echo") as c:
            exchange(c, data, expected,
                     during=lambda: can.wait_rounds(can.ok + 2))
            can.sample()
            c.echo(b"after the flood")
            c.close_handshake()
    st = srv.stats()
    assert st["ws_messages"] >= n, st
    report_memory(f"{n} frames of {size} bytes", base, can.peak_rss,
                  16 * 1024 if not srv.is_asan() else 48 * 1024,
                  f"{len(data)} bytes in")
    after_attack(srv)


@pytest.mark.parametrize("nmsgs,nfrags", [(1, 100_000), (1000, 100)])
def test_fragmented_into_1_byte_frames(srv, nmsgs, nfrags):
    """`nmsgs` messages, each sent as `nfrags` 1-byte fragments (a ping
    after every 10000th fragment), all in one burst: each message is
    echoed whole, each ping answered first."""
    nfrags = scaled(srv, nfrags, asan_default=1.0, minimum=2)
    parts = []
    expected = []
    for m in range(nmsgs):
        body = bytes(97 + (m + i) % 26 for i in range(nfrags))
        for i in range(nfrags):
            op = 0x1 if i == 0 else 0x0
            fin = 0x80 if i == nfrags - 1 else 0
            parts.append(masked(fin | op, body[i:i + 1]))
            if i % 10_000 == 9_999 and i != nfrags - 1:
                ping = b"p%d.%d" % (m, i)
                parts.append(masked(0x89, ping))
                expected.append(server_frame(0x8A, ping))
        expected.append(server_frame(0x81, body))
    data = b"".join(parts)
    base = srv.rss_kib()
    with Canaries(srv) as can:
        with ws_connect(srv.port, "/echo") as c:
            exchange(c, data, b"".join(expected),
                     during=lambda: can.wait_rounds(can.ok + 2))
            can.sample()
            c.echo(b"after the fragments")
            c.close_handshake()
    report_memory(f"{nmsgs} messages x {nfrags} fragments", base,
                  can.peak_rss,
                  16 * 1024 if not srv.is_asan() else 48 * 1024,
                  f"{len(data)} bytes in")
    after_attack(srv)
