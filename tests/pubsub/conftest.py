"""Fixtures for talon's pub/sub tests.

    pytest tests/pubsub --pubsub-server PATH/pubsub_test_server

Each test gets a fresh server subprocess (`srv`). At teardown it gets
SIGTERM; the fixture waits for it and asserts exit code 0 and no sanitizer
report in its stderr (build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets
detect_leaks=1 when not set).
"""
import os
import sys
import urllib.parse

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))

from psclient import PSClient, http_json  # noqa: E402
from talon_server import (LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish)


def pytest_addoption(parser):
    parser.addoption("--pubsub-server", action="store", default=None,
                     help="path to the pubsub_test_server binary")


class Server(TalonServer):
    def __init__(self, binary):
        super().__init__([binary, "0"], name="pubsub_test_server",
                         tmp_prefix="talon-pubsub-", stop_timeout=20.0)
        self.binary = binary
        self.clients = []

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


    def wait_live(self, n, timeout=10.0):
        return self.wait_stats(lambda s: s["live"] == n, timeout,
                               f"live == {n}")

    # ---- teardown ----
    def stop(self, timeout=None):
        for c in self.clients:
            c.close()
        return super().stop(timeout)

    def cleanup(self):
        self.close()


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "pubsub_server")


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
    yield s
    finish(s, during="the test")
