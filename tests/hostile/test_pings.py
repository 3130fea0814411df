"""A million tiny pings on one WebSocket: every one is answered with a pong
carrying its payload, in order (RFC 6455 5.5.3; talon answers each ping
itself and does not coalesce), while the server keeps serving others.
And a client that floods pings without ever reading the pongs: the
server must stop reading it once its pongs back up, like it does for
data messages (ws.h: "a client that sends without reading cannot grow
the server's memory").

The count is 1,000,000 in the normal build; under ASan (or with
TALON_TEST_SCALE) it is scaled down."""
import socket
import struct
import threading
import time

from conftest import (ECHO_MAX_BACKPRESSURE, Canaries, KiB, MiB,
                      after_attack, report_memory, scaled, ws_connect)

KEY = b"\x5a\xc3\x0f\x96"
KEY_INT = struct.unpack("!I", KEY)[0]


def test_a_million_pings(srv):
    n = scaled(srv, 1_000_000)
    ping = struct.Struct("!2s4sI")
    data = b"".join(ping.pack(b"\x89\x84", KEY, i ^ KEY_INT)
                    for i in range(n))
    pong = struct.Struct("!2sI")
    expected = b"".join(pong.pack(b"\x8a\x04", i) for i in range(n))
    base = srv.rss_kib()
    with Canaries(srv) as can:
        c = ws_connect(srv.port, "/echo")
        err = []

        def write():
            try:
                for off in range(0, len(data), 1 << 20):
                    c.sock.sendall(data[off:off + (1 << 20)])
            except OSError as e:
                err.append(e)
        t0 = time.monotonic()
        t = threading.Thread(target=write, daemon=True)
        t.start()
        can.wait_rounds(can.ok + 1)  # a canary while the pings pour in
        got = bytearray(c.buf)
        while len(got) < len(expected):
            c.sock.settimeout(30)
            chunk = c.sock.recv(1 << 20)
            assert chunk, f"EOF after {len(got) // 6} pongs"
            got += chunk
            if len(got) % (1 << 20) < len(chunk):
                can.sample()
        took = time.monotonic() - t0
        t.join(30)
        assert not err, err
        if bytes(got) != expected:
            i = next(i for i in range(len(expected))
                     if got[i] != expected[i])
            raise AssertionError(f"pong stream differs at byte {i} (pong "
                                 f"{i // 6}): {bytes(got[i:i + 12])!r}")
        c.echo(b"after a million pings")
        c.close_handshake()
    st = srv.stats()
    assert st["ws_pings"] == n, st
    print(f"  {n} pings, {n} pongs in order in {took:.1f}s "
          f"({len(data)} bytes out, {len(expected)} in)")
    report_memory(f"{n} pings", base, can.peak_rss,
                  16 * 1024 if not srv.is_asan() else 48 * 1024)
    after_attack(srv)


def test_pings_never_reading_pongs(srv):
    """Pings with 125-byte payloads, as fast as the client can write, and
    no pong read: if the server read on, 48 MiB of pings would queue about
    46 MiB of pongs. Bound: max_backpressure (1 MiB) + 16 MiB (24 MiB more
    under ASan), and the client's writes stall."""
    payload = bytes(range(125))
    frame = bytes((0x89, 0x80 | 125)) + KEY + bytes(
        b ^ KEY[i % 4] for i, b in enumerate(payload))
    burst = frame * 2000
    limit = 48 * MiB
    base = srv.rss_kib()
    with Canaries(srv) as can:
        c = ws_connect(srv.port, "/echo", rcvbuf=16 * KiB)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
        c.sock.setblocking(False)
        sent = 0
        stalled_since = None
        t_end = time.monotonic() + 30
        while sent < limit and time.monotonic() < t_end:
            try:
                k = c.sock.send(burst[sent % len(burst):])
                sent += k
                stalled_since = None
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > 1.5:
                    break  # the server stopped reading us
                can.sample()
                time.sleep(0.01)
        time.sleep(0.3)
        can.sample()
        c.sock.close()
    print(f"  never-reading pinger wrote {sent // len(frame)} pings "
          f"({sent} bytes) before stalling")
    report_memory("pings, pongs never read", base, can.peak_rss,
                  ECHO_MAX_BACKPRESSURE // KiB
                  + (16 if not srv.is_asan() else 40) * 1024,
                  f"{sent} bytes of pings")
    assert sent < limit, "the server read every ping though no pong was read"
    after_attack(srv)
