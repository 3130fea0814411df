"""Requests that cannot be read: the error middleware answers them too
(with the request when its head was read), the connection closes; and
the HTTP/2 connection preface gets 505, as the README says."""
import socket
import time

from conftest import HOST, exchange, get

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_413_declared_length_has_the_request(hooked):
    r = get(hooked.port, "/body", method="POST", body=b"x" * 2000)
    assert r.status == 413
    assert r.text == ("<h1>413 Content Too Large</h1><p>code=0 req=POST /body"
                      "</p>\n")
    assert r.header("Connection") == "close"
    assert r.closed


def test_413_chunked_body_over_the_limit(hooked):
    raw = (b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
           b"\r\n" + b"%x\r\n" % 1500 + b"y" * 1500 + b"\r\n0\r\n\r\n")
    r = exchange(hooked.port, raw)
    assert r.status == 413
    assert "req=POST /body" in r.text
    assert r.closed


def test_error_middleware_deferring_an_unreadable_request(hooked):
    # /deferpage: the error middleware defers (a timer would answer); for
    # a request that cannot be read, its abort callback runs at once and
    # talon's page answers
    import json
    before = json.loads(get(hooked.port, "/counts").body)["page_aborts"]
    r = get(hooked.port, "/deferpage/body", method="POST",
            headers=[("Expect", "something-else")], body=b"x")
    assert r.status == 417
    assert r.text == "417 Expectation Failed\n"
    assert r.closed
    after = json.loads(get(hooked.port, "/counts").body)["page_aborts"]
    assert after == before + 1
    time.sleep(0.05)  # past the timer: it was stopped (ASan would tell)


def test_431_has_no_request(hooked):
    raw = (b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 4000 +
           b"\r\n\r\n")
    r = exchange(hooked.port, raw)
    assert r.status == 431
    assert r.text == ("<h1>431 Request Header Fields Too Large</h1>"
                      "<p>code=0 req=none -</p>\n")
    assert r.closed


def test_400_malformed(hooked):
    r = exchange(hooked.port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert r.status == 400
    assert "req=none" in r.text
    assert r.closed


def test_408_slow_head(hooked):
    s = socket.create_connection((HOST, hooked.port), timeout=5)
    try:
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n")
        buf = b""
        t0 = time.monotonic()
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
        assert time.monotonic() - t0 < 4
    finally:
        s.close()
    assert buf.startswith(b"HTTP/1.1 408 ")
    assert b"<h1>408 Request Timeout</h1>" in buf


def test_h2_preface_gets_505(hooked, plain):
    for srv, body in ((plain, "505 HTTP Version Not Supported\n"),
                      (hooked, None)):
        r = exchange(srv.port, PREFACE)
        assert r.status == 505, r
        assert r.closed
        if body:
            assert r.text == body
        else:
            assert r.text.startswith("<h1>505 HTTP Version Not Supported</h1>")


def test_h2_preface_with_settings_frame_gets_505(plain):
    # an HTTP/2 client with prior knowledge sends SETTINGS right after
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    r = exchange(plain.port, PREFACE + settings)
    assert r.status == 505
    assert r.closed


def test_http2_request_line_gets_505(plain):
    r = exchange(plain.port, b"GET / HTTP/2.0\r\nHost: t\r\n\r\n")
    assert r.status == 505
    assert r.closed


def test_other_major_versions_get_505_malformed_400(plain):
    for version, status in ((b"HTTP/3.0", 505), (b"HTTP/0.9", 505),
                            (b"HTTP/9.9", 505), (b"HTTP/1.2", 400),
                            (b"HTTP/x.y", 400), (b"HTTX/2.0", 400),
                            (b"HTTP/2.0x", 400)):
        r = exchange(plain.port, b"GET / " + version + b"\r\nHost: t\r\n\r\n")
        assert r.status == status, (version, r)
        assert r.closed


def test_plain_parse_errors_keep_their_pages(plain):
    r = get(plain.port, "/body", method="POST", body=b"x" * 2000)
    assert (r.status, r.text) == (413, "413 Content Too Large\n")
    assert r.closed
