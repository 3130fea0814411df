"""tl_redis_await_subscription: answered once Redis has this process's
SUBSCRIBE (so a read after it cannot miss a later publish), TL_ENOENT
without subscribers here, an error while Redis is away."""
import asyncio
import time
import urllib.error

from conftest import bridged_nodes
from test_bridge import member, run, subscribe


def await_status(node, topic):
    try:
        return 200, node.get(f"/await?topic={topic}")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_await_subscription(server_bin, redis):
    with bridged_nodes(server_bin, redis.url, 1,
                       env={"REDIS_BACKOFF_MS": "50"}) as (a,):
        async def go():
            xs = [await member(a, f"x{i}") for i in range(4)]
            for i, x in enumerate(xs):
                # A new topic each time: the answer must wait for Redis's
                # confirmation, and then Redis lists the channel (no
                # polling here: it has to be there already).
                await subscribe(x, f"fresh{i}")
                assert await_status(a, f"fresh{i}") == (200, "0")
                assert redis.command("PUBSUB", "NUMSUB",
                                     f"talon:fresh{i}")[1] == 1
            # Active already: answered at once.
            assert await_status(a, "fresh0") == (200, "0")
            # Nobody here listens to it.
            st, body = await_status(a, "nobody")
            assert st == 503 and "not found" in body, body
            # Redis away: an error, not a wait.
            redis.kill()
            a.wait_state(lambda s: s["state"] == 3, what="down")
            st, body = await_status(a, "fresh1")
            assert st == 503, body
            # Back: subscribed again, answered again.
            redis.start()
            a.wait_state(lambda s: s["state"] == 2, what="up again")
            deadline = time.monotonic() + 10
            while await_status(a, "fresh1") != (200, "0"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert redis.command("PUBSUB", "NUMSUB", "talon:fresh1")[1] == 1
            for x in xs:
                await x.close()
        run(go())
