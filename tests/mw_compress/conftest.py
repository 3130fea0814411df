"""Fixtures for the compression middleware suite: start
compress_test_server, stop it with SIGTERM at teardown, assert exit code 0
and no sanitizer report in its stderr (ASAN_OPTIONS gets detect_leaks=1)."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HOST = "127.0.0.1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "LeakSanitizer",
                   "runtime error", "UndefinedBehaviorSanitizer")
LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def pytest_addoption(parser):
    parser.addoption("--mw-server", action="store", default=None,
                     help="path to compress_test_server")


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    path = pytestconfig.getoption("--mw-server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("--mw-server PATH (an executable) is required")
    return path


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


class Server:
    def __init__(self, argv):
        self.tmp = tempfile.TemporaryDirectory(prefix="talon-mwz-")
        self.out_path = os.path.join(self.tmp.name, "stdout")
        self.err_path = os.path.join(self.tmp.name, "stderr")
        e = dict(os.environ)
        asan = e.get("ASAN_OPTIONS", "")
        if "detect_leaks" not in asan:
            e["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "detect_leaks=1"
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env=e)
        deadline = time.monotonic() + 15
        self.port = None
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stdout())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        if self.port is None:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server did not start; stderr:\n{self.stderr()}")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server did not exit within {timeout}s")
        return rc

    def check_clean_exit(self, rc):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report:\n{err}"
        assert rc == 0, f"exit code {rc}; stderr:\n{err}"

    def close(self):
        self._out.close()
        self._err.close()
        self.tmp.cleanup()


def _server(server_bin, mode, tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    f = d / "big.txt"
    f.write_bytes(body_bytes(20000))
    s = Server([server_bin, "0", mode, str(f)])
    yield s
    try:
        s.check_clean_exit(s.stop())
    finally:
        s.close()


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
