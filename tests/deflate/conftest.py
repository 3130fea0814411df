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
import socket
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from dclient import HOST  # noqa: E402
from talon_server import (LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish)


def pytest_addoption(parser):
    parser.addoption("--deflate-server", action="store", default=None,
                     help="path to the deflate_test_server binary")
    parser.addoption("--echo", action="store", default=None,
                     help="path to the echo example binary")


def _binary(config, opt):
    return binary_option(config, opt)


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


class ServerProcess(TalonServer):
    def __init__(self, argv, env=None, name="server"):
        super().__init__(argv, env=env, name=name, tmp_prefix="talon-defl-",
                         stop_timeout=20.0)

    def sanitized(self):
        """Whether the server runs under AddressSanitizer (its realloc
        copies and its quarantine keeps freed blocks: RSS says little)."""
        with open(f"/proc/{self.proc.pid}/maps") as f:
            return "libasan" in f.read()

    def stats(self):
        return json.loads(http_get(self.port, "/stats"))


    def close_codes(self, route):
        return [e["code"] for e in self.stats()["close_log"]
                if e["route"] == route]


def _finish(s):
    finish(s)


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
