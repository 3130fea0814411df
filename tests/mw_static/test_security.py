"""Path attacks: traversal in every encoding, NUL bytes, backslashes,
symlinks out of the root, dotfiles, FIFOs, very long paths, open
redirects. Every answer is checked for its exact status and for the
absence of the secret that lives outside the root."""
import os

import pytest

from conftest import SECRET, Conn, curl, get


def assert_no_leak(r):
    if r.status == 404:
        assert r.body == b"app 404\n"  # fell through to the app
    assert SECRET not in r.body
    assert b"root:" not in r.body  # /etc/passwd
    assert b"SECRET_KEY" not in r.body


@pytest.mark.parametrize("target,status", [
    ("/../etc/passwd", 403),
    ("/../../../../../../etc/passwd", 403),
    ("/sub/../../outside/secret.txt", 403),
    ("/sub/../hello.txt", 403),  # ".." is refused even when harmless
    ("/%2e%2e/%2e%2e/etc/passwd", 403),
    ("/%2E%2E/%2e%2E/etc/passwd", 403),
    ("/..%2f..%2fetc/passwd", 403),
    ("/..%2F..%2F..%2Foutside%2Fsecret.txt", 403),
    ("/.%2e/outside/secret.txt", 403),
    ("/sub/%2e%2e/%2e%2e/outside/secret.txt", 403),
    ("/%252e%252e/%252e%252e/etc/passwd", 404),  # double-encoded: a name
    ("/%252e%252e%252f%252e%252e%252fetc/passwd", 404),
    ("//etc/passwd", 404),
    ("///etc//passwd", 404),
    ("/%2fetc/passwd", 404),
    ("/..%5c..%5cetc%5cpasswd", 400),  # backslash
    ("/sub%5c..%5chello.txt", 400),
    ("/hello.txt%00.png", 400),
    ("/%00", 400),
    ("/sub/%00/x", 400),
    ("/deny/../etc/passwd", 403),
    ("/strict/%2e%2e/outside/secret.txt", 403),
])
def test_traversal_raw(server, target, status):
    r = get(server.port, target)
    assert r.status == status, (target, r)
    assert_no_leak(r)


def test_traversal_curl_path_as_is(server):
    for path in ("/../outside/secret.txt", "/../../etc/passwd"):
        p = curl("--path-as-is", "-w", "\n%{http_code}",
                 f"http://127.0.0.1:{server.port}{path}")
        assert p.stdout.endswith(b"\n403"), p.stdout
        assert SECRET not in p.stdout


def test_absolute_path_to_outside(server, tree):
    # the secret's absolute path as a request path, with one and two slashes
    r = get(server.port, tree.outside + "/secret.txt")
    assert r.status == 404
    r = get(server.port, "/" + tree.outside + "/secret.txt")
    assert r.status == 404
    assert_no_leak(r)


@pytest.mark.parametrize("target", [
    "/link_outside.txt",
    "/abs_link_outside.txt",
    "/link_dir_outside/secret.txt",
    "/link_dir_outside/",
    "/link_etc/passwd",
    "/link_etc/hostname",
    "/lnk.js.gz",  # the symlinked sibling itself
    "/link_loop",
    "/link_dangling",
    "/nofollow/link_inside.txt",
    "/nofollow/abs_link_inside.txt",
    "/nofollow/link_dir_inside/page.html",
    "/nofollow/link_outside.txt",
])
def test_symlinks_refused(server, target):
    r = get(server.port, target)
    assert r.status == 404, (target, r)
    assert_no_leak(r)


@pytest.mark.parametrize("target,body", [
    ("/link_inside.txt", b"hello, static\n"),
    ("/abs_link_inside.txt", b"hello, static\n"),
    ("/link_dir_inside/page.html", b"<p>sub page</p>\n"),
    ("/link_dir_inside/", b"<p>sub index</p>\n"),
    ("/link_self/link_self/hello.txt", b"hello, static\n"),
    ("/nofollow/hello.txt", b"hello, static\n"),
])
def test_symlinks_inside_allowed(server, target, body):
    r = get(server.port, target)
    assert r.status == 200, (target, r)
    assert r.body == body


def test_symlink_inside_content_type_from_requested_name(server):
    r = get(server.port, "/link_inside.txt")
    assert r.header("Content-Type") == "text/plain; charset=utf-8"


def test_symlinked_dir_redirect(server):
    r = get(server.port, "/link_dir_inside")
    assert r.status == 301 and r.header("Location") == "/link_dir_inside/"


@pytest.mark.parametrize("target", [
    "/.env", "/.git/config", "/.git/", "/.git", "/sub/.hidden",
    "/%2eenv", "/.well-known/security.txt",
    "/link_dotenv.txt",  # a visible link to a dotfile
])
def test_dotfiles_ignored_by_default(server, target):
    r = get(server.port, target)
    assert r.status == 404, (target, r)
    assert_no_leak(r)


@pytest.mark.parametrize("target", [
    "/deny/.env", "/deny/.git/config", "/deny/sub/.hidden",
    "/deny/link_dotenv.txt",
])
def test_dotfiles_denied(server, target):
    r = get(server.port, target)
    assert r.status == 403, (target, r)
    assert_no_leak(r)


def test_dotfiles_allowed(server):
    r = get(server.port, "/allow/.env")
    assert r.status == 200 and r.body == b"SECRET_KEY=dotenv\n"
    r = get(server.port, "/allow/.git/config")
    assert r.status == 200 and r.body == b"[core]\n\tbare = false\n"
    r = get(server.port, "/allow/.well-known/security.txt")
    assert r.status == 200
    r = get(server.port, "/allow/link_dotenv.txt")
    assert r.status == 200 and r.body == b"SECRET_KEY=dotenv\n"


def test_dotfile_with_no_fallthrough(server):
    r = get(server.port, "/strict/.env")
    assert r.status == 404 and r.body == b"Not Found\n"


@pytest.mark.parametrize("target", ["/pipe", "/pipe.txt", "/sub/..."])
def test_special_files_are_misses(server, target):
    r = get(server.port, target)
    assert r.status == 404, r


@pytest.mark.parametrize("target", [
    "/" + "a" * 3000,
    "/" + "a" * 256 + ".txt",
    "/" + "ab/" * 2000 + "x.txt",
    "/sub/" + "%41" * 2000,
    "/" + "a/" * 3900,
])
def test_very_long_paths(server, target):
    r = get(server.port, target)
    assert r.status == 404, r.status


def test_very_long_traversal(server):
    r = get(server.port, "/" + "../" * 2000 + "etc/passwd")
    assert r.status == 403
    assert_no_leak(r)


def test_open_redirect_refused(server):
    # "evil.com" is a directory in the root: the slash redirect must stay a
    # path on this host, never "//evil.com/" (a protocol-relative URL).
    for target, loc in (("//evil.com", "/evil.com/"),
                        ("///evil.com", "/evil.com/"),
                        ("/%2fevil.com", "/%2fevil.com/")):
        r = get(server.port, target)
        assert r.status == 301, (target, r)
        assert r.header("Location") == loc
        assert not r.header("Location").startswith("//")


def test_server_survives_attacks(server):
    with Conn(server.port) as c:
        for t in ("/../etc/passwd", "/%00", "/.env", "/link_outside.txt"):
            c.request("GET", t)
        r = c.request("GET", "/hello.txt")
        assert r.status == 200 and r.body == b"hello, static\n"


def test_no_descriptor_leak(server):
    """Every path through the middleware closes what it opened."""
    fd_dir = f"/proc/{server.proc.pid}/fd"

    def count():
        return len(os.listdir(fd_dir))

    targets = ["/hello.txt", "/large.bin", "/sub", "/sub/", "/emptydir/",
               "/link_inside.txt", "/link_outside.txt", "/link_loop",
               "/.env", "/deny/.env", "/pipe", "/nope", "/../x", "/%00",
               "/app.js", "/lnk.js", "/nofollow/link_inside.txt",
               "/strict/nope", "/custom/", "/noredir/sub"]
    with Conn(server.port) as c:
        c.request("GET", "/hello.txt")
        before = count()
        for _ in range(5):
            for t in targets:
                c.request("GET", t, {"Accept-Encoding": "br, gzip"})
                c.request("GET", t, {"Range": "bytes=0-3"})
                c.request("GET", t, {"If-None-Match": "*"})
                c.request("HEAD", t)
        assert count() == before
