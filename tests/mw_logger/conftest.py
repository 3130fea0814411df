"""Fixtures for the logger middleware suite: start logger_test_server,
stop it with SIGTERM at teardown, assert exit code 0 and no sanitizer
report in its stderr (ASAN_OPTIONS gets detect_leaks=1)."""
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
                     help="path to logger_test_server")


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    path = pytestconfig.getoption("--mw-server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("--mw-server PATH (an executable) is required")
    return path


class Server:
    def __init__(self, argv, env=None, pass_fds=()):
        self.tmp = tempfile.TemporaryDirectory(prefix="talon-mwlog-")
        self.out_path = os.path.join(self.tmp.name, "stdout")
        self.err_path = os.path.join(self.tmp.name, "stderr")
        e = dict(os.environ)
        asan = e.get("ASAN_OPTIONS", "")
        if "detect_leaks" not in asan:
            e["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "detect_leaks=1"
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        e.update(env or {})
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, env=e,
                                     pass_fds=pass_fds)
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


@pytest.fixture
def start(server_bin):
    """start(fmt, sink, max_queue=None, env=None, pass_fds=()) -> Server;
    every server is stopped and checked at teardown."""
    started = []

    def _start(fmt, sink, max_queue=None, env=None, pass_fds=()):
        argv = [server_bin, "0", fmt, sink]
        if max_queue is not None:
            argv.append(str(max_queue))
        s = Server(argv, env=env, pass_fds=pass_fds)
        started.append(s)
        return s

    yield _start
    try:
        for s in started:
            s.check_clean_exit(s.stop())
    finally:
        for s in started:
            s.close()


def raw(port, data, read=True, timeout=5.0):
    """Sends raw bytes on a new connection; returns everything read until
    the server closes or `timeout`."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        if not read:
            return b""
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


def http(port, method, target, headers=(), body=b"", timeout=5.0):
    """One request with Connection: close; returns (status, body bytes)."""
    lines = [f"{method} {target} HTTP/1.1", "Host: test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    resp = raw(port, data, timeout=timeout)
    head, _, rest = resp.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, rest
