"""The client against other servers: Python `websockets` (Debian's
python3-websockets, in a thread of this process) and Node `ws`
(node_server.mjs, with tests/interop's npm packages). Messages both
ways, fragments, permessage-deflate both ways, pings from the server,
close codes and subprotocols; the Python server over TLS too."""
import asyncio
import os
import re
import ssl
import subprocess
import threading
import time

import pytest
import websockets

from conftest import HOST

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_WS = os.path.join(HERE, "..", "interop", "node_modules", "ws")


# ---- Python websockets ------------------------------------------------------

async def py_handler(ws, path=None):
    path = path or ws.path
    if path == "/proto":
        await ws.send("proto:" + (ws.subprotocol or "none"))
    async for msg in ws:
        if path == "/frag" and msg == "frag":
            await ws.send(iter(["one-", "two-", "three"]))  # fragments
        elif path == "/close" and msg == "close":
            await ws.close(4002, "python")
        elif path == "/ping" and msg == "ping-me":
            pong = await ws.ping(b"py-ping")
            await pong
            await ws.send("got-pong")
        else:
            await ws.send(msg)


def run_pyserver(ssl_ctx=None):
    """A websockets server in a thread: yields its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {}

    async def main():
        srv = await websockets.serve(py_handler, HOST, 0,
                                     subprotocols=["b", "a"],
                                     max_size=None, ssl=ssl_ctx)
        state["port"] = srv.sockets[0].getsockname()[1]
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        srv.close()
        await srv.wait_closed()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),),
                         daemon=True)
    t.start()
    assert ready.wait(10)
    yield state["port"]
    loop.call_soon_threadsafe(state["stop"].set)
    t.join(10)


@pytest.fixture(scope="module")
def pyserver():
    for port in run_pyserver():
        yield f"ws://{HOST}:{port}"


@pytest.fixture(scope="module")
def pyserver_tls(tls_mod, tmp_path_factory):
    pki = tls_mod.PKI(str(tmp_path_factory.mktemp("pki")))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.path("server.pem"), pki.path("server.key"))
    for port in run_pyserver(ctx):
        yield f"wss://localhost:{port}", pki


# ---- Node ws ----------------------------------------------------------------

@pytest.fixture(scope="module")
def nodeserver():
    if not os.path.isdir(NODE_WS):
        pytest.fail("tests/interop/node_modules is missing: run "
                    "bash .ci/install-node-deps")
    p = subprocess.Popen(["node", os.path.join(HERE, "node_server.mjs")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    m = re.search(r"listening on http://[^:]+:(\d+)", line)
    assert m, (line, p.stderr.read() if p.poll() is not None else "")
    yield f"ws://{HOST}:{m.group(1)}"
    p.terminate()
    assert p.wait(10) == 0


@pytest.fixture(params=["python", "node"])
def server(request):
    return request.getfixturevalue("pyserver" if request.param == "python"
                                   else "nodeserver")


def test_echo_text_binary_large(probe, server):
    text = "interop \u00e9\u2603 " * 1000
    r = probe(server + "/echo", [f"text {text}", "binary 0001feff",
                                 "big 2000000", "await 3", "close 1000"])
    m = r.messages()
    assert m[0]["data"] == text
    assert m[1]["head"] == "0001feff"
    assert m[2]["len"] == 2000000
    assert r.one("close")["code"] == 1000


def test_deflate_both_ways(probe, server):
    text = "deflate me please " * 4000
    for mode in ("shared", "dedicated"):
        r = probe(server + "/echo", [f"text {text}", "text short",
                                     f"text {text}", "await 3",
                                     "close 1000"],
                  args=["--deflate", mode])
        assert [x["data"] for x in r.messages()] == [text, "short", text]


def test_deflate_small_server_window(probe, server):
    text = "".join(f"{i:05d}" for i in range(20000))
    r = probe(server + "/echo", [f"text {text}", "await 1", "close 1000"],
              args=["--deflate", "dedicated", "--server-window", "9"])
    assert r.messages()[0]["data"] == text


def test_fragments(probe, server):
    r = probe(server + "/frag", ["text frag", "await 1", "close 1000"])
    assert r.messages()[0]["data"] == "one-two-three"


def test_server_close_code(probe, server):
    r = probe(server + "/close", ["text close"])
    c = r.one("close")
    assert c["code"] in (4002, 4003)
    assert c["reason"] in ("python", "node")


def test_server_ping(probe, server):
    r = probe(server + "/ping", ["text ping-me", "await 1", "close 1000"])
    assert r.one("ping")["data"] in ("py-ping", "node-ping")
    assert r.messages()[0]["data"].startswith("got-pong")


def test_subprotocol(probe, server):
    r = probe(server + "/proto", ["await 1", "close 1000"],
              args=["-s", "a", "-s", "b"])
    p = r.one("open")["protocol"]
    assert p in ("a", "b")
    assert r.messages()[0]["data"] == "proto:" + p


def test_wscat(wscat, server):
    # websockets answers a close frame before its handler has replied to
    # the messages that came with it, so nothing arrives before its close
    # frame: -w waits a second at the end of stdin, as Node's wscat -w.
    t = time.monotonic()
    r = wscat(server + "/echo", "alpha\nbeta\n", args=["-w", "1"])
    assert r.rc == 0 and r.stdout == "alpha\nbeta\n", r.stderr
    assert time.monotonic() - t < 10


def test_python_server_over_tls(probe, wscat, pyserver_tls):
    base, pki = pyserver_tls
    text = "over tls " * 3000
    r = probe(base + "/echo", [f"text {text}", "big 300000", "await 2",
                               "close 1000"],
              args=["--ca", pki.ca, "--deflate", "shared"])
    m = r.messages()
    assert m[0]["data"] == text and m[1]["len"] == 300000
    f = probe(base + "/echo", []).one("fail")
    assert f["reason"] == "tls" and "verify failed" in f["message"]
    r = wscat(base + "/echo", "tls\n", args=["--no-check", "-w", "1"])
    assert r.rc == 0 and r.stdout == "tls\n", r.stderr
