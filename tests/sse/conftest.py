"""Fixtures for the server-sent events tests: sse_test_server runs as a
subprocess, is stopped with SIGTERM at teardown and must exit 0 with no
sanitizer report. The client is a raw socket that reads the chunked
event stream and parses it as a browser does (the event stream grammar
of the HTML standard)."""
import json
import os
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import HOST, TalonServer, finish  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--sse-server", action="store", default=None,
                     help="path to sse_test_server")


@pytest.fixture(scope="module")
def server_bin(pytestconfig):
    path = pytestconfig.getoption("sse_server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("--sse-server PATH to sse_test_server is required")
    return path


@pytest.fixture(scope="module")
def srv(server_bin):
    s = TalonServer([server_bin, "0"], name="sse_test_server",
                    tmp_prefix="talon-sse-").start()
    yield s
    finish(s)


def request(port, method, target, body=b""):
    """One request on its own connection; (status, body)."""
    s = socket.create_connection((HOST, port), timeout=5)
    try:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: t\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                  .encode() + body)
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    finally:
        s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def stats(port):
    status, body = request(port, "GET", "/stats")
    assert status == 200
    return json.loads(body)


def wait_stats(port, pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        st = stats(port)
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"stats never matched: {st}")
        time.sleep(0.02)


class Stream:
    """An event stream over a raw socket: the head, then the de-chunked
    body as it arrives (`raw`), parsed into events on demand."""

    def __init__(self, port, target, headers=(), timeout=5.0, read=True,
                 rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connecting, so the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        lines = [f"GET {target} HTTP/1.1", "Host: t",
                 "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""    # undecoded bytes after the head
        self.raw = b""    # the de-chunked body so far
        self.done = False  # the last chunk arrived
        self.eof = False
        self.status = None
        self.headers = {}
        self.pos = 0      # parse position in raw
        self.last_id = ""
        if read:
            self.read_head()

    def close(self):
        self.sock.close()

    def _recv(self):
        try:
            d = self.sock.recv(1 << 16)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if not self._recv():
                raise ConnectionError(f"no head: {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self._dechunk()

    def _dechunk(self):
        while not self.done:
            i = self.buf.find(b"\r\n")
            if i < 0:
                return
            size = int(self.buf[:i], 16)
            if size == 0:
                if len(self.buf) < i + 4:
                    return
                self.done = True
                self.buf = self.buf[i + 4:]
                return
            if len(self.buf) < i + 2 + size + 2:
                return
            assert self.buf[i + 2 + size:i + 4 + size] == b"\r\n"
            self.raw += self.buf[i + 2:i + 2 + size]
            self.buf = self.buf[i + 4 + size:]

    def pump(self, timeout=None):
        """Reads what arrives (one recv); False at EOF or timeout."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            ok = self._recv()
        except socket.timeout:
            return False
        self._dechunk()
        return ok

    def read_until(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; raw so far: {self.raw[-500:]!r}")
            if not self.pump(left) and self.eof:
                if not pred():
                    raise AssertionError(f"EOF; raw: {self.raw[-500:]!r}")

    def events(self):
        """Events parsed so far (dicts: event, data, id), as a browser
        dispatches them; comments are collected in self.comments."""
        out = []
        self.comments = []
        text = self.raw.decode("utf-8")
        # a line ends at CRLF, CR or LF
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        complete = lines[:-1]  # the last piece is an unfinished line
        data, event, last_id = [], "", ""
        for line in complete:
            if line == "":
                if data:
                    out.append({"event": event or "message",
                                "data": "\n".join(data), "id": last_id})
                data, event = [], ""
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].lstrip(" "))
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                last_id = value
            elif name == "retry":
                self.retry = int(value)
        return out

    def wait_events(self, n, timeout=5.0):
        self.read_until(lambda: len(self.events()) >= n, timeout)
        return self.events()
