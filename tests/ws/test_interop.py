"""Interop with a real client library: Debian's python3-websockets (10.4)
against the echo example (examples/echo.c) and ws_test_server."""
import asyncio
import os

import pytest
import websockets

MiB = 1024 * 1024


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def uri(server, path="/ws"):
    return f"ws://127.0.0.1:{server.port}{path}"


def connect(url, **kw):
    kw.setdefault("max_size", None)
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    return websockets.connect(url, **kw)


def test_echo_page(echo_srv):
    from wsclient import http_request
    r = http_request(echo_srv.port, "/")
    assert r.status == 200
    assert b"talon echo" in r.body


def test_echo_text_and_binary(echo_srv):
    async def go():
        async with connect(uri(echo_srv)) as ws:
            for msg in ["hello", "", "κόσμε 😀", "x" * 70000]:
                await ws.send(msg)
                assert await ws.recv() == msg
            for msg in [b"\x00\xff", b"", os.urandom(65536), os.urandom(200000)]:
                await ws.send(msg)
                got = await ws.recv()
                assert isinstance(got, bytes) and got == msg
    run(go())


def test_echo_fragmented_send(echo_srv):
    async def go():
        async with connect(uri(echo_srv)) as ws:
            await ws.send(["frag", "mented ", "κόσ", "με"])
            assert await ws.recv() == "fragmented κόσμε"
            parts = [os.urandom(1000) for _ in range(50)]
            await ws.send(parts)
            assert await ws.recv() == b"".join(parts)

            async def agen():
                for i in range(10):
                    yield f"part{i};"
            await ws.send(agen())
            assert await ws.recv() == "".join(f"part{i};" for i in range(10))
    run(go())


def test_echo_5mib(echo_srv):
    async def go():
        async with connect(uri(echo_srv)) as ws:
            data = os.urandom(5 * MiB)
            await ws.send(data)
            assert await ws.recv() == data
            text = "t€xt" * (5 * MiB // 6)
            await ws.send(text)
            assert await ws.recv() == text
    run(go())


def test_echo_ping_pong(echo_srv):
    async def go():
        async with connect(uri(echo_srv)) as ws:
            for payload in [b"", b"data", os.urandom(125)]:
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, 5)
            waiters = [await ws.ping(b"%d" % i) for i in range(10)]
            await asyncio.wait_for(asyncio.gather(*waiters), 5)
            await ws.send("after pings")
            assert await ws.recv() == "after pings"
    run(go())


@pytest.mark.parametrize("code,reason", [(1000, ""), (1001, "going"),
                                         (4000, "custom"), (3999, "r" * 100)])
def test_echo_close_code(echo_srv, code, reason):
    async def go():
        ws = await connect(uri(echo_srv))
        await ws.send("x")
        assert await ws.recv() == "x"
        await ws.close(code=code, reason=reason)
        assert ws.close_code == code
        await ws.wait_closed()
    run(go())


def test_echo_many_clients(echo_srv):
    async def one(i):
        async with connect(uri(echo_srv)) as ws:
            for j in range(20):
                await ws.send(f"{i}:{j}")
                assert await ws.recv() == f"{i}:{j}"

    async def go():
        await asyncio.gather(*(one(i) for i in range(20)))
    run(go())


def test_echo_concurrent_large(echo_srv):
    async def one():
        async with connect(uri(echo_srv)) as ws:
            data = os.urandom(MiB)
            await ws.send(data)
            assert await ws.recv() == data

    async def go():
        await asyncio.gather(*(one() for _ in range(8)))
    run(go())


def test_echo_plain_get_ws_is_426(echo_srv):
    from wsclient import http_request
    r = http_request(echo_srv.port, "/ws")
    assert r.status == 426


# ---- ws_test_server with the websockets client ------------------------------

def test_ws_server_auth_and_protocol(srv):
    async def go():
        async with connect(uri(srv, "/auth"),
                           extra_headers={"X-User": "dave"}) as ws:
            assert await ws.recv() == "hello dave"
            await ws.send("whoami")
            assert await ws.recv() == "user:dave"
        async with connect(uri(srv, "/proto"),
                           subprotocols=["chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            assert await ws.recv() == "proto:chat.v2"
    run(go())


def test_ws_server_auth_rejected(srv):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with connect(uri(srv, "/auth")):
                pass
        assert e.value.status_code == 401
    run(go())


def test_ws_server_server_close(srv):
    async def go():
        async with connect(uri(srv, "/close-me")) as ws:
            await ws.send("close-me")
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4000
            assert ws.close_reason == "bye"
    run(go())


def test_ws_server_server_ping(srv):
    async def go():
        async with connect(uri(srv, "/ping")) as ws:
            await ws.send("ping-me")
            assert await ws.recv() == "got-pong:srv-ping"
    run(go())
    assert srv.stats()["ping_rc"] == 10  # 8-byte payload + 2-byte header


def test_ws_server_max_payload(srv):
    async def go():
        async with connect(uri(srv, "/small")) as ws:
            await ws.send(b"a" * 1024)
            assert await ws.recv() == b"a" * 1024
            await ws.send(b"a" * 1025)
            with pytest.raises(websockets.exceptions.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009
    run(go())


def test_ws_server_async_accept(srv):
    async def go():
        async with connect(uri(srv, "/async?delay=30")) as ws:
            assert await ws.recv() == "async-open"
            await ws.send("hi")
            assert await ws.recv() == "hi"
    run(go())
