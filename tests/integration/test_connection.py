"""Connection handling: keep-alive, pipelining, HTTP/1.0, split input,
chunked request bodies, Expect: 100-continue."""
import socket
import subprocess
import time

import pytest

from conftest import Conn, build_request, chunked, curl, get


def test_keep_alive_many_requests(server):
    with Conn(server.port) as c:
        for i in range(10):
            r = c.request("GET", f"/echo?i={i}")
            assert r.status == 200
            assert r.json()["qs"] == f"i={i}"
            assert r.header("Connection") in (None, "keep-alive")
        assert c.buf == b""
        # and the connection is still open and serving
        assert c.request("GET", "/hello").body == b"hello, world\n"


def test_keep_alive_exact_bytes(server):
    """Nothing but the responses arrives: after two requests exactly two
    responses are on the wire."""
    with Conn(server.port) as c:
        c.send(build_request("GET", "/hello"))
        r1 = c.read_response()
        c.send(build_request("GET", "/hello"))
        r2 = c.read_response()
        assert r1.body == r2.body == b"hello, world\n"
        time.sleep(0.1)
        c.sock.settimeout(0.2)
        try:
            extra = c.sock.recv(4096)
        except socket.timeout:
            extra = None
        assert extra is None, f"unexpected extra bytes: {c.buf + extra!r}"


def test_pipelining_20(server):
    with Conn(server.port) as c:
        c.send(b"".join(build_request("GET", f"/echo?i={i}") for i in range(20)))
        for i in range(20):
            r = c.read_response()
            assert r.status == 200
            assert r.json()["qs"] == f"i={i}"
        assert c.buf == b""
        assert c.request("GET", "/hello").body == b"hello, world\n"


def test_pipelining_with_async_in_middle(server):
    reqs = [build_request("GET", "/echo?i=0"),
            build_request("GET", "/async?ms=60&id=a"),
            build_request("GET", "/echo?i=2"),
            build_request("POST", "/body", body=b"xyz"),
            build_request("GET", "/trace", headers={"X-Async-MW": "1"}),
            build_request("GET", "/async?ms=5&id=b"),
            build_request("GET", "/echo?i=6")]
    with Conn(server.port) as c:
        c.send(b"".join(reqs))
        r = [c.read_response() for _ in reqs]
        assert r[0].json()["qs"] == "i=0"
        assert r[1].text == "async:a"
        assert r[2].json()["qs"] == "i=2"
        assert r[3].body == b"xyz"
        assert r[4].text == "app1,app2,async,handler"
        assert r[5].text == "async:b"
        assert r[6].json()["qs"] == "i=6"
        assert c.buf == b""


def test_pipelining_posts_with_bodies(server):
    bodies = [b"a" * n for n in (0, 1, 100, 5000, 3)]
    with Conn(server.port) as c:
        c.send(b"".join(build_request("POST", "/body", body=b) for b in bodies)
               + build_request("POST", "/body",
                               headers={"Transfer-Encoding": "chunked"},
                               body=chunked(b"chunky", [2])))
        for b in bodies:
            r = c.read_response()
            assert r.status == 200
            assert r.body == b
        assert c.read_response().body == b"chunky"


def test_pipelining_large_batch_in_pieces(server):
    """200 pipelined requests sent in odd-sized pieces."""
    data = b"".join(build_request("GET", f"/p/{i}") for i in range(200))
    with Conn(server.port, timeout=10) as c:
        for i in range(0, len(data), 777):
            c.send(data[i:i + 777])
        for i in range(200):
            r = c.read_response()
            assert r.text == f"param:{i}"


def test_http10_closes_by_default(server):
    with Conn(server.port) as c:
        r = c.request("GET", "/hello", version="1.0")
        assert r.status == 200
        assert r.body == b"hello, world\n"
        assert r.header("Connection", "close").lower() == "close"
        assert c.wait_closed(2.0)


def test_http10_keep_alive(server):
    with Conn(server.port) as c:
        for i in range(3):
            r = c.request("GET", f"/echo?i={i}", headers={"Connection": "keep-alive"},
                          version="1.0")
            assert r.status == 200
            assert r.json()["version"] == 10
            assert r.json()["qs"] == f"i={i}"
            assert r.header("Connection").lower() == "keep-alive"
        r = c.request("GET", "/hello", version="1.0")
        assert r.body == b"hello, world\n"
        assert c.wait_closed(2.0)


def test_http11_connection_close(server):
    with Conn(server.port) as c:
        r = c.request("GET", "/hello", headers={"Connection": "close"})
        assert r.body == b"hello, world\n"
        assert r.header("Connection") == "close"
        assert c.wait_closed(2.0)


def test_http10_streaming_unframed(server):
    with Conn(server.port) as c:
        c.send(build_request("GET", "/stream", version="1.0"))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Transfer-Encoding") is None
        assert r.body == b"piece-0\npiece-1\npiece-2\npiece-3\npiece-4\nend\n"
        assert c.eof


GET_WITH_HEADERS = (b"GET /echo/split?a=1&b=two HTTP/1.1\r\nHost: test\r\n"
                    b"X-One: 1\r\nX-Two: second value\r\n\r\n")


def _echo_summary(r):
    j = r.json()
    return (r.status, j["path"], j["qs"], j["headers"])


def test_request_split_at_every_byte(server):
    ref = _echo_summary(get(server.port, "/echo/split?a=1&b=two",
                            headers=[("X-One", "1"), ("X-Two", "second value")]))
    assert ref[3] == [["Host", "test"], ["X-One", "1"], ["X-Two", "second value"]]
    for i in range(1, len(GET_WITH_HEADERS)):
        with Conn(server.port) as c:
            c.send(GET_WITH_HEADERS[:i])
            time.sleep(0.003)
            c.send(GET_WITH_HEADERS[i:])
            assert _echo_summary(c.read_response()) == ref, f"split at {i}"


def test_request_byte_by_byte(server):
    with Conn(server.port) as c:
        for _ in range(2):  # twice on one connection
            c.send_slowly(GET_WITH_HEADERS, piece=1, delay=0.001)
            r = c.read_response()
            assert r.json()["headers"] == [["Host", "test"], ["X-One", "1"],
                                           ["X-Two", "second value"]]


def test_pipelined_split_at_every_byte(server):
    data = build_request("GET", "/p/a") + build_request("GET", "/p/b")
    for i in range(1, len(data), 3):
        with Conn(server.port) as c:
            c.send(data[:i])
            time.sleep(0.002)
            c.send(data[i:])
            assert c.read_response().text == "param:a", f"split at {i}"
            assert c.read_response().text == "param:b", f"split at {i}"


def test_post_body_split(server):
    body = bytes(range(256)) * 40
    with Conn(server.port) as c:
        c.send_slowly(build_request("POST", "/body", body=body), piece=997,
                      delay=0.002)
        r = c.read_response()
        assert r.header("X-Body-Len") == str(len(body))
        assert r.body == body


def test_chunked_request_body(server):
    body = b"hello chunked world " * 50
    for sizes in ([1], [7, 3], [1000], [len(body)]):
        with Conn(server.port) as c:
            r = c.request("POST", "/body",
                          headers={"Transfer-Encoding": "chunked"},
                          body=chunked(body, sizes))
            assert r.status == 200
            assert r.header("X-Body-Len") == str(len(body))
            assert r.body == body


def test_chunked_with_extensions_and_trailers(server):
    raw = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n"
           b"6\r\n world\r\n"
           b"0\r\nX-Trailer: yes\r\n\r\n")
    with Conn(server.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.body == b"hello world"
        assert c.request("GET", "/hello").body == b"hello, world\n"


def test_chunked_body_split_at_every_byte(server):
    raw = (b"PUT /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + chunked(b"abcdefghij", [3]))
    head_len = raw.index(b"\r\n\r\n") + 4
    for i in range(head_len - 2, len(raw)):
        with Conn(server.port) as c:
            c.send(raw[:i])
            time.sleep(0.003)
            c.send(raw[i:])
            r = c.read_response()
            assert (r.status, r.body) == (200, b"abcdefghij"), f"split at {i}"


def test_chunked_body_byte_by_byte_then_next_request(server):
    raw = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
           + chunked(b"0123456789abcdef" * 4, [5, 11]))
    with Conn(server.port) as c:
        c.send_slowly(raw, piece=1, delay=0.0005)
        assert c.read_response().body == b"0123456789abcdef" * 4
        assert c.request("GET", "/hello").body == b"hello, world\n"


def test_chunked_response(server):
    with Conn(server.port) as c:
        c.send(build_request("GET", "/stream"))
        r = c.read_response()
        assert r.status == 200
        assert r.chunked
        assert r.header("Transfer-Encoding") == "chunked"
        assert r.header("Content-Length") is None
        assert r.body == b"piece-0\npiece-1\npiece-2\npiece-3\npiece-4\nend\n"
        assert c.request("GET", "/stream").body.endswith(b"end\n")


def test_streamed_with_content_length(server):
    with Conn(server.port) as c:
        r = c.request("GET", "/stream-cl")
        assert r.header("Content-Length") == "10"
        assert r.header("Transfer-Encoding") is None
        assert r.body == b"0123456789"
        assert c.request("GET", "/hello").body == b"hello, world\n"


def test_curl_chunked_upload(server):
    p = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "curl-chunked-data",
             f"http://127.0.0.1:{server.port}/body")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"curl-chunked-data"


def test_expect_100_continue(server):
    with Conn(server.port) as c:
        c.send(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(allow_1xx=True, timeout=2)
        assert r.status == 100
        c.send(b"hello")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello")


def test_expect_100_continue_curl(server):
    body = b"x" * 2000  # curl sends Expect: 100-continue for large bodies
    p = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", "8", "-H", "Expect: 100-continue",
         "--data-binary", "@-", f"http://127.0.0.1:{server.port}/body"],
        input=body, stdout=-1, stderr=-1, timeout=10)
    assert p.returncode == 0, p.stderr
    assert p.stdout == body
    assert b"HTTP/1.1 100 Continue" in p.stderr


def test_expect_100_continue_too_large(server):
    with Conn(server.port) as c:
        c.send(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=2)
        assert r.status == 413


def test_expect_unknown_417(server):
    with Conn(server.port) as c:
        c.send(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n"
               b"Expect: something-else\r\n\r\nab")
        r = c.read_response(timeout=2)
        assert r.status == 417
