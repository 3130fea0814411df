"""Fixtures for the logger middleware suite: start logger_test_server,
stop it with SIGTERM at teardown, assert exit code 0 and no sanitizer
report in its stderr (ASAN_OPTIONS gets detect_leaks=1)."""
import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, binary_option, finish_all, listen_re)

LISTEN_RE = listen_re(HOST)


def pytest_addoption(parser):
    parser.addoption("--mw-server", action="store", default=None,
                     help="path to logger_test_server")


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "mw_server")


class Server(TalonServer):
    """Started by the constructor; stop() returns the exit code for
    check_clean_exit(rc)."""

    def __init__(self, argv, env=None, pass_fds=()):
        super().__init__(argv, env=env, pass_fds=pass_fds,
                         tmp_prefix="talon-mwlog-", listen_host=HOST,
                         stop_timeout=10)
        self.start()


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
    finish_all(started)


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
