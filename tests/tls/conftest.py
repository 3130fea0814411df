"""Fixtures for the TLS suite (HTTPS and WSS in talon).

    pytest tests/tls --tls-server PATH/tls_server

A test CA, server certificates (localhost and 127.0.0.1; alt.test for
SNI; a second localhost one for reload) and client certificates (one
from a client CA, one from a stranger CA) are made once per session
with the openssl command, in a temporary directory: no key is ever
committed. Each test gets a fresh tls_server (plain and TLS listeners)
unless it uses the shared `srv` fixture; at teardown the server must exit
0 with no sanitizer report.
"""
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from talon_server import TalonServer, binary_option, finish  # noqa: E402

HOST = "127.0.0.1"
TLS_RE = re.compile(r"listening on https://[^\s:]+:(?P<port>\d+)")


def pytest_addoption(parser):
    parser.addoption("--tls-server", action="store", default=None,
                     help="path to the tls_server binary")
    parser.addoption("--hello", action="store", default=None,
                     help="path to the hello example")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ext(path, text):
    with open(path, "w") as f:
        f.write(text)


class PKI:
    """Certificates made at test time (EC P-256, fast to make)."""

    def __init__(self, d):
        self.dir = d
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes"]
        for ca in ("ca", "client-ca", "stranger-ca"):
            _openssl("req", "-x509", *ec, "-days", "2", "-subj",
                     f"/CN=talon test {ca}", "-keyout", f"{ca}.key",
                     "-out", f"{ca}.pem", cwd=d)
        self.ca = os.path.join(d, "ca.pem")
        self.client_ca = os.path.join(d, "client-ca.pem")
        self.leaf("server", "ca", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self.leaf("server2", "ca", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1")
        self.leaf("alt", "ca", "alt.test", "subjectAltName=DNS:alt.test")
        self.leaf("client", "client-ca", "alice",
                  "extendedKeyUsage=clientAuth")
        self.leaf("stranger", "stranger-ca", "mallory",
                  "extendedKeyUsage=clientAuth")

    def leaf(self, name, ca, cn, ext):
        d = self.dir
        _ext(os.path.join(d, f"{name}.ext"), ext + "\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
                 f"/CN={cn}", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem",
                 "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "2",
                 "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)

    def path(self, name):
        return os.path.join(self.dir, name)


@pytest.fixture(scope="session")
def pki():
    with tempfile.TemporaryDirectory(prefix="talon-pki-") as d:
        yield PKI(d)


class TlsServer(TalonServer):
    def start(self, *a, **kw):
        super().start(*a, **kw)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = TLS_RE.search(self.stdout())
            if m:
                self.tls_port = int(m.group("port"))
                return self
            time.sleep(0.01)
        pytest.fail("no https line: " + self.stdout())

    def ctx(self, **kw):
        c = ssl.create_default_context(cafile=self.pki.ca)
        for k, v in kw.items():
            setattr(c, k, v)
        return c

    def tls_connect(self, ctx=None, server_hostname="localhost",
                    timeout=10.0):
        s = socket.create_connection((HOST, self.tls_port), timeout=timeout)
        return (ctx or self.ctx()).wrap_socket(
            s, server_hostname=server_hostname)

    def raw_connect(self, timeout=10.0):
        return socket.create_connection((HOST, self.tls_port),
                                        timeout=timeout)

    def wait_stdout_or_err(self, text, timeout=5.0):
        """Waits until `text` shows in stderr (the TLS log); returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            err = self.stderr()
            if text in err:
                return err
            time.sleep(0.02)
        pytest.fail(f"{text!r} not logged; stderr:\n{self.stderr()}")

    def https(self, path="/"):
        return f"https://localhost:{self.tls_port}{path}"


@pytest.fixture
def make_server(request, pki, tmp_path):
    binary = binary_option(request.config, "tls_server")
    servers = []
    static = tmp_path / "static"
    static.mkdir()
    with open(static / "big.bin", "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 123))

    def make(cert="server", env=None, files=None):
        # The server reads its certificate from copies, so a test can
        # replace them and reload.
        cert_path = tmp_path / "cert.pem"
        key_path = tmp_path / "key.pem"
        cert_path.write_bytes(open(pki.path(cert + ".pem"), "rb").read())
        key_path.write_bytes(open(pki.path(cert + ".key"), "rb").read())
        e = {"TLS_CERT": str(cert_path), "TLS_KEY": str(key_path),
             "TLS_HANDSHAKE_MS": "1500"}
        e.update(env or {})
        s = TlsServer([binary, str(static)], env=e, name="tls_server",
                      tmp_prefix="talon-tls-")
        s.pki = pki
        s.static = static
        s.cert_path, s.key_path = cert_path, key_path
        servers.append(s)
        return s.start()

    yield make
    for s in servers:
        finish(s)


@pytest.fixture
def srv(make_server):
    return make_server()
