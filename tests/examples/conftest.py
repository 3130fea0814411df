"""Fixtures for the smoke tests of the examples (examples/*.c).

    pytest tests/examples --hello PATH --echo PATH --rest PATH \
        --upload PATH --auth PATH --chat PATH

Each example runs as a subprocess on port 0 with HOST=127.0.0.1; the port
is read from its "listening on http://HOST:PORT" line. At teardown it gets
SIGTERM; the fixture then asserts exit code 0 and no sanitizer report in
its stderr (build with -DTALON_SANITIZE=ON; ASAN_OPTIONS gets
detect_leaks=1 when unset). A test module whose binary was not given is
skipped, so one ctest test can run per example.

Real clients only: http.client (stdlib), curl, and Debian's
python3-websockets.
"""
import http.client
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, LISTEN_RE, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, finish, finish_all, sanitizer_env)

EXAMPLES = ("hello", "echo", "rest", "upload", "auth", "chat")
# Only what a test sets of these reaches an example.
EXAMPLE_ENV = ("PORT", "UPLOAD_DIR", "CORS_ORIGIN", "SESSION_SECRET",
               "RATE_LIMIT", "RATE_BURST", "LOOKUP_DELAY_MS", "CHAT_PUBLIC",
               "TLS_HOST", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def pytest_addoption(parser):
    for name in EXAMPLES:
        parser.addoption(f"--{name}", action="store", default=None,
                         help=f"path to the {name} example binary")


def example_bin(config, name):
    path = config.getoption(name)
    if not path:
        pytest.skip(f"--{name} PATH not given")
    if not os.access(path, os.X_OK):
        pytest.fail(f"--{name}: {path} is not an executable")
    return path


def _env(extra=None):
    return sanitizer_env({"HOST": HOST, **(extra or {})}, drop=EXAMPLE_ENV)


class Example(TalonServer):
    """An example server subprocess; start() waits for its listening line
    (which must be on HOST)."""

    def __init__(self, path, name, env=None, cwd=None):
        super().__init__([path, "0"], name=name, cwd=cwd,
                         tmp_prefix=f"talon-ex-{name}-", expect_host=HOST,
                         stop_timeout=15.0)
        self.env = _env(env)

    def stop(self, timeout=None):
        """SIGTERM, wait, and assert a clean exit (code 0, no sanitizer
        report in stderr)."""
        rc = super().stop(timeout)
        self.check_clean_exit()
        return rc


@pytest.fixture
def start_example(pytestconfig):
    """Factory: start_example(name, env=None, cwd=None) -> a running
    Example, stopped with SIGTERM and checked at teardown."""
    started = []

    def start(name, env=None, cwd=None):
        ex = Example(example_bin(pytestconfig, name), name, env, cwd)
        started.append(ex)
        return ex.start()

    yield start
    finish_all(started)


def module_example(pytestconfig, name, env=None, cwd=None):
    """Generator body for a module-scoped example fixture."""
    ex = Example(example_bin(pytestconfig, name), name, env, cwd)
    ex.start()
    yield ex
    finish(ex, during="the module")


# ---- HTTP with the standard library -----------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self):
        return self.body.decode("utf-8")

    def json(self):
        import json
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:300]!r}>"


class Client:
    """A keep-alive HTTP/1.1 connection (http.client)."""

    def __init__(self, port, timeout=10.0):
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def request(self, method, path, headers=None, body=None):
        if isinstance(body, str):
            body = body.encode()
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        return Response(r.status, r.getheaders(), data)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def request(port, method, path, headers=None, body=None, timeout=10.0):
    """One request on a fresh connection."""
    with Client(port, timeout) as c:
        return c.request(method, path, headers, body)


def curl(*args, timeout=30):
    """Runs curl -sS; returns CompletedProcess (stdout bytes)."""
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout - 2),
                           *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)
