"""HTTPS over talon's own TLS: curl with the test CA, what a request
knows of its TLS, versions, ALPN, resumption, pipelining, large bodies,
a slow reader, static files, and a plain listener beside the TLS one."""
import hashlib
import json
import socket
import ssl
import subprocess
import time

import pytest

from conftest import HOST


def curl(srv, path, *args, host="localhost"):
    cmd = ["curl", "-sS", "--max-time", "20", "--cacert", srv.pki.ca,
           "--resolve", f"{host}:{srv.tls_port}:{HOST}", "-D", "-",
           f"https://{host}:{srv.tls_port}{path}", *args]
    r = subprocess.run(cmd, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    return head.decode(), body


def request(sock, path="/", method="GET", body=b"", extra=""):
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length: {len(body)}\r\n{extra}\r\n".encode() + body)


def read_response(f):
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 "), status
    n = None
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            n = int(v)
    return int(status.split()[1]), f.read(n)


def test_curl_https_and_hsts(srv):
    head, body = curl(srv, "/")
    assert body == b"hello"
    assert "Strict-Transport-Security: max-age=600" in head
    # The plain listener of the same app: no HSTS there.
    r = subprocess.run(["curl", "-sS", "-D", "-",
                        f"http://{HOST}:{srv.port}/"], capture_output=True)
    assert r.stdout.endswith(b"hello")
    assert b"Strict-Transport-Security" not in r.stdout


def test_request_knows_its_tls(srv):
    _, body = curl(srv, "/info")
    info = json.loads(body)
    assert info["tls"] is True
    assert info["version"] == "TLSv1.3"
    assert info["alpn"] == "http/1.1"
    assert info["sni"] == "localhost"
    assert info["client_verified"] is False
    r = subprocess.run(["curl", "-sS", f"http://{HOST}:{srv.port}/info"],
                       capture_output=True)
    assert json.loads(r.stdout) == {"tls": False}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls12_and_no_older(srv):
    c = srv.ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    with srv.tls_connect(c) as s:
        assert s.version() == "TLSv1.2"
        request(s, "/info")
        status, body = read_response(s.makefile("rb"))
        assert json.loads(body)["version"] == "TLSv1.2"
    c = srv.ctx()
    c.minimum_version = ssl.TLSVersion.TLSv1
    c.maximum_version = ssl.TLSVersion.TLSv1_1
    c.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        srv.tls_connect(c).close()
    srv.assert_alive()


def test_alpn_h2_only_fails_cleanly(srv):
    c = srv.ctx()
    c.set_alpn_protocols(["h2"])
    with pytest.raises(ssl.SSLError) as e:
        srv.tls_connect(c).close()
    assert "ALERT_NO_APPLICATION_PROTOCOL" in str(e.value) or \
        "no application protocol" in str(e.value).lower()
    c = srv.ctx()
    c.set_alpn_protocols(["h2", "http/1.1"])
    with srv.tls_connect(c) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
    assert "handshake failed" in srv.wait_stdout_or_err("handshake failed")


def test_session_resumption(srv):
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        c = srv.ctx(maximum_version=version)
        with srv.tls_connect(c) as s:
            request(s, "/")
            read_response(s.makefile("rb"))
            sess = s.session
        s2 = c.wrap_socket(socket.create_connection((HOST, srv.tls_port)),
                           server_hostname="localhost", session=sess)
        with s2:
            assert s2.session_reused, version
            request(s2, "/info")
            _, body = read_response(s2.makefile("rb"))
            assert json.loads(body)["resumed"] is True


def test_pipelining(srv):
    with srv.tls_connect() as s:
        n = 100
        s.sendall(b"".join(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                           for _ in range(n)))
        f = s.makefile("rb")
        for _ in range(n):
            assert read_response(f) == (200, b"hello")


def test_large_bodies_both_ways(srv):
    data = bytes(range(256)) * (8 * 4096)  # 8 MiB
    with srv.tls_connect() as s:
        request(s, "/echo", "POST", data)
        f = s.makefile("rb")
        status, body = read_response(f)
        assert status == 200 and body == data
        request(s, "/big?n=20000000")
        status, body = read_response(f)
        assert len(body) == 20000000
        assert body[:26] == b"abcdefghijklmnopqrstuvwxyz"
        assert body[-1:] == bytes([ord("a") + (20000000 - 1) % 26])


def test_slow_reader_gets_everything(srv):
    """Backpressure: a reader that takes its time still gets every byte
    of a large response, and others are served meanwhile."""
    n = 16 * 1024 * 1024
    s = srv.tls_connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    request(s, f"/big?n={n}")
    time.sleep(0.5)  # the server's socket fills; the rest waits corked
    _, body = curl(srv, "/")
    assert body == b"hello"
    f = s.makefile("rb")
    status, body = read_response(f)
    assert status == 200 and len(body) == n
    s.close()


def test_static_file_over_tls(srv):
    want = open(srv.static / "big.bin", "rb").read()
    head, body = curl(srv, "/static/big.bin")
    assert hashlib.sha256(body).digest() == hashlib.sha256(want).digest()
    # And a range, and over the plain listener (sendfile) the same bytes.
    head, body = curl(srv, "/static/big.bin", "-r", "1000-1999")
    assert body == want[1000:2000]
    r = subprocess.run(["curl", "-sS", f"http://{HOST}:{srv.port}/static/"
                        "big.bin"], capture_output=True)
    assert r.stdout == want


def test_many_connections_keep_alive(srv):
    socks = [srv.tls_connect() for _ in range(50)]
    for round_ in range(3):
        for s in socks:
            request(s, "/")
        for s in socks:
            assert read_response(s.makefile("rb")) == (200, b"hello")
    for s in socks:
        s.close()
