"""Fixtures for the middleware-under-workers suite.

    pytest tests/mw_workers --mw-workers-server PATH/mw_workers_server

One mw_workers_server with 4 workers serves the whole module; its access
log (JSON lines) goes to a file in the server's temp dir. At teardown it
gets SIGTERM; the fixture asserts exit code 0 and no sanitizer report
(ASan, UBSan, TSan) in its stderr.
"""
import http.client
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import HOST, TalonServer, binary_option, finish  # noqa: E402

WORKERS = 4


def pytest_addoption(parser):
    parser.addoption("--mw-workers-server", action="store", default=None,
                     help="path to the mw_workers_server binary")


class Server(TalonServer):
    def __init__(self, binary, workers=WORKERS):
        super().__init__([binary, "0", "LOG", "STATIC", str(workers)],
                         name="mw_workers_server",
                         tmp_prefix="talon-mw-workers-", stop_timeout=30.0)
        self.log_path = os.path.join(self.tmp.name, "access.log")
        self.static_dir = os.path.join(self.tmp.name, "static")
        os.mkdir(self.static_dir)
        # A compressible file big enough for several writes.
        self.big = "".join(f"line {i} of a text file\n" for i in range(4000))
        with open(os.path.join(self.static_dir, "big.txt"), "w") as f:
            f.write(self.big)
        self.argv[2:4] = [self.log_path, self.static_dir]
        self.command = self._wrap(self.argv)

    def request(self, method, path, headers=None, raw=False):
        """(status, headers dict with lower-case names, body text or bytes
        if `raw`) of one request on a new connection: new connections are
        what the kernel spreads over the workers."""
        c = http.client.HTTPConnection(HOST, self.port, timeout=60)
        try:
            c.request(method, path, headers=headers or {})
            r = c.getresponse()
            body = r.read()
            return (r.status, {k.lower(): v for k, v in r.getheaders()},
                    body if raw else body.decode())
        finally:
            c.close()

    def stats(self):
        status, _, body = self.request("GET", "/_stats")
        assert status == 200, body
        return json.loads(body)

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode().splitlines(keepends=True)


@pytest.fixture(scope="module")
def srv(pytestconfig):
    s = Server(binary_option(pytestconfig, "--mw-workers-server"))
    s.start()
    yield s
    finish(s, during="the module")
