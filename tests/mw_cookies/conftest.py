"""Fixtures and helpers for the cookies, session and CSRF middleware tests.

    pytest tests/mw_cookies --mw-server PATH/cookies_test_server

Real clients only: raw sockets (crafted bytes, repeated headers), curl and
the python `websockets` client. Each server runs as a subprocess; at
teardown it gets SIGTERM and the fixture asserts exit code 0 and no
sanitizer report in its stderr (ASAN_OPTIONS gets detect_leaks=1).
"""
import base64
import hashlib
import hmac
import os
import re
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish)

# The secrets compiled into cookies_test_server.c.
SECRET_NEW = b"secret-new-0123456789abcdef"
SECRET_OLD = b"secret-old-0123456789abcdef"
SECRET_OTHER = b"an-unrelated-secret-0123456789"

B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


def pytest_addoption(parser):
    parser.addoption("--mw-server", action="store", default=None,
                     help="path to the cookies_test_server binary")


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(secret, name, value):
    """The signature talon puts after the '.' of a signed cookie."""
    mac = hmac.new(secret, f"{name}={value}".encode(), hashlib.sha256)
    return b64url(mac.digest())


class ServerProcess(TalonServer):
    def __init__(self, path):
        super().__init__([path, "0"], tmp_prefix="talon-mwc-",
                         stop_timeout=10)
        self.path = path


def _run(path):
    s = ServerProcess(path).start()
    yield s
    finish(s)


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "mw_server")


@pytest.fixture(scope="module")
def server(server_bin):
    """One server per test module."""
    yield from _run(server_bin)


@pytest.fixture
def fresh_server(server_bin):
    """A server of its own, for tests that depend on store state/timing."""
    yield from _run(server_bin)


class Response:
    def __init__(self, status, headers, body, raw_head):
        self.status = status
        self.headers = headers  # list of (name, value) in order
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def set_cookies(self):
        return self.header_all("Set-Cookie")

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def cookie(self, name):
        """The value of the last Set-Cookie for `name`, or None."""
        val = None
        for sc in self.set_cookies:
            pair = sc.split(";", 1)[0]
            k, _, v = pair.partition("=")
            if k == name:
                val = v
        return val

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


def _read_all(sock, timeout):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def _parse(data, head_only=False):
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"incomplete response: {data!r}"
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    r = Response(int(m.group(1)), headers, b"", head)
    if head_only:
        return r
    te = r.header("Transfer-Encoding")
    if te and te.lower() == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2:]
        r.body = body
    else:
        n = r.header("Content-Length")
        r.body = rest[:int(n)] if n is not None else rest
    return r


def request(port, method, target, headers=(), body=None, timeout=5.0):
    """One request on a fresh connection (Connection: close). `headers` is
    a list of (name, value) pairs, so a header may repeat."""
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    lines = [f"{method} {target} HTTP/1.1", "Host: test", "Connection: close"]
    for k, v in hdrs:
        lines.append(f"{k}: {v}")
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        raw = _read_all(s, timeout)
    return _parse(raw, head_only=(method == "HEAD"))


def get(port, target, cookie=None, headers=()):
    h = list(headers)
    if cookie is not None:
        h.append(("Cookie", cookie))
    return request(port, "GET", target, h)


def post(port, target, cookie=None, headers=(), body=None, method="POST"):
    h = list(headers)
    if cookie is not None:
        h.append(("Cookie", cookie))
    return request(port, method, target, h, body=body)


def curl(*args, timeout=20):
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout - 2), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
