"""Serving files: bodies byte-exact, MIME types, HEAD, index files and
directory redirects, misses falling through, methods, Cache-Control."""
import hashlib
import os

import pytest

from conftest import (MIME, LARGE_SIZE, Conn, curl, curl_head, get, request,
                      sha256)


@pytest.mark.parametrize("name", sorted(MIME))
def test_mime_type_and_body(server, tree, name):
    r = get(server.port, "/" + name.replace(" ", "%20"))
    assert r.status == 200, r
    assert r.header("Content-Type") == MIME[name]
    data = tree.data(name)
    assert int(r.header("Content-Length")) == len(data)
    assert sha256(r.body) == sha256(data)
    assert r.header("Accept-Ranges") == "bytes"


def test_custom_mime_table_and_default_type(server, tree):
    r = get(server.port, "/custom/thing.foo")
    assert r.status == 200 and r.header("Content-Type") == "application/x-foo"
    # the extra table wins over the built-in one, case-insensitively
    r = get(server.port, "/custom/hello.txt")
    assert r.header("Content-Type") == "text/x-custom-txt"
    r = get(server.port, "/custom/file.zzz")
    assert r.header("Content-Type") == "text/x-unknown"
    assert r.body == tree.data("file.zzz")


def test_space_in_name(server, tree):
    r = get(server.port, "/sp%20ace.txt")
    assert r.status == 200 and r.body == b"a file with a space\n"


def test_large_file_raw_socket(server, tree):
    r = get(server.port, "/large.bin")
    assert r.status == 200
    assert int(r.header("Content-Length")) == LARGE_SIZE
    assert sha256(r.body) == sha256(tree.data("large.bin"))
    assert r.header("Content-Type") == "application/octet-stream"


def test_large_file_curl(server, tree, tmp_path):
    out = tmp_path / "large.out"
    p = curl("-o", str(out), "-w", "%{http_code} %{size_download}",
             f"http://127.0.0.1:{server.port}/large.bin")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == f"200 {LARGE_SIZE}"
    assert sha256(out.read_bytes()) == sha256(tree.data("large.bin"))


def test_keepalive_several_files_in_a_row(server, tree):
    with Conn(server.port) as c:
        for name in ("hello.txt", "large.bin", "img.png", "large.bin"):
            r = c.request("GET", "/" + name)
            assert r.status == 200
            assert sha256(r.body) == sha256(tree.data(name))


def test_pipelined_requests(server, tree):
    with Conn(server.port) as c:
        for name in ("hello.txt", "large.bin", "index.html"):
            c.send("GET", "/" + name)
        for name in ("hello.txt", "large.bin", "index.html"):
            r = c.read()
            assert r.status == 200 and r.body == tree.data(name)


def test_head_same_headers_no_body(server, tree):
    with Conn(server.port) as c:
        g = c.request("GET", "/large.bin")
        h = c.request("HEAD", "/large.bin")
        assert h.status == 200
        assert h.header("Content-Length") == str(LARGE_SIZE)
        for name in ("Content-Type", "ETag", "Last-Modified",
                     "Cache-Control", "Accept-Ranges", "Vary"):
            assert h.header(name) == g.header(name), name
        # nothing follows the HEAD head: the next response parses cleanly
        assert c.no_more_bytes()
        r = c.request("GET", "/hello.txt")
        assert r.body == b"hello, static\n"


def test_head_small_file_curl(server, tree):
    status, h = curl_head(server.port, "/hello.txt", "-I")
    assert status == 200
    assert h["content-length"] == str(len(b"hello, static\n"))
    assert h["content-type"] == "text/plain; charset=utf-8"


def test_empty_file(server):
    r = get(server.port, "/empty.txt")
    assert r.status == 200 and r.body == b""
    assert r.header("Content-Length") == "0"


# ---- directories ---------------------------------------------------------------

def test_root_index(server, tree):
    r = get(server.port, "/")
    assert r.status == 200
    assert r.body == tree.data("index.html")
    assert r.header("Content-Type") == "text/html; charset=utf-8"


def test_sub_index(server, tree):
    r = get(server.port, "/sub/")
    assert r.status == 200 and r.body == b"<p>sub index</p>\n"


def test_dir_without_slash_redirects(server):
    r = get(server.port, "/sub")
    assert r.status == 301
    assert r.header("Location") == "/sub/"
    r = get(server.port, "/sub?a=1&b=%20")
    assert r.status == 301 and r.header("Location") == "/sub/?a=1&b=%20"
    r = get(server.port, "/sub/deeper")
    assert r.status == 301 and r.header("Location") == "/sub/deeper/"


def test_prefix_root_redirects(server):
    r = get(server.port, "/cache")
    assert r.status == 301 and r.header("Location") == "/cache/"
    r = get(server.port, "/cache/")
    assert r.status == 200 and r.header("Cache-Control").startswith("public")


def test_curl_follows_redirect(server, tree):
    p = curl("-L", "-w", "%{http_code} %{num_redirects}",
             f"http://127.0.0.1:{server.port}/sub")
    assert p.stdout.endswith(b"200 1")
    assert p.stdout.startswith(b"<p>sub index</p>\n")


def test_no_directory_listing(server):
    r = get(server.port, "/emptydir/")
    assert r.status == 404 and r.body == b"app 404\n"
    # a directory without index and without slash: still redirected first
    r = get(server.port, "/emptydir")
    assert r.status == 301


def test_index_disabled(server):
    r = get(server.port, "/noindex/sub/")
    assert r.status == 404
    r = get(server.port, "/noindex/sub")
    assert r.status == 404
    r = get(server.port, "/noindex/sub/page.html")
    assert r.status == 200 and r.body == b"<p>sub page</p>\n"


def test_no_dir_redirect_serves_index(server):
    r = get(server.port, "/noredir/sub")
    assert r.status == 200 and r.body == b"<p>sub index</p>\n"
    assert r.header("Content-Type") == "text/html; charset=utf-8"


def test_custom_index_name(server, tree):
    r = get(server.port, "/custom/")
    assert r.status == 200 and r.body == b"<p>custom home</p>\n"
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    r = get(server.port, "/custom/sub/")  # sub has index.html, no home.htm
    assert r.status == 404


def test_file_with_trailing_slash_is_a_miss(server):
    r = get(server.port, "/hello.txt/")
    assert r.status == 404


# ---- misses and methods ------------------------------------------------------------

def test_miss_falls_through_to_routes_and_404(server):
    r = get(server.port, "/routed")
    assert r.status == 200 and r.body == b"routed\n"
    r = get(server.port, "/nope.txt")
    assert r.status == 404
    assert r.body == b"app 404\n"  # the app's 404, not the middleware's


def test_no_fallthrough_answers_404(server):
    r = get(server.port, "/strict/nope.txt")
    assert r.status == 404 and r.body == b"Not Found\n"
    # even where a route exists: the middleware answers first
    r = get(server.port, "/strict/route")
    assert r.status == 404 and r.body == b"Not Found\n"
    r = get(server.port, "/strict/hello.txt")
    assert r.status == 200 and r.body == b"hello, static\n"


def test_other_methods_pass_through(server):
    r = request(server.port, "POST", "/hello.txt")
    assert r.status == 200 and r.body == b"posted\n"
    r = request(server.port, "DELETE", "/large.bin")
    assert r.status == 404 and r.body == b"app 404\n"


def test_no_fallthrough_405(server):
    r = request(server.port, "PUT", "/strict/hello.txt")
    assert r.status == 405
    assert r.header("Allow") == "GET, HEAD"


def test_requests_outside_prefix_untouched(server):
    # "/cachex" is not under "/cache": default instance misses, so 404
    r = get(server.port, "/cachex/hello.txt")
    assert r.status == 404


# ---- Cache-Control and set_headers -----------------------------------------------------

def test_cache_control_default(server):
    r = get(server.port, "/hello.txt")
    assert r.header("Cache-Control") == "public, max-age=0"


def test_cache_control_max_age_immutable(server):
    r = get(server.port, "/cache/hello.txt")
    assert r.header("Cache-Control") == "public, max-age=3600, immutable"
    assert r.body == b"hello, static\n"


def test_cache_control_verbatim_and_set_headers(server):
    r = get(server.port, "/custom/index.html")
    assert r.header("Cache-Control") == "no-cache"
    assert r.header("X-Static-File") == "index.html"
    assert r.header("X-Static-Arg") == "arg-ok"
    r = get(server.port, "/custom/app.js", {"Accept-Encoding": "gzip"})
    assert r.header("X-Static-File") == "app.js.gz"


def test_prefix_on_segment_boundary(server, tree):
    r = get(server.port, "/allow/hello.txt")
    assert r.status == 200 and r.body == b"hello, static\n"
    r = get(server.port, "/allow")
    assert r.status == 301 and r.header("Location") == "/allow/"
