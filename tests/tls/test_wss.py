"""WSS: Python websockets and Node ws over wss://, permessage-deflate,
large messages, pub/sub fan-out over TLS."""
import asyncio
import os
import shutil
import subprocess

import pytest
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_MODULES = os.path.join(HERE, "..", "interop", "node_modules")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_python_websockets_echo_and_deflate(srv):
    async def go():
        async with websockets.connect(
                f"wss://localhost:{srv.tls_port}/ws", ssl=srv.ctx(),
                max_size=None) as ws:
            ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
            assert "permessage-deflate" in ext
            for n in (0, 1, 125, 126, 65535, 65536, 1 << 20):
                msg = "x" * n
                await ws.send(msg)
                assert await ws.recv() == msg
            blob = os.urandom(3 << 20)  # incompressible, 3 MiB
            await ws.send(blob)
            assert await ws.recv() == blob
            # Many small frames in one go: corked into few records.
            for i in range(500):
                await ws.send(f"m{i}")
            for i in range(500):
                assert await ws.recv() == f"m{i}"
    run(go())


def test_pubsub_over_tls(srv):
    async def go():
        n = 8
        url = f"wss://localhost:{srv.tls_port}/chat"
        socks = [await websockets.connect(url, ssl=srv.ctx(),
                                          compression=None if i % 2 else
                                          "deflate") for i in range(n)]
        for i, ws in enumerate(socks):
            await ws.send(f"from {i}")
        for ws in socks:
            got = sorted([await ws.recv() for _ in range(n)])
            assert got == sorted(f"from {i}" for i in range(n))
        for ws in socks:
            await ws.close()
    run(go())


def test_wss_and_plain_ws_side_by_side(srv):
    async def go():
        a = await websockets.connect(f"wss://localhost:{srv.tls_port}/chat",
                                     ssl=srv.ctx())
        b = await websockets.connect(f"ws://127.0.0.1:{srv.port}/chat")
        await b.send("plain to tls")
        assert await a.recv() == "plain to tls"
        assert await b.recv() == "plain to tls"
        await a.close()
        await b.close()
    run(go())


NODE_CLIENT = r"""
import { createRequire } from 'node:module';
const require = createRequire(process.env.NODE_MODULES + '/');
const WebSocket = require('ws');
const fs = require('node:fs');
const ca = fs.readFileSync(process.env.CA);
const ws = new WebSocket(process.env.URL, { ca, perMessageDeflate: true });
const sizes = [5, 70000, 1 << 20];
let i = 0;
ws.on('open', () => ws.send('y'.repeat(sizes[0])));
ws.on('message', (data) => {
  if (data.length !== sizes[i]) { console.error('bad length'); process.exit(1); }
  if (++i === sizes.length) {
    console.log('ok ' + ws.extensions);
    ws.close(1000);
  } else ws.send('y'.repeat(sizes[i]));
});
ws.on('close', () => process.exit(i === sizes.length ? 0 : 1));
ws.on('error', (e) => { console.error(String(e)); process.exit(1); });
"""


def test_node_ws_over_wss(srv, tmp_path):
    if not shutil.which("node") or not os.path.isdir(
            os.path.join(NODE_MODULES, "ws")):
        pytest.fail("node and tests/interop/node_modules/ws are needed: "
                    "run bash .ci/install-deps")
    script = tmp_path / "client.mjs"
    script.write_text(NODE_CLIENT)
    env = dict(os.environ, NODE_MODULES=os.path.abspath(NODE_MODULES),
               CA=srv.pki.ca, URL=f"wss://localhost:{srv.tls_port}/ws")
    r = subprocess.run(["node", str(script)], env=env, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode() + r.stdout.decode()
    assert "ok permessage-deflate" in r.stdout.decode()
