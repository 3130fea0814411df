"""One app on 4 workers (workers_server): connections spread over the
workers' SO_REUSEPORT listeners, routes and middleware work on every
worker, WebSocket upgrades fill the typed context on every worker,
pub/sub crosses workers (exact app-wide counts, sender excluded,
per-publisher order, runs of publishes with drops and exact counters),
calls and publishes from threads that are no worker, and a graceful stop
of every worker."""
import asyncio
import collections
import signal
import socket
import time

import pytest
import websockets

from conftest import Server, run
from wsframe import (OP_TEXT, FrameReader, Timeout, accept_for,  # noqa: E402
                     build_frame, new_key, read_head)


def test_connections_spread_over_all_workers(srv):
    seen = collections.Counter()
    for _ in range(200):
        status, body = srv.get("/worker")
        assert status == 200
        seen[int(body)] += 1
    print("200 connections over 4 workers:", dict(sorted(seen.items())))
    assert set(seen) == {0, 1, 2, 3}, seen


def test_routes_params_and_mounted_router_on_every_worker(srv):
    workers = set()
    for i in range(60):
        status, body = srv.get(f"/users/u{i}")
        assert status == 200
        word, uid, on, w = body.split()
        assert (word, uid, on) == ("user", f"u{i}", "on")
        workers.add(int(w))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
            c.sendall(b"GET /api/ping HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while chunk := c.recv(4096):
                data += chunk
        assert b"\r\nX-Router: api\r\n" in data and data.endswith(b"pong")
        assert srv.get("/nope")[0] == 404
    assert len(workers) >= 3, workers


def test_call_all_runs_once_on_each_worker(srv):
    for _ in range(10):
        assert srv.get("/callall") == (200, "0 1 2 3")


async def open_members(srv, n, prefix="m"):
    """n sockets; returns [(ws, worker)]."""
    out = []
    for i in range(n):
        ws = await websockets.connect(srv.url(f"/ws?name={prefix}{i}"),
                                      max_size=None)
        hello = (await ws.recv()).split()
        assert hello[:2] == ["hello", f"{prefix}{i}"]
        out.append((ws, int(hello[2])))
    return out


async def close_all(socks):
    await asyncio.gather(*(ws.close() for ws, _ in socks))


async def expect(ws, prefix, timeout=20):
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert msg.startswith(prefix), (msg, prefix)
    return msg


def test_upgrade_fills_the_context_on_every_worker(srv):
    async def go():
        socks = await open_members(srv, 40)
        workers = {w for _, w in socks}
        assert len(workers) >= 3, workers
        # The socket's handlers run on the worker that accepted it.
        for ws, w in socks:
            await ws.send("worker")
            assert await expect(ws, "worker ") == f"worker {w}"
        await close_all(socks)
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(srv.url("/ws"))
        assert e.value.status_code == 400
    run(go())


async def subscribe_all(socks, topic):
    """Subscribes every socket; returns the (new, old) counts each
    subscription handler was told."""
    told = []
    for ws, _ in socks:
        await ws.send(f"sub {topic}")
        subs = (await expect(ws, f"subs {topic} ")).split()
        told.append((int(subs[2]), int(subs[3])))
        assert await expect(ws, "ok sub") == f"ok sub {topic}"
    return told


def test_publish_crosses_workers_with_exact_counts(srv):
    async def go():
        socks = await open_members(srv, 40)
        told = await subscribe_all(socks, "room")
        # App-wide counts: every subscription saw the count grow by one.
        assert sorted(told) == [(n, n - 1) for n in range(1, 41)]
        for ws, _ in socks[:8]:
            await ws.send("count room")
            assert await expect(ws, "count") == "count room 40"
        assert srv.get("/count?topic=room") == (200, "40")
        # A publish from one worker reaches the subscribers on all, not
        # the sender.
        sender, sw = socks[0]
        await sender.send("pub room hi from 0")
        for ws, _ in socks[1:]:
            assert await expect(ws, "hi") == "hi from 0"
        await sender.send("worker")
        assert await expect(sender, "worker") == f"worker {sw}"
        # tl_app_publish from a socket's handler includes the sender.
        await sender.send("apub room to all")
        for ws, _ in socks:
            assert await expect(ws, "to all") == "to all"
        # Leaving counts down app-wide; with nobody left a publish from
        # HTTP reaches nobody (0).
        for ws, _ in socks:
            await ws.send("unsub room")
            await expect(ws, "subs room ")
            await expect(ws, "ok unsub")
        assert srv.get("/count?topic=room") == (200, "0")
        assert srv.get("/publish?topic=room", "POST", b"x") == (200, "0")
        await close_all(socks)
    run(go())


def test_per_publisher_order_and_nothing_lost(srv):
    async def go():
        socks = await open_members(srv, 24)
        await subscribe_all(socks, "seq")
        pubs = []
        ws_by_worker = {}
        for ws, w in socks:
            ws_by_worker.setdefault(w, ws)
        pubs = list(ws_by_worker.values())[:3]
        assert len(pubs) >= 2
        n = 300
        await asyncio.gather(*(
            p.send(f"pub seq {k} {i}") for k, p in enumerate(pubs)
            for i in range(n)))

        async def drain(ws):
            me = pubs.index(ws) if ws in pubs else -1
            want = (len(pubs) - (1 if me >= 0 else 0)) * n
            last = {}
            for _ in range(want):
                k, i = map(int, (await asyncio.wait_for(ws.recv(), 30)).split())
                assert k != me, "the sender got its own publish"
                assert i == last.get(k, -1) + 1, (k, i, last.get(k))
                last[k] = i
            return last
        results = await asyncio.gather(*(drain(ws) for ws, _ in socks))
        for last in results:
            assert all(v == n - 1 for v in last.values()), last
        await close_all(socks)
    run(go())


def test_compressed_publishes_cross_workers(srv):
    """Large publishes go compressed (built once by the publishing worker)
    to subscribers on every worker; clients with and without
    permessage-deflate get the same text."""
    async def go():
        socks = await open_members(srv, 12)
        plain = []
        for i in range(12):
            ws = await websockets.connect(srv.url(f"/ws?name=p{i}"),
                                          compression=None)
            hello = (await ws.recv()).split()
            plain.append((ws, int(hello[2])))
        everyone = socks + plain
        await subscribe_all(everyone, "big")
        deflated = [ws for ws, _ in socks
                    if ws.extensions and ws.extensions[0].name ==
                    "permessage-deflate"]
        assert len(deflated) == 12
        texts = [("%d " % i) + "talon workers share frames " * (40 + i)
                 for i in range(20)]
        sender = everyone[0][0]
        for t in texts:
            await sender.send("apub big " + t)
        for ws, _ in everyone:
            for t in texts:
                assert await expect(ws, t[:3]) == t
        await close_all(everyone)
    run(go())


class RawSocket(FrameReader):
    """A blocking WebSocket client of raw frames: a subscriber whose
    receive buffer the test controls, or a publisher that writes a whole
    burst of frames with one sendall."""

    def __init__(self, port, path, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = new_key()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head, rest = read_head(self.sock, 10)
        assert head.startswith(b"HTTP/1.1 101") and \
            accept_for(key).encode() in head, head
        self.buf = bytearray(rest)
        self.eof = False
        self.got = []  # every text message, in order
        hello = self.next(10).split()
        self.worker = int(hello[2])

    def next(self, timeout):
        fin, rsv, op, payload = self.read_frame(time.monotonic() + timeout)
        assert fin and rsv == 0 and op == OP_TEXT, (fin, rsv, op)
        text = payload.decode()
        self.got.append(text)
        return text

    def until(self, prefix, timeout=30):
        while not (text := self.next(timeout)).startswith(prefix):
            pass
        return text

    def command(self, text, reply):
        self.sock.sendall(build_frame(OP_TEXT, text))
        return self.until(reply)

    def stats(self):
        """(messages_out, bytes_out, dropped) before the reply, checked
        against what this socket received before it."""
        before = list(self.got)
        out, nbytes, dropped = map(int, self.command("stats", "stats ")
                                   .split()[1:])
        assert out == len(before), (out, len(before))
        assert nbytes == sum(len(t.encode()) for t in before), nbytes
        return out, nbytes, dropped


def test_a_run_of_publishes_crosses_whole_or_frame_by_frame(srv):
    """A worker that reads many publishes to one topic in a turn forwards
    them as one run; the receiving worker queues the run in one piece to a
    subscriber with room for it and frame by frame to one over its
    backlog limit, which drops what does not fit. Both get what they get
    in order, and the socket counters (messages and bytes out, dropped)
    are exact."""
    socks = [RawSocket(srv.port, f"/ws?name=c{i}") for i in range(24)]
    pub = socks[0]
    fast = next(s for s in socks if s.worker != pub.worker)
    socks.remove(fast)
    slows = [RawSocket(srv.port, f"/lean?name=s{i}", rcvbuf=4096)
             for i in range(24)]
    slow = next(s for s in slows if s.worker == fast.worker)
    for s in socks[1:] + slows:
        if s is not slow:
            s.sock.close()
    # The publisher subscribes too (it does not get its own publishes): a
    # worker with a subscriber of the topic builds the turn's frames back
    # to back in one buffer, which is what crosses as a run.
    for s in (pub, fast, slow):
        s.command("sub run", "ok sub run")
    n, size = 3000, 1000
    texts = [f"{i} ".ljust(size, "x") for i in range(n)]
    pub.sock.sendall(b"".join(build_frame(OP_TEXT, f"pub run {t}")
                              for t in texts))
    # The fast one takes everything, in order.
    got = [fast.next(30) for _ in range(n)]
    assert got == texts
    out, nbytes, dropped = fast.stats()
    assert dropped == 0
    # The slow one read nothing meanwhile: what it gets now is what was
    # queued for it, in order, and the rest was dropped.
    seen = []
    while True:
        try:
            seen.append(int(slow.next(1.5).split()[0]))
        except Timeout:
            break
    assert seen == sorted(set(seen)) and seen[0] == 0, seen[:10]
    out, nbytes, dropped = slow.stats()
    assert 0 < len(seen) < n and dropped == n - len(seen), (len(seen), dropped)
    for s in (pub, fast, slow):
        s.sock.close()


def test_publish_from_a_thread_that_is_no_worker(srv):
    async def go():
        socks = await open_members(srv, 16)
        await subscribe_all(socks, "feed")
        loop = asyncio.get_running_loop()
        status, body = await loop.run_in_executor(
            None, srv.get, "/foreign?topic=feed&n=50&msg=x")
        assert (status, body) == (200, "50")
        for ws, _ in socks:
            for i in range(1, 51):
                assert await expect(ws, "x ") == f"x {i}"
        # A topic nobody subscribes to: nothing is posted.
        assert srv.get("/foreign?topic=none&n=5&msg=y") == (200, "0")
        await close_all(socks)
    run(go())


def test_stop_finishes_requests_and_closes_sockets_on_every_worker(
        server_bin):
    s = Server(server_bin)
    s.start()
    try:
        async def go():
            socks = await open_members(s, 20)
            assert len({w for _, w in socks}) >= 3
            loop = asyncio.get_running_loop()
            slow = [loop.run_in_executor(None, s.get, "/slow?ms=1500")
                    for _ in range(4)]
            await asyncio.sleep(0.5)
            s.proc.send_signal(signal.SIGTERM)
            for ws, _ in socks:
                with pytest.raises(websockets.exceptions.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 20)
                assert ws.close_code == 1001, ws.close_code
            for f in slow:
                assert await f == (200, "slow")
        run(go())
        assert s.wait_exit() == 0
        s.check_clean_exit()
        # Stopped means stopped: nobody listens on the port any more.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", s.port), timeout=2)
    finally:
        s.close()


def test_a_worker_that_cannot_listen_fails_listen_cleanly(server_bin):
    """A port another process holds without SO_REUSEPORT: listen fails
    with a clear error and the process exits 1, nothing reported."""
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    hold.listen(1)
    port = hold.getsockname()[1]
    try:
        s = Server(server_bin)
        s.argv[1] = str(port)
        s.command = s._wrap(s.argv)
        import subprocess
        p = subprocess.run(s.command, env=s.env, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 1, p
        assert "address already in use" in p.stderr.lower(), p.stderr
        for mark in ("Sanitizer", "runtime error"):
            assert mark not in p.stderr, p.stderr
        s.close()
    finally:
        hold.close()


def test_a_later_worker_that_cannot_listen_stops_the_others(server_bin):
    """Worker 0 listens, worker 1 cannot open its socket (the descriptor
    limit allows one more): listen fails with that error, the started
    worker is stopped, the process exits 1 with nothing reported."""
    import subprocess
    s = Server(server_bin)
    p = subprocess.run(s.command, env={**s.env, "ONE_MORE_FD": "1"},
                       capture_output=True, text=True, timeout=60)
    s.close()
    assert p.returncode == 1, p
    assert "too many open files" in p.stderr.lower(), p.stderr
    assert "listening on" not in p.stdout, p.stdout
    for mark in ("Sanitizer", "runtime error"):
        assert mark not in p.stderr, p.stderr
