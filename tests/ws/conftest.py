"""Fixtures for talon's WebSocket tests.

    pytest tests/ws --ws-server PATH/ws_test_server --echo PATH/echo

The servers run as subprocesses. At teardown each gets SIGTERM; the
fixture waits for it and asserts exit code 0 and no sanitizer report in
its stderr (build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets
detect_leaks=1 when not set).
"""
import json
import os
import sys
import time

import pytest

from wsclient import HOST, http_request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish, finish_all)


def pytest_addoption(parser):
    parser.addoption("--ws-server", action="store", default=None,
                     help="path to the ws_test_server binary")
    parser.addoption("--echo", action="store", default=None,
                     help="path to the echo example binary")


def _binary(config, opt):
    return binary_option(config, opt, flag=f"--{opt}")


class ServerProcess(TalonServer):
    """A server subprocess; start() waits for its 'listening on' line."""

    def __init__(self, argv, env=None, name="server"):
        super().__init__(argv, env=env, name=name, tmp_prefix="talon-ws-",
                         stop_timeout=15.0)

    # -- ws_test_server helpers --
    def stats(self):
        r = http_request(self.port, "/stats")
        assert r.status == 200, r
        return json.loads(r.body)


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
    finish(s)


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
    finish_all(started)


@pytest.fixture(scope="module")
def echo_srv(echo_bin):
    """The echo example (examples/echo.c) on 127.0.0.1, a free port."""
    s = ServerProcess([echo_bin, "0"], env={"HOST": HOST}, name="echo")
    s.start()
    yield s
    _finish(s)
