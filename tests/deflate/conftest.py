"""Fixtures for talon's permessage-deflate tests.

    pytest tests/deflate --deflate-server PATH/deflate_test_server \
        --echo PATH/echo

Servers run as subprocesses. At teardown each gets SIGTERM; the fixture
waits for it and asserts exit code 0 and no sanitizer report in its
stderr (build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets detect_leaks=1
when not set).
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dclient import HOST  # noqa: E402

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "LeakSanitizer", "runtime error",
                   "UndefinedBehaviorSanitizer")
LISTEN_RE = re.compile(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)")


def pytest_addoption(parser):
    parser.addoption("--deflate-server", action="store", default=None,
                     help="path to the deflate_test_server binary")
    parser.addoption("--echo", action="store", default=None,
                     help="path to the echo example binary")


def _binary(config, opt):
    path = config.getoption(opt)
    if not path:
        pytest.fail(f"--{opt.replace('_', '-')} PATH is required")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{opt}: {path} is not an executable")
    return path


def _env(extra=None):
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "")
    if "detect_leaks" not in asan:
        asan = (asan + ":" if asan else "") + "detect_leaks=1"
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if extra:
        env.update(extra)
    return env


def http_get(port, path, timeout=10.0):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], data[:200]
    return body


class ServerProcess:
    def __init__(self, argv, env=None, name="server"):
        self.argv = argv
        self.env = _env(env)
        self.name = name
        self.proc = None
        self.port = None
        self.tmp = tempfile.TemporaryDirectory(prefix="talon-defl-")
        self.out_path = os.path.join(self.tmp.name, "stdout")
        self.err_path = os.path.join(self.tmp.name, "stderr")
        self.returncode = None

    def start(self, timeout=15.0):
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._out,
                                     stderr=self._err, env=self.env,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.out_path, "rb") as f:
                m = LISTEN_RE.search(f.read().decode("utf-8", "replace"))
            if m:
                self.port = int(m.group(2))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        rc = self.proc.poll()
        if rc is None:
            self.proc.kill()
            self.proc.wait()
        pytest.fail(f"{self.name} did not start (rc={rc}); stderr:\n"
                    f"{self.stderr()}")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def sanitized(self):
        """Whether the server runs under AddressSanitizer (its realloc
        copies and its quarantine keeps freed blocks: RSS says little)."""
        with open(f"/proc/{self.proc.pid}/maps") as f:
            return "libasan" in f.read()

    def stats(self):
        return json.loads(http_get(self.port, "/stats"))

    def wait_stats(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st):
            if time.monotonic() > deadline:
                raise AssertionError(f"/stats: {what} not reached: {st}")
            time.sleep(0.02)
            st = self.stats()
        return st

    def close_codes(self, route):
        return [e["code"] for e in self.stats()["close_log"]
                if e["route"] == route]

    def stop(self, timeout=20.0):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} did not exit within {timeout}s; "
                        f"stderr:\n{self.stderr()}")
        return self.returncode

    def check_clean_exit(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, \
                f"{self.name}: sanitizer report in stderr:\n{err}"
        assert self.returncode == 0, \
            f"{self.name} exited with {self.returncode}; stderr:\n{err}"

    def close(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        self.tmp.cleanup()


def _finish(s):
    try:
        assert s.alive(), \
            f"{s.name} died during the tests (rc={s.proc.returncode}); " \
            f"stderr:\n{s.stderr()}"
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return _binary(pytestconfig, "deflate_server")


@pytest.fixture(scope="session")
def echo_bin(pytestconfig):
    return _binary(pytestconfig, "echo")


@pytest.fixture(scope="module")
def srv(server_bin):
    """One deflate_test_server per test module; checked at teardown."""
    s = ServerProcess([server_bin, "0"], name="deflate_test_server")
    s.start()
    yield s
    _finish(s)


@pytest.fixture
def fresh_srv(server_bin):
    """A deflate_test_server owned by one test."""
    s = ServerProcess([server_bin, "0"], name="deflate_test_server")
    s.start()
    yield s
    _finish(s)


@pytest.fixture(scope="module")
def echo_srv(echo_bin):
    """The echo example on 127.0.0.1, a free port."""
    s = ServerProcess([echo_bin, "0"], env={"HOST": HOST}, name="echo")
    s.start()
    yield s
    _finish(s)
