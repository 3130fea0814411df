"""TLS with workers: every worker opens the TLS listener (one context
shared by all, SO_REUSEPORT), HTTPS and WSS work on each, and pub/sub
crosses workers over TLS."""
import asyncio
import json

import websockets

from test_https import read_response, request


def test_https_and_wss_across_workers(make_server):
    srv = make_server(env={"WORKERS": "2"})
    socks = [srv.tls_connect() for _ in range(24)]
    for s in socks:
        request(s, "/info")
    for s in socks:
        status, body = read_response(s.makefile("rb"))
        assert status == 200 and json.loads(body)["tls"] is True
        s.close()

    async def go():
        url = f"wss://localhost:{srv.tls_port}/chat"
        clients = [await websockets.connect(url, ssl=srv.ctx())
                   for _ in range(8)]
        for i, ws in enumerate(clients):
            await ws.send(f"m{i}")
        for ws in clients:
            got = sorted([await asyncio.wait_for(ws.recv(), 10)
                          for _ in range(8)])
            assert got == sorted(f"m{i}" for i in range(8))
        for ws in clients:
            await ws.close()
    asyncio.run(go())
