"""Fixtures for the CORS / security headers / request id / rate limit
middleware tests: mw_http_test_server runs as a subprocess, is stopped
with SIGTERM at teardown, and must exit 0 with no sanitizer report in its
stderr (ASAN_OPTIONS gets detect_leaks=1 when unset, and a 4 MB quarantine
so the rate limiter's memory-bound check measures the table, not ASan's
freed-memory cache). Real clients only:
raw sockets and curl."""
import os
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, finish)


def pytest_addoption(parser):
    parser.addoption("--mw-server", action="store", default=None,
                     help="path to mw_http_test_server")


class Server(TalonServer):
    """Started by the constructor."""

    def __init__(self, argv):
        super().__init__(argv, tmp_prefix="talon-mwhttp-",
                         asan_extra=("quarantine_size_mb=4",),
                         stop_timeout=15, out_name="out", err_name="err")
        self.start()

    def rss_kb(self):
        return self.rss_kib()

    def stop_and_check(self):
        self.assert_alive()
        self.stop()
        self.check_clean_exit()


def _start(pytestconfig, mode):
    path = pytestconfig.getoption("mw_server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("--mw-server PATH to mw_http_test_server is required")
    return Server([path, "0", mode])


@pytest.fixture(scope="module")
def server(pytestconfig):
    """The server with per-route middleware configurations."""
    s = _start(pytestconfig, "routes")
    yield s
    finish(s)


@pytest.fixture(scope="module")
def app_server(pytestconfig):
    """The server with app-level CORS, request id and security headers."""
    s = _start(pytestconfig, "app")
    yield s
    finish(s)


# ---- raw HTTP client -------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(name, value)]
        self.body = body

    def header(self, name):
        vals = self.all(name)
        return vals[0] if vals else None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:100]!r}>"


class Conn:
    """A keep-alive HTTP/1.1 connection; send() and read() may pipeline."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("closed by server")
        self.buf += data

    def send(self, method, target, headers=(), body=b""):
        self.sock.sendall(build(method, target, headers, body))

    def read(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = []
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers.append((k, v.strip()))
        r = Response(status, headers, b"")
        if head or status in (204, 304):
            return r
        n = int(r.header("Content-Length") or 0)
        while len(self.buf) < n:
            self._fill()
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def request(self, method, target, headers=(), body=b""):
        self.send(method, target, headers, body)
        return self.read(head=(method == "HEAD"))


def build(method, target, headers=(), body=b""):
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in hdrs]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request(port, method, target, headers=(), body=b""):
    with Conn(port) as c:
        return c.request(method, target, headers, body)


def curl(*args):
    """curl -sS -i; returns (status, {lower name: [values]}, body)."""
    p = subprocess.run(["curl", "-sS", "-i", "--max-time", "10", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=15)
    assert p.returncode == 0, p.stderr.decode()
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return status, hdrs, body
