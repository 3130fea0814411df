"""Fixtures for the smoke tests of the examples (examples/*.c).

    pytest tests/examples --hello PATH --echo PATH --rest PATH \
        --upload PATH --auth PATH

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
import re
import signal
import subprocess
import tempfile
import time

import pytest

HOST = "127.0.0.1"
EXAMPLES = ("hello", "echo", "rest", "upload", "auth")
SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "LeakSanitizer",
    "runtime error",
    "UndefinedBehaviorSanitizer",
)
LISTEN_RE = re.compile(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)")


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
    env = dict(os.environ)
    for k in ("PORT", "UPLOAD_DIR", "CORS_ORIGIN", "SESSION_SECRET",
              "RATE_LIMIT", "RATE_BURST", "LOOKUP_DELAY_MS"):
        env.pop(k, None)  # only what a test sets
    env["HOST"] = HOST
    asan = env.get("ASAN_OPTIONS", "")
    if "detect_leaks" not in asan:
        asan = (asan + ":" if asan else "") + "detect_leaks=1"
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    if extra:
        env.update(extra)
    return env


class Example:
    """An example server subprocess; start() waits for its listening line."""

    def __init__(self, path, name, env=None, cwd=None):
        self.argv = [path, "0"]
        self.name = name
        self.env = _env(env)
        self.cwd = cwd
        self.proc = None
        self.port = None
        self.returncode = None
        self.tmp = tempfile.TemporaryDirectory(prefix=f"talon-ex-{name}-")
        self.out_path = os.path.join(self.tmp.name, "stdout")
        self.err_path = os.path.join(self.tmp.name, "stderr")

    def start(self, timeout=15.0):
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdout=self._out,
                                     stderr=self._err, env=self.env,
                                     cwd=self.cwd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.stdout())
            if m:
                assert m.group(1) == HOST, m.group(0)
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
                    f"{self.stderr()}\nstdout:\n{self.stdout()}")

    def stdout(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_stdout(self, pattern, timeout=5.0):
        """Waits until stdout matches the regex `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.stdout())
            if m or time.monotonic() > deadline:
                assert m, f"{self.name}: {pattern!r} not in stdout:\n" \
                          f"{self.stdout()}"
                return m
            time.sleep(0.02)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM, wait, and assert a clean exit (code 0, no sanitizer
        report in stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.name} did not exit within {timeout}s of "
                        f"SIGTERM; stderr:\n{self.stderr()}")
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, \
                f"{self.name}: sanitizer report in stderr:\n{err}"
        assert self.returncode == 0, \
            f"{self.name} exited with {self.returncode}; stderr:\n{err}"

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        self.tmp.cleanup()


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
    try:
        for ex in started:
            ex.stop()
    finally:
        for ex in started:
            ex.close()


def module_example(pytestconfig, name, env=None, cwd=None):
    """Generator body for a module-scoped example fixture."""
    ex = Example(example_bin(pytestconfig, name), name, env, cwd)
    ex.start()
    try:
        yield ex
        assert ex.alive(), f"{name} died during the module " \
                           f"(rc={ex.proc.returncode}); stderr:\n{ex.stderr()}"
        ex.stop()
    finally:
        ex.close()


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
