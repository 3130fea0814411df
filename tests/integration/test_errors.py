"""Bad input: clear answers, limits, timeouts, isolation."""
import socket
import time

import pytest

from conftest import (HEADER_TIMEOUT, KEEPALIVE_TIMEOUT, MAX_BODY_BYTES,
                      MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL_BYTES, Closed,
                      Conn, build_request, chunked, get)


def error_then_close(port, data, status, slowly=False, timeout=3.0):
    """Sends `data`, expects a `status` response and then the close."""
    with Conn(port, timeout=timeout) as c:
        try:
            if slowly:
                c.send_slowly(data, piece=512, delay=0.001)
            else:
                c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before all is sent
        r = c.read_response(timeout=timeout)
        assert r.status == status, r
        assert r.header("Connection") == "close", r
        c.buf = b""
        assert c.wait_closed(timeout), "connection not closed after error"
        return r


def assert_still_serving(port):
    r = get(port, "/hello")
    assert (r.status, r.body) == (200, b"hello, world\n")


@pytest.mark.parametrize("data,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET\r\n\r\n", 400),
    (b"GET /hello HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400),
    (b"GET /hello FTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET /hello HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),
], ids=["garbage", "no-target", "extra", "ftp", "http2", "tls"])
def test_malformed_request_line(server, data, status):
    r = error_then_close(server.port, data, status)
    assert int(r.header("Content-Length")) == len(r.body)
    assert_still_serving(server.port)


def test_malformed_after_good_request(server):
    with Conn(server.port) as c:
        c.send(build_request("GET", "/hello") + b"BROKEN REQUEST\r\n\r\n")
        assert c.read_response().body == b"hello, world\n"
        r = c.read_response()
        assert r.status == 400
        assert c.wait_closed(2)


@pytest.mark.parametrize("slowly", [False, True])
def test_header_block_too_large(server, slowly):
    data = build_request("GET", "/hello", headers={"X-Big": "a" * (MAX_HEADER_BYTES + 100)})
    error_then_close(server.port, data, 431, slowly=slowly)
    assert_still_serving(server.port)


def test_many_headers_over_limit_by_size(server):
    hdrs = [(f"X-H{i}", "v" * 100) for i in range(30)]  # ~3.5 KB < 4096
    r = get(server.port, "/echo", headers=hdrs)
    assert r.status == 200
    hdrs = [(f"X-H{i}", "v" * 200) for i in range(30)]  # ~6.5 KB > 4096
    error_then_close(server.port, build_request("GET", "/echo", headers=hdrs), 431)


def test_header_count_limit(server):
    ok = [(f"X-H{i}", f"v{i}") for i in range(MAX_HEADERS - 1)]  # + Host
    r = get(server.port, "/echo", headers=ok)
    assert r.status == 200
    assert r.json()["nheaders"] == MAX_HEADERS
    # A connection holds 32 header lines itself and takes an array for a
    # request with more: every line arrives, in order, and requests on the
    # same connection after it (fewer lines, then more again) are whole.
    with Conn(server.port) as c:
        for n in (40, 3, MAX_HEADERS - 1, 0, 33):
            hdrs = [(f"X-H{i}", f"v{i}") for i in range(n)]
            r = c.request("GET", "/echo", headers=hdrs)
            assert r.status == 200
            got = r.json()["headers"]
            assert len(got) == n + 1
            assert [tuple(h) for h in got if h[0] != "Host"] == hdrs
    too_many = [(f"X-H{i}", "v") for i in range(MAX_HEADERS + 8)]
    error_then_close(server.port, build_request("GET", "/echo", headers=too_many), 431)
    assert_still_serving(server.port)


def test_uri_too_long(server):
    ok = "/p/" + "a" * (MAX_URL_BYTES - 10)
    assert get(server.port, ok).text == "param:" + "a" * (MAX_URL_BYTES - 10)
    long = "/p/" + "a" * (MAX_URL_BYTES + 10)
    error_then_close(server.port, build_request("GET", long), 414)
    error_then_close(server.port, build_request("GET", "/echo?q=" + "x" * 2000), 414)
    assert_still_serving(server.port)


def test_content_length_over_limit(server):
    """413 as soon as the head arrives: the body is never sent."""
    with Conn(server.port, timeout=3) as c:
        c.send(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
               % (MAX_BODY_BYTES + 1))
        t0 = time.monotonic()
        r = c.read_response(timeout=2)
        assert r.status == 413
        assert time.monotonic() - t0 < HEADER_TIMEOUT  # not a timeout
        c.buf = b""
        assert c.wait_closed(2)


def test_body_at_limit_ok(server):
    body = bytes(i % 256 for i in range(MAX_BODY_BYTES))
    with Conn(server.port) as c:
        r = c.request("POST", "/body", body=body)
        assert r.status == 200
        assert r.body == body
        body2 = body[:1000]
        r = c.request("POST", "/body", headers={"Transfer-Encoding": "chunked"},
                      body=chunked(body, [4096]))
        assert r.status == 200 and r.body == body
        assert c.request("POST", "/body", body=body2).body == body2


def test_chunked_body_over_limit(server):
    body = b"z" * (MAX_BODY_BYTES + 5000)
    data = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked(body, [4096]))
    error_then_close(server.port, data, 413)
    assert_still_serving(server.port)


def test_chunked_body_over_limit_single_chunk_declared(server):
    data = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n" % (MAX_BODY_BYTES * 4) + b"y" * 100)
    error_then_close(server.port, data, 413)


@pytest.mark.parametrize("head", [
    # both Content-Length and Transfer-Encoding (request smuggling)
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    # two different Content-Lengths
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nhello!",
    # a non-numeric Content-Length
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5x\r\n\r\nhello",
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    # bad chunk size
    b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    # chunk data not followed by CRLF
    b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"2\r\nhelloXX0\r\n\r\n",
    # a transfer coding other than chunked last
    b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    # invalid characters in header names / values
    b"GET /hello HTTP/1.1\r\nHost: t\r\nBad Header: v\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A : v\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Ctl\x01: v\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Nul: a\x00b\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: t\r\n: novalue\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n",
    # bare LF inside a header value / CR without LF
    b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    # invalid characters in the target
    b"GET /hel lo HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /he\x7fllo HTTP/1.1\r\nHost: t\r\n\r\n",
], ids=["cl+te", "two-cl", "cl-nonnum", "cl-negative", "chunk-size",
        "chunk-crlf", "te-gzip", "hdr-space", "hdr-space-colon", "hdr-ctl", "hdr-nul",
        "hdr-empty-name", "hdr-nocolon", "hdr-cr", "target-space", "target-del"])
def test_bad_framing_and_chars_400(server, head):
    error_then_close(server.port, head, 400)
    assert_still_serving(server.port)


# ---- request smuggling -----------------------------------------------------

CHUNKED_HEAD = (b"POST /body HTTP/1.1\r\nHost: t\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
HIDDEN_GET = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"


def send_pieces(c, pieces, delay=0.05):
    """Sends each piece on its own, a little apart, so that the server
    reads them apart (the framing must hold across reads too)."""
    for i, piece in enumerate(pieces):
        if i:
            time.sleep(delay)
        try:
            c.send(piece)
        except (BrokenPipeError, ConnectionResetError):
            return  # the server answered and closed


@pytest.mark.parametrize("pieces", [
    # Any two bytes after a chunk's data taken for its CRLF: the GET that
    # follows the body would run ([405, 200] on a route without POST).
    [CHUNKED_HEAD + b"3\r\nabcXY0\r\n\r\n" + HIDDEN_GET],
    [CHUNKED_HEAD + b"3\r\nabc", b"XY0\r\n\r\n" + HIDDEN_GET],
    [CHUNKED_HEAD + b"3\r\nabc\r", b"X0\r\n\r\n" + HIDDEN_GET],
    # A bare LF after the data: to a front end that takes it for a line
    # end, "10" is the next chunk's size, and the GET is in its data.
    [CHUNKED_HEAD + b"3\r\nabc\n10\r\n\r\n" + HIDDEN_GET],
    # No CRLF at all: an immediate 400, not a wait for a chunk "f...".
    [CHUNKED_HEAD + b"3\r\nabcdef"],
    # A CR followed by something else where a line ends: after a chunk
    # size, the last chunk's line, the trailers, the head.
    [CHUNKED_HEAD + b"3\rXabc\r\n0\r\n\r\n" + HIDDEN_GET],
    [CHUNKED_HEAD + b"3\r", b"Xabc\r\n0\r\n\r\n" + HIDDEN_GET],
    [CHUNKED_HEAD + b"3\r\nabc\r\n0\rX\r\n" + HIDDEN_GET],
    [CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\rX" + HIDDEN_GET],
    [CHUNKED_HEAD + b"3\r\nabc\r\n0\r\n\r", b"X" + HIDDEN_GET],
    [CHUNKED_HEAD + b"0\r\nX-T: 1\r\n\rX" + HIDDEN_GET],
    [b"GET /hello HTTP/1.1\r\nHost: t\r\n\rX" + HIDDEN_GET],
], ids=["data-XY", "data-XY-split", "data-CR-X-split", "data-LF",
        "data-no-CRLF", "size-CR-X", "size-CR-X-split", "last-size-CR-X",
        "end-CR-X", "end-CR-X-split", "trailers-CR-X", "head-CR-X"])
def test_chunked_framing_smuggling_400(server, pieces):
    """Each is one bad request: 400 and close, and nothing behind it runs
    (no second response). Built without strict mode, llhttp 8 accepts all
    of these; talon checks the framing itself."""
    with Conn(server.port, timeout=3) as c:
        send_pieces(c, pieces)
        r = c.read_response()
        assert r.status == 400, r
        assert r.header("Connection") == "close", r
        assert c.wait_closed(3), "connection not closed after error"
    assert_still_serving(server.port)


def test_chunked_framing_valid_split_anywhere(server):
    """A valid chunked body (extension, several chunks, trailers) and a
    request behind it, split in two (and three) at every byte of the
    body's framing: always both answers. Trailer fields are read and
    dropped: they are not request headers."""
    body = (b"3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n"
            b"0\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n")
    head = (b"POST /echo?h=x-trailer HTTP/1.1\r\nHost: t\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    data = head + body + HIDDEN_GET
    cuts = [[i] for i in range(len(head) - 2, len(head) + len(body) + 2)]
    cuts += [[i, i + 1] for i in range(len(head), len(head) + len(body))]
    for cut in cuts:
        bounds = [0] + cut + [len(data)]
        pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
        with Conn(server.port, timeout=3) as c:
            send_pieces(c, pieces, delay=0.01)
            r = c.read_response()
            assert r.status == 200, (cut, r)
            j = r.json()
            assert j["body"] == "abc0123456789abcdef", (cut, j)
            assert j["want"] == [] and j["nheaders"] == 2, (cut, j)
            assert c.read_response().status == 200, cut


@pytest.mark.parametrize("head", [
    b"GET /hello HTTP/1.1\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nX-A: b\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n",
    b"GET /hello HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
], ids=["no-host", "no-host-other-header", "two-hosts", "two-hosts-same",
        "two-hosts-1.0"])
def test_host_missing_or_repeated_400(server, head):
    """RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host; two are
    refused in any version."""
    error_then_close(server.port, head, 400)
    assert_still_serving(server.port)


def test_http10_without_host_ok(server):
    with Conn(server.port) as c:
        c.send(b"GET /hello HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello, world\n")


def test_same_content_length_twice_400(server):
    """Even two equal Content-Lengths are refused (README: conflicting
    lengths are 400; a front end may merge or refuse them)."""
    error_then_close(server.port,
                     b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Content-Length: 5\r\n\r\nhello" + HIDDEN_GET, 400)
    assert_still_serving(server.port)


def test_bad_request_isolated(server):
    with Conn(server.port) as good:
        assert good.request("GET", "/hello").status == 200
        with Conn(server.port) as bad:
            bad.send(b"\x00\x01\x02 garbage garbage\r\n\r\n")
            r = bad.read_response()
            assert r.status == 400
            assert bad.wait_closed(2)
        assert good.request("GET", "/echo?still=1").json()["qs"] == "still=1"
    assert_still_serving(server.port)


def test_slowloris_head(server):
    """A head sent a byte every 100 ms: 408 (or a close) at about the
    header timeout, not later."""
    data = build_request("GET", "/hello", headers={"X-Pad": "p" * 100})
    with Conn(server.port, timeout=5) as c:
        t0 = time.monotonic()
        got = None
        for b in data:
            try:
                c.sock.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                got = "closed"
                break
            c.sock.settimeout(0.1)
            try:
                chunk = c.sock.recv(4096)
                got = chunk or "closed"
                c.buf += chunk
                break
            except socket.timeout:
                pass
            if time.monotonic() - t0 > 4:
                break
        dt = time.monotonic() - t0
        assert got is not None, "slow head never cut off"
        assert HEADER_TIMEOUT * 0.8 <= dt <= HEADER_TIMEOUT + 0.8, dt
        if got != "closed":
            c.sock.settimeout(2)
            try:
                r = c.read_response(timeout=2)
                assert r.status == 408
                assert r.header("Connection") == "close"
            except Closed:
                pytest.fail(f"partial response then close: {c.buf!r}")
            c.buf = b""
            assert c.wait_closed(2)


def test_incomplete_head_times_out_408(server):
    with Conn(server.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n")
        r = c.read_response(timeout=3)
        dt = time.monotonic() - t0
        assert r.status == 408
        assert HEADER_TIMEOUT * 0.8 <= dt <= HEADER_TIMEOUT + 0.8, dt
        c.buf = b""
        assert c.wait_closed(2)


def test_incomplete_body_times_out_408(server):
    with Conn(server.port) as c:
        t0 = time.monotonic()
        c.send(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        r = c.read_response(timeout=3)
        dt = time.monotonic() - t0
        assert r.status == 408
        assert HEADER_TIMEOUT * 0.8 <= dt <= HEADER_TIMEOUT + 0.8, dt
        c.buf = b""
        assert c.wait_closed(2)


def test_silent_connection_closed(server):
    """A connection that never sends a byte is closed, without a response,
    by the header timeout."""
    with Conn(server.port) as c:
        t0 = time.monotonic()
        assert c.wait_closed(3)
        assert time.monotonic() - t0 <= HEADER_TIMEOUT + 0.8


def test_idle_keepalive_closed(server):
    with Conn(server.port) as c:
        assert c.request("GET", "/hello").status == 200
        t0 = time.monotonic()
        assert c.wait_closed(3), "idle keep-alive connection not closed"
        dt = time.monotonic() - t0
        assert KEEPALIVE_TIMEOUT * 0.8 <= dt <= KEEPALIVE_TIMEOUT + 0.8, dt


def test_keepalive_timer_restarts_per_request(server):
    with Conn(server.port) as c:
        for _ in range(4):  # 4 x 0.4 s > keep-alive timeout
            assert c.request("GET", "/hello").status == 200
            time.sleep(KEEPALIVE_TIMEOUT * 0.6)
        assert c.request("GET", "/hello").status == 200


def test_slow_async_not_cut_by_header_timeout(server):
    """A deferred response that takes longer than the header timeout is
    not a request timeout."""
    with Conn(server.port) as c:
        r = c.request("GET", "/async?ms=%d&id=slow" % int(HEADER_TIMEOUT * 1000 + 300),
                      timeout=4)
        assert (r.status, r.text) == (200, "async:slow")
        assert c.request("GET", "/hello").status == 200


def test_error_response_to_pipelined_garbage_keeps_order(server):
    with Conn(server.port) as c:
        c.send(build_request("GET", "/async?ms=50&id=first") + b"NOT HTTP AT ALL\r\n\r\n")
        r = c.read_response()
        assert r.text == "async:first"
        r = c.read_response()
        assert r.status == 400
        assert c.wait_closed(2)
