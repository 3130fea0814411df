"""Fixtures for the metrics tests: metrics_test_server runs as a
subprocess, is stopped with SIGTERM at teardown and must exit 0 with no
sanitizer report. HTTP over raw sockets (so every byte is known); the
WebSocket client is tests/ws/wsclient.py."""
import json
import os
import socket
import sys

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "common"))
sys.path.insert(0, os.path.join(here, "..", "ws"))
from talon_server import HOST, TalonServer, finish  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--metrics-server", action="store", default=None,
                     help="path to metrics_test_server")


@pytest.fixture(scope="module", params=[1, 3], ids=["1worker", "3workers"])
def srv(pytestconfig, request):
    """One worker, and three: the counters are summed over workers (the
    kernel spreads the test's connections over them)."""
    path = pytestconfig.getoption("metrics_server")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("--metrics-server PATH to metrics_test_server is required")
    s = TalonServer([path, "0", str(request.param)],
                    name=f"metrics_test_server x{request.param}",
                    tmp_prefix="talon-metrics-").start()
    yield s
    finish(s)


def raw_exchange(port, req):
    """Sends `req` on a fresh connection (Connection: close inside) and
    returns everything the server sent until it closed."""
    s = socket.create_connection((HOST, port), timeout=5)
    try:
        s.sendall(req)
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                return buf
            buf += d
    finally:
        s.close()


def build(method, target):
    return (f"{method} {target} HTTP/1.1\r\nHost: t\r\n"
            "Connection: close\r\n\r\n").encode()


def get(port, target, method="GET"):
    raw = raw_exchange(port, build(method, target))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in
               (ln.split(":", 1) for ln in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body, len(raw)


def scrape(port):
    """(metrics dict, bytes of the request, bytes of the whole answer)."""
    req = build("GET", "/internal/m")
    raw = raw_exchange(port, req)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), raw[:200]
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = int(value)
    return out, len(req), len(raw)


def stats_c(port):
    status, _, body, _ = get(port, "/stats-c")
    assert status == 200
    return json.loads(body)
