"""Deferred responses, aborts, streaming with backpressure, sendfile."""
import os
import socket
import threading
import time

import pytest

from conftest import (LARGE_FILE_SIZE, SMALL_FILE_SIZE, Closed, Conn, build_request,
                      big_pattern, curl, get, sha256, stats, wait_stats)


def test_async_response(server):
    t0 = time.monotonic()
    r = get(server.port, "/async?ms=50&id=7")
    dt = time.monotonic() - t0
    assert (r.status, r.text) == (200, "async:7")
    assert r.header("X-Async") == "1"
    assert 0.045 <= dt < 1.0


def test_async_concurrent(server):
    """Deferred responses do not block the loop: 10 connections each
    waiting 300 ms finish in well under 10 x 300 ms."""
    results = {}
    conns = [Conn(server.port) for _ in range(10)]
    try:
        t0 = time.monotonic()
        for i, c in enumerate(conns):
            c.send(build_request("GET", f"/async?ms=300&id={i}"))
        # the server still answers other requests meanwhile
        r = get(server.port, "/hello")
        assert r.status == 200
        assert time.monotonic() - t0 < 0.25
        for i, c in enumerate(conns):
            results[i] = c.read_response().text
        dt = time.monotonic() - t0
    finally:
        for c in conns:
            c.close()
    assert results == {i: f"async:{i}" for i in range(10)}
    assert dt < 1.2


def test_async_client_disconnect_counts_abort(server):
    before = stats(server.port)
    c = Conn(server.port)
    c.send(build_request("GET", "/async?ms=300&id=gone"))
    time.sleep(0.05)
    c.close()
    st = wait_stats(server.port, "aborts", before["aborts"] + 1)
    assert st["aborts"] == before["aborts"] + 1
    time.sleep(0.35)  # past the timer: it must not fire for the aborted one
    st = stats(server.port)
    assert st["async_done"] == before["async_done"]
    assert st["aborts"] == before["aborts"] + 1
    # still serving, and async still works
    assert get(server.port, "/async?ms=10&id=after").text == "async:after"


def test_async_disconnect_with_pipelined_requests_behind(server):
    before = stats(server.port)
    c = Conn(server.port)
    c.send(build_request("GET", "/async?ms=300&id=x") * 3)
    time.sleep(0.05)
    c.close()
    st = wait_stats(server.port, "aborts", before["aborts"] + 1)
    time.sleep(0.35)
    st = stats(server.port)
    assert st["aborts"] == before["aborts"] + 1
    assert st["async_done"] == before["async_done"]
    assert get(server.port, "/hello").status == 200


def test_async_middleware_client_disconnect(server):
    before = stats(server.port)
    c = Conn(server.port)
    c.send(build_request("GET", "/trace", headers={"X-Async-MW": "1"}))
    time.sleep(0.005)
    c.close()
    st = wait_stats(server.port, "mw_async_aborts", before["mw_async_aborts"] + 1)
    assert st["mw_async_aborts"] == before["mw_async_aborts"] + 1
    assert get(server.port, "/hello").status == 200


def test_half_close_during_deferred_response(server):
    """A client that shuts down its write side while its response is
    deferred either still gets the response, or is treated as gone: then
    the abort callback runs (and the timer does not answer later)."""
    before = stats(server.port)
    with Conn(server.port) as c:
        c.send(build_request("GET", "/async?ms=100&id=half"))
        time.sleep(0.02)
        c.sock.shutdown(socket.SHUT_WR)
        try:
            r = c.read_response(timeout=3)
            answered = True
            assert r.text == "async:half"
        except Closed as e:
            answered = False
            assert e.partial == b""
    time.sleep(0.15)
    st = stats(server.port)
    if answered:
        assert (st["aborts"], st["async_done"]) == (before["aborts"], before["async_done"] + 1)
    else:
        assert (st["aborts"], st["async_done"]) == (before["aborts"] + 1, before["async_done"])


def test_half_close_after_sync_request(server):
    with Conn(server.port) as c:
        c.send(build_request("GET", "/hello") * 2)
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().body == b"hello, world\n"
        assert c.read_response().body == b"hello, world\n"
        assert c.wait_closed(2)


def test_big_stream_curl(server):
    n = 8 << 20
    p = curl(f"http://127.0.0.1:{server.port}/big?bytes={n}")
    assert p.returncode == 0, p.stderr
    assert len(p.stdout) == n
    assert p.stdout == big_pattern(n)


def test_big_stream_slow_reader(server):
    n = 6 << 20
    before = stats(server.port)
    with Conn(server.port, timeout=20, rcvbuf=32768) as c:
        c.send(build_request("GET", "/big?bytes=%d" % n))
        time.sleep(0.4)  # let the server hit backpressure
        slow = bytearray()
        for _ in range(20):  # read slowly at first, then at full speed
            slow += c.sock.recv(16384)
            time.sleep(0.01)
        c.buf = bytes(slow)
        r = c.read_response(timeout=20)
        assert r.status == 200
        assert r.header("Transfer-Encoding") == "chunked"
        assert len(r.body) == n
        assert r.body == big_pattern(n)
        # the connection is reusable afterwards
        assert c.request("GET", "/hello").body == b"hello, world\n"
    st = stats(server.port)
    assert st["big_done"] == before["big_done"] + 1
    assert st["drains"] > before["drains"], "tl_res_write never reported backpressure"


def test_big_stream_client_disconnects(server):
    before = stats(server.port)
    c = Conn(server.port, rcvbuf=16384)
    c.send(build_request("GET", "/big?bytes=%d" % (32 << 20)))
    time.sleep(0.1)
    c.sock.recv(65536)
    c.close()
    st = wait_stats(server.port, "big_aborts", before["big_aborts"] + 1)
    assert st["big_aborts"] == before["big_aborts"] + 1
    assert st["big_done"] == before["big_done"]
    assert get(server.port, "/hello").status == 200


def test_big_stream_http10(server):
    n = 1 << 20
    with Conn(server.port, timeout=10) as c:
        c.send(build_request("GET", f"/big?bytes={n}", version="1.0"))
        r = c.read_response()
        assert r.header("Transfer-Encoding") is None
        assert len(r.body) == n and r.body == big_pattern(n)


@pytest.mark.parametrize("name,size", [("small.bin", SMALL_FILE_SIZE),
                                       ("large.bin", LARGE_FILE_SIZE),
                                       ("empty.bin", 0)])
def test_send_file_curl(server, files_dir, tmp_path, name, size):
    out = tmp_path / name
    p = curl("-D", "-", "-o", str(out), f"http://127.0.0.1:{server.port}/file/{name}")
    assert p.returncode == 0, p.stderr
    head = p.stdout.decode()
    assert head.startswith("HTTP/1.1 200")
    assert f"Content-Length: {size}\r\n" in head
    assert "Content-Type: application/octet-stream\r\n" in head
    data = out.read_bytes()
    assert len(data) == size
    assert sha256(data) == files_dir[1][name]


def test_send_file_pipelined_raw(server, files_dir):
    with Conn(server.port, timeout=15) as c:
        c.send(build_request("GET", "/file/large.bin")
               + build_request("GET", "/file/small.bin")
               + build_request("GET", "/hello")
               + build_request("GET", "/file/large.bin"))
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response()
        assert sha256(r1.body) == files_dir[1]["large.bin"]
        assert sha256(r2.body) == files_dir[1]["small.bin"]
        assert r3.body == b"hello, world\n"
        assert sha256(r4.body) == files_dir[1]["large.bin"]


def test_send_file_slow_reader(server, files_dir):
    with Conn(server.port, timeout=15, rcvbuf=16384) as c:
        c.send(build_request("GET", "/file/large.bin"))
        time.sleep(0.3)
        r = c.read_response()
        assert len(r.body) == LARGE_FILE_SIZE
        assert sha256(r.body) == files_dir[1]["large.bin"]
        assert c.request("GET", "/hello").status == 200


def test_send_file_client_disconnects(start_server):
    """Own server: a crash here (e.g. SIGPIPE) must not hide other tests.
    Clients that go away in the middle of a sendfile body must not hurt
    the process."""
    server = start_server()
    for _ in range(3):
        try:
            c = Conn(server.port, rcvbuf=8192)
            c.send(build_request("GET", "/file/large.bin"))
            c.sock.recv(1000)
            c.close()  # unread data: the kernel sends RST
        except OSError:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    assert server.alive(), \
        f"server died after a client disconnect: rc={server.proc.returncode}"
    assert get(server.port, "/hello").status == 200


def test_send_file_head(server):
    with Conn(server.port) as c:
        r = c.request("HEAD", "/file/large.bin")
        assert r.status == 200
        assert r.header("Content-Length") == str(LARGE_FILE_SIZE)
        assert r.body == b""
        r = c.request("GET", "/file/small.bin")
        assert len(r.body) == SMALL_FILE_SIZE


def test_send_file_missing_and_dir(server):
    r = get(server.port, "/file/missing.bin")
    assert (r.status, r.body) == (404, b"no such file")
    r = get(server.port, "/file/adir")
    assert (r.status, r.body) == (404, b"no such file")


def test_send_file_http10(server, files_dir):
    with Conn(server.port, timeout=10) as c:
        c.send(build_request("GET", "/file/large.bin", version="1.0"))
        r = c.read_response()
        assert r.header("Content-Length") == str(LARGE_FILE_SIZE)
        assert sha256(r.body) == files_dir[1]["large.bin"]
        assert c.wait_closed(2)


def test_parallel_downloads(server, files_dir):
    errors = []

    def worker():
        try:
            with Conn(server.port, timeout=20) as c:
                r = c.request("GET", "/file/large.bin")
                if sha256(r.body) != files_dir[1]["large.bin"]:
                    errors.append("large mismatch")
                r = c.request("GET", "/big?bytes=%d" % (2 << 20))
                if r.body != big_pattern(2 << 20):
                    errors.append("big mismatch")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert errors == []
