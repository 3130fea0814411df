"""WebSocket session lines of the logger (tl_app_ws_observe): one line at
open and one at close, in every format, with the close code, the duration
and the message/byte counters; python websockets as the client."""
import asyncio
import json
import re
import socket
import time

import pytest
import websockets

from conftest import HOST, http, raw

OPEN_RE = re.compile(
    r'^(?P<host>\S+) - - \[(?P<time>[^\]]+)\] "WS (?P<target>(?:[^"\\]|\\.)*)"'
    r' open id=(?P<id>\d+|-)'
    r'(?: "(?P<origin>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?$')
CLOSE_RE = re.compile(
    r'^(?P<host>\S+) - - \[(?P<time>[^\]]+)\] "WS (?P<target>(?:[^"\\]|\\.)*)"'
    r' close id=(?P<id>\d+|-) code=(?P<code>\d+) messages_in=(?P<min>\d+)'
    r' messages_out=(?P<mout>\d+) bytes_in=(?P<bin>\d+)'
    r' bytes_out=(?P<bout>\d+) duration_ms=(?P<ms>\d+)$')
OPEN_KEYS = {"time", "type", "event", "id", "remote_addr", "target", "path",
             "origin", "user_agent"}
CLOSE_KEYS = {"time", "type", "event", "id", "remote_addr", "target", "path",
              "code", "duration_ms", "messages_in", "messages_out",
              "bytes_in", "bytes_out"}


def ws_lines(text):
    """The WebSocket lines of a log, parsed: dicts with event, id, target,
    code, counters... whatever the format."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            o = json.loads(line)
            if o.get("type") == "ws":
                assert set(o) == (OPEN_KEYS if o["event"] == "open"
                                  else CLOSE_KEYS), o
                out.append(o)
            continue
        m = OPEN_RE.match(line)
        if m:
            out.append({"event": "open", "id": m["id"], "target": m["target"],
                        "remote_addr": m["host"], "origin": m["origin"],
                        "user_agent": m["ua"], "line": line})
            continue
        m = CLOSE_RE.match(line)
        if m:
            out.append({"event": "close", "id": m["id"], "target": m["target"],
                        "remote_addr": m["host"], "code": int(m["code"]),
                        "messages_in": int(m["min"]),
                        "messages_out": int(m["mout"]),
                        "bytes_in": int(m["bin"]), "bytes_out": int(m["bout"]),
                        "duration_ms": int(m["ms"]), "line": line})
            continue
        assert '"WS ' not in line, f"malformed ws line: {line!r}"
    for o in out:
        if o.get("id") not in (None, "-"):
            o["id"] = int(o["id"])
    return out


def wait_ws(read, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = ws_lines(read())
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


async def session(port, path="/ws?room=1", msgs=("hello", "ab", b"0123456789"),
                  hold=0.3, code=4001):
    async with websockets.connect(
            f"ws://{HOST}:{port}{path}", origin="http://o.example",
            user_agent_header="ua-test/1") as w:
        for m in msgs:
            await w.send(m)
            assert await w.recv() == m
        await asyncio.sleep(hold)
        await w.close(code, "bye")
    return w.close_code


@pytest.mark.parametrize("fmt", ["common", "combined", "json"])
def test_open_and_close_lines(start, tmp_path, fmt):
    log = tmp_path / "access.log"
    s = start(fmt, str(log))
    t0 = time.monotonic()
    asyncio.run(session(s.port))
    elapsed_ms = (time.monotonic() - t0) * 1000
    # The file sink and the in-memory sink both get both lines.
    lines = wait_ws(lambda: log.read_text("utf-8"), 2)
    st, mem = http(s.port, "GET", "/_lines")
    assert st == 200
    for got in (lines, ws_lines(mem.decode("utf-8"))):
        assert [o["event"] for o in got] == ["open", "close"], got
        op, cl = got
        assert op["id"] == cl["id"] == 1
        assert op["target"] == cl["target"] == "/ws?room=1"
        assert op["remote_addr"] == cl["remote_addr"] == "127.0.0.1"
        if fmt == "json":
            assert op["path"] == cl["path"] == "/ws"
            assert op["type"] == cl["type"] == "ws"
        if fmt == "common":
            assert op["origin"] is None and op["user_agent"] is None
        else:
            assert op["origin"] == "http://o.example"
            assert op["user_agent"] == "ua-test/1"
        assert cl["code"] == 4001
        assert cl["messages_in"] == 3 and cl["messages_out"] == 3
        assert cl["bytes_in"] == 17 and cl["bytes_out"] == 17
        assert 250 <= cl["duration_ms"] <= elapsed_ms + 50


def test_server_initiated_close_code(start, tmp_path):
    log = tmp_path / "access.log"
    s = start("json", str(log))

    async def run():
        async with websockets.connect(f"ws://{HOST}:{s.port}/ws") as w:
            await w.send("x" * 1000)
            assert await w.recv() == "x" * 1000
            await w.send("close:4321")
            with pytest.raises(websockets.ConnectionClosed):
                await w.recv()
        return w.close_code

    assert asyncio.run(run()) == 4321
    op, cl = wait_ws(lambda: log.read_text("utf-8"), 2)
    assert op["event"] == "open" and cl["event"] == "close"
    assert cl["code"] == 4321
    # "close:4321" counts as a message in; the echo of "x"*1000 out.
    assert cl["messages_in"] == 2 and cl["messages_out"] == 1
    assert cl["bytes_in"] == 1010 and cl["bytes_out"] == 1000
    assert op["origin"] is None and op["user_agent"].startswith("Python")


def test_concurrent_sessions_are_paired(start, tmp_path):
    log = tmp_path / "access.log"
    s = start("json", str(log))

    async def run():
        # Closed in the reverse order of opening, with distinct codes.
        conns = []
        for i in range(5):
            conns.append(await websockets.connect(
                f"ws://{HOST}:{s.port}/ws?n={i}"))
        for i, w in enumerate(conns):
            for _ in range(i):
                await w.send(f"m{i}")
                await w.recv()
        for i, w in reversed(list(enumerate(conns))):
            await w.close(4000 + i)

    asyncio.run(run())
    got = wait_ws(lambda: log.read_text("utf-8"), 10)
    opens = {o["id"]: o for o in got if o["event"] == "open"}
    closes = {o["id"]: o for o in got if o["event"] == "close"}
    assert sorted(opens) == sorted(closes) == [1, 2, 3, 4, 5]
    for oid, op in opens.items():
        cl = closes[oid]
        i = int(op["target"].split("=")[1])
        assert cl["target"] == op["target"]
        assert cl["code"] == 4000 + i
        assert cl["messages_in"] == i and cl["messages_out"] == i


def test_abrupt_disconnect_logs_1006(start, tmp_path):
    log = tmp_path / "access.log"
    s = start("common", str(log))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    with socket.create_connection((HOST, s.port), timeout=5) as c:
        c.sendall(("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        assert c.recv(4096).startswith(b"HTTP/1.1 101")
    op, cl = wait_ws(lambda: log.read_text("utf-8"), 2)
    assert cl["code"] == 1006
    assert cl["messages_in"] == 0 and cl["messages_out"] == 0
    assert cl["id"] == op["id"] == 1


def test_escaping_of_target_and_headers(start, tmp_path):
    """Quotes, backslashes and non-ASCII bytes of a hostile upgrade
    request cannot forge a field or a line."""
    for fmt in ("combined", "json"):
        log = tmp_path / f"{fmt}.log"
        s = start(fmt, str(log))
        req = (b'GET /ws?a="x"\\y\xe9 HTTP/1.1\r\nHost: t\r\n'
               b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b'Origin: http://e" x=1 "\r\n'
               b'User-Agent: a\\"\xff b\r\n\r\n')
        with socket.create_connection((HOST, s.port), timeout=5) as c:
            c.sendall(req)
            resp = c.recv(4096)
            if not resp.startswith(b"HTTP/1.1 101"):
                pytest.skip(f"core refused the target: {resp[:40]!r}")
            # A masked close frame with code 1000.
            c.sendall(bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]))
            c.recv(4096)
        got = wait_ws(lambda: log.read_text("utf-8"), 2)
        text = log.read_text("utf-8")
        assert [o["event"] for o in got] == ["open", "close"]
        assert got[1]["code"] == 1000
        if fmt == "json":
            assert got[0]["target"] == '/ws?a="x"\\y\ufffd'
            assert got[0]["origin"] == 'http://e" x=1 "'
            assert got[0]["user_agent"] == 'a\\"\ufffd b'
        else:
            assert got[0]["target"] == r'/ws?a=\"x\"\\y\xe9'
            assert got[0]["origin"] == r'http://e\" x=1 \"'
            assert got[0]["user_agent"] == r'a\\\"\xff b'
            for line in text.splitlines():
                assert all(0x20 <= ord(ch) < 0x7f for ch in line), line
        # open, close, and the HTTP line of the 101.
        assert len(text.splitlines()) == 3


def test_open_at_shutdown_is_closed_and_logged(start, tmp_path):
    log = tmp_path / "access.log"
    s = start("json", str(log))

    async def run():
        w = await websockets.connect(f"ws://{HOST}:{s.port}/ws")
        await w.send("hi")
        assert await w.recv() == "hi"
        s.proc.send_signal(15)  # SIGTERM with the socket open
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        finally:
            await w.close()
        return w.close_code

    code = asyncio.run(run())
    rc = s.proc.wait(timeout=10)
    s.check_clean_exit(rc)
    assert code == 1001
    op, cl = ws_lines(log.read_text("utf-8"))
    assert cl["event"] == "close" and cl["code"] == 1001
    assert cl["messages_in"] == 1 and cl["messages_out"] == 1


def test_http_lines_unchanged_and_ws_counted(start, tmp_path):
    log = tmp_path / "access.log"
    s = start("json", str(log))
    assert http(s.port, "GET", "/hello")[0] == 200
    asyncio.run(session(s.port, msgs=("a",), hold=0))
    assert http(s.port, "GET", "/hello")[0] == 200
    time.sleep(0.2)
    lines = [json.loads(x) for x in log.read_text("utf-8").splitlines()]
    kinds = [o.get("type", "http:" + o.get("path", "")) for o in lines]
    # The accepted upgrade is an HTTP line too (status 101), before the
    # socket's open line.
    assert kinds == ["http:/hello", "http:/ws", "ws", "ws", "http:/hello"]
    assert lines[1]["status"] == 101
    st, body = http(s.port, "GET", "/_stats")
    assert json.loads(body)["lines"] == 5
