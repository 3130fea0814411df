"""Fixtures for talon's WebSocket tests.

    pytest tests/ws --ws-server PATH/ws_test_server --echo PATH/echo

The servers run as subprocesses. At teardown each gets SIGTERM; the
fixture waits for it and asserts exit code 0 and no sanitizer report in
its stderr (build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets
detect_leaks=1 when not set).
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from wsclient import HOST, http_request

SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "LeakSanitizer",
    "runtime error",
    "UndefinedBehaviorSanitizer",
)
LISTEN_RE = re.compile(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)")


def pytest_addoption(parser):
    parser.addoption("--ws-server", action="store", default=None,
                     help="path to the ws_test_server binary")
    parser.addoption("--echo", action="store", default=None,
                     help="path to the echo example binary")


def _binary(config, opt):
    path = config.getoption(opt)
    if not path:
        pytest.fail(f"--{opt} PATH is required")
    if not os.access(path, os.X_OK):
        pytest.fail(f"--{opt}: {path} is not an executable")
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


class ServerProcess:
    """A server subprocess; start() waits for its 'listening on' line."""

    def __init__(self, argv, env=None, name="server"):
        self.argv = argv
        self.env = _env(env)
        self.name = name
        self.proc = None
        self.port = None
        self.tmp = tempfile.TemporaryDirectory(prefix="talon-ws-")
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
        """VmRSS of the server process in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def wait_exit(self, timeout=15.0):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} did not exit within {timeout}s; "
                        f"stderr:\n{self.stderr()}")
        return self.returncode

    def stop(self, timeout=15.0):
        """SIGTERM (if still running) and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

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

    # -- ws_test_server helpers --
    def stats(self):
        r = http_request(self.port, "/stats")
        assert r.status == 200, r
        return json.loads(r.body)

    def wait_stats(self, pred, timeout=5.0, what="condition"):
        """Polls /stats until pred(stats) is true; returns the stats."""
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st):
            if time.monotonic() > deadline:
                raise AssertionError(f"/stats: {what} not reached within "
                                     f"{timeout}s: {st}")
            time.sleep(0.02)
            st = self.stats()
        return st

    def closes_since(self, n, route=None):
        """Close log entries after the n-th (the log keeps the last 64)."""
        st = self.stats()
        log = st["close_log"]
        total = st["nclose_log"]
        first = total - len(log)
        out = [e for i, e in enumerate(log) if first + i >= n]
        if route:
            out = [e for e in out if e["route"] == route]
        return out

    def wait_close_logged(self, n, route, timeout=5.0):
        """Waits for a close handler call on `route` after log entry n."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.closes_since(n, route)
            if got:
                return got[-1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no close handler call on {route} within {timeout}s: "
                    f"{self.stats()['close_log']}")
            time.sleep(0.02)


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
def ws_server_bin(pytestconfig):
    return _binary(pytestconfig, "ws_server")


@pytest.fixture(scope="session")
def echo_bin(pytestconfig):
    return _binary(pytestconfig, "echo")


@pytest.fixture(scope="module")
def srv(ws_server_bin):
    """One ws_test_server per test module; checked at teardown."""
    s = ServerProcess([ws_server_bin, "0"], name="ws_test_server")
    s.start()
    yield s
    _finish(s)


@pytest.fixture
def start_server(ws_server_bin):
    """Factory for a fresh ws_test_server owned by one test."""
    started = []

    def start():
        s = ServerProcess([ws_server_bin, "0"], name="ws_test_server")
        started.append(s)
        return s.start()

    yield start
    for s in started:
        if s.proc.poll() is not None and s.returncode is None:
            s.returncode = s.proc.returncode
    try:
        for s in started:
            s.stop()
            s.check_clean_exit()
    finally:
        for s in started:
            s.close()


@pytest.fixture(scope="module")
def echo_srv(echo_bin):
    """The echo example (examples/echo.c) on 127.0.0.1, a free port."""
    s = ServerProcess([echo_bin, "0"], env={"HOST": HOST}, name="echo")
    s.start()
    yield s
    _finish(s)
