"""REDIS_URL in the examples (examples/common.h) and bench/chat_server:
two chat_server processes share their room through Redis; an unusable
REDIS_URL is a clear error at start."""
import asyncio
import subprocess

import pytest
import websockets

from conftest import TalonServer


def bin_or_skip(config, opt):
    path = config.getoption(opt)
    if not path:
        pytest.skip(f"{opt} not given (examples not built)")
    return path


def test_two_chat_servers_share_the_room(pytestconfig, redis):
    chat = bin_or_skip(pytestconfig, "--chat-server")
    servers = [TalonServer([chat, "0"], name="chat_server",
                           env={"REDIS_URL": redis.url, "CLIENTS_COUNT": "1",
                                "HOST": "127.0.0.1", "WORKERS": "2"},
                           drop_env=("PORT",), tmp_prefix="talon-redis-chat-")
               for _ in range(2)]
    try:
        for s in servers:
            s.start()

        async def go():
            a = await websockets.connect(
                f"ws://127.0.0.1:{servers[0].port}/?name=alice")
            assert await asyncio.wait_for(a.recv(), 10) == "ready"
            b = await websockets.connect(
                f"ws://127.0.0.1:{servers[1].port}/?name=bob")
            # Each server says "ready" to its room when its one client is
            # in; the room is shared, so alice may hear bob's.
            got = await asyncio.wait_for(b.recv(), 10)
            assert got == "ready"
            # Subscriptions travel to Redis on the next loop turns.
            deadline = asyncio.get_running_loop().time() + 10
            while len(redis.command("PUBSUB", "NUMSUB", "talon:room")) < 2 \
                    or redis.command("PUBSUB", "NUMSUB", "talon:room")[1] < 2:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            await a.send("hi bob")
            msgs = [await asyncio.wait_for(b.recv(), 10)]
            assert msgs == ["alice: hi bob"]
            await b.send("hi alice")
            heard = []
            while "bob: hi alice" not in heard:
                heard.append(await asyncio.wait_for(a.recv(), 10))
            assert set(heard) <= {"ready", "alice: hi bob", "bob: hi alice"}
            await a.close()
            await b.close()
        asyncio.run(asyncio.wait_for(go(), 60))
        for s in servers:
            s.stop()
            s.check_clean_exit()
    finally:
        for s in servers:
            s.close()


def test_an_unusable_redis_url_is_a_clear_error(pytestconfig, redis):
    hello = bin_or_skip(pytestconfig, "--hello")
    for url, why in (("redis://127.0.0.1:1", "connection refused"),
                     ("http://x", "invalid argument")):
        p = subprocess.run([hello, "0"], env={"REDIS_URL": url,
                                              "HOST": "127.0.0.1"},
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, p
        assert why in p.stderr, p.stderr
    # A good one: hello serves as usual.
    s = TalonServer([hello, "0"], name="hello",
                    env={"REDIS_URL": redis.url, "HOST": "127.0.0.1"},
                    drop_env=("PORT",), tmp_prefix="talon-redis-hello-")
    try:
        s.start()
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()
