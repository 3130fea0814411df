"""Cross-worker pub/sub under load: 1,000 sockets spread over 4 workers,
50 topics, every socket publishing sequence-numbered messages to its
topic. Every subscriber must get every other publisher's messages of its
topic exactly once and in each publisher's order, never its own; and
after everyone left, the server's heap is back where it was after a
first, identical round (nothing kept per connection, topic or message)."""
import asyncio
import collections
import json

import websockets

from conftest import run

SOCKETS = 1000
TOPICS = 50
MESSAGES = 10  # per socket


async def connect_all(srv, n):
    sem = asyncio.Semaphore(100)

    async def one(i):
        async with sem:
            ws = await websockets.connect(srv.url(f"/ws?name=s{i}"),
                                          max_size=None, max_queue=None,
                                          open_timeout=60, ping_interval=None)
            hello = (await asyncio.wait_for(ws.recv(), 60)).split()
            return ws, int(hello[2])
    return await asyncio.gather(*(one(i) for i in range(n)))


async def round_trip(srv):
    socks = await connect_all(srv, SOCKETS)
    spread = collections.Counter(w for _, w in socks)
    topic = [i % TOPICS for i in range(SOCKETS)]

    async def sub(i):
        ws = socks[i][0]
        await ws.send(f"sub t{topic[i]}")
        while not (await asyncio.wait_for(ws.recv(), 60)).startswith("ok sub"):
            pass
    await asyncio.gather(*(sub(i) for i in range(SOCKETS)))

    async def publish(i):
        ws = socks[i][0]
        for k in range(MESSAGES):
            await ws.send(f"pub t{topic[i]} {i} {k}")

    async def receive(i):
        ws = socks[i][0]
        peers = [j for j in range(SOCKETS) if topic[j] == topic[i] and j != i]
        last = {}
        for _ in range(len(peers) * MESSAGES):
            j, k = map(int, (await asyncio.wait_for(ws.recv(), 120)).split())
            assert j != i, f"socket {i} got its own publish"
            assert topic[j] == topic[i], (i, j)
            assert k == last.get(j, -1) + 1, \
                f"socket {i}: publisher {j} sent {k} after {last.get(j)}"
            last[j] = k
        assert sorted(last) == peers
        assert all(v == MESSAGES - 1 for v in last.values())
        # Nothing more (no duplicate) once the count is complete.
        await ws.send("worker")
        assert (await asyncio.wait_for(ws.recv(), 60)).startswith("worker ")

    receivers = [asyncio.create_task(receive(i)) for i in range(SOCKETS)]
    await asyncio.gather(*(publish(i) for i in range(SOCKETS)))
    await asyncio.gather(*receivers)
    await asyncio.gather(*(ws.close() for ws, _ in socks))
    return spread


def heap(srv):
    return json.loads(srv.get("/stats")[1])["heap"]


def wait_subscribers_gone(srv):
    import time
    deadline = time.monotonic() + 60
    while any(srv.get(f"/count?topic=t{k}")[1] != "0" for k in range(TOPICS)):
        assert time.monotonic() < deadline, "sockets did not leave"
        time.sleep(0.1)


def test_thousand_sockets_over_four_workers(srv):
    spread = run(round_trip(srv), timeout=600)
    print("1,000 WebSockets over 4 workers:", dict(sorted(spread.items())))
    assert len(spread) == 4
    wait_subscribers_gone(srv)
    first = heap(srv)
    run(round_trip(srv), timeout=600)
    wait_subscribers_gone(srv)
    second = heap(srv)
    print(f"heap after round 1: {first} B, after round 2: {second} B")
    if first:  # 0: no counter (ThreadSanitizer)
        assert second - first < 1 << 20, (first, second)
