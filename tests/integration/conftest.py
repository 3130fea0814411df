"""Fixtures and helpers for talon's HTTP integration tests.

Real clients only: raw sockets with crafted bytes, and curl.

The servers run as subprocesses. On teardown each gets SIGTERM; the
fixture then asserts a clean exit (code 0) and no sanitizer report in its
stderr, so ASan/UBSan/LSan findings fail the suite (build with
-DTALON_SANITIZE=ON; ASAN_OPTIONS gets detect_leaks=1 when unset).
"""
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish, finish_all)

# The limits compiled into test_server.c.
MAX_HEADER_BYTES = 4096
MAX_URL_BYTES = 1024
MAX_BODY_BYTES = 65536
MAX_HEADERS = 64
HEADER_TIMEOUT = 0.5
KEEPALIVE_TIMEOUT = 0.7
SHUTDOWN_TIMEOUT = 1.0

SMALL_FILE_SIZE = 1234
LARGE_FILE_SIZE = 5 * 1024 * 1024 + 123


def pytest_addoption(parser):
    parser.addoption("--server", action="store", default=None,
                     help="path to the test_server binary")
    parser.addoption("--hello", action="store", default=None,
                     help="path to the hello example binary")


def _binary(config, opt):
    return binary_option(config, opt, flag=f"--{opt}")


class ServerProcess(TalonServer):
    """A server subprocess: start() waits for its 'listening on' line."""

    def __init__(self, argv, env=None, name="server"):
        super().__init__(argv, env=env, name=name, tmp_prefix="talon-it-",
                         stop_timeout=10.0)
        self.stopping = False  # a test asked it to stop (signal or /stop)

    def send_signal(self, sig):
        """Sends `sig` and remembers that a stop is under way."""
        self.stopping = True
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the process (if running) and waits; returns the code.
        If a stop is already under way, it waits (up to the shutdown
        timeout and some) before signalling again."""
        if self.proc is None:
            return None
        if self.stopping and self.proc.poll() is None:
            try:
                self.returncode = self.proc.wait(timeout=SHUTDOWN_TIMEOUT + 3)
                return self.returncode
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.stopping = True
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return _binary(pytestconfig, "server")


@pytest.fixture(scope="session")
def hello_bin(pytestconfig):
    return _binary(pytestconfig, "hello")


def _pattern_file(path, size, seed):
    h = hashlib.sha256()
    chunk_seed = hashlib.sha256(seed).digest()
    with open(path, "wb") as f:
        written = 0
        i = 0
        while written < size:
            block = hashlib.sha256(chunk_seed + i.to_bytes(8, "little")).digest() * 2048
            block = block[: size - written]
            f.write(block)
            h.update(block)
            written += len(block)
            i += 1
    return h.hexdigest()


@pytest.fixture(scope="session")
def files_dir():
    """A directory with small.bin and large.bin; yields (dir, {name: sha})."""
    d = tempfile.TemporaryDirectory(prefix="talon-files-")
    shas = {
        "small.bin": _pattern_file(os.path.join(d.name, "small.bin"),
                                   SMALL_FILE_SIZE, b"small"),
        "large.bin": _pattern_file(os.path.join(d.name, "large.bin"),
                                   LARGE_FILE_SIZE, b"large"),
    }
    with open(os.path.join(d.name, "empty.bin"), "wb"):
        pass
    shas["empty.bin"] = hashlib.sha256(b"").hexdigest()
    os.mkdir(os.path.join(d.name, "adir"))
    yield d.name, shas
    d.cleanup()


@pytest.fixture
def start_server(server_bin, files_dir):
    """Factory: start_server(env=None) -> a fresh test_server, stopped and
    checked (exit 0, no sanitizer report) at teardown."""
    started = []

    def start(env=None):
        s = ServerProcess([server_bin, "0", files_dir[0]], env=env,
                          name="test_server")
        started.append(s)
        return s.start()

    yield start
    finish_all(started)


@pytest.fixture(scope="module")
def server(server_bin, files_dir):
    """One test_server per test module."""
    s = ServerProcess([server_bin, "0", files_dir[0]], name="test_server")
    s.start()
    yield s
    finish(s, during="the module")


@pytest.fixture(scope="module")
def hello(hello_bin):
    s = ServerProcess([hello_bin, "0"], env={"HOST": HOST}, name="hello")
    s.start()
    yield s
    finish(s, check_alive=False)


# ---- raw HTTP client -------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body, raw):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as str
        self.body = body
        self.raw = raw

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return self.header(name) is not None

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} "
                f"headers={self.headers!r} body={self.body[:200]!r}>")


class Closed(Exception):
    """The peer closed the connection before a complete response."""

    def __init__(self, msg, partial=b""):
        super().__init__(msg)
        self.partial = partial


class Conn:
    """A raw HTTP/1.x client connection with a read buffer, for keep-alive
    and pipelining. Every operation has a timeout."""

    def __init__(self, port, host=HOST, timeout=5.0, nodelay=True,
                 rcvbuf=None):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        self.eof = False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_slowly(self, data, piece=1, delay=0.001):
        if isinstance(data, str):
            data = data.encode()
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i:i + piece])
            if delay:
                time.sleep(delay)

    def _fill(self, deadline):
        if self.eof:
            raise Closed("connection closed", self.buf)
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out waiting for data")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 18)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise Closed("connection closed", self.buf)
        self.buf += data

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def read_exact(self, n, timeout=None):
        deadline = self._deadline(timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_head(self, timeout=None):
        deadline = self._deadline(timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        m = re.match(rb"(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            assert b":" in line, f"bad header line {line!r}"
            k, v = line.split(b":", 1)
            assert k == k.strip() and k, f"bad header name {k!r}"
            headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
        return (m.group(1).decode(), int(m.group(2)),
                m.group(3).decode("latin-1"), headers, head)

    def read_response(self, head=False, timeout=None, allow_1xx=False):
        """Reads one response (skipping nothing). `head`: the request was
        HEAD (no body). 1xx responses are returned as they come only if
        allow_1xx, else they are an assertion failure."""
        deadline = self._deadline(timeout)
        version, status, reason, headers, raw = self.read_head(
            timeout=max(0.001, deadline - time.monotonic()))
        r = Response(version, status, reason, headers, b"", raw)
        if 100 <= status < 200:
            assert allow_1xx, f"unexpected interim response {r!r}"
            return r
        if head or status in (204, 304):
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header_all("Content-Length")
        if te is not None:
            assert te.lower() == "chunked", f"unexpected TE {te!r}"
            assert not cl, f"both TE and Content-Length: {r!r}"
            body = b""
            while True:
                line = self.read_line(deadline)
                size_s = line.split(b";", 1)[0].strip()
                assert re.fullmatch(rb"[0-9a-fA-F]+", size_s), \
                    f"bad chunk size line {line!r}"
                size = int(size_s, 16)
                if size == 0:
                    while self.read_line(deadline) != b"":
                        pass  # trailers
                    break
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                assert self.buf[size:size + 2] == b"\r\n", \
                    f"chunk not followed by CRLF: {self.buf[size:size + 8]!r}"
                self.buf = self.buf[size + 2:]
            r.body = body
            r.chunked = True
            return r
        r.chunked = False
        if cl:
            assert len(set(cl)) == 1, f"conflicting Content-Length {cl}"
            n = int(cl[0])
            while len(self.buf) < n:
                self._fill(deadline)
            r.body, self.buf = self.buf[:n], self.buf[n:]
            return r
        # No framing: the body runs to the end of the connection.
        r.body = self.read_until_close(
            timeout=max(0.001, deadline - time.monotonic()))
        r.unframed = True
        return r

    def read_until_close(self, timeout=None):
        deadline = self._deadline(timeout)
        while True:
            try:
                self._fill(deadline)
            except Closed:
                break
        out, self.buf = self.buf, b""
        return out

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (EOF or reset) within `timeout` with no
        further bytes; raises AssertionError if it sends bytes; False on
        timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                raise AssertionError(f"unexpected bytes before close: {self.buf!r}")
        except Closed:
            return True
        except socket.timeout:
            return False

    def request(self, method, target, headers=None, body=None, version="1.1",
                timeout=None):
        self.send(build_request(method, target, headers, body, version))
        return self.read_response(head=(method == "HEAD"), timeout=timeout)


def build_request(method, target, headers=None, body=None, version="1.1",
                  host=True):
    lines = [f"{method} {target} HTTP/{version}"]
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if host and not any(k.lower() == "host" for k, _ in hdrs):
        lines.append("Host: test")
    for k, v in hdrs:
        lines.append(f"{k}: {v}")
    if body is not None:
        if isinstance(body, str):
            body = body.encode()
        if not any(k.lower() in ("content-length", "transfer-encoding")
                   for k, _ in hdrs):
            lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return data + (body or b"")


def request(port, method, target, headers=None, body=None, version="1.1",
            timeout=5.0):
    """One request on a fresh connection."""
    with Conn(port, timeout=timeout) as c:
        return c.request(method, target, headers, body, version)


def get(port, target, **kw):
    return request(port, "GET", target, **kw)


def stats(port):
    return get(port, "/stats").json()


def wait_stats(port, key, value, timeout=3.0):
    """Polls /stats until counter `key` reaches `value` (or the timeout);
    returns the last stats."""
    deadline = time.monotonic() + timeout
    while True:
        st = stats(port)
        if st[key] >= value or time.monotonic() > deadline:
            return st
        time.sleep(0.02)


def curl(*args, timeout=20):
    """Runs curl; returns CompletedProcess (stdout bytes)."""
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout - 2), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def big_pattern(n):
    block = bytes(range(251))
    reps = n // 251 + 1
    return (block * reps)[:n]


def chunked(body, sizes):
    """`body` framed as chunks of the given sizes (cycled), with terminator."""
    out = b""
    i = 0
    k = 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        piece = body[i:i + n]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        i += n
    return out + b"0\r\n\r\n"
