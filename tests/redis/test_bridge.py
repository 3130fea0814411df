"""The Redis bridge over real processes: three workers_server processes
(2 workers each) share their topics through one redis-server."""
import asyncio
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
import websockets

from conftest import Node, Redis


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def member(node, name):
    ws = await websockets.connect(node.url(f"/ws?name={name}"),
                                  max_size=None, max_queue=None)
    assert (await ws.recv()).startswith(f"hello {name} ")
    return ws


async def subscribe(ws, topic):
    await ws.send(f"sub {topic}")
    got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]
    assert f"ok sub {topic}" in got, got


async def expect(ws, timeout=10):
    return await asyncio.wait_for(ws.recv(), timeout)


async def quiet(ws, seconds=0.3):
    """Nothing more arrives on `ws` for a while."""
    with pytest.raises(asyncio.TimeoutError):
        m = await asyncio.wait_for(ws.recv(), seconds)
        pytest.fail(f"unexpected message {m!r}")


def channels(redis):
    return sorted(redis.command("PUBSUB", "CHANNELS", "talon:*"))


def wait_channels(redis, want, timeout=10):
    deadline = time.monotonic() + timeout
    while channels(redis) != sorted(want):
        assert time.monotonic() < deadline, (channels(redis), want)
        time.sleep(0.05)


def wait_numsub(redis, channel, n, timeout=20):
    """Until `n` connections (nodes) subscribe to `channel`: a publish
    before a node's SUBSCRIBE took effect is not for that node."""
    deadline = time.monotonic() + timeout
    while redis.command("PUBSUB", "NUMSUB", channel)[1] != n:
        assert time.monotonic() < deadline, \
            redis.command("PUBSUB", "NUMSUB", channel)
        time.sleep(0.05)


def test_across_processes_in_order_without_the_sender(nodes, redis):
    async def go():
        socks = []
        for i, n in enumerate(nodes):
            for k in range(3):
                ws = await member(n, f"n{i}m{k}")
                await subscribe(ws, "room")
                socks.append(ws)
        wait_numsub(redis, "talon:room", 3)
        sender = socks[0]
        for i in range(200):
            await sender.send(f"pub room {i}")
        for ws in socks[1:]:
            for i in range(200):
                assert await expect(ws) == str(i)
        await quiet(sender)
        # Binary-safe: every byte value, NUL and 0xff included.
        payload = bytes(range(256)) * 4
        await socks[4].send("xpub room " + payload.hex())
        for ws in socks[:4] + socks[5:]:
            assert await expect(ws) == payload
        await asyncio.gather(*(ws.close() for ws in socks))
    run(go())
    for n in nodes:
        st = n.redis_stats()
        assert st["dropped"] == 0 and st["malformed"] == 0, st
    # A node's own publishes come back from Redis and are dropped there.
    assert nodes[0].redis_stats()["own"] == 200


def test_subscribes_upstream_only_while_someone_listens(nodes, redis):
    async def go():
        a = await member(nodes[0], "a")
        b = await member(nodes[1], "b")
        assert channels(redis) == []
        await subscribe(a, "t1")
        wait_channels(redis, ["talon:t1"])
        await subscribe(b, "t2")
        await subscribe(b, "t1")
        wait_channels(redis, ["talon:t1", "talon:t2"])
        wait_numsub(redis, "talon:t1", 2)
        assert redis.command("PUBSUB", "NUMSUB", "talon:t1")[1] == 2
        assert redis.command("PUBSUB", "NUMSUB", "talon:t2")[1] == 1
        await a.send("unsub t1")
        await expect(a)
        await expect(a)
        deadline = time.monotonic() + 10
        while redis.command("PUBSUB", "NUMSUB", "talon:t1")[1] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await b.close()
        wait_channels(redis, [])
        await a.close()
    run(go())


def test_redis_lost_and_back(server_bin, redis):
    """Redis killed while idle, then publishes during the outage: local
    delivery goes on; the bridge buffers up to its bound and counts the
    rest as dropped; Redis restarted on the same port: both nodes
    reconnect, subscribe again, the buffered publishes go out, and
    exactly the ones not dropped reach the other node. (Redis keeps
    nothing for a subscriber that is not connected, so the publishing
    node tries again only 10 s after the loss, the other within 0.5 s of
    Redis being back: the other one is subscribed again when the buffer
    goes out. With 3 s, a build slowed by ThreadSanitizer spent most of it
    on the publishes below, and the publishing node came back first.)"""
    a = Node(server_bin, redis.url,
             env={"REDIS_BUFFER": "2000", "REDIS_BACKOFF_MS": "10000"}).start()
    b = Node(server_bin, redis.url).start()
    try:
        for n in (a, b):
            n.wait_state(lambda st: st["state"] == 2, what="up")

        async def go():
            pub = await member(a, "pub")
            near = await member(a, "near")
            far = await member(b, "far")
            for ws in (near, far):
                await subscribe(ws, "r")
            wait_numsub(redis, "talon:r", 2)
            await pub.send("pub r before")
            assert await expect(near) == "before"
            assert await expect(far) == "before"
            redis.kill()
            a.wait_state(lambda st: st["state"] == 3, what="down")
            b.wait_state(lambda st: st["state"] == 3, what="down")
            total = 100  # ~60 bytes each on the wire: over the 2000 bound
            for i in range(total):
                await pub.send(f"pub r during {i:03d} " + "x" * 30)
            for i in range(total):  # local subscribers do not wait
                assert (await expect(near)).startswith(f"during {i:03d}")
            st = a.redis_stats()
            assert st["dropped"] > 0 and st["buffered"] <= 2000, st
            dropped = st["dropped"]
            redis.start()
            for n in (a, b):
                n.wait_state(lambda s: s["state"] == 2 and
                             s["reconnects"] >= 1, what="back")
            wait_numsub(redis, "talon:r", 2)
            got = []
            try:
                while True:
                    got.append(await expect(far, timeout=2))
            except asyncio.TimeoutError:
                pass
            # The buffered ones, in order; the dropped ones are the latest.
            assert len(got) == total - dropped, (len(got), dropped)
            assert got == [f"during {i:03d} " + "x" * 30
                           for i in range(len(got))]
            await pub.send("pub r after")
            assert await expect(far) == "after"
            assert await expect(near) == "after"
            for ws in (pub, near, far):
                await ws.close()
        run(go())
        for n in (a, b):
            n.stop()
            n.check_clean_exit()
    finally:
        a.close()
        b.close()


def fake_redis(handler):
    """A TCP server on a free port that runs handler(conn) per
    connection, on a thread. Returns (port, stop)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    done = threading.Event()

    def loop():
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            try:
                handler(c)
            except OSError:
                pass
            finally:
                c.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()

    def stop():
        done.set()
        t.join()
        srv.close()
    return srv.getsockname()[1], stop


@pytest.mark.parametrize("garbage", [
    b"%%% not redis %%%\r\n",                      # a bad type byte
    b"$100\r\nshort",                              # cut mid-reply
    b"*3\r\n$7\r\nmessage\r\n$-9\r\n",             # a bad length
    b"+PONG\r\n*3\r\n$7\r\nmessage\r\n$11\r\ntalon:room\r\n$3\r\nbad\r\n",
])
def test_a_redis_that_answers_garbage_costs_nothing(server_bin, garbage):
    def handler(c):
        c.settimeout(2)
        c.recv(4096)
        c.sendall(garbage)
        time.sleep(0.1)
    port, stop = fake_redis(handler)
    n = Node(server_bin, f"redis://127.0.0.1:{port}",
             env={"REDIS_LOCAL_ONLY": "1"}).start()
    try:
        async def go():
            x = await member(n, "x")
            y = await member(n, "y")
            for ws in (x, y):
                await subscribe(ws, "room")
            for i in range(20):
                await x.send(f"pub room {i}")
                assert await expect(y) == str(i)
                await asyncio.sleep(0.02)
            await x.close()
            await y.close()
        run(go())
        st = n.redis_stats()
        assert st["state"] != 2, st
        assert n.get("/worker") in ("0", "1")
        n.stop()
        n.check_clean_exit()
    finally:
        n.close()
        stop()


def test_unreachable_at_start_is_a_clear_error(server_bin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = Node(server_bin, f"redis://127.0.0.1:{port}")
    p = subprocess.run(n.command, env=n.env, capture_output=True, text=True,
                       timeout=60)
    n.close()
    assert p.returncode == 1, p
    assert "connection refused" in p.stderr.lower(), p.stderr
    assert "listening on" not in p.stdout


def test_unreachable_at_start_local_only_by_option(server_bin, tmp_path):
    r = Redis(tmp_path)  # not started yet
    n = Node(server_bin, r.url, env={"REDIS_LOCAL_ONLY": "1"}).start()
    try:
        assert n.redis_stats()["state"] in (1, 3)
        r.start()
        n.wait_state(lambda st: st["state"] == 2, what="connected later")
        n.stop()
        n.check_clean_exit()
    finally:
        n.close()
        r.kill()
