"""Fixtures for the Redis bridge tests: a real redis-server on a free port
(no persistence), and workers_server processes bridged through it.

    pytest tests/redis --workers-server PATH/workers_server
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "workers"))

from talon_server import TalonServer, binary_option  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--workers-server", action="store", default=None,
                     help="path to the workers_server binary")
    parser.addoption("--chat-server", action="store", default=None,
                     help="path to bench/chat_server (optional)")
    parser.addoption("--hello", action="store", default=None,
                     help="path to examples/hello (optional)")
    parser.addoption("--chat", action="store", default=None,
                     help="path to examples/chat (optional)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server subprocess; start() again on the same port after
    kill() brings it back empty."""

    def __init__(self, tmp):
        self.port = free_port()
        self.tmp = tmp
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server")
        if not exe:
            pytest.fail("redis-server is missing: run .ci/install-deps")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def command(self, *args):
        """One command over RESP; returns the decoded reply (str, int,
        list or None)."""
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode() if isinstance(a, str) else a
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            f = s.makefile("rb")
            return read_reply(f)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


def read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise OSError(f"bad reply {line!r}")


class Node(TalonServer):
    """A workers_server process bridged to Redis."""

    def __init__(self, binary, url, workers=2, env=None):
        e = {"REDIS_URL": url}
        e.update(env or {})
        super().__init__([binary, "0", str(workers)], env=e,
                         name="workers_server", tmp_prefix="talon-redis-",
                         stop_timeout=30.0)

    def get(self, path, timeout=30):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
            return r.read().decode()

    def redis_stats(self):
        import json
        return json.loads(self.get("/redis"))

    def wait_state(self, pred, timeout=30, what="state"):
        deadline = time.monotonic() + timeout
        st = self.redis_stats()
        while not pred(st):
            assert time.monotonic() < deadline, f"{what}: {st}"
            time.sleep(0.05)
            st = self.redis_stats()
        return st

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "--workers-server")


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path).start()
    yield r
    r.kill()


@contextlib.contextmanager
def bridged_nodes(server_bin, url, count, env=None, allow_dead=False):
    """`count` bridged processes of 2 workers each, up and connected;
    stopped and checked for a clean exit after (with allow_dead, one that
    already died, killed by the test, is left alone)."""
    started = []
    try:
        for _ in range(count):
            n = Node(server_bin, url, env=env)
            n.start()
            started.append(n)
        for n in started:
            n.wait_state(lambda st: st["state"] == 2, what="connected")
        yield started
        for n in started:
            if not (allow_dead and n.proc.poll() is not None):
                n.stop()
                n.check_clean_exit()
    finally:
        for n in started:
            n.close()


@pytest.fixture
def nodes(server_bin, redis):
    """Three bridged processes of 2 workers each, up and connected."""
    with bridged_nodes(server_bin, redis.url, 3) as started:
        yield started
