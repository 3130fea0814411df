"""wss://: the client's TLS (verification against a CA file or the system
store, host name check, verification off) against talon's tls_server,
with certificates made at test time by the TLS suite's PKI."""

import pytest

from conftest import HOST, TalonServer, binary_option, finish

@pytest.fixture(scope="module")
def pki(tls_mod, tmp_path_factory):
    return tls_mod.PKI(str(tmp_path_factory.mktemp("pki")))

@pytest.fixture(scope="module")
def make_tls(request, pki, tls_mod):
    servers = []

    def make(cert="server"):
        s = tls_mod.TlsServer(
            [binary_option(request.config, "tls_server")],
            env={"TLS_CERT": pki.path(cert + ".pem"),
                 "TLS_KEY": pki.path(cert + ".key")},
            name="tls_server", tmp_prefix="talon-wsc-tls-")
        servers.append(s)
        return s.start()
    yield make
    for s in servers:
        finish(s)

@pytest.fixture(scope="module")
def tls(make_tls):
    return make_tls()

def test_wss_echo_with_ca_file(probe, tls, pki):
    text = "x" * 70000  # more than a TLS record
    r = probe(f"wss://localhost:{tls.tls_port}/ws",
              ["text hello", f"text {text}", "big 1000000", "await 3",
               "close 1000"], args=["--ca", pki.ca])
    m = r.messages()
    assert m[0]["data"] == "hello" and m[1]["data"] == text
    assert m[2]["len"] == 1000000
    assert r.one("close")["code"] == 1000

def test_wss_ip_literal_checks_ip_san(probe, tls, pki):
    r = probe(f"wss://{HOST}:{tls.tls_port}/ws", ["text ip", "await 1",
                                                 "close 1000"],
              args=["--ca", pki.ca])
    assert r.messages()[0]["data"] == "ip"

def test_wss_deflate(probe, tls, pki):
    text = "compress me " * 5000
    r = probe(f"wss://localhost:{tls.tls_port}/ws",
              [f"text {text}", "await 1", "close 1000"],
              args=["--ca", pki.ca, "--deflate", "shared"])
    assert r.messages()[0]["data"] == text

def test_verification_fails_without_the_ca(probe, tls):
    # The test CA is not in the system store.
    f = probe(f"wss://localhost:{tls.tls_port}/ws", []).one("fail")
    assert f["reason"] == "tls"
    assert "certificate verify failed" in f["message"]

def test_host_name_mismatch(probe, make_tls, pki):
    alt = make_tls("alt")  # a certificate for alt.test only
    f = probe(f"wss://localhost:{alt.tls_port}/ws", [],
              args=["--ca", pki.ca]).one("fail")
    assert f["reason"] == "tls"
    assert "hostname mismatch" in f["message"] or "IP" in f["message"]

def test_no_check_accepts_any_certificate(probe, tls):
    r = probe(f"wss://localhost:{tls.tls_port}/ws",
              ["text unchecked", "await 1", "close 1000"],
              args=["--no-check"])
    assert r.messages()[0]["data"] == "unchecked"

def test_missing_ca_file(probe, tls):
    f = probe(f"wss://localhost:{tls.tls_port}/ws", [],
              args=["--ca", "/nonexistent/ca.pem"]).one("fail")
    assert f["reason"] == "tls" and "CA file" in f["message"]

def test_plain_ws_to_the_tls_port(probe, tls):
    f = probe(f"ws://{HOST}:{tls.tls_port}/ws", []).one("fail")
    assert f["reason"] == "status" and f["status"] == 400

def test_wss_to_a_plain_port(probe, tls, pki):
    f = probe(f"wss://localhost:{tls.port}/ws", [],
              args=["--ca", pki.ca]).one("fail")
    assert f["reason"] == "tls"

def test_wscat_over_tls(wscat, tls, pki):
    r = wscat(f"wss://localhost:{tls.tls_port}/ws", "secure\n",
              args=["--ca", pki.ca])
    assert r.rc == 0 and r.stdout == "secure\n", r.stderr
    r = wscat(f"wss://localhost:{tls.tls_port}/ws", "dev\n",
              args=["--no-check"])
    assert r.rc == 0 and r.stdout == "dev\n", r.stderr
    r = wscat(f"wss://localhost:{tls.tls_port}/ws", "x\n")
    assert r.rc == 1
    assert "certificate verify failed" in r.stderr
