"""tl_compress through the real server: encodings, q-values, thresholds,
types, exclusions (Range, Content-Encoding, HEAD, 204/304, no-transform,
files), Vary, streamed bodies, big bodies byte-exact."""
import gzip
import socket
import subprocess
import time
import zlib
from urllib.parse import quote

import pytest

from conftest import HOST, body_bytes, dechunk, parse_response, raw, request

TEXT5K = body_bytes(5000)


def decode(r):
    ce = r.get("content-encoding")
    if ce == "gzip":
        return gzip.decompress(r.body)
    if ce == "deflate":
        return zlib.decompress(r.body)  # RFC 1950 zlib format, as HTTP says
    assert ce is None, ce
    return r.body


def test_gzip_raw_request(srv):
    r = request(srv.port, "/body", "gzip")
    assert r.status == 200
    assert r.get("content-encoding") == "gzip"
    assert r.all("vary") == ["Accept-Encoding"]
    assert int(r.get("content-length")) == len(r.body)
    assert len(r.body) < 1000  # 5000 bytes of repetitive lines
    assert r.body[:2] == b"\x1f\x8b"
    assert gzip.decompress(r.body) == TEXT5K


def test_deflate_is_zlib_format(srv):
    r = request(srv.port, "/body", "deflate")
    assert r.get("content-encoding") == "deflate"
    assert r.body[0] == 0x78  # zlib header, window 15
    assert zlib.decompress(r.body) == TEXT5K


def test_no_accept_encoding_identity_with_vary(srv):
    r = request(srv.port, "/body")
    assert r.get("content-encoding") is None
    assert r.get("vary") == "Accept-Encoding"
    assert r.get("content-length") == "5000"
    assert r.body == TEXT5K


def test_curl_compressed(srv, tmp_path):
    hdr = tmp_path / "h"
    out = subprocess.run(
        ["curl", "-sS", "--compressed", "-D", str(hdr),
         f"http://{HOST}:{srv.port}/body?n=300000"],
        capture_output=True, check=True, timeout=20).stdout
    assert out == body_bytes(300000)
    h = hdr.read_text().lower()
    assert "content-encoding: gzip" in h  # curl offers deflate, gzip,...
    assert "vary: accept-encoding" in h


def test_curl_compressed_stream(srv):
    out = subprocess.run(
        ["curl", "-sS", "--compressed",
         f"http://{HOST}:{srv.port}/stream?chunks=20&size=3000"],
        capture_output=True, check=True, timeout=20).stdout
    assert out == body_bytes(60000)


@pytest.mark.parametrize("ae,want", [
    ("gzip", "gzip"),
    ("deflate", "deflate"),
    ("gzip, deflate", "gzip"),
    ("deflate, gzip", "gzip"),          # tie: gzip preferred
    ("gzip;q=0.5, deflate", "deflate"),
    ("gzip;q=0, deflate;q=0.1", "deflate"),
    ("gzip;q=0", None),
    ("gzip;q=0.000", None),
    ("deflate;q=0", None),
    ("GZIP;Q=0.8", "gzip"),
    ("*", "gzip"),
    ("*;q=0", None),
    ("*, gzip;q=0", "deflate"),
    ("*;q=0.2, deflate;q=0.1", "gzip"),
    ("identity", None),
    ("identity;q=0", None),             # 406 is optional: identity is sent
    ("br, zstd", None),
    ("", None),
    ("gzip;q=1.5", None),               # malformed q: refused
    ("gzip;q=abc", None),
    ("gzip;q=", None),
    ("gzip;q=0.0001", None),            # more than 3 decimals
    ("gzip;q=0.001", "gzip"),
    ("gzip;q=1.000", "gzip"),
    ("gzip;q=1.001", None),
    ("x-gzip", "gzip"),
    ("gzip ; q=0.3 , deflate ; q=0.2", "gzip"),
    ("gzip junk", None),
    (";;;,,,=,q=1", None),
    ("deflate;q=0.5;level=9, gzip;q=0.4", "deflate"),
    ("gzip, gzip;q=0", None),           # named twice: the refusal wins
    ("gzipx, deflat", None),
])
def test_q_values(srv, ae, want):
    r = request(srv.port, "/body", ae)
    assert r.status == 200
    assert r.get("content-encoding") == want
    assert r.get("vary") == "Accept-Encoding"
    assert decode(r) == TEXT5K


def test_two_accept_encoding_lines(srv):
    r = request(srv.port, "/body", "br",
                headers=[("Accept-Encoding", "deflate")])
    assert r.get("content-encoding") == "deflate"
    assert decode(r) == TEXT5K


def test_huge_garbage_accept_encoding(srv):
    ae = ",;=" * 2500 + "q=1;" * 200 + "gzip;q=" + "9" * 500
    r = request(srv.port, "/body", ae)
    assert r.status == 200
    assert r.get("content-encoding") is None
    assert r.body == TEXT5K


@pytest.mark.parametrize("n,compressed", [
    (0, False), (1, False), (100, False), (1023, False), (1024, True),
    (1025, True)])
def test_threshold(srv, n, compressed):
    r = request(srv.port, f"/body?n={n}", "gzip")
    assert (r.get("content-encoding") == "gzip") is compressed
    assert r.get("vary") == "Accept-Encoding"  # the type is compressible
    assert decode(r) == body_bytes(n)


@pytest.mark.parametrize("ctype", [
    "text/plain", "text/html; charset=utf-8", "TEXT/CSS", "text/csv",
    "application/json", "application/json; charset=utf-8",
    "application/javascript", "application/xml", "image/svg+xml",
    "application/vnd.api+json", "application/atom+xml", "Application/JSON"])
def test_compressible_types(srv, ctype):
    r = request(srv.port, f"/body?type={quote(ctype)}", "gzip")
    assert r.get("content-type") == ctype
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == TEXT5K


@pytest.mark.parametrize("ctype", [
    "image/png", "application/octet-stream", "application/zip",
    "video/mp4", "none", "text", "text/", "application/jsonx",
    "application/+json", "image/svg+xmlx", "application/json-seq",
    "textual/plain"])
def test_not_compressible_types(srv, ctype):
    r = request(srv.port, f"/body?type={quote(ctype)}", "gzip, deflate")
    assert r.get("content-encoding") is None
    assert r.get("vary") is None  # never compressed, whatever is accepted
    assert r.body == TEXT5K


def test_range_206_not_compressed(srv):
    r = request(srv.port, "/range", "gzip", headers=[("Range", "bytes=0-4999")])
    assert r.status == 206
    assert r.get("content-encoding") is None
    assert r.get("content-range") == "bytes 0-4999/10000"
    assert r.get("content-length") == "5000"
    assert r.body == TEXT5K


def test_existing_content_encoding_untouched(srv):
    r = request(srv.port, "/encoded", "gzip, deflate, br")
    assert r.all("content-encoding") == ["br"]
    assert r.get("vary") is None
    assert r.body == TEXT5K


def test_no_transform(srv):
    r = request(srv.port, "/notransform", "gzip")
    assert r.get("content-encoding") is None
    assert r.get("vary") is None
    assert r.body == TEXT5K


def test_head_not_compressed(srv):
    r = request(srv.port, "/body", "gzip", method="HEAD")
    assert r.status == 200
    assert r.get("content-encoding") is None
    assert r.get("content-length") == "5000"
    assert r.body == b""


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(srv, code):
    r = request(srv.port, f"/status/{code}", "gzip")
    assert r.status == code
    assert r.get("content-encoding") is None
    assert r.raw_body == b""


def test_error_status_with_body_compressed(srv):
    r = request(srv.port, "/status/404", "gzip")
    assert r.status == 404
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == TEXT5K


def test_default_404_small_not_compressed(srv):
    r = request(srv.port, "/nope", "gzip")
    assert r.status == 404
    assert r.get("content-encoding") is None
    assert r.body == b"Not Found\n"


@pytest.mark.parametrize("preset,want", [
    ("Origin", ["Origin", "Accept-Encoding"]),
    ("accept-encoding", ["accept-encoding"]),
    ("Origin, Accept-Encoding", ["Origin, Accept-Encoding"]),
    ("*", ["*"]),
])
def test_vary_merging(srv, preset, want):
    r = request(srv.port, f"/vary?v={quote(preset)}", "gzip")
    assert r.all("vary") == want
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == TEXT5K


def test_file_bodies_not_filtered(srv):
    r = request(srv.port, "/file", "gzip")
    assert r.status == 200
    assert r.get("content-encoding") is None
    assert r.get("content-length") == "20000"
    assert r.body == body_bytes(20000)


@pytest.mark.parametrize("enc", ["gzip", "deflate"])
def test_streamed_chunked(srv, enc):
    r = request(srv.port, "/stream?chunks=10&size=1000", enc)
    assert r.chunked
    assert r.get("content-length") is None
    assert r.get("content-encoding") == enc
    assert r.get("vary") == "Accept-Encoding"
    assert decode(r) == body_bytes(10000)
    assert len(r.body) < 3000


def test_streamed_small_still_compressed(srv):
    r = request(srv.port, "/stream?chunks=1&size=10", "gzip")
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == body_bytes(10)


def test_streamed_identity_when_not_accepted(srv):
    r = request(srv.port, "/stream?chunks=3&size=1000", "br")
    assert r.chunked
    assert r.get("content-encoding") is None
    assert r.get("vary") == "Accept-Encoding"
    assert r.body == body_bytes(3000)


def test_streamed_with_content_length_not_compressed(srv):
    r = request(srv.port, "/stream?chunks=4&size=1000&clen=1", "gzip")
    assert not r.chunked
    assert r.get("content-encoding") is None
    assert r.get("content-length") == "4000"
    assert r.body == body_bytes(4000)


def test_streamed_big_random_byte_exact(srv):
    r = request(srv.port, "/stream?chunks=40&size=65536&kind=rand", "gzip")
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == body_bytes(40 * 65536, "rand")


def test_streamed_http10_unframed(srv):
    r = request(srv.port, "/stream?chunks=5&size=2000", "gzip", version="1.0")
    assert not r.chunked
    assert r.get("content-length") is None
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == body_bytes(10000)


@pytest.mark.parametrize("enc", ["gzip", "deflate"])
def test_big_body_byte_exact(srv, enc):
    n = 5_000_000
    r = request(srv.port, f"/body?n={n}", enc)
    assert r.get("content-encoding") == enc
    assert int(r.get("content-length")) == len(r.body)
    assert len(r.body) < n // 5
    assert decode(r) == body_bytes(n)


def test_big_random_body_byte_exact(srv):
    n = 1_000_000
    r = request(srv.port, f"/body?n={n}&kind=rand", "deflate")
    assert r.get("content-encoding") == "deflate"
    assert int(r.get("content-length")) == len(r.body)
    assert zlib.decompress(r.body) == body_bytes(n, "rand")


def test_echo_client_body(srv):
    data = bytes(range(256)) * 64
    r = request(srv.port, "/echo", "gzip", method="POST", body=data)
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == data


def test_streamed_each_write_is_flushed(srv):
    """A write reaches the client, decodable, before the response ends."""
    with socket.create_connection((HOST, srv.port), timeout=5) as s:
        s.sendall(b"GET /tick HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n"
                  b"Connection: close\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert b"Content-Encoding: gzip" in head
        assert b"Transfer-Encoding: chunked" in head
        d = zlib.decompressobj(16 + 15)
        text = b""
        t0 = time.monotonic()
        # Decode chunk by chunk as they arrive.
        pending = rest
        while b"tick 1\n" not in text:
            while True:
                eol = pending.find(b"\r\n")
                if eol < 0:
                    break
                size = int(pending[:eol], 16)
                if len(pending) < eol + 2 + size + 2:
                    break
                text += d.decompress(pending[eol + 2:eol + 2 + size])
                pending = pending[eol + 4 + size:]
                assert size != 0, "stream ended before tick 1 was decoded"
            if b"tick 1\n" in text:
                break
            chunk = s.recv(4096)
            assert chunk, "connection closed early"
            pending += chunk
        elapsed = time.monotonic() - t0
        # tick 3 (and the end) come 400 ms after tick 1
        assert text == b"tick 0\ntick 1\n"
        assert elapsed < 0.45
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            pending += chunk
        body, _ = dechunk(pending)
        text += d.decompress(body) + d.flush()
        assert d.eof
        assert text == b"tick 0\ntick 1\ntick 2\ntick 3\n"


def test_client_leaves_mid_stream(srv):
    """The zlib state of an aborted response is freed (ASan checks at
    teardown) and the server keeps serving."""
    for _ in range(5):
        with socket.create_connection((HOST, srv.port), timeout=5) as s:
            s.sendall(b"GET /tick HTTP/1.1\r\nHost: t\r\n"
                      b"Accept-Encoding: gzip\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.3)
    r = request(srv.port, "/body", "gzip")
    assert gzip.decompress(r.body) == TEXT5K


def test_keep_alive_pipelined(srv):
    req = (b"GET /stream?chunks=3&size=1500 HTTP/1.1\r\nHost: t\r\n"
           b"Accept-Encoding: gzip\r\n\r\n"
           b"GET /body?n=3000 HTTP/1.1\r\nHost: t\r\n"
           b"Accept-Encoding: deflate\r\n\r\n"
           b"GET /body?n=3000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = raw(srv.port, req)
    # 1: chunked gzip
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head
    body, used = dechunk(rest)
    assert gzip.decompress(body) == body_bytes(4500)
    rest = rest[used:]
    # 2: deflate with Content-Length
    head, _, rest = rest.partition(b"\r\n\r\n")
    assert b"Content-Encoding: deflate" in head
    n = int([ln for ln in head.split(b"\r\n")
             if ln.lower().startswith(b"content-length")][0].split(b":")[1])
    assert zlib.decompress(rest[:n]) == body_bytes(3000)
    # 3: identity
    r = parse_response(rest[n:])
    assert r.get("content-encoding") is None
    assert r.body == body_bytes(3000)


# ---- custom options ------------------------------------------------------

@pytest.mark.parametrize("n,compressed", [(9, False), (10, True), (20, True)])
def test_custom_threshold(custom, n, compressed):
    r = request(custom.port, f"/body?n={n}", "gzip")
    assert (r.get("content-encoding") == "gzip") is compressed
    assert decode(r) == body_bytes(n)


def test_custom_no_deflate(custom):
    r = request(custom.port, "/body", "deflate")
    assert r.get("content-encoding") is None
    assert r.get("vary") == "Accept-Encoding"
    assert r.body == TEXT5K
    r = request(custom.port, "/body", "deflate, gzip;q=0.1")
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == TEXT5K


@pytest.mark.parametrize("ctype,compressed", [
    ("application/x-custom", True), ("text/csv", False),
    ("text/plain", True), ("image/png", False), ("none", False)])
def test_custom_predicate(custom, ctype, compressed):
    r = request(custom.port, f"/body?type={quote(ctype)}", "gzip")
    assert (r.get("content-encoding") == "gzip") is compressed
    assert decode(r) == TEXT5K


def test_custom_level_1_byte_exact(custom):
    r = request(custom.port, "/body?n=2000000", "gzip")
    assert r.get("content-encoding") == "gzip"
    assert gzip.decompress(r.body) == body_bytes(2000000)
