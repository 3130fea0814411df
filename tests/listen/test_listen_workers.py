"""Two workers on one unix socket, on inherited sockets and on a name:
SO_REUSEPORT does not apply to unix sockets, so the workers accept from
one socket (copies of worker 0's descriptor); both must serve. The
ThreadSanitizer stage of .ci/run runs this (label workers)."""
import asyncio
import json
import os
import socket

import websockets

import pytest

from conftest import curl_unix, hosts_prefix, tcp_listener, unix_listener
from talon_server import (activation_prefix, has_ipv6_loopback,
                          skip_if_wrapped)

ROUNDS = 40     # batches of connections, at most
BATCH = 16      # connections open at once in a batch


def workers_seen(family, addr):
    """Opens BATCH connections at once (so that the workers' loops compete
    for them), asks each /who, and repeats until both workers answered or
    ROUNDS ran out; the set of workers that answered."""
    seen = set()
    for _ in range(ROUNDS):
        conns = []
        for _ in range(BATCH):
            c = socket.socket(family, socket.SOCK_STREAM)
            c.settimeout(10)
            c.connect(addr)
            conns.append(c)
        for c in conns:
            c.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close"
                      b"\r\n\r\n")
        for c in conns:
            data = b""
            while chunk := c.recv(65536):
                data += chunk
            c.close()
            seen.add(json.loads(data.split(b"\r\n\r\n", 1)[1])["worker"])
        if seen == {0, 1}:
            break
    return seen


def test_two_workers_share_a_unix_socket(server, sockdir):
    path = os.path.join(sockdir, "w.sock")
    s = server("--workers", "2", "unix:" + path, "0", "127.0.0.1", "0")
    assert workers_seen(socket.AF_UNIX, path) == {0, 1}
    assert workers_seen(socket.AF_INET, ("127.0.0.1", s.ports()[1])) == {0, 1}

    async def talk():
        # WebSockets on both workers' connections.
        socks = [await websockets.unix_connect(path, "ws://localhost/ws")
                 for _ in range(8)]
        for i, ws in enumerate(socks):
            await ws.send(f"m{i}")
        for i, ws in enumerate(socks):
            assert await ws.recv() == f"m{i}"
        for ws in socks:
            await ws.close()
    asyncio.run(asyncio.wait_for(talk(), 30))
    s.stop()
    s.check_clean_exit()
    assert not os.path.exists(path)


@skip_if_wrapped("the activation wrapper is a Python program")
def test_two_workers_on_inherited_sockets(server, sockdir):
    path = os.path.join(sockdir, "act.sock")
    with tcp_listener() as tcp, unix_listener(path) as unix:
        fds = [tcp.fileno(), unix.fileno()]
        server("--workers", "2", "systemd", "0",
               prefix=activation_prefix(fds), pass_fds=fds)
        assert workers_seen(socket.AF_UNIX, path) == {0, 1}
        assert workers_seen(socket.AF_INET,
                            ("127.0.0.1", tcp.getsockname()[1])) == {0, 1}
        assert curl_unix(path) == b"hello"


@skip_if_wrapped("the server runs under unshare")
@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)")
def test_two_workers_on_a_name_with_both_families(server, tmp_path):
    """Every worker binds each address of the name (SO_REUSEPORT), on the
    one port worker 0 was given."""
    prefix = hosts_prefix(str(tmp_path))
    if prefix is None:
        pytest.skip("no mount namespace (unshare -rm) for a hosts file")
    s = server("--workers", "2", "dual.test", "0", prefix=prefix)
    port = s.ports()[0]
    assert workers_seen(socket.AF_INET, ("127.0.0.1", port)) == {0, 1}
    assert workers_seen(socket.AF_INET6, ("::1", port)) == {0, 1}
