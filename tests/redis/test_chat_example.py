"""examples/chat with REDIS_URL: processes on their own ports share
sign-ins, rooms, history (also for a process started later) and member
counts through one redis-server; a sign-out through one ends the sign-in
on all."""
import asyncio
import http.client
import json

import pytest
import websockets

from conftest import TalonServer

SECRET = "test-secret-0123456789abcdef0123"


def chat_bin(config):
    path = config.getoption("--chat")
    if not path:
        pytest.skip("--chat not given (examples not built)")
    return path


def start_chat(path, redis, workers="2"):
    s = TalonServer([path, "0"], name="chat",
                    env={"REDIS_URL": redis.url, "CHAT_SECRET": SECRET,
                         "HOST": "127.0.0.1", "WORKERS": workers},
                    drop_env=("PORT",), tmp_prefix="talon-redis-chatex-")
    s.start()
    return s


def login(server, name, room="lobby"):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("POST", "/login", body=f"name={name}&room={room}",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    r.read()
    assert r.status == 303, r.status
    for k, v in r.getheaders():
        if k.lower() == "set-cookie" and v.startswith("sid="):
            return v.split(";", 1)[0]
    raise AssertionError("no session cookie")


def get(server, path, cookie):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    c.request("GET", path, headers={"Cookie": cookie})
    r = c.getresponse()
    return r.status, r.read().decode()


class Client:
    """A chat socket; collects what it gets, in order."""

    def __init__(self, ws):
        self.ws = ws
        self.got = []

    @classmethod
    async def open(cls, server, cookie, room="lobby"):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{server.port}/chat/{room}",
            extra_headers={"Cookie": cookie})
        return cls(ws)

    async def until(self, pred, timeout=10):
        """Reads until a message satisfies pred; returns it."""
        for m in self.got:
            if pred(m):
                return m
        async def read():
            while True:
                m = json.loads(await self.ws.recv())
                self.got.append(m)
                if pred(m):
                    return m
        return await asyncio.wait_for(read(), timeout)


def is_msg(text):
    return lambda m: m["type"] == "message" and m["text"] == text


def test_two_chat_processes_share_everything(pytestconfig, redis):
    path = chat_bin(pytestconfig)
    a = start_chat(path, redis)
    b = start_chat(path, redis)
    late = None
    try:
        async def go():
            nonlocal late
            ca, cb = login(a, "alice"), login(b, "bob")
            # A sign-in through a works on b (and the other way round).
            assert get(b, "/api/me", ca) == (200, '{"name":"alice"}')
            assert get(a, "/api/me", cb) == (200, '{"name":"bob"}')
            # alice on b, bob on a: the room is one.
            alice = await Client.open(b, ca)
            await alice.until(lambda m: m["type"] == "welcome")
            bob = await Client.open(a, cb)
            await bob.until(lambda m: m["type"] == "welcome")
            # Member counts over both processes.
            await alice.until(lambda m: m["type"] == "join"
                              and m["name"] == "bob" and m["members"] == 2)
            for i in range(5):
                await alice.ws.send(f"a{i}")
                await bob.ws.send(f"b{i}")
            for c in (alice, bob):
                for i in range(5):
                    await c.until(is_msg(f"a{i}"))
                    await c.until(is_msg(f"b{i}"))
            # Each message once, ids unique, per sender in order.
            for c in (alice, bob):
                msgs = [m for m in c.got if m["type"] == "message"]
                assert len(msgs) == 10, msgs
                assert len({m["id"] for m in msgs}) == 10
                for who in "ab":
                    texts = [m["text"] for m in msgs if m["text"][0] == who]
                    assert texts == [f"{who}{i}" for i in range(5)]
            # A process started now has the room's history.
            late = start_chat(path, redis, workers="1")
            cc = login(late, "carol")
            carol = await Client.open(late, cc)
            w = await carol.until(lambda m: m["type"] == "welcome")
            hist = [m["text"] for m in w["history"]]
            assert sorted(hist) == sorted([f"a{i}" for i in range(5)] +
                                          [f"b{i}" for i in range(5)])
            await bob.until(lambda m: m["type"] == "join"
                            and m["name"] == "carol" and m["members"] == 3)
            await carol.ws.send("hi from the late one")
            for c in (alice, bob, carol):
                await c.until(is_msg("hi from the late one"))
            # carol leaves: the others see 2.
            await carol.ws.close()
            await alice.until(lambda m: m["type"] == "leave"
                              and m["name"] == "carol" and m["members"] == 2)
            # alice signs out through a (her socket is on b): b's socket
            # is told, and closed by b at its next message; the cookie
            # opens nothing on either process any more.
            st, _ = get(a, "/logout", ca)
            assert st == 303
            await alice.until(lambda m: m["type"] == "signed_out")
            assert get(b, "/api/me", ca) == (200, '{"name":null}')
            await alice.ws.send("still here?")
            with pytest.raises(websockets.ConnectionClosed) as e:
                await asyncio.wait_for(alice.ws.recv(), 10)
            assert e.value.rcvd.code == 4001
            with pytest.raises(websockets.InvalidStatusCode) as e:
                await Client.open(a, ca)
            assert e.value.status_code == 401
            await bob.ws.close()
        asyncio.run(asyncio.wait_for(go(), 90))
        for s in (a, b, late):
            s.stop()
            s.check_clean_exit()
    finally:
        for s in (a, b, late):
            if s:
                s.close()


def test_chat_without_secret_is_refused_with_redis(pytestconfig, redis):
    import subprocess
    path = chat_bin(pytestconfig)
    p = subprocess.run([path, "0"], env={"REDIS_URL": redis.url,
                                         "HOST": "127.0.0.1"},
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "CHAT_SECRET" in p.stderr
