"""The examples' TLS from the environment (examples/common.h): hello
with TLS_CERT/TLS_KEY serves HTTPS beside HTTP, SIGHUP reloads."""
import signal
import socket
import subprocess
import time

from conftest import TLS_RE, TalonServer, binary_option, finish, HOST


def test_hello_serves_https_and_reloads(request, pki):
    hello = binary_option(request.config, "hello")
    s = TalonServer([hello, "0"], name="hello", env={
        "HOST": HOST, "TLS_PORT": "0",
        "TLS_CERT": pki.path("server.pem"),
        "TLS_KEY": pki.path("server.key")}).start()
    try:
        port = int(s.wait_stdout(TLS_RE).group("port"))
        r = subprocess.run(
            ["curl", "-sS", "--cacert", pki.ca, "--resolve",
             f"localhost:{port}:{HOST}", f"https://localhost:{port}/"],
            capture_output=True)
        assert r.stdout == b"Hello World", r.stderr
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "certificates reloaded" not in s.stderr():
            assert time.monotonic() < deadline, s.stderr()
            time.sleep(0.05)
    finally:
        finish(s)


def test_hello_bad_certificate_is_a_clear_error(request, pki):
    hello = binary_option(request.config, "hello")
    r = subprocess.run([hello, "0"], env={
        "TLS_CERT": pki.path("server.pem"), "TLS_KEY": pki.path("alt.key"),
        "TLS_PORT": "0"}, capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"hello: TLS:" in r.stderr


def test_hello_https_on_a_unix_socket(request, pki, tmp_path):
    """HOST and TLS_HOST both unix sockets: HTTP on one, HTTPS on the
    other; with HOST a unix socket and no TLS_HOST, a clear error (one
    socket file cannot serve both)."""
    import os
    import re
    import tempfile
    hello = binary_option(request.config, "hello")
    tls_env = {"TLS_CERT": pki.path("server.pem"),
               "TLS_KEY": pki.path("server.key")}
    with tempfile.TemporaryDirectory(prefix="tl-tls-") as d:
        plain, secure = os.path.join(d, "h.sock"), os.path.join(d, "s.sock")
        r = subprocess.run([hello, "0"], env={"HOST": "unix:" + plain,
                                              **tls_env},
                           capture_output=True, timeout=10)
        assert r.returncode == 1
        assert b"set TLS_HOST" in r.stderr, r.stderr
        s = TalonServer([hello, "0"], name="hello", env={
            "HOST": "unix:" + plain, "TLS_HOST": "unix:" + secure,
            **tls_env})
        s.listen_re = re.compile(r"listening on (?P<host>unix:\S+) \(curl "
                                 r"--unix-socket \S+ http://\S+\)(?P<port>)")
        try:
            s.start()
            s.wait_stdout(re.escape(f"listening on unix:{secure} (curl -k "
                                    f"--unix-socket {secure} "
                                    f"https://localhost/)"))
            r = subprocess.run(["curl", "-sS", "--unix-socket", plain,
                                "http://localhost/"], capture_output=True)
            assert r.stdout == b"Hello World", r.stderr
            r = subprocess.run(["curl", "-sS", "--cacert", pki.ca,
                                "--unix-socket", secure,
                                "https://localhost/"], capture_output=True)
            assert r.stdout == b"Hello World", r.stderr
        finally:
            finish(s)
        assert not os.path.exists(plain) and not os.path.exists(secure)


def test_hello_without_logger_prints_nothing_of_tls(request, pki):
    """The library writes nothing itself: hello has no logger, so plain
    HTTP on its TLS port is answered (400) and nothing reaches stderr."""
    hello = binary_option(request.config, "hello")
    s = TalonServer([hello, "0"], name="hello", env={
        "HOST": HOST, "TLS_PORT": "0",
        "TLS_CERT": pki.path("server.pem"),
        "TLS_KEY": pki.path("server.key")}).start()
    try:
        port = int(s.wait_stdout(TLS_RE).group("port"))
        c = socket.create_connection((HOST, port), timeout=5)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            got += chunk
        c.close()
        assert got.startswith(b"HTTP/1.1 400 "), got
        # The line would be written before the server closed the socket.
        time.sleep(0.2)
        assert "plain HTTP" not in s.stderr(), s.stderr()
        assert "tls" not in s.stderr(), s.stderr()
    finally:
        finish(s)
