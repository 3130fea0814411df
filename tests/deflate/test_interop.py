"""The python `websockets` client with its default compression settings
against the echo example (dedicated compressor and decompressor) and
every route of the test server; and the raw client against echo."""
import asyncio
import random

import pytest
import websockets
from websockets.extensions.permessage_deflate import \
    ClientPerMessageDeflateFactory

from dclient import OP_BINARY, OP_TEXT, DClient
from pmdmodel import PMD, ROUTES, expected_response


def payloads():
    rnd = random.Random(1)
    out = ["", "a", "hello", "ü€😀" * 50, "echo " * 30000,
           b"", b"\x00", rnd.randbytes(100), rnd.randbytes(200000),
           bytes(1 << 20)]
    out += ["talon %d " % i * (i * 37 % 400) for i in range(60)]
    return out


async def _echo_run(uri, extensions=None, compression="deflate"):
    kw = dict(max_size=None)
    if extensions is not None:
        kw["extensions"] = extensions
        compression = None
    async with websockets.connect(uri, compression=compression, **kw) as ws:
        hdr = ws.response_headers.get("Sec-WebSocket-Extensions")
        for p in payloads():
            await ws.send(p)
            assert await asyncio.wait_for(ws.recv(), 20) == p
        # Pipelined.
        ps = payloads()
        for p in ps:
            await ws.send(p)
        for p in ps:
            assert await asyncio.wait_for(ws.recv(), 20) == p
        return hdr


def test_echo_example_websockets_default(echo_srv):
    """websockets' defaults offer 'permessage-deflate;
    client_max_window_bits'; echo keeps context both ways."""
    hdr = asyncio.run(_echo_run(f"ws://127.0.0.1:{echo_srv.port}/ws"))
    assert hdr == "permessage-deflate"


@pytest.mark.parametrize("variant", [
    dict(server_no_context_takeover=True),
    dict(client_no_context_takeover=True),
    dict(server_max_window_bits=10, client_max_window_bits=9),
])
def test_echo_example_websockets_variants(echo_srv, variant):
    hdr = asyncio.run(_echo_run(f"ws://127.0.0.1:{echo_srv.port}/ws",
                                [ClientPerMessageDeflateFactory(**variant)]))
    assert hdr == expected_response(
        "/dedicated", variant.get("server_no_context_takeover", False),
        variant.get("client_no_context_takeover", False),
        variant.get("server_max_window_bits"))


def test_echo_example_no_compression(echo_srv):
    hdr = asyncio.run(_echo_run(f"ws://127.0.0.1:{echo_srv.port}/ws",
                                compression=None))
    assert hdr is None


def test_echo_example_raw(echo_srv):
    with DClient.connect(echo_srv.port, "/ws", PMD) as c:
        assert c.ext == "permessage-deflate"
        for i in range(50):
            t = ("raw echo %d " % i * 50).encode()
            m = c.echo(t, OP_TEXT, compress=i % 2 == 0, fragments=1 + i % 4)
            assert m.compressed
        m = c.echo(b"tiny")
        assert not m.compressed


@pytest.mark.parametrize("route", sorted(set(ROUTES) - {"/limited"}))
def test_websockets_default_all_routes(srv, route):
    hdr = asyncio.run(_echo_run(f"ws://127.0.0.1:{srv.port}{route}"))
    assert hdr == expected_response(route)
