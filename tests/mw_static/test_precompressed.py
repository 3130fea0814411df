"""Precompressed siblings: `file.br` / `file.gz` chosen from
Accept-Encoding (q-values, q=0 refusals, *), sent with Content-Encoding,
the original's Content-Type, their own ETag and Vary: Accept-Encoding."""
import gzip

import pytest

from conftest import Conn, curl, get, request, sha256


@pytest.mark.parametrize("accept,enc", [
    ("gzip", "gzip"),
    ("br", "br"),
    ("gzip, br", "br"),           # equal q: br preferred
    ("br, gzip", "br"),
    ("gzip;q=1, br;q=0.5", "gzip"),
    ("br;q=0.4, gzip;q=0.6", "gzip"),
    ("br;q=0", None),
    ("br;q=0.000, gzip", "gzip"),
    ("br;q=0.001", "br"),
    ("gzip;q=0, br;q=0", None),
    ("*", "br"),
    ("*;q=0", None),
    ("gzip;q=0, *", "br"),
    ("br;q=0, *;q=0.5", "gzip"),
    ("identity", None),
    ("deflate", None),
    ("x-gzip", "gzip"),
    ("GZIP", "gzip"),
    ("  gzip ; q=0.8 , br ; q=0.9 ", "br"),
    ("br;q=2", None),             # invalid qvalue: the element is ignored
    ("br;q=abc, gzip", "gzip"),
    ("", None),
])
def test_selection(server, tree, accept, enc):
    r = get(server.port, "/app.js", {"Accept-Encoding": accept})
    assert r.status == 200
    assert r.header("Content-Encoding") == enc, accept
    assert r.header("Vary") == "Accept-Encoding"
    assert r.header("Content-Type") == "text/javascript; charset=utf-8"
    name = "app.js" + {None: "", "gzip": ".gz", "br": ".br"}[enc]
    assert sha256(r.body) == sha256(tree.data(name))
    assert int(r.header("Content-Length")) == len(tree.data(name))


def test_several_accept_encoding_headers(server, tree):
    with Conn(server.port) as c:
        c.sock.sendall(b"GET /app.js HTTP/1.1\r\nHost: t\r\n"
                       b"Accept-Encoding: br;q=0\r\n"
                       b"Accept-Encoding: gzip\r\n\r\n")
        r = c.read()
    assert r.header("Content-Encoding") == "gzip"
    assert r.body == tree.data("app.js.gz")


def test_no_accept_encoding_identity_with_vary(server, tree):
    r = get(server.port, "/app.js")
    assert r.header("Content-Encoding") is None
    assert r.header("Vary") == "Accept-Encoding"
    assert r.body == tree.data("app.js")
    # files without siblings say Vary too: a sibling may appear later
    r = get(server.port, "/hello.txt", {"Accept-Encoding": "gzip"})
    assert r.header("Content-Encoding") is None
    assert r.header("Vary") == "Accept-Encoding"


def test_variant_etags_differ(server):
    plain = get(server.port, "/app.js").header("ETag")
    gz = get(server.port, "/app.js", {"Accept-Encoding": "gzip"}).header("ETag")
    br = get(server.port, "/app.js", {"Accept-Encoding": "br"}).header("ETag")
    assert len({plain, gz, br}) == 3
    assert gz.endswith('-gz"') and br.endswith('-br"')
    r = get(server.port, "/app.js", {"Accept-Encoding": "gzip",
                                     "If-None-Match": gz})
    assert r.status == 304 and r.header("Vary") == "Accept-Encoding"
    # the gzip tag does not validate the identity representation
    r = get(server.port, "/app.js", {"If-None-Match": gz})
    assert r.status == 200 and r.header("Content-Encoding") is None


def test_head_precompressed(server, tree):
    r = request(server.port, "HEAD", "/app.js", {"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Length") == str(len(tree.data("app.js.gz")))


def test_curl_compressed_large(server, tree):
    p = curl("--compressed", "-H", "Accept-Encoding: gzip",
             "-w", "\n%{size_download}",
             f"http://127.0.0.1:{server.port}/large.js")
    body, size = p.stdout.rsplit(b"\n", 1)
    assert sha256(body) == sha256(tree.data("large.js"))
    assert int(size) == len(tree.data("large.js.gz"))
    assert len(tree.data("large.js.gz")) < len(tree.data("large.js")) // 3


def test_raw_large_gzip_bytes(server, tree):
    r = get(server.port, "/large.js", {"Accept-Encoding": "gzip"})
    assert sha256(r.body) == sha256(tree.data("large.js.gz"))
    assert gzip.decompress(r.body) == tree.data("large.js")


def test_sibling_without_original_is_a_miss(server):
    r = get(server.port, "/gzonly.js", {"Accept-Encoding": "gzip"})
    assert r.status == 404


def test_symlinked_sibling_not_used(server):
    r = get(server.port, "/lnk.js", {"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.header("Content-Encoding") is None
    assert r.body == b"identity lnk\n"


def test_disabled_instance(server, tree):
    r = get(server.port, "/nogz/app.js", {"Accept-Encoding": "br, gzip"})
    assert r.header("Content-Encoding") is None
    assert r.header("Vary") is None
    assert r.body == tree.data("app.js")


def test_symlink_uses_the_targets_sibling(server, tree):
    # link_app.js -> app.js: the sibling is looked up next to the target
    r = get(server.port, "/link_app.js", {"Accept-Encoding": "gzip"})
    assert r.status == 200 and r.header("Content-Encoding") == "gzip"
    assert r.body == tree.data("app.js.gz")
    assert r.header("Content-Type") == "text/javascript; charset=utf-8"
