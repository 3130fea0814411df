"""Slow readers: clients that ask for a lot and never read it, or read it
slowly.

HTTP: tl_res_send() of the 8 MiB body copies it into the connection's
output, so a client that never reads costs about the body's size until
the connection goes; a streamed body (tl_res_write + drain) costs about
write_high_water. WebSocket subscribers that never read hold at most
max_backpressure of published frames; over it, messages are dropped for
them (or the socket is closed with 1008 by close_on_backpressure_limit)
while the others get everything."""
import socket
import struct
import time

from conftest import (BIG_BYTES, FEED_MAX_BACKPRESSURE, HEADER_TIMEOUT,
                      KEEPALIVE_TIMEOUT, OP_BINARY, SEND_TIMEOUT, SLACK,
                      WRITE_HIGH_WATER, Canaries, KiB, WSClient, after_attack,
                      asan_slack, connect, http_get, http_request, pattern,
                      read_head, read_until_closed, report_memory, ws_connect)

BIG_BODY = pattern(BIG_BYTES)


def start_never_readers(srv, path, n):
    """n connections that send one GET for `path` and never read (small
    receive buffers, so the server's writes stall early)."""
    socks = []
    for _ in range(n):
        s = connect(srv.port, rcvbuf=4096)
        s.sendall(http_get(path))
        socks.append(s)
    return socks


def test_http_big_body_never_read(srv):
    """8 clients ask for the 8 MiB body and never read. Memory: about one
    copy of the body per connection (the output buffer) while it is
    queued: bound 8 x 2 x 8 MiB + 16 MiB. A connection whose output the
    client took none of for the send timeout is closed, which frees it
    (the keep-alive timeout does not apply while output waits)."""
    n = 8
    base = srv.rss_kib()
    with Canaries(srv) as can:
        socks = start_never_readers(srv, "/big", n)
        time.sleep(0.5)
        can.sample()
        mid = srv.rss_kib()
        # Stalled past the send timeout: the server gives up on them.
        closed = 0
        for s in socks:
            data, eof = read_until_closed(s, SEND_TIMEOUT + SLACK)
            closed += eof
            s.close()
    assert closed == n, f"only {closed}/{n} stalled readers were closed"
    report_memory("http /big never read", base, can.peak_rss,
                  n * 2 * BIG_BYTES // KiB + 16 * 1024,
                  f"{n} connections, RSS {mid} KiB with all queued")
    after_attack(srv)


def read_slowly(s, n, piece=64 * KiB, pause=0.05):
    """Reads up to n bytes, `piece` at a time with `pause` between (about
    1.3 MB/s): a slow but steady reader. Returns (bytes, eof?)."""
    got = b""
    while len(got) < n:
        want = min(piece, n - len(got))
        while want > 0:
            s.settimeout(5)
            try:
                chunk = s.recv(want)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                return got, True
            got += chunk
            want -= len(chunk)
        time.sleep(pause)
    return got, False


def slow_steady_get_big(srv, behind=b""):
    """GET /big (tl_res_send: 8 MiB in the connection's output at once),
    with `behind` sent after it, then read slowly but steadily. The read
    takes about 6 s, several keep-alive periods (1 s), and the kernel's
    send buffer (at most 4 MiB) cannot hold the rest: most of the body
    waits in libuv's write queue for seconds, which shrinks only when all
    of it is written. Checks the body; returns what followed it until the
    server closed the connection."""
    s = connect(srv.port, rcvbuf=16 * 1024)
    s.sendall(http_get("/big") + behind)
    head, body = read_head(s, 5)
    assert head.startswith(b"HTTP/1.1 200 "), head
    t0 = time.monotonic()
    more, eof = read_slowly(s, BIG_BYTES - len(body))
    body += more
    took = time.monotonic() - t0
    rest, closed = b"", eof
    if not eof:
        rest, closed = read_until_closed(s, HEADER_TIMEOUT + SLACK + 3)
    s.close()
    print(f"  slow steady reader: {len(body)} of {BIG_BYTES} bytes in "
          f"{took:.1f}s")
    assert took > 2 * KEEPALIVE_TIMEOUT, "read too fast to test anything"
    assert len(body) == BIG_BYTES, \
        f"response cut after {len(body)} of {BIG_BYTES} bytes " \
        f"({took:.1f}s into a slow but steady read)"
    assert body == BIG_BODY
    assert closed, "the connection was not closed after the body"
    return rest


def test_http_big_body_slow_steady_reader(srv):
    """A client that reads the 8 MiB body slowly but steadily gets all of
    it: the keep-alive timeout must not cut a response the client keeps
    taking bytes of (app.h). Once it has all, the connection is idle and
    closed by the keep-alive timeout, with nothing more sent."""
    with Canaries(srv):
        rest = slow_steady_get_big(srv)
    assert rest == b"", rest
    after_attack(srv)


def test_http_big_body_slow_steady_reader_then_partial_head(srv):
    """The same slow reader has sent the start of a second request behind
    the first. Its output backed up, the server reads no further until
    the body is out; then the partial head gets its 408 after the header
    timeout, behind the whole body, and the connection closes."""
    with Canaries(srv):
        rest = slow_steady_get_big(srv, behind=b"GET /hello HTTP/1.1\r\nHo")
    assert rest.startswith(b"HTTP/1.1 408 "), rest
    after_attack(srv)


def test_http_big_body_reader_pausing(srv):
    """A client that stops reading the 8 MiB body for twice the keep-alive
    timeout (but less than the send timeout) and then reads on gets all
    of it: while output waits for the client, the send timeout alone
    decides, as it does for a streamed response."""
    pause = 2 * KEEPALIVE_TIMEOUT
    assert pause + SLACK < SEND_TIMEOUT
    with Canaries(srv):
        s = connect(srv.port, rcvbuf=16 * 1024)
        s.sendall(http_get("/big"))
        head, body = read_head(s, 5)
        assert head.startswith(b"HTTP/1.1 200 "), head
        more, eof = read_slowly(s, 1024 * KiB)
        body += more
        assert not eof, f"cut after {len(body)} bytes, before the pause"
        time.sleep(pause)
        more, eof = read_slowly(s, BIG_BYTES - len(body), piece=1024 * KiB,
                                pause=0)
        body += more
        s.close()
    assert len(body) == BIG_BYTES, \
        f"response cut after {len(body)} of {BIG_BYTES} bytes (a pause of " \
        f"{pause:.0f}s)"
    assert body == BIG_BODY
    after_attack(srv)


def test_http_stream_never_read(srv):
    """20 clients ask for a streamed 8 MiB body and never read: each
    stream stops at write_high_water (64 KiB) and waits for drain. Bound:
    20 x 256 KiB + 16 MiB. Closing them aborts every stream."""
    n = 20
    base = srv.rss_kib()
    with Canaries(srv) as can:
        socks = start_never_readers(srv, "/stream", n)
        srv.wait_stats(lambda st: st["stream_started"] == n,
                       what=f"{n} streams started")
        time.sleep(1.5)  # past the keep-alive and header timeouts
        can.sample()
        st = srv.stats()
        assert st["stream_done"] == 0 and st["stream_aborts"] == 0, st
        for s in socks:
            s.close()
        srv.wait_stats(lambda st: st["stream_aborts"] == n,
                       what=f"{n} streams aborted")
    report_memory("http /stream never read", base, can.peak_rss,
                  n * 256 + 16 * 1024 + asan_slack(srv),
                  f"{n} connections, write_high_water "
                  f"{WRITE_HIGH_WATER // KiB} KiB")
    after_attack(srv)


def test_http_stream_never_read_send_timeout(srv):
    """A streamed response waits for drain forever from the handler's point
    of view; the server closes a connection whose queued output the client
    took nothing of for send_timeout_ms (5 s here), which aborts the
    stream. A slow reader that takes a little now and then is not cut:
    it reads 4 KiB every second, well under the timeout."""
    n = 5
    before = srv.stats()["stream_aborts"]
    socks = start_never_readers(srv, "/stream", n)
    slow = start_never_readers(srv, "/stream", 1)[0]
    srv.wait_stats(lambda st: st["stream_started"] >= n + 1,
                   what="streams started")
    t0 = time.monotonic()
    got = 0
    # The never-readers are closed after about SEND_TIMEOUT (+ a sweep
    # tick); meanwhile the slow reader keeps its stream alive.
    while srv.stats()["stream_aborts"] < before + n:
        assert time.monotonic() - t0 < SEND_TIMEOUT + 5, srv.stats()
        slow.settimeout(5)
        chunk = slow.recv(4096)
        assert chunk, "the slow but steady reader was cut"
        got += len(chunk)
        time.sleep(1.0)
    took = time.monotonic() - t0
    assert took >= SEND_TIMEOUT - 1.5, \
        f"closed after {took:.1f}s, before the send timeout"
    for s in socks:
        _, closed = read_until_closed(s, 10)
        assert closed, "a never-reading client was not closed"
        s.close()
    # The slow reader's stream is still running.
    assert srv.stats()["stream_aborts"] == before + n
    print(f"  {n} never-readers closed after {took:.1f}s; the slow reader "
          f"took {got} bytes meanwhile and is still served")
    slow.close()
    srv.wait_stats(lambda st: st["stream_aborts"] == before + n + 1,
                   what="the slow reader's stream aborted on close")
    after_attack(srv)


def seq_of(data):
    return struct.unpack("!Q", data[:8])[0]


def check_feed_message(ev, size):
    assert ev.opcode == OP_BINARY and len(ev.data) == size, ev
    assert ev.data[8:] == pattern(size - 8), "published payload corrupted"
    return seq_of(ev.data)


def test_ws_subscribers_never_read(srv):
    """20 subscribers of "feed" never read while 100 rounds of two 64 KiB
    messages are published (12.5 MiB each); one subscriber reads every
    round and must get all 200 messages in order. The slow ones keep at
    most max_backpressure (256 KiB) of frames each, the rest is dropped
    for them. Bound: 20 x 512 KiB + 16 MiB."""
    n, rounds, per, size = 20, 100, 2, 64 * 1024
    base = srv.rss_kib()
    slow = []
    with Canaries(srv) as can:
        for _ in range(n):
            c = ws_connect(srv.port, "/feed", rcvbuf=4096)
            slow.append(c)
        reader = WSClient.connect(srv.port, "/feed")
        srv.wait_stats(lambda st: st["feed_subscribers"] == n + 1,
                       what="subscribers")
        seqs = []
        for r in range(rounds):
            res = http_request(srv.port, f"/publish?n={per}&size={size}")
            assert res.status == 200, res
            for _ in range(per):
                seqs.append(check_feed_message(reader.recv_data(10), size))
            if r % 10 == 0:
                can.sample()
        can.sample()
        st = srv.stats()
        assert seqs == list(range(seqs[0], seqs[0] + rounds * per)), \
            "the reading subscriber missed or reordered messages"
        assert st["ws_dropped"] > 0, st
        # The slow ones got an increasing subsequence, then nothing more.
        for c in slow[:3]:
            got = []
            while True:
                try:
                    got.append(check_feed_message(c.recv_data(1.0), size))
                except Exception:  # noqa: BLE001 - a timeout ends it
                    break
            assert got, "a slow subscriber got nothing at all"
            assert got == sorted(set(got)), got
            assert len(got) < rounds * per, "nothing was dropped"
        for c in slow + [reader]:
            c.close()
    report_memory("ws slow subscribers", base, can.peak_rss,
                  n * 512 + 16 * 1024 + asan_slack(srv),
                  f"{n} subscribers, max_backpressure "
                  f"{FEED_MAX_BACKPRESSURE // KiB} KiB, "
                  f"{st['ws_dropped']} messages dropped")
    srv.wait_stats(lambda st: st["feed_subscribers"] == 0,
                   what="subscribers gone")
    after_attack(srv)


def test_ws_subscribers_closed_on_backpressure(srv):
    """/feed-cobl: a subscriber that does not read is closed with 1008
    once it is over max_backpressure; what was queued before arrives
    first, then the close frame."""
    n, size = 10, 64 * 1024
    base = srv.rss_kib()
    with Canaries(srv) as can:
        slow = []
        for _ in range(n):
            c = ws_connect(srv.port, "/feed-cobl", rcvbuf=4096)
            slow.append(c)
        srv.wait_stats(lambda st: st["ws_opens"] >= n, what="opens")
        for _ in range(200):
            res = http_request(srv.port,
                               f"/publish?topic=feed&n=2&size={size}")
            assert res.status == 200
            if srv.stats()["close_codes"]["1008"] == n:
                break
        can.sample()
        srv.wait_stats(lambda st: st["close_codes"]["1008"] == n,
                       what=f"{n} closes with 1008")
        for c in slow:
            ev = c.expect_close(1008, timeout=10)
            seqs = [check_feed_message(e, size) for e in ev.before]
            assert seqs == sorted(set(seqs)), seqs
            assert c.wait_eof(5)
            c.close()
    report_memory("ws cobl subscribers", base, can.peak_rss,
                  n * 512 + 16 * 1024 + asan_slack(srv), f"{n} subscribers")
    after_attack(srv)
