"""echo: the page, and WebSocket echo with the websockets client."""
import asyncio

import pytest
import websockets

from conftest import HOST, module_example, request


@pytest.fixture(scope="module")
def echo(pytestconfig):
    yield from module_example(pytestconfig, "echo")


def test_page(echo):
    r = request(echo.port, "GET", "/")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/html")
    assert b"new WebSocket" in r.body


@pytest.mark.parametrize("compression", ["deflate", None])
def test_ws_echo(echo, compression):
    async def run():
        async with websockets.connect(f"ws://{HOST}:{echo.port}/ws",
                                      compression=compression) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            blob = bytes(range(256)) * 1000
            await ws.send(blob)
            assert await ws.recv() == blob
            await ws.send("é" * 5000)  # over the compression threshold
            assert await ws.recv() == "é" * 5000
            ext = ws.response_headers.get("Sec-WebSocket-Extensions")
            assert (ext is not None) == (compression is not None)
        assert ws.close_code == 1000
    asyncio.run(asyncio.wait_for(run(), 10))


def test_plain_get_on_ws_path(echo):
    assert request(echo.port, "GET", "/ws").status == 426
