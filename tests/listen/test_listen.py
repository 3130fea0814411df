"""Hosts of tl_app_listen and tl_app_add_listener over real sockets: unix
domain sockets (HTTP with curl --unix-socket, sendfile, WebSocket,
stale files, the path limit, the file mode), names (localhost), the dual
stack "::", names that do not resolve, several kinds of listener on one
app (TCP, unix, TLS on both), and inherited sockets (systemd socket
activation, fd:N). One worker; the workers are test_listen_workers.py."""
import asyncio
import hashlib
import os
import socket
import ssl
import stat
import time

import pytest
import websockets

from conftest import (curl_tcp, curl_unix, hosts_prefix, http_get, make_cert,
                      tcp_listener, unix_listener, who)
from talon_server import (activation_prefix, has_ipv6_loopback,
                          skip_if_wrapped)


# ---- unix domain sockets ---------------------------------------------------

def test_unix_socket_serves_http(server, sockdir):
    path = os.path.join(sockdir, "a.sock")
    s = server("unix:" + path, "0")
    assert s.ports() == {0: 0}  # no TCP port
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert curl_unix(path) == b"hello"
    info = curl_unix(path, "/who")
    assert b'"remote":"unix:"' in info and b'"worker":0' in info
    # Keep-alive and pipelining over the unix stream.
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(path)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  b"Connection: close\r\n\r\nabc")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2, data
    assert data.endswith(b"abc"), data
    s.stop()
    s.check_clean_exit()
    assert not os.path.exists(path)  # removed at stop


def test_unix_socket_mode(server, sockdir):
    umask = os.umask(0o022)
    os.umask(umask)
    plain = os.path.join(sockdir, "plain.sock")
    server("unix:" + plain, "0")
    assert stat.S_IMODE(os.lstat(plain).st_mode) == 0o777 & ~umask
    shared = os.path.join(sockdir, "group.sock")
    server("--mode", "0660", "unix:" + shared, "0")
    assert stat.S_IMODE(os.lstat(shared).st_mode) == 0o660
    assert curl_unix(shared) == b"hello"


def test_unix_socket_large_bodies_and_sendfile(server, sockdir, tmp_path):
    data = os.urandom(6 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    path = os.path.join(sockdir, "big.sock")
    server("--static", str(tmp_path), "unix:" + path, "0")
    got = curl_unix(path, "/static/f.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    big = curl_unix(path, "/big?n=9000000")
    assert len(big) == 9000000 and big[:26] == b"abcdefghijklmnopqrstuvwxyz"
    # A body up to the server.
    body = os.urandom(3 << 20)
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(20)
        c.connect(path)
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        out = b""
        while chunk := c.recv(1 << 20):
            out += chunk
    assert out.split(b"\r\n\r\n", 1)[1] == body


def test_websocket_over_unix_socket(server, sockdir):
    path = os.path.join(sockdir, "ws.sock")
    server("unix:" + path, "0")

    async def talk():
        async with websockets.unix_connect(path, "ws://localhost/ws",
                                           max_size=None) as ws:
            await ws.send("over a unix socket")
            assert await ws.recv() == "over a unix socket"
            blob = os.urandom(4 << 20)
            await ws.send(blob)
            assert await ws.recv() == blob
    asyncio.run(asyncio.wait_for(talk(), 30))


def read_slowly(path, route, stall, pause, limit):
    """Requests ROUTE over the unix socket, reads nothing for STALL
    seconds, then up to 64 KiB every PAUSE seconds for at most LIMIT
    seconds; (the bytes read, whether the server closed the connection)."""
    got = b""
    with socket.socket(socket.AF_UNIX) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.settimeout(10)
        c.connect(path)
        c.sendall(f"GET {route} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(stall)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
            time.sleep(pause)
    return got, False


def test_send_timeout_on_a_unix_socket(server, sockdir):
    """The peer's progress is seen on a unix socket too: a client that
    stops reading is closed after send_timeout_ms, one that reads slowly
    but steadily is not."""
    path = os.path.join(sockdir, "slow.sock")
    server("--send-timeout", "800", "unix:" + path, "0")
    n = 64 << 20
    # Nothing for 2 s: closed; what the socket buffers held arrives.
    stalled, closed = read_slowly(path, f"/big?n={n}", 2.0, 0, 20.0)
    assert closed and 0 < len(stalled) < n, len(stalled)
    # A read every 0.1 s for 2 s (two and a half timeouts): kept open.
    steady, closed = read_slowly(path, f"/big?n={n}", 0, 0.1, 2.0)
    assert not closed and len(steady) < n, len(steady)
    assert curl_unix(path) == b"hello"


def test_stale_socket_file_is_replaced(server, sockdir):
    path = os.path.join(sockdir, "stale.sock")
    old = socket.socket(socket.AF_UNIX)
    old.bind(path)  # a server that died without removing its file
    old.close()
    assert os.path.exists(path)
    server("unix:" + path, "0")
    assert curl_unix(path) == b"hello"


def test_live_socket_file_is_refused(fail_listen, sockdir):
    path = os.path.join(sockdir, "live.sock")
    with unix_listener(path) as live:
        err = fail_listen("unix:" + path, "0")
        assert "EADDRINUSE" in err, err
        # A listener opened before the one that failed is closed, and
        # its socket file removed.
        first = os.path.join(sockdir, "first.sock")
        err = fail_listen("unix:" + first, "0", "unix:" + path, "0")
        assert "EADDRINUSE" in err and not os.path.exists(first), err
        # The other server's socket is untouched.
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(path)
            conn, _ = live.accept()
            conn.close()


def test_other_file_is_refused(fail_listen, sockdir):
    path = os.path.join(sockdir, "notes.txt")
    with open(path, "w") as f:
        f.write("keep me")
    err = fail_listen("unix:" + path, "0")
    assert "EEXIST" in err, err
    with open(path) as f:
        assert f.read() == "keep me"


def test_unix_path_too_long(fail_listen, sockdir):
    long = os.path.join(sockdir, "x" * (108 - len(sockdir)))
    assert len(long) >= 108
    err = fail_listen("unix:" + long, "0")
    assert "ENAMETOOLONG" in err, err
    # Also as an added listener: refused when it is added.
    err = fail_listen("127.0.0.1", "0", "unix:" + long, "0")
    assert "ENAMETOOLONG" in err, err


def test_longest_unix_path(server, sockdir):
    fits = os.path.join(sockdir, "y" * (107 - len(sockdir) - 1))
    assert len(fits) == 107  # and its NUL: sun_path's 108 bytes
    server("unix:" + fits, "0")
    assert curl_unix(fits) == b"hello"


def test_bad_hosts(fail_listen):
    assert "TL_EINVAL" in fail_listen("unix:", "0")
    assert "TL_EINVAL" in fail_listen("fd:x", "0")
    assert "TL_EINVAL" in fail_listen("127.0.0.1", "70000")
    # stdin is /dev/null: not a socket.
    assert "ENOTSOCK" in fail_listen("fd:0", "0")
    assert "EBADF" in fail_listen("fd:1000", "0")
    # No socket activation for this process.
    assert "TL_ENOENT" in fail_listen("systemd", "0")


# ---- names and addresses -----------------------------------------------------

def test_name_that_does_not_resolve(fail_listen):
    err = fail_listen("no-such-host.invalid", "0")  # RFC 6761: never resolves
    assert "EAI_NONAME" in err or "EAI_AGAIN" in err, err


def test_localhost_binds_what_it_resolves_to(server):
    s = server("localhost", "0")
    port = s.ports()[0]
    assert port > 0
    addrs = {ai[4][0] for ai in socket.getaddrinfo(
        "localhost", port, type=socket.SOCK_STREAM)}
    assert addrs
    for a in addrs:
        fam = socket.AF_INET6 if ":" in a else socket.AF_INET
        assert who(fam, (a, port))["worker"] == 0, a
    # A loopback the name does not give is not bound.
    for a, fam in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        if a in addrs or (fam == socket.AF_INET6 and not has_ipv6_loopback()):
            continue
        with pytest.raises(ConnectionRefusedError):
            http_get(fam, (a, port))


@skip_if_wrapped("the server runs under unshare")
@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
def test_name_with_both_families(server, tmp_path):
    """A name that resolves to 127.0.0.1 and ::1 (a hosts file of the
    server's own): a socket on each, one port for both (port 0 picked
    once); one that resolves to 0.0.0.0 and :: binds both wildcards (the
    IPv6 one IPv6-only, else the second bind would fail)."""
    prefix = hosts_prefix(str(tmp_path))
    if prefix is None:
        pytest.skip("no mount namespace (unshare -rm) for a hosts file")
    s = server("dual.test", "0", "wild.test", "0", prefix=prefix)
    ports = s.ports()
    assert ports[0] > 0 and ports[1] > 0
    for port in ports.values():
        assert who(socket.AF_INET, ("127.0.0.1", port))["remote"] == \
            "127.0.0.1"
        assert who(socket.AF_INET6, ("::1", port))["remote"] == "::1"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
def test_dual_stack(server):
    s = server("::", "0")
    port = s.ports()[0]
    assert who(socket.AF_INET6, ("::1", port))["remote"] == "::1"
    # IPv4 clients reach the IPv6 wildcard: IPV6_V6ONLY is off.
    assert who(socket.AF_INET, ("127.0.0.1", port))["remote"] == \
        "::ffff:127.0.0.1"


# ---- several listeners on one app ------------------------------------------

def test_tcp_unix_and_tls_together(server, sockdir, tmp_path):
    cert, key = make_cert(str(tmp_path))
    plain_unix = os.path.join(sockdir, "plain.sock")
    tls_unix = os.path.join(sockdir, "tls.sock")
    s = server("--cert", cert, "--key", key,
               "127.0.0.1", "0",
               "unix:" + plain_unix, "0",
               "--tls", "127.0.0.1", "0",
               "--tls", "unix:" + tls_unix, "0",
               "localhost", "0")
    ports = s.ports()
    assert ports[1] == 0 and ports[3] == 0
    assert ports[0] > 0 and ports[2] > 0 and ports[4] > 0
    assert len({ports[0], ports[2], ports[4]}) == 3
    assert b'"tls":false' in curl_tcp("127.0.0.1", ports[0], "/who")
    assert b'"tls":false' in curl_unix(plain_unix, "/who")
    assert b'"tls":true' in curl_tcp("127.0.0.1", ports[2], "/who", tls=True)
    got = curl_unix(tls_unix, "/who", tls=True)
    assert b'"tls":true' in got and b'"remote":"unix:"' in got
    assert len(curl_unix(tls_unix, "/big?n=3000000", tls=True)) == 3000000

    async def wss():
        ctx = ssl.create_default_context(cafile=cert)
        async with websockets.unix_connect(tls_unix, "wss://localhost/ws",
                                           ssl=ctx, server_hostname="localhost",
                                           max_size=None) as ws:
            blob = os.urandom(1 << 20)
            await ws.send(blob)
            assert await ws.recv() == blob
    asyncio.run(asyncio.wait_for(wss(), 30))
    assert curl_tcp("localhost", ports[4]) == b"hello"
    s.stop()
    s.check_clean_exit()
    assert not os.path.exists(plain_unix) and not os.path.exists(tls_unix)


# ---- inherited sockets ----------------------------------------------------

@skip_if_wrapped("the activation wrapper is a Python program")
def test_socket_activation_tcp_and_unix(server, sockdir):
    path = os.path.join(sockdir, "act.sock")
    with tcp_listener() as tcp, unix_listener(path) as unix:
        port = tcp.getsockname()[1]
        s = server("systemd", "0",
                   prefix=activation_prefix([tcp.fileno(), unix.fileno()],
                                          names="web:local"),
                   pass_fds=(tcp.fileno(), unix.fileno()))
        assert s.ports() == {0: port}
        assert who(socket.AF_INET, ("127.0.0.1", port))["worker"] == 0
        assert curl_unix(path) == b"hello"
        # Read and unset, as sd_listen_fds(1) does.
        assert curl_unix(path, "/env") == \
            b'{"LISTEN_PID":null,"LISTEN_FDS":null,"LISTEN_FDNAMES":null}'
        s.stop()
        s.check_clean_exit()
        # An inherited socket file is not the server's to remove.
        assert os.path.exists(path)


@skip_if_wrapped("the activation wrapper is a Python program")
def test_socket_activation_by_name(server, sockdir):
    path = os.path.join(sockdir, "named.sock")
    with tcp_listener() as tcp, unix_listener(path) as unix:
        fds = [tcp.fileno(), unix.fileno()]
        s = server("systemd:local", "0", "systemd:web", "0",
                   prefix=activation_prefix(fds, names="web:local"),
                   pass_fds=fds)
        ports = s.ports()
        assert ports == {0: 0, 1: tcp.getsockname()[1]}
        assert curl_unix(path) == b"hello"
        assert curl_tcp("127.0.0.1", ports[1]) == b"hello"


@skip_if_wrapped("the activation wrapper is a Python program")
def test_socket_activation_for_another_process(fail_listen):
    with tcp_listener() as tcp:
        err = fail_listen("systemd", "0",
                          prefix=activation_prefix([tcp.fileno()], pid=1),
                          pass_fds=(tcp.fileno(),))
        assert "TL_ENOENT" in err, err
        err = fail_listen("systemd:nope", "0",
                          prefix=activation_prefix([tcp.fileno()], names="web"),
                          pass_fds=(tcp.fileno(),))
        assert "TL_ENOENT" in err, err


def test_inherited_descriptor(server, sockdir):
    path = os.path.join(sockdir, "fd.sock")
    with tcp_listener() as tcp, unix_listener(path) as unix:
        s = server(f"fd:{tcp.fileno()}", "0", f"fd:{unix.fileno()}", "0",
                   pass_fds=(tcp.fileno(), unix.fileno()))
        assert s.ports() == {0: tcp.getsockname()[1], 1: 0}
        assert curl_tcp("127.0.0.1", tcp.getsockname()[1]) == b"hello"
        assert curl_unix(path, "/who").startswith(b'{"worker":0')
