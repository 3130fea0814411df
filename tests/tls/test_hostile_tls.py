"""Hostile clients on the TLS port: plain HTTP, garbage, half a
ClientHello, a handshake that never finishes, a flood of them, a peer
vanishing mid-record, renegotiation. Each must cost only its own
connection: the server stays up, a canary is served, a clear line is
logged, and nothing leaks (the ASan build's exit check)."""
import json
import os
import re
import socket
import ssl
import subprocess
import time

from conftest import HOST


def canary(srv):
    with srv.tls_connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while not data.endswith(b"hello"):
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk


def closed_by_server(sock, timeout=10.0):
    """Reads until EOF or reset; returns what came."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return got
            got += b
    except ConnectionResetError:
        return got


class MemClient:
    """A TLS client over a raw socket through memory BIOs, so a test can
    send exactly the bytes it wants."""

    def __init__(self, srv):
        ctx = srv.ctx()
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out,
                                server_hostname="localhost")
        self.sock = srv.raw_connect()

    def client_hello(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def handshake(self):
        self.sock.sendall(self.client_hello())
        while True:
            data = self.sock.recv(65536)
            assert data
            self.inc.write(data)
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            finally:
                pending = self.out.read()
                if pending:
                    self.sock.sendall(pending)

    def record(self, data):
        self.obj.write(data)
        return self.out.read()


def test_plain_http_on_tls_port(srv):
    s = srv.raw_connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    got = closed_by_server(s)
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"https://" in got
    s.close()
    err = srv.wait_stdout_or_err("plain HTTP on the TLS port")
    # tls_server logs through the logger middleware (tl_app_on_log): a
    # timestamped line naming the source and the peer.
    assert re.search(r"^\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
                     r"talon tls: 127\.0\.0\.1: plain HTTP on the TLS "
                     r"port", err, re.M), err
    canary(srv)


def test_tls_log_line_in_json(make_server):
    """With the logger's JSON format the TLS line is a JSON object of type
    "server" carrying the same message."""
    srv = make_server(env={"LOG_FORMAT": "json"})
    s = srv.raw_connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    closed_by_server(s)
    s.close()
    err = srv.wait_stdout_or_err("plain HTTP on the TLS port")
    lines = [json.loads(x) for x in err.splitlines()
             if "plain HTTP" in x]
    assert lines and lines[0]["type"] == "server", err
    assert lines[0]["message"].startswith(
        "tls: 127.0.0.1: plain HTTP on the TLS port"), lines
    assert "time" in lines[0]


def test_garbage(srv):
    for junk in (b"\x16\x03\x01\x00\x05hello", os.urandom(3000),
                 b"\x00" * 100, b"\x16\x03\x03\xff\xff" + b"A" * 70000):
        s = srv.raw_connect()
        try:
            s.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_by_server(s)
        s.close()
    srv.wait_stdout_or_err("handshake failed")
    canary(srv)


def test_half_client_hello_times_out(srv):
    c = MemClient(srv)
    hello = c.client_hello()
    c.sock.sendall(hello[: len(hello) // 2])
    t0 = time.monotonic()
    closed_by_server(c.sock)
    took = time.monotonic() - t0
    assert 1.0 < took < 6.0, took  # TLS_HANDSHAKE_MS=1500, a 375 ms sweep
    srv.wait_stdout_or_err("handshake timeout")
    canary(srv)


def test_silent_connection_times_out(srv):
    s = srv.raw_connect()
    t0 = time.monotonic()
    closed_by_server(s)
    assert time.monotonic() - t0 < 6.0
    srv.wait_stdout_or_err("handshake timeout (nothing received)")


def test_handshake_flood(srv):
    """Hundreds of unfinished handshakes: the canary is served meanwhile,
    and all of them are closed by the handshake timeout."""
    hello = MemClient(srv).client_hello()
    socks = []
    for i in range(300):
        s = srv.raw_connect()
        s.sendall(hello[: 10 + i % 50])
        socks.append(s)
    canary(srv)
    for s in socks:
        closed_by_server(s)
        s.close()
    canary(srv)


def test_vanish_during_handshake_and_mid_record(srv):
    c = MemClient(srv)
    c.sock.sendall(c.client_hello()[:40])
    c.sock.close()
    srv.wait_stdout_or_err("127.0.0.1: the peer left during the handshake")
    c = MemClient(srv)
    c.handshake()
    rec = c.record(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 5000)
    c.sock.sendall(rec[: len(rec) // 2])
    time.sleep(0.2)
    c.sock.close()
    srv.wait_stdout_or_err("the peer left in the middle of a record")
    canary(srv)


def test_renegotiation_refused(srv):
    p = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"{HOST}:{srv.tls_port}",
         "-tls1_2", "-CAfile", srv.pki.ca, "-servername", "localhost"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    time.sleep(0.5)
    p.stdin.write(b"R\n")
    p.stdin.flush()
    time.sleep(0.5)
    p.stdin.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        p.stdin.flush()
    except BrokenPipeError:
        pass
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    text = out.decode(errors="replace")
    assert "RENEGOTIATING" in text
    # The server answers with a no_renegotiation alert; s_client gives up.
    assert "no renegotiation" in text.lower(), text
    srv.assert_alive()
    canary(srv)
