"""Fixtures for the streamed-body and response-buffer suite: one
bodies_test_server per module with its own upload directory, stopped with
SIGTERM at the end (exit code 0: every buffer given to tl_res_send_buffer
was freed; no sanitizer report)."""
import json
import os
import socket
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import HOST, TalonServer, binary_option, finish  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--bodies-server", action="store", default=None,
                     help="path to bodies_test_server")


@pytest.fixture(scope="session")
def server_bin(pytestconfig):
    return binary_option(pytestconfig, "bodies_server")


class Server(TalonServer):
    def __init__(self, argv):
        super().__init__(argv, tmp_prefix="talon-bodies-", listen_host=HOST,
                         stop_timeout=20)
        self.start()

    def rss_kib(self):
        """The server's resident set now (VmRSS, KiB)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@pytest.fixture(scope="module")
def upload_dir():
    d = tempfile.TemporaryDirectory(prefix="talon-bodies-up-")
    yield d.name
    d.cleanup()


@pytest.fixture(scope="module")
def server(server_bin, upload_dir):
    s = Server([server_bin, "0", upload_dir])
    yield s
    finish(s)


@pytest.fixture(autouse=True)
def empty_upload_dir(upload_dir):
    """After every test nothing may be left in the upload directory: the
    server removes its stream files, and talon the multipart files, also
    when the client vanished mid-upload."""
    yield
    deadline = time.monotonic() + 5
    while os.listdir(upload_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(upload_dir) == []


def read_response(sock, timeout=30.0):
    """Reads one HTTP/1.1 response (Content-Length or until close);
    returns (status, headers dict lower-cased, body)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(min(1 << 20, n - len(rest)))
            if not chunk:
                raise EOFError(rest)
            rest += chunk
        return status, headers, rest[:n], rest[n:]
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest, b""


def connect(port, timeout=30.0):
    s = socket.create_connection((HOST, port), timeout=timeout)
    return s


def get_json(port, path):
    with connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                  .encode())
        st, _, body, _ = read_response(s)
        assert st == 200, body
        return json.loads(body)


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()
