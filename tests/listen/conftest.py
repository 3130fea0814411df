"""Fixtures for the listening suite (hosts of tl_app_listen: names, dual
stack, unix sockets, inherited sockets; several listeners on one app).

    pytest tests/listen --listen-server PATH/listen_server

Each test starts its own listen_server (tests/listen/listen_server.c) on
the listeners it needs and reads the ports from its "listener I HOST port
P" lines; at teardown the server must exit 0 with no sanitizer report.
Clients are real: curl (--unix-socket), http.client, raw sockets, and
Debian's python3-websockets (unix_connect).
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from talon_server import (TalonServer, binary_option,  # noqa: E402
                          finish_all, sanitizer_env)

READY_RE = re.compile(
    r"listener 0 (?P<host>\S+) port (?P<port>\d+)\n(?:.*\n)*?.*ready")
LISTENER_RE = re.compile(r"listener (\d+) (\S+) port (\d+)")
# Variables of the test's environment that must not reach the server.
DROP = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def pytest_addoption(parser):
    parser.addoption("--listen-server", action="store", default=None,
                     help="path to the listen_server binary")


class ListenServer(TalonServer):
    def __init__(self, argv, **kw):
        super().__init__(argv, name="listen_server", tmp_prefix="talon-ls-",
                         drop_env=DROP, **kw)
        self.listen_re = READY_RE

    def ports(self):
        """{listener index: bound port} from the listener lines."""
        return {int(i): int(p)
                for i, _, p in LISTENER_RE.findall(self.stdout())}


@pytest.fixture
def server(pytestconfig):
    """Factory: server(*args, env=None, pass_fds=(), prefix=()) starts
    listen_server ARGS (prefix: a command put before it, e.g. activate.py)
    and waits for it to listen; stopped and checked at teardown."""
    binary = binary_option(pytestconfig, "listen_server")
    started = []

    def start(*args, env=None, pass_fds=(), prefix=()):
        s = ListenServer([*prefix, binary, *args], env=env, pass_fds=pass_fds)
        started.append(s)
        return s.start()

    yield start
    finish_all(started)


@pytest.fixture
def fail_listen(pytestconfig):
    """fail_listen(*args, pass_fds=(), prefix=(), env=None): runs
    listen_server ARGS expecting the listen to fail; returns its stderr
    after checking exit code 1, no sanitizer report and nothing served."""
    binary = binary_option(pytestconfig, "listen_server")

    def run(*args, pass_fds=(), prefix=(), env=None):
        r = subprocess.run([*prefix, binary, *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=sanitizer_env(env, drop=DROP),
                           pass_fds=pass_fds, timeout=30, text=True)
        assert r.returncode == 1, r
        assert "ready" not in r.stdout, r.stdout
        for mark in ("Sanitizer", "runtime error"):
            assert mark not in r.stderr, r.stderr
        return r.stderr

    return run


@pytest.fixture
def sockdir():
    """A short temporary directory for socket files (sun_path is 108
    bytes)."""
    with tempfile.TemporaryDirectory(prefix="tl-") as d:
        yield d


# ---- clients -----------------------------------------------------------------

def curl(*args, timeout=30):
    """curl -sS ARGS; the CompletedProcess (stdout bytes)."""
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout - 2),
                           *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def curl_unix(path, route="/", *args, tls=False):
    """The body of GET ROUTE over the unix socket at PATH (curl
    --unix-socket), failing the test on a curl error or a status >= 400."""
    scheme = "https" if tls else "http"
    r = curl("--fail", *(["-k"] if tls else []), "--unix-socket", path,
             *args, f"{scheme}://localhost{route}")
    assert r.returncode == 0, r.stderr
    return r.stdout


def curl_tcp(host, port, route="/", tls=False):
    scheme = "https" if tls else "http"
    h = f"[{host}]" if ":" in host else host
    r = curl("--fail", *(["-k"] if tls else []), f"{scheme}://{h}:{port}{route}")
    assert r.returncode == 0, r.stderr
    return r.stdout


def http_get(family, addr, route="/", timeout=10):
    """GET ROUTE on a fresh raw connection (family AF_INET, AF_INET6 or
    AF_UNIX; addr as socket.connect takes it); (status, body bytes)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(addr)
        s.sendall(f"GET {route} HTTP/1.1\r\nHost: x\r\nConnection: close"
                  f"\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def who(family, addr):
    status, body = http_get(family, addr, "/who")
    assert status == 200, body
    return json.loads(body)


def make_cert(d):
    """A self-signed EC certificate for localhost in D; (cert, key)."""
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost", "-keyout", key,
                    "-out", cert],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return cert, key


HOSTS = """127.0.0.1 localhost
127.0.0.1 dual.test
::1 dual.test
0.0.0.0 wild.test
:: wild.test
"""
_unshare_ok = None


def hosts_prefix(d):
    """A command to put before the server's so that it resolves names
    with its own hosts file (HOSTS, in D): dual.test is 127.0.0.1 and ::1,
    wild.test 0.0.0.0 and ::. A mount namespace of its own (unshare -rm)
    binds the file over /etc/hosts; the resolver is the real one. None
    where namespaces are not allowed."""
    global _unshare_ok
    path = os.path.join(d, "hosts")
    with open(path, "w") as f:
        f.write(HOSTS)
    cmd = ["unshare", "-rm", "sh", "-c",
           'mount --bind "$0" /etc/hosts && exec "$@"', path]
    if _unshare_ok is None:
        r = subprocess.run([*cmd, "getent", "ahosts", "dual.test"],
                           capture_output=True, text=True, timeout=10)
        _unshare_ok = r.returncode == 0 and "::1" in r.stdout
    return cmd if _unshare_ok else None


def tcp_listener(host="127.0.0.1"):
    """A listening TCP socket on HOST, any free port."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(64)
    return s


def unix_listener(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    return s
