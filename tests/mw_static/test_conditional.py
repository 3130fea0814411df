"""ETag and Last-Modified, and the conditional requests built on them:
If-None-Match (lists, *, weak comparison, precedence over
If-Modified-Since), If-Modified-Since in the three HTTP-date forms,
If-Match and If-Unmodified-Since (412)."""
import email.utils
import os
import re
import time

import pytest

from conftest import Conn, get, request

ETAG_RE = re.compile(r'^"([0-9a-f]+)-([0-9a-f]+)"$')


def httpdate(t):
    return email.utils.formatdate(t, usegmt=True)


def test_etag_and_last_modified(server, tree):
    r = get(server.port, "/hello.txt")
    st = os.stat(tree.path("hello.txt"))
    m = ETAG_RE.match(r.header("ETag"))
    assert m, r.header("ETag")
    assert int(m.group(1), 16) == st.st_size
    assert int(m.group(2), 16) == st.st_mtime_ns
    assert r.header("Last-Modified") == httpdate(int(st.st_mtime))


def test_weak_etag_instance(server, tree):
    r = get(server.port, "/weak/hello.txt")
    assert r.header("ETag").startswith('W/"')
    assert ETAG_RE.match(r.header("ETag")[2:])
    assert r.header("Last-Modified") is None
    r2 = get(server.port, "/weak/hello.txt",
             {"If-None-Match": r.header("ETag")})
    assert r2.status == 304
    # If-Modified-Since is ignored without Last-Modified
    r3 = get(server.port, "/weak/hello.txt",
             {"If-Modified-Since": httpdate(time.time() + 3600)})
    assert r3.status == 200


def etag(server, path="/hello.txt"):
    return get(server.port, path).header("ETag")


def test_if_none_match_304(server):
    et = etag(server)
    with Conn(server.port) as c:
        r = c.request("GET", "/hello.txt", {"If-None-Match": et})
        assert r.status == 304
        assert r.header("ETag") == et
        assert r.header("Cache-Control") == "public, max-age=0"
        assert r.header("Vary") == "Accept-Encoding"
        assert r.header("Content-Length") is None
        assert r.header("Content-Type") is None
        assert c.no_more_bytes()  # no body after a 304
        r = c.request("GET", "/hello.txt")
        assert r.status == 200 and r.body == b"hello, static\n"


@pytest.mark.parametrize("fmt", [
    '{e}', '"nope", {e}', '{e}, "nope"', '"a","b" ,  {e}', 'W/{e}',
    '"x", W/{e}', '*',
])
def test_if_none_match_forms(server, fmt):
    et = etag(server)
    r = get(server.port, "/hello.txt", {"If-None-Match": fmt.format(e=et)})
    assert r.status == 304, fmt


@pytest.mark.parametrize("value", [
    '"nope"', '"nope", "other"', 'W/"nope"', '', 'garbage', '"unterminated',
])
def test_if_none_match_mismatch(server, value):
    r = get(server.port, "/hello.txt", {"If-None-Match": value})
    assert r.status == 200 and r.body == b"hello, static\n"


def test_if_none_match_precedence_over_ims(server, tree):
    lm = get(server.port, "/hello.txt").header("Last-Modified")
    # a non-matching If-None-Match wins over a matching If-Modified-Since
    r = get(server.port, "/hello.txt",
            {"If-None-Match": '"nope"', "If-Modified-Since": lm})
    assert r.status == 200
    # a matching one gives 304 even with an old If-Modified-Since
    r = get(server.port, "/hello.txt",
            {"If-None-Match": etag(server),
             "If-Modified-Since": httpdate(0)})
    assert r.status == 304


def test_if_modified_since(server, tree):
    mtime = int(os.stat(tree.path("hello.txt")).st_mtime)
    cases = [
        (httpdate(mtime), 304),
        (httpdate(mtime + 10), 304),
        (httpdate(mtime - 1), 200),
        (httpdate(0), 200),
        ("not a date", 200),
        ("Sun, 06 Nov 1994 08:49:37 XYZ", 200),
    ]
    for value, status in cases:
        r = get(server.port, "/hello.txt", {"If-Modified-Since": value})
        assert r.status == status, value


def test_if_modified_since_obsolete_formats(server, tree):
    t = time.gmtime(int(os.stat(tree.path("hello.txt")).st_mtime))
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t)
    asctime = time.strftime("%a %b ", t) + f"{t.tm_mday:2d}" + \
        time.strftime(" %H:%M:%S %Y", t)
    for value in (rfc850, asctime):
        r = get(server.port, "/hello.txt", {"If-Modified-Since": value})
        assert r.status == 304, value
    old = time.gmtime(0)
    r = get(server.port, "/hello.txt",
            {"If-Modified-Since": time.strftime("%A, %d-%b-%y %H:%M:%S GMT",
                                                old)})
    assert r.status == 200


def test_head_conditional(server):
    r = request(server.port, "HEAD", "/hello.txt",
                {"If-None-Match": etag(server)})
    assert r.status == 304


def test_if_match_and_unmodified_since(server, tree):
    et = etag(server)
    r = get(server.port, "/hello.txt", {"If-Match": '"nope"'})
    assert r.status == 412
    r = get(server.port, "/hello.txt", {"If-Match": et})
    assert r.status == 200
    r = get(server.port, "/hello.txt", {"If-Match": "*"})
    assert r.status == 200
    r = get(server.port, "/hello.txt", {"If-Match": "W/" + et})  # strong
    assert r.status == 412
    mtime = int(os.stat(tree.path("hello.txt")).st_mtime)
    r = get(server.port, "/hello.txt",
            {"If-Unmodified-Since": httpdate(mtime - 100)})
    assert r.status == 412
    r = get(server.port, "/hello.txt",
            {"If-Unmodified-Since": httpdate(mtime)})
    assert r.status == 200


def test_validators_change_with_the_file(server, tree):
    path = tree.write("changing.txt", b"version one\n")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    r1 = get(server.port, "/changing.txt")
    assert r1.header("Last-Modified") == "Sun, 13 Sep 2020 12:26:40 GMT"
    with open(path, "wb") as f:
        f.write(b"version two!\n")
    os.utime(path, (1_600_000_100, 1_600_000_100))
    r = get(server.port, "/changing.txt",
            {"If-None-Match": r1.header("ETag")})
    assert r.status == 200 and r.body == b"version two!\n"
    assert r.header("ETag") != r1.header("ETag")
    r = get(server.port, "/changing.txt",
            {"If-Modified-Since": r1.header("Last-Modified")})
    assert r.status == 200
