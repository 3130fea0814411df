"""Fixtures for the error page tests: errors_test_server runs as a
subprocess ("hooked": with error middleware; "plain": talon's own pages),
is stopped with SIGTERM at teardown and must exit 0 with no sanitizer
report. Raw sockets only."""
import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import HOST, TalonServer, finish  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--errors-server", action="store", default=None,
                     help="path to errors_test_server")


def _start(pytestconfig, mode):
    path = pytestconfig.getoption("errors_server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("--errors-server PATH to errors_test_server is required")
    return TalonServer([path, "0", mode], name=f"errors_test_server {mode}",
                       tmp_prefix="talon-errors-").start()


@pytest.fixture(scope="module")
def hooked(pytestconfig):
    s = _start(pytestconfig, "hooked")
    yield s
    finish(s)


@pytest.fixture(scope="module")
def plain(pytestconfig):
    s = _start(pytestconfig, "plain")
    yield s
    finish(s)


class Response:
    def __init__(self, status, headers, body, closed):
        self.status = status
        self.headers = headers  # [(name, value)]
        self.body = body
        self.closed = closed    # the server closed the connection after it

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def header(self, name):
        vals = self.all(name)
        return vals[0] if vals else None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


def exchange(port, raw, timeout=5.0, head=False):
    """Sends raw bytes, reads one response (Content-Length or chunked
    framing, to EOF without either; no body for `head`) and whether the
    server closed the connection after it. A chunked body is returned
    raw (with its framing)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(raw)
        buf = b""

        def more():
            nonlocal buf
            d = s.recv(65536)
            buf += d
            return bool(d)

        while b"\r\n\r\n" not in buf:
            if not more():
                raise ConnectionError(f"closed before a response: {buf!r}")
        head_raw, buf = buf.split(b"\r\n\r\n", 1)
        lines = head_raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(k, v.strip()) for k, v in
                   (ln.split(":", 1) for ln in lines[1:])]
        r = Response(status, headers, b"", False)
        clen = r.header("Content-Length")
        eof = False
        if head:
            pass
        elif clen is not None:
            while len(buf) < int(clen) and more():
                pass
            r.body, buf = buf[:int(clen)], buf[int(clen):]
        elif r.header("Transfer-Encoding") == "chunked":
            # to the terminating chunk, or to EOF for a cut body
            while not buf.endswith(b"0\r\n\r\n"):
                if not more():
                    eof = True
                    break
            r.body, buf = buf, b""
        else:
            while more():
                pass
            eof = True
            r.body, buf = buf, b""
        if not eof:
            s.settimeout(0.3)
            try:
                eof = s.recv(1) == b""
            except socket.timeout:
                eof = False
            except ConnectionError:
                eof = True
        r.closed = eof
        return r
    finally:
        s.close()


def get(port, target, method="GET", headers=(), body=b""):
    lines = [f"{method} {target} HTTP/1.1", "Host: t"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode() + body,
                    head=(method == "HEAD"))
