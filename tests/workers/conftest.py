"""Fixtures for the worker tests.

    pytest tests/workers --workers-server PATH/workers_server

Each test gets a fresh workers_server (4 workers unless the test asks
for another count). At teardown it gets SIGTERM; the fixture asserts exit
code 0 and no sanitizer report (ASan, UBSan, TSan) in its stderr.
"""
import asyncio
import os
import resource
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))

from talon_server import TalonServer, binary_option  # noqa: E402


# The load test holds 1,000 sockets on each side: raise the descriptor
# limit (the server inherits it).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and _soft < 8192:
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (min(8192, _hard) if _hard != resource.RLIM_INFINITY
                        else 8192, _hard))


def pytest_addoption(parser):
    parser.addoption("--workers-server", action="store", default=None,
                     help="path to the workers_server binary")


class Server(TalonServer):
    def __init__(self, binary, workers=4):
        super().__init__([binary, "0", str(workers)], name="workers_server",
                         tmp_prefix="talon-workers-", stop_timeout=30.0)

    def get(self, path, method="GET", body=None, timeout=30):
        """(status, body text) of one request on a new connection."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}",
                                     data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "--workers-server")


@pytest.fixture
def srv(server_bin):
    s = Server(server_bin)
    s.start()
    yield s
    try:
        s.stop()
        s.check_clean_exit()
    finally:
        s.close()


def run(coro, timeout=120):
    """Runs a coroutine to completion with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
