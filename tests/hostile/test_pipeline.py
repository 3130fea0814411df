"""Floods of pipelined requests.

One client writes thousands of GETs without reading, then reads: every
response arrives, in order. Another pipelines requests for 4 KiB bodies
and never reads: the server must stop reading its requests once its
output to that client backs up, so its memory stays bounded (the client's
writes then block, as TCP flow control intends)."""
import socket
import threading
import time

from conftest import (KiB, MiB, WRITE_HIGH_WATER, Canaries, after_attack,
                      connect, http_get, pattern, read_until_closed,
                      report_memory, scaled)


def read_responses(s, count, timeout=60.0):
    """Reads `count` responses with Content-Length framing; returns their
    bodies."""
    buf = bytearray()
    bodies = []
    deadline = time.monotonic() + timeout
    pos = 0
    while len(bodies) < count:
        end = buf.find(b"\r\n\r\n", pos)
        if end >= 0:
            head = bytes(buf[pos:end]).decode("latin-1")
            assert head.startswith("HTTP/1.1 200 "), head
            clen = None
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.lower() == "content-length":
                    clen = int(v)
            assert clen is not None, head
            if len(buf) >= end + 4 + clen:
                bodies.append(bytes(buf[end + 4:end + 4 + clen]))
                pos = end + 4 + clen
                if pos > 1 << 20:
                    del buf[:pos]
                    pos = 0
                continue
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(bodies)}/{count} responses arrived"
        s.settimeout(left)
        chunk = s.recv(1 << 20)
        assert chunk, f"EOF after {len(bodies)}/{count} responses"
        buf += chunk
    assert pos == len(buf), f"bytes after the last response: {buf[pos:200]!r}"
    return bodies


def test_pipelined_flood_then_read(srv):
    """5000 pipelined GETs in one burst, nothing read until all are sent
    (a writer thread, since the server may stop reading meanwhile); then
    every response arrives, in order."""
    n = scaled(srv, 5000, asan_default=0.4)
    reqs = b"".join(http_get(f"/seq/{i}") for i in range(n))
    base = srv.rss_kib()
    with Canaries(srv) as can:
        s = connect(srv.port, timeout=60)
        t = threading.Thread(target=s.sendall, args=(reqs,), daemon=True)
        t.start()
        time.sleep(1.0)  # let the server's output pile up unread
        can.sample()
        bodies = read_responses(s, n)
        t.join(30)
        assert not t.is_alive()
        can.sample()
        assert bodies == [b"seq:%d\n" % i for i in range(n)]
        s.close()
    # The responses are ~100 bytes each: all of them fit in 1 MiB.
    report_memory("pipelined flood then read", base, can.peak_rss,
                  16 * 1024 if not srv.is_asan() else 48 * 1024,
                  f"{n} requests, {len(reqs)} bytes")
    after_attack(srv)


def test_pipelining_client_never_reads(srv):
    """A client pipelines GETs of 4 KiB bodies (a ~30-byte request, ~100x
    amplification) as fast as it can and never reads. If the server kept
    reading, 2 MiB of requests would queue ~270 MiB of responses. It must
    stop reading once its output to the client backs up: bound 32 MiB,
    and the client cannot get all its requests in."""
    req = http_get("/blob?n=4096")
    limit = 2 * MiB  # request bytes the client tries to write
    base = srv.rss_kib()
    with Canaries(srv) as can:
        s = connect(srv.port, rcvbuf=16 * KiB)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KiB)
        s.setblocking(False)
        burst = req * 256
        sent = 0
        stalled_since = None
        t_end = time.monotonic() + 20
        while sent < limit and time.monotonic() < t_end:
            try:
                k = s.send(burst[sent % len(burst):])
                sent += k
                stalled_since = None
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if now - stalled_since > 1.5:
                    break  # the server stopped reading us
                can.sample()
                time.sleep(0.01)
            except (BrokenPipeError, ConnectionResetError):
                break
        can.sample()
        time.sleep(0.3)
        can.sample()
        peak_during = can.peak_rss
        rst = s
        rst.close()
    print(f"  never-reading pipeliner wrote {sent} bytes "
          f"({sent // len(req)} requests) before stalling")
    report_memory("pipelining, never reads", base, peak_during,
                  32 * 1024 if not srv.is_asan() else 96 * 1024,
                  f"{sent // len(req)} requests accepted, "
                  f"write_high_water {WRITE_HIGH_WATER // KiB} KiB")
    assert sent < limit, \
        "the server read every request though none of its answers was read"
    after_attack(srv)


def test_pipelined_big_bodies_read_slowly(srv):
    """20 pipelined GETs for 1 MiB bodies, read only after a pause: all
    arrive, complete and in order, and memory stays bounded while they
    wait (bound: 64 MiB, the whole batch being 20 MiB)."""
    n = 20
    base = srv.rss_kib()
    with Canaries(srv) as can:
        s = connect(srv.port, timeout=60)
        s.sendall(b"".join(http_get(f"/blob?n={MiB}") for _ in range(n)))
        time.sleep(1.5)  # longer than the keep-alive timeout
        can.sample()
        bodies = read_responses(s, n)
        assert all(b == pattern(MiB) for b in bodies)
        data, eof = read_until_closed(s, 0.2)
        assert data == b""
        s.close()
    report_memory("pipelined 1 MiB bodies", base, can.peak_rss,
                  64 * 1024 if not srv.is_asan() else 128 * 1024,
                  f"{n} x 1 MiB")
    after_attack(srv)
