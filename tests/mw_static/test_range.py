"""Range requests: single ranges (a-b, a-, -n) as 206 with Content-Range,
unsatisfiable ones as 416 with bytes */size, ignored ones (multi-range,
bad syntax, other units, HEAD, failed If-Range) as a whole 200."""
import email.utils
import os

import pytest

from conftest import LARGE_SIZE, Conn, curl, get, request, sha256

SIZE = LARGE_SIZE


@pytest.mark.parametrize("spec,first,last", [
    ("0-0", 0, 0),
    ("0-99", 0, 99),
    ("100-", 100, SIZE - 1),
    ("-500", SIZE - 500, SIZE - 1),
    ("-1", SIZE - 1, SIZE - 1),
    (f"{SIZE - 1}-", SIZE - 1, SIZE - 1),
    (f"1000-{SIZE + 1000}", 1000, SIZE - 1),  # last clamped
    ("0-99999999999999999999999", 0, SIZE - 1),
    (f"-{SIZE * 2}", 0, SIZE - 1),  # suffix longer than the file
    ("1048576-3145727", 1048576, 3145727),  # 2 MiB from the middle
    (" 5-9 ", 5, 9),
])
def test_single_range(server, tree, spec, first, last):
    data = tree.data("large.bin")
    r = get(server.port, "/large.bin", {"Range": "bytes=" + spec})
    assert r.status == 206, (spec, r)
    assert r.header("Content-Range") == f"bytes {first}-{last}/{SIZE}"
    assert int(r.header("Content-Length")) == last - first + 1
    assert sha256(r.body) == sha256(data[first:last + 1])
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("Content-Type") == "application/octet-stream"


def test_range_unit_case_insensitive(server, tree):
    r = get(server.port, "/hello.txt", {"Range": "BYTES=0-4"})
    assert r.status == 206 and r.body == b"hello"


@pytest.mark.parametrize("spec", [
    f"bytes={SIZE}-", f"bytes={SIZE}-{SIZE + 10}", "bytes=-0",
    "bytes=99999999999999999999-",
])
def test_unsatisfiable(server, spec):
    r = get(server.port, "/large.bin", {"Range": spec})
    assert r.status == 416, spec
    assert r.header("Content-Range") == f"bytes */{SIZE}"
    assert r.body == b""


def test_empty_file_unsatisfiable(server):
    for spec in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        r = get(server.port, "/empty.txt", {"Range": spec})
        assert r.status == 416 and r.header("Content-Range") == "bytes */0"


@pytest.mark.parametrize("spec", [
    "bytes=0-1,5-6",          # multi-range: whole file (documented)
    "bytes=0-1, 100-200, -5",
    "bytes=5-2",              # last < first: invalid, ignored
    "bytes=abc",
    "bytes=1-2-3",
    "bytes=-",
    "bytes=",
    "items=0-5",
    "bytes 0-5",
    "bytes=0x10-20",
])
def test_ignored_range_gives_200(server, tree, spec):
    r = get(server.port, "/hello.txt", {"Range": spec})
    assert r.status == 200, spec
    assert r.header("Content-Range") is None
    assert r.body == b"hello, static\n"


def test_range_with_empty_list_elements(server):
    r = get(server.port, "/hello.txt", {"Range": "bytes=,0-4,"})
    assert r.status == 206 and r.body == b"hello"


def test_head_ignores_range(server):
    r = request(server.port, "HEAD", "/large.bin", {"Range": "bytes=0-9"})
    assert r.status == 200
    assert r.header("Content-Length") == str(SIZE)
    assert r.header("Content-Range") is None


def test_if_range_etag(server, tree):
    r0 = get(server.port, "/hello.txt")
    et, lm = r0.header("ETag"), r0.header("Last-Modified")
    r = get(server.port, "/hello.txt", {"Range": "bytes=7-12",
                                        "If-Range": et})
    assert r.status == 206 and r.body == b"static"
    r = get(server.port, "/hello.txt", {"Range": "bytes=7-12",
                                        "If-Range": '"other"'})
    assert r.status == 200 and r.body == b"hello, static\n"
    # a weak tag never matches If-Range (strong comparison)
    r = get(server.port, "/hello.txt", {"Range": "bytes=7-12",
                                        "If-Range": "W/" + et})
    assert r.status == 200
    r = get(server.port, "/hello.txt", {"Range": "bytes=7-12",
                                        "If-Range": lm})
    assert r.status == 206 and r.body == b"static"
    mtime = int(os.stat(tree.path("hello.txt")).st_mtime)
    older = email.utils.formatdate(mtime - 5, usegmt=True)
    r = get(server.port, "/hello.txt", {"Range": "bytes=7-12",
                                        "If-Range": older})
    assert r.status == 200
    # a failed If-Range also turns a 416 into the whole file
    r = get(server.port, "/hello.txt", {"Range": "bytes=1000-",
                                        "If-Range": '"other"'})
    assert r.status == 200


def test_weak_etag_if_range_never_matches(server):
    et = get(server.port, "/weak/hello.txt").header("ETag")
    r = get(server.port, "/weak/hello.txt", {"Range": "bytes=0-4",
                                             "If-Range": et})
    assert r.status == 200


def test_conditional_beats_range(server):
    et = get(server.port, "/hello.txt").header("ETag")
    r = get(server.port, "/hello.txt", {"Range": "bytes=0-4",
                                        "If-None-Match": et})
    assert r.status == 304


def test_range_never_precompressed(server, tree):
    r = get(server.port, "/app.js", {"Range": "bytes=0-99",
                                     "Accept-Encoding": "br, gzip"})
    assert r.status == 206
    assert r.header("Content-Encoding") is None
    assert r.body == tree.data("app.js")[:100]
    assert r.header("Vary") == "Accept-Encoding"
    full = get(server.port, "/app.js")
    assert r.header("ETag") == full.header("ETag")
    # an ignored (multi) range with gzip accepted: still identity
    r = get(server.port, "/app.js", {"Range": "bytes=0-1,3-4",
                                     "Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("Content-Encoding") is None
    assert r.body == tree.data("app.js")


def test_resume_download_with_curl(server, tree, tmp_path):
    data = tree.data("large.bin")
    out = tmp_path / "part"
    out.write_bytes(data[:1234567])
    p = curl("-C", "-", "-o", str(out),
             f"http://127.0.0.1:{server.port}/large.bin")
    assert p.returncode == 0, p.stderr
    assert sha256(out.read_bytes()) == sha256(data)


def test_curl_range(server, tree):
    p = curl("-r", "4000000-4999999", f"http://127.0.0.1:{server.port}/large.bin")
    assert p.returncode == 0
    assert sha256(p.stdout) == sha256(tree.data("large.bin")[4000000:5000000])


def test_many_ranges_on_one_connection(server, tree):
    data = tree.data("large.bin")
    with Conn(server.port) as c:
        for first in range(0, SIZE, SIZE // 7):
            last = min(first + 700000, SIZE - 1)
            r = c.request("GET", "/large.bin",
                          {"Range": f"bytes={first}-{last}"})
            assert r.status == 206
            assert r.body == data[first:last + 1]
