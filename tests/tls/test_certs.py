"""Certificates: SNI with two names, client certificates (optional and
required; accepted and refused), reload while connections stay open
(a call and SIGHUP)."""
import json
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import HOST
from test_https import read_response, request


def curl(srv, name, path="/info", *args):
    cmd = ["curl", "-sS", "--max-time", "10", "--cacert", srv.pki.ca,
           "--resolve", f"{name}:{srv.tls_port}:{HOST}",
           f"https://{name}:{srv.tls_port}{path}", *args]
    return subprocess.run(cmd, capture_output=True)


def peer_cn(srv, name):
    c = srv.ctx()
    with srv.tls_connect(c, server_hostname=name) as s:
        cert = s.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


def test_sni_two_names(make_server, pki):
    srv = make_server(env={
        "TLS_SNI": f"alt.test={pki.path('alt.pem')}:{pki.path('alt.key')}"})
    r = curl(srv, "alt.test")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sni"] == "alt.test"
    r = curl(srv, "localhost")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sni"] == "localhost"
    assert peer_cn(srv, "alt.test") == "alt.test"
    assert peer_cn(srv, "localhost") == "localhost"
    # An unknown name gets the default certificate (and curl refuses it).
    r = curl(srv, "other.test")
    assert r.returncode != 0


def test_client_certificate_optional(make_server, pki):
    srv = make_server(env={"TLS_CLIENT_CA": pki.client_ca})
    r = curl(srv, "localhost", "/info", "--cert", pki.path("client.pem"),
             "--key", pki.path("client.key"))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["client_verified"] is True
    assert "CN=alice" in info["client_subject"]
    r = curl(srv, "localhost")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["client_verified"] is False
    # A certificate from a CA the server does not trust fails the
    # handshake even when certificates are optional: a client that sends
    # one must send a good one.
    r = curl(srv, "localhost", "/info", "--cert", pki.path("stranger.pem"),
             "--key", pki.path("stranger.key"))
    assert r.returncode != 0
    srv.wait_stdout_or_err("certificate verify failed")


def test_client_certificate_required(make_server, pki):
    srv = make_server(env={"TLS_CLIENT_CA": pki.client_ca,
                           "TLS_CLIENT_REQUIRED": "1"})
    r = curl(srv, "localhost", "/info", "--cert", pki.path("client.pem"),
             "--key", pki.path("client.key"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["client_verified"] is True
    r = curl(srv, "localhost")
    assert r.returncode != 0
    r = curl(srv, "localhost", "/info", "--cert", pki.path("stranger.pem"),
             "--key", pki.path("stranger.key"))
    assert r.returncode != 0
    srv.wait_stdout_or_err("peer did not return a certificate")
    srv.assert_alive()


def serial_of(srv):
    with srv.tls_connect() as s:
        return s.getpeercert()["serialNumber"]


@pytest.mark.parametrize("how", ["call", "sighup"])
def test_reload_keeps_connections(make_server, pki, how):
    srv = make_server()
    old = serial_of(srv)
    keep = srv.tls_connect()
    request(keep, "/")
    f = keep.makefile("rb")
    assert read_response(f) == (200, b"hello")
    sess_ctx = srv.ctx()
    with srv.tls_connect(sess_ctx) as s:
        request(s, "/")
        read_response(s.makefile("rb"))
        session = s.session
    srv.cert_path.write_bytes(open(pki.path("server2.pem"), "rb").read())
    srv.key_path.write_bytes(open(pki.path("server2.key"), "rb").read())
    if how == "call":
        request(keep, "/reload", "POST")
        assert read_response(f) == (200, b"ok")
    else:
        srv.proc.send_signal(signal.SIGHUP)
        srv.wait_stdout_or_err("tls_server: reloaded")
    new = serial_of(srv)
    assert new != old
    # The connection opened before the reload goes on.
    for _ in range(3):
        request(keep, "/")
        assert read_response(f) == (200, b"hello")
    keep.close()
    # A session from before the reload resumes (the ticket keys carried
    # over).
    s = sess_ctx.wrap_socket(socket.create_connection((HOST, srv.tls_port)),
                             server_hostname="localhost", session=session)
    with s:
        assert s.session_reused


def test_reload_failure_changes_nothing(make_server, pki):
    srv = make_server()
    old = serial_of(srv)
    srv.key_path.write_bytes(open(pki.path("alt.key"), "rb").read())
    with srv.tls_connect() as s:
        request(s, "/reload", "POST")
        status, body = read_response(s.makefile("rb"))
    assert status == 500
    assert b"mismatch" in body or b"does not match" in body
    assert serial_of(srv) == old
