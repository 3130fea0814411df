"""Fixtures for talon's pub/sub tests.

    pytest tests/pubsub --pubsub-server PATH/pubsub_test_server

Each test gets a fresh server subprocess (`srv`). At teardown it gets
SIGTERM; the fixture waits for it and asserts exit code 0 and no sanitizer
report in its stderr (build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets
detect_leaks=1 when not set).
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from psclient import PSClient, http_json  # noqa: E402

SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "LeakSanitizer",
    "runtime error",
    "UndefinedBehaviorSanitizer",
)
LISTEN_RE = re.compile(r"listening on http://([^\s:]+):(\d+)")


def pytest_addoption(parser):
    parser.addoption("--pubsub-server", action="store", default=None,
                     help="path to the pubsub_test_server binary")


def _env():
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "")
    if "detect_leaks" not in asan:
        asan = (asan + ":" if asan else "") + "detect_leaks=1"
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class Server:
    def __init__(self, binary):
        self.binary = binary
        self.tmp = tempfile.TemporaryDirectory(prefix="talon-pubsub-")
        self.out_path = os.path.join(self.tmp.name, "stdout")
        self.err_path = os.path.join(self.tmp.name, "stderr")
        self.proc = None
        self.port = None
        self.returncode = None
        self.clients = []

    def start(self, timeout=15.0):
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([self.binary, "0"], stdout=self._out,
                                     stderr=self._err, env=_env(),
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
        pytest.fail(f"pubsub_test_server did not start (rc={rc}):\n"
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

    # ---- clients and HTTP ----
    def connect(self, path="/ws", **kw):
        c = PSClient.connect(self.port, path, **kw)
        self.clients.append(c)
        return c

    def stats(self, since=0):
        return http_json(self.port, f"/stats?since={since}")

    def sock(self, cid):
        return http_json(self.port, f"/sock?id={cid}")

    def count(self, topic):
        q = urllib.parse.quote(topic, safe="")
        return http_json(self.port, f"/count?topic={q}")["count"]

    def publish(self, topic, msg, method="GET"):
        q = urllib.parse.quote(topic, safe="")
        if method == "POST":
            return http_json(self.port, f"/publish?topic={q}", "POST",
                             msg.encode())["rc"]
        m = urllib.parse.quote(msg, safe="")
        return http_json(self.port, f"/publish?topic={q}&msg={m}")["rc"]

    def wait_stats(self, pred, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        st = self.stats()
        while not pred(st):
            if time.monotonic() > deadline:
                st.pop("log", None)
                raise AssertionError(f"/stats: {what} not reached in "
                                     f"{timeout}s: {st}")
            time.sleep(0.02)
            st = self.stats()
        return st

    def wait_live(self, n, timeout=10.0):
        return self.wait_stats(lambda s: s["live"] == n, timeout,
                               f"live == {n}")

    # ---- teardown ----
    def stop(self, timeout=20.0):
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"server did not exit {timeout}s after SIGTERM:\n"
                        f"{self.stderr()}")

    def check_clean_exit(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report:\n{err}"
        assert self.returncode == 0, \
            f"server exited with {self.returncode}; stderr:\n{err}"

    def cleanup(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        self.tmp.cleanup()


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    path = pytestconfig.getoption("pubsub_server")
    if not path:
        pytest.fail("--pubsub-server PATH is required")
    if not os.access(path, os.X_OK):
        pytest.fail(f"--pubsub-server: {path} is not an executable")
    return path


@pytest.fixture(scope="session")
def asan(server_bin):
    """Whether the server is a sanitizer build (slower; RSS meaningless)."""
    with open(server_bin, "rb") as f:
        return b"__asan_init" in f.read()


@pytest.fixture
def srv(server_bin):
    """A fresh pubsub_test_server for one test; at teardown: SIGTERM,
    exit 0, no sanitizer report."""
    s = Server(server_bin)
    s.start()
    try:
        yield s
        assert s.alive(), \
            f"server died during the test (rc={s.proc.returncode}):\n" \
            f"{s.stderr()}"
        s.stop()
        s.check_clean_exit()
    finally:
        s.cleanup()
