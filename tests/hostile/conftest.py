"""Fixtures for talon's hostile-client tests.

    pytest -s tests/hostile --hostile-server PATH/hostile_server

Every test gets a fresh hostile_server (so memory numbers belong to one
attack) and checks, besides the behaviour it attacks:
  - canaries: while the attack runs, a background thread keeps making
    fresh connections that must get a correct HTTP answer and a correct
    WebSocket echo; one more canary round runs after the attack;
  - memory: the server's VmRSS (from /proc) before and at its peak during
    the attack (sampled by the canary thread and by the test), against a
    bound each test explains. The numbers are printed (run with -s).
At teardown the server gets SIGTERM and must exit 0 with no sanitizer
report (LeakSanitizer catches leaks under -DTALON_SANITIZE=ON).

TALON_TEST_SCALE (a float, default 1; when unset, 0.1 for a server built
with ASan and 0.05 under a TALON_TEST_WRAPPER such as valgrind) scales
the largest counts.
"""
import json
import select
import os
import socket
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "ws"))
from talon_server import TalonServer, binary_option, finish  # noqa: E402
from wsclient import (HOST, OP_BINARY, OP_TEXT, Closed,  # noqa: E402,F401
                      HttpResponse, Timeout, WSClient, accept_for,
                      build_frame, http_request, parse_head, read_head,
                      read_http_response, upgrade_request)

# The limits compiled into hostile_server.c.
MAX_HEADER_BYTES = 4096
MAX_BODY_BYTES = 65536
HEADER_TIMEOUT = 1.0
KEEPALIVE_TIMEOUT = 1.0
SEND_TIMEOUT = 5.0
WRITE_HIGH_WATER = 64 * 1024
WS_MAX_PAYLOAD = 1024 * 1024
ECHO_MAX_BACKPRESSURE = 1024 * 1024
FEED_MAX_BACKPRESSURE = 256 * 1024
WS_IDLE_TIMEOUT = 1.0
WS_MESSAGE_TIMEOUT = 2.0  # /slowmsg
BIG_BYTES = 8 * 1024 * 1024
KiB = 1024
MiB = 1024 * 1024

# Timeouts are checked by a sweep every quarter of the shortest HTTP
# timeout (250 ms here) and WebSocket idle deadlines at most once a
# second; a loaded 2-core machine (or ASan) adds more. Deadlines get this
# much slack on top of the configured timeout.
SLACK = 2.5


def pattern(n, off=0):
    """n bytes of the server's body pattern (i % 251) from offset off."""
    block = bytes(range(251))
    start = off % 251
    reps = (start + n) // 251 + 1
    return (block * reps)[start:start + n]


def pytest_addoption(parser):
    parser.addoption("--hostile-server", action="store", default=None,
                     help="path to the hostile_server binary")


class HostileServer(TalonServer):
    def __init__(self, argv):
        # A small ASan quarantine keeps freed memory from counting as
        # resident for long, so RSS means something under ASan too.
        super().__init__(argv, name="hostile_server",
                         tmp_prefix="talon-hostile-", stop_timeout=15.0,
                         asan_extra=("quarantine_size_mb=8",))
        self._asan = None

    def is_asan(self):
        if self._asan is None:
            with open(f"/proc/{self.proc.pid}/maps") as f:
                self._asan = "libasan" in f.read()
        return self._asan

    def stats(self, timeout=10.0):
        r = http_request(self.port, "/stats", timeout=timeout)
        assert r.status == 200, r
        return json.loads(r.body)


    def rss_or_zero(self):
        try:
            return self.rss_kib()
        except (OSError, AssertionError):
            return 0


def scale():
    """The TALON_TEST_SCALE factor (see the module docstring)."""
    v = os.environ.get("TALON_TEST_SCALE")
    return float(v) if v else None


def scaled(srv, n, asan_default=0.1, minimum=1):
    f = scale()
    if f is None and os.environ.get("TALON_TEST_WRAPPER"):
        f = 0.05  # under valgrind or another wrapper
    if f is None:
        f = asan_default if srv.is_asan() else 1.0
    return max(minimum, int(n * f))


# ---- canaries ----------------------------------------------------------------

def canary_round(port, timeout=10.0):
    """One fresh HTTP request and one fresh WebSocket echo; raises on any
    wrong answer."""
    r = http_request(port, "/hello", timeout=timeout)
    assert (r.status, r.body) == (200, b"hello\n"), r
    payload = os.urandom(16).hex().encode()
    with WSClient.connect(port, "/echo", timeout=timeout) as c:
        c.echo(payload, OP_TEXT, timeout=timeout)
        c.echo(payload * 50, OP_BINARY, timeout=timeout)
        c.close_handshake(timeout=timeout)


class Canaries:
    """A thread that runs canary rounds back to back (with `pause`
    between them) and samples the server's RSS, until stopped.

        with Canaries(srv) as can:
            ... attack ...
        # on exit: at least `min_rounds` rounds, none failed
    """

    def __init__(self, srv, pause=0.05, min_rounds=2):
        self.srv = srv
        self.pause = pause
        self.min_rounds = min_rounds
        self.ok = 0
        self.errors = []
        self.peak_rss = srv.rss_kib()
        self.latencies = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        self.peak_rss = max(self.peak_rss, self.srv.rss_or_zero())

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            t0 = time.monotonic()
            try:
                canary_round(self.srv.port)
                self.ok += 1
                self.latencies.append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - reported below
                self.errors.append(repr(e))
            self.sample()
            self._stop.wait(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def wait_rounds(self, n, timeout=30.0):
        """Waits until at least n canary rounds have succeeded."""
        deadline = time.monotonic() + timeout
        while self.ok < n and not self.errors:
            assert time.monotonic() < deadline, \
                f"only {self.ok} canary rounds in {timeout}s"
            time.sleep(0.02)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # The attack is over: make sure enough rounds ran during it.
            self.wait_rounds(self.min_rounds)
        self._stop.set()
        self._thread.join(30)
        if exc_type is not None:
            return False
        assert not self.errors, \
            f"canary failed during the attack ({self.ok} ok): " \
            f"{self.errors[:3]}"
        lat = sorted(self.latencies)
        print(f"  canaries: {self.ok} rounds ok, max "
              f"{lat[-1] * 1000:.0f} ms" if lat else "  canaries: none")
        return False


def after_attack(srv):
    """The server is up and serves a fresh canary after the attack."""
    srv.assert_alive("the attack")
    canary_round(srv.port)


def asan_slack(srv):
    """Extra KiB a memory bound allows under ASan (its shadow memory,
    redzones and quarantine of freed blocks are resident too)."""
    return 32 * 1024 if srv.is_asan() else 0


def report_memory(name, base, peak, bound, extra=""):
    """Prints the memory numbers and asserts growth < bound (all KiB)."""
    growth = peak - base
    line = (f"  MEM {name}: base {base} KiB, peak {peak} KiB, growth "
            f"{growth} KiB, bound {bound} KiB{(', ' + extra) if extra else ''}")
    print(line)
    assert growth < bound, "memory bound exceeded: " + line
    return growth


# ---- raw sockets ---------------------------------------------------------------

def connect(port, timeout=5.0, rcvbuf=None, nodelay=True):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((HOST, port))
    if nodelay:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def ws_connect(port, path="/echo", rcvbuf=None, timeout=5.0):
    """A WebSocket client like WSClient.connect, with SO_RCVBUF set before
    connecting (shrinking it on an open connection makes the kernel drop
    segments that fit the window it already advertised, and the stalls
    that follow are the client's doing, not the server's)."""
    data, key = upgrade_request(port, path)
    s = connect(port, timeout=timeout, rcvbuf=rcvbuf)
    s.sendall(data)
    head, rest = read_head(s, timeout)
    status, reason, hdrs = parse_head(head)
    assert status == 101, head
    assert dict(hdrs).get("sec-websocket-accept") == accept_for(key), head
    return WSClient(s, rest, HttpResponse(status, reason, hdrs, b"", head))


def rst_close(s):
    """Closes with a reset (SO_LINGER 0): the peer sees ECONNRESET."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    s.close()


def read_until_closed(s, timeout):
    """Reads until EOF/reset; returns (bytes, closed?)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, False
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return buf, True
        if not chunk:
            return buf, True
        buf += chunk


def collect_for(socks, done, got, pause):
    """For `pause` seconds, reads what the sockets not yet done (done[i]
    None) receive into got[i]; a socket's EOF or reset sets done[i] to
    the time it was seen."""
    until = time.monotonic() + pause
    while True:
        left = until - time.monotonic()
        open_ = [s for i, s in enumerate(socks) if done[i] is None]
        if left <= 0 or not open_:
            return
        ready, _, _ = select.select(open_, [], [], left)
        for s in ready:
            i = socks.index(s)
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except BlockingIOError:
                continue
            if chunk:
                got[i] += chunk
            else:
                done[i] = time.monotonic()


def http_get(path):
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").encode()


# ---- fixtures -------------------------------------------------------------------

@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "hostile_server")


@pytest.fixture
def srv(server_bin, request):
    """A fresh hostile_server for one test; checked at teardown."""
    s = HostileServer([server_bin, "0"])
    s.start()
    # A first round allocates what any server allocates once (buffers,
    # zlib-free WebSocket state, malloc arenas): measurements start after.
    canary_round(s.port)
    print(f"\n[{request.node.name}] server pid {s.proc.pid}"
          f"{' (ASan)' if s.is_asan() else ''}")
    yield s
    finish(s, during=request.node.name)
