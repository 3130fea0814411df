"""Fixtures for the WebSocket client suite (tl_ws_connect, examples/wscat).

    pytest tests/wsclient --probe PATH/wsc_probe --wscat PATH/wscat \
        --echo PATH/echo --ws-server PATH/ws_test_server \
        --tls-server PATH/tls_server

Servers: talon's own (the echo example, ws_test_server, tls_server) as
subprocesses, checked for a clean exit at teardown; Python `websockets`
and Node `ws` servers (test_interop.py); and RawServer, a thread that
accepts connections and runs a test's function on each socket, for the
hostile servers. The client side runs as a subprocess (wsc_probe or
wscat) whose stderr must hold no sanitizer report.
"""
import base64
import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from talon_server import (SANITIZER_MARKS, TalonServer,  # noqa: E402
                          binary_option, finish, sanitizer_env)

HOST = "127.0.0.1"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def pytest_addoption(parser):
    for opt in ("probe", "wscat", "echo", "ws-server", "tls-server"):
        parser.addoption("--" + opt, action="store", default=None)


def _load_tls_conftest():
    """The TLS suite's PKI class (certificates made with openssl)."""
    spec = importlib.util.spec_from_file_location(
        "tls_conftest", os.path.join(HERE, "..", "tls", "conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Run:
    """A finished client process: rc, events (JSON lines), stdout,
    stderr."""

    def __init__(self, proc_out, proc_err, rc):
        self.rc = rc
        self.stdout = proc_out
        self.stderr = proc_err
        self.events = []
        for line in proc_out.splitlines():
            if line.startswith("{"):
                self.events.append(json.loads(line))
        for mark in SANITIZER_MARKS:
            assert mark not in proc_err, proc_err

    def of(self, ev):
        return [e for e in self.events if e["ev"] == ev]

    def one(self, ev):
        got = self.of(ev)
        assert len(got) == 1, (ev, self.events, self.stderr)
        return got[0]

    def messages(self):
        return self.of("message")


def run_client(argv, stdin="", timeout=30):
    p = subprocess.run(argv, input=stdin.encode(), capture_output=True,
                       env=sanitizer_env(), timeout=timeout)
    return Run(p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace"), p.returncode)


@pytest.fixture(scope="session")
def probe(request):
    path = binary_option(request.config, "probe")

    def run(url, script=(), args=(), timeout=30):
        return run_client([path, *args, url],
                          "".join(s + "\n" for s in script), timeout)
    return run


@pytest.fixture(scope="session")
def wscat(request):
    path = binary_option(request.config, "wscat")

    def run(url, stdin="", args=(), timeout=30):
        return run_client([path, *args, url], stdin, timeout)
    run.path = path
    return run


def _server(request, opt, name):
    s = TalonServer([binary_option(request.config, opt), "0"], name=name,
                    tmp_prefix="talon-wsc-").start()
    yield s
    finish(s)


@pytest.fixture(scope="module")
def echo(request):
    yield from _server(request, "echo", "echo")


@pytest.fixture(scope="module")
def ws_server(request):
    yield from _server(request, "ws_server", "ws_test_server")


@pytest.fixture(scope="session")
def tls_mod():
    return _load_tls_conftest()


# ---- raw servers -------------------------------------------------------------

def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()
                            ).decode()


def read_head(sock):
    """Reads an HTTP request head; returns (request line, {lower name:
    value})."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the head ended")
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return lines[0], headers


def upgrade_answer(headers, extra=b"", accept=None):
    """A 101 for the request's key (or `accept` as given)."""
    acc = accept if accept is not None else accept_key(
        headers["sec-websocket-key"])
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc.encode() +
            b"\r\n" + extra + b"\r\n")


def frame(op, payload, fin=True, mask=None, rsv1=False):
    """A frame as a server (unmasked) or, with `mask`, masked."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([b0, mbit | 127]) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        hdr += mask
    return hdr + payload


def read_frame(sock):
    """One frame from a client: (fin, opcode, payload, masked)."""
    def need(n):
        b = b""
        while len(b) < n:
            c = sock.recv(n - len(b))
            if not c:
                raise ConnectionError("closed")
            b += c
        return b
    h = need(2)
    n = h[1] & 0x7f
    if n == 126:
        n = int.from_bytes(need(2), "big")
    elif n == 127:
        n = int.from_bytes(need(8), "big")
    masked = bool(h[1] & 0x80)
    mask = need(4) if masked else b"\0\0\0\0"
    data = need(n)
    data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return bool(h[0] & 0x80), h[0] & 0x0f, data, masked


class RawServer:
    """Accepts connections on 127.0.0.1 (or `host`; a free port) and runs
    handler(sock, server) for each on its own thread. `requests` keeps
    what each handler stored; `errors` what each raised."""

    def __init__(self, handler, host=HOST):
        self.handler = handler
        self.host = host
        self.sock = socket.socket(socket.AF_INET6 if ":" in host
                                  else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.errors = []
        self.conns = []
        self.closing = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, path="/"):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{h}:{self.port}{path}"

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c, self)
        except Exception as e:  # noqa: BLE001 - kept for the test to see
            self.errors.append(e)
        finally:
            try:
                c.close()  # the handler is done: the client sees the FIN
            except OSError:
                pass

    def close(self):
        self.closing = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def raw_server():
    servers = []

    def make(handler, host=HOST):
        s = RawServer(handler, host)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.close()
