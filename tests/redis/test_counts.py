"""Subscriber counts with the bridge: tl_app_subscriber_count is this
process's; tl_redis_cluster_count (cluster_count_ms set) sums every
node's, where PUBSUB NUMSUB counts processes."""
import asyncio
import signal
import time

from conftest import Node, bridged_nodes
from test_bridge import member, run, subscribe


def wait_ccount(node, want, timeout=10):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        got = node.get("/ccount?topic=room").split()
        count, version = int(got[0]), int(got[1])
        assert last is None or version > last, (version, last)
        last = version
        if count == want:
            return version
        assert time.monotonic() < deadline, (count, want)
        time.sleep(0.05)


def test_cluster_count_sums_nodes_and_forgets_dead_ones(server_bin, redis):
    with bridged_nodes(server_bin, redis.url, 3,
                       env={"REDIS_COUNT_MS": "300"},
                       allow_dead=True) as nodes:
        a, b, c = nodes

        async def go():
            on_a = [await member(a, f"a{i}") for i in range(2)]
            on_b = [await member(b, f"b{i}") for i in range(3)]
            for ws in on_a + on_b:
                await subscribe(ws, "room")
            # Local counts stay local; NUMSUB counts processes.
            assert a.get("/count?topic=room") == "2"
            assert b.get("/count?topic=room") == "3"
            assert c.get("/count?topic=room") == "0"
            deadline = time.monotonic() + 10
            while redis.command("PUBSUB", "NUMSUB", "talon:room")[1] != 2:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            # Every node sees the sum, a node without subscribers too.
            for n in nodes:
                wait_ccount(n, 5)
            # b's sockets leave: b reports 0 as its last one goes.
            for ws in on_b:
                await ws.close()
            for n in nodes:
                wait_ccount(n, 2)
            # a dies without a word (its sockets still subscribed): its
            # part is dropped after 3 periods.
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            t0 = time.monotonic()
            wait_ccount(c, 0)
            assert time.monotonic() - t0 < 5
            for ws in on_a:
                ws.transport.abort()  # its server is gone
        run(go())


def test_a_stopping_node_takes_its_count_away(server_bin, redis):
    # A long period: without the stop's report the count would stay for
    # three periods (6 s).
    with bridged_nodes(server_bin, redis.url, 2,
                       env={"REDIS_COUNT_MS": "2000"},
                       allow_dead=True) as (b, c):
        async def go():
            on_b = [await member(b, f"b{i}") for i in range(2)]
            for ws in on_b:
                await subscribe(ws, "room")
            wait_ccount(c, 2)
            b.stop()  # its sockets still open: closed by the stop
            b.check_clean_exit()
            t0 = time.monotonic()
            wait_ccount(c, 0, timeout=5)
            assert time.monotonic() - t0 < 2
            for ws in on_b:
                ws.transport.abort()
        run(go())


def test_cluster_count_is_off_by_default(server_bin, redis):
    n = Node(server_bin, redis.url).start()
    try:
        import urllib.error
        try:
            n.get("/ccount?topic=room")
            raise AssertionError("answered without cluster_count_ms")
        except urllib.error.HTTPError as e:
            assert e.code == 503
        assert redis.command("KEYS", "talon:count:*") == []
        n.stop()
        n.check_clean_exit()
    finally:
        n.close()
