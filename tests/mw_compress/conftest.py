"""Fixtures for the compression middleware suite: start
compress_test_server, stop it with SIGTERM at teardown, assert exit code 0
and no sanitizer report in its stderr (ASAN_OPTIONS gets detect_leaks=1)."""
import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish, listen_re)

LISTEN_RE = listen_re(HOST)


def pytest_addoption(parser):
    parser.addoption("--mw-server", action="store", default=None,
                     help="path to compress_test_server")


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "mw_server")


def body_bytes(n, kind="text", off=0):
    """The bytes the server's fill() produces for offsets off..off+n."""
    if kind == "rand":
        out = bytearray(n)
        for i in range(n):
            x = ((off + i) * 2654435761) & 0xffffffff
            x ^= x >> 15
            x = (x * 2246822519) & 0xffffffff
            x ^= x >> 13
            out[i] = x & 0xff
        return bytes(out)
    first, last = off // 64, (off + n + 63) // 64
    lines = []
    for ln in range(first, last):
        t = "line %08d: the quick brown fox jumps over %06d" % (
            ln % 100000000, (ln * 7) % 1000000)
        lines.append(t.ljust(63, ".") + "\n")
    s = "".join(lines).encode()
    start = off - first * 64
    return s[start:start + n]


class Server(TalonServer):
    """Started by the constructor; stop() returns the exit code for
    check_clean_exit(rc)."""

    def __init__(self, argv):
        super().__init__(argv, tmp_prefix="talon-mwz-", listen_host=HOST,
                         stop_timeout=10)
        self.start()


def _server(server_bin, mode, tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    f = d / "big.txt"
    f.write_bytes(body_bytes(20000))
    s = Server([server_bin, "0", mode, str(f)])
    yield s
    finish(s, check_alive=False)


@pytest.fixture(scope="module")
def srv(server_bin, tmp_path_factory):
    """The server with tl_compress(NULL); shared by a module's tests and
    checked (exit code, sanitizers) when the module is done."""
    yield from _server(server_bin, "default", tmp_path_factory)


@pytest.fixture(scope="module")
def custom(server_bin, tmp_path_factory):
    yield from _server(server_bin, "custom", tmp_path_factory)


class Response:
    def __init__(self, status, headers, body, raw_body, chunked):
        self.status = status
        self.headers = headers      # list of (lower-case name, value)
        self.body = body            # de-chunked
        self.raw_body = raw_body
        self.chunked = chunked

    def get(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k == name.lower()]


def dechunk(data):
    out, pos = b"", 0
    while True:
        eol = data.index(b"\r\n", pos)
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            assert data[pos:pos + 2] == b"\r\n", "bad chunked terminator"
            return out, pos + 2
        out += data[pos:pos + size]
        assert data[pos + size:pos + size + 2] == b"\r\n", "bad chunk end"
        pos += size + 2


def parse_response(resp, head_request=False):
    head, sep, rest = resp.partition(b"\r\n\r\n")
    assert sep, f"no complete head in {resp[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    hd = dict(headers)
    chunked = hd.get("transfer-encoding", "").lower() == "chunked"
    if head_request:
        body = rest
    elif chunked:
        body, _ = dechunk(rest)
    elif "content-length" in hd:
        n = int(hd["content-length"])
        assert len(rest) >= n, "short body"
        body = rest[:n]
    else:
        body = rest
    return Response(status, headers, body, rest, chunked)


def raw(port, data, timeout=10.0):
    """Sends raw bytes on a new connection; returns everything read until
    the server closes or `timeout`."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        s.settimeout(timeout)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out


def request(port, target, ae=None, method="GET", headers=(), version="1.1",
            body=b""):
    lines = [f"{method} {target} HTTP/{version}", "Host: test",
             "Connection: close"]
    if ae is not None:
        lines.append(f"Accept-Encoding: {ae}")
    lines += [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    return parse_response(raw(port, data), head_request=(method == "HEAD"))
