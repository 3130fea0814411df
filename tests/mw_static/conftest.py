"""Fixtures for the static file middleware tests.

`tree` builds the served folder once per session in a temp dir: files of
every built-in MIME type, a multi-MB file, precompressed siblings,
dotfiles, symlinks inside and outside the root, a FIFO. The server gets
the root on its command line (through a symlink to the root, so the
middleware must realpath it). Real clients only: raw sockets and curl.

On teardown the server gets SIGTERM; the fixture asserts exit code 0 and
no sanitizer report in its stderr (ASAN_OPTIONS gets detect_leaks=1).
"""
import gzip
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from talon_server import (HOST, SANITIZER_MARKS,  # noqa: E402,F401
                          TalonServer, finish, listen_re)

LISTEN_RE = listen_re(HOST)

LARGE_SIZE = 5 * 1024 * 1024 + 123
SECRET = b"TOP SECRET outside the root\n"

# name -> expected Content-Type for the MIME table test
MIME = {
    "index.html": "text/html; charset=utf-8",
    "page.htm": "text/html; charset=utf-8",
    "UPPER.HTML": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "mod.mjs": "text/javascript; charset=utf-8",
    "data.json": "application/json; charset=utf-8",
    "hello.txt": "text/plain; charset=utf-8",
    "image.svg": "image/svg+xml; charset=utf-8",
    "img.png": "image/png",
    "photo.jpg": "image/jpeg",
    "photo.jpeg": "image/jpeg",
    "anim.gif": "image/gif",
    "pic.webp": "image/webp",
    "favicon.ico": "image/x-icon",
    "mod.wasm": "application/wasm",
    "font.woff": "font/woff",
    "font.woff2": "font/woff2",
    "doc.pdf": "application/pdf",
    "feed.xml": "application/xml; charset=utf-8",
    "app.js.map": "application/json; charset=utf-8",
    "clip.mp4": "video/mp4",
    "clip.webm": "video/webm",
    "song.mp3": "audio/mpeg",
    "table.csv": "text/csv; charset=utf-8",
    "noext": "application/octet-stream",
    "file.zzz": "application/octet-stream",
    "thing.foo": "application/octet-stream",
}


def pytest_addoption(parser):
    parser.addoption("--mw-server", action="store", default=None,
                     help="path to static_test_server")


def pattern(size, seed):
    """Deterministic pseudo-random bytes."""
    out = bytearray()
    i = 0
    s = hashlib.sha256(seed).digest()
    while len(out) < size:
        out += hashlib.sha256(s + i.to_bytes(8, "little")).digest() * 64
        i += 1
    return bytes(out[:size])


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class Tree:
    def __init__(self, base):
        self.base = base
        self.root = os.path.join(base, "root")
        self.rootlink = os.path.join(base, "rootlink")
        self.outside = os.path.join(base, "outside")
        self.files = {}  # relative path -> bytes

    def write(self, rel, data):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.files[rel] = data
        return path

    def path(self, rel):
        return os.path.join(self.root, rel)

    def data(self, rel):
        with open(self.path(rel), "rb") as f:
            return f.read()


def build_tree(base):
    t = Tree(base)
    os.makedirs(t.root)
    os.makedirs(t.outside)
    os.symlink(t.root, t.rootlink)
    with open(os.path.join(t.outside, "secret.txt"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(t.outside, "index.html"), "wb") as f:
        f.write(SECRET)

    for i, name in enumerate(sorted(MIME)):
        t.write(name, pattern(100 + 37 * i, name.encode()))
    t.write("index.html", b"<!doctype html><title>root index</title>\n")
    t.write("hello.txt", b"hello, static\n")
    t.write("home.htm", b"<p>custom home</p>\n")
    t.write("sp ace.txt", b"a file with a space\n")
    t.write("empty.txt", b"")
    t.write("large.bin", pattern(LARGE_SIZE, b"large"))
    js = b"".join(b"console.log(%d);\n" % i for i in range(4000))
    t.write("app.js", js)
    t.write("app.js.gz", gzip.compress(js, 9))
    t.write("app.js.br", b"BROTLI-STAND-IN:" + pattern(777, b"br"))
    big = b"".join(b"export const v%d = '%s';\n" % (i, b"x" * (i % 50))
                   for i in range(90000))
    t.write("large.js", big)
    t.write("large.js.gz", gzip.compress(big, 6))
    t.write("gzonly.js.gz", gzip.compress(b"only the gz\n"))
    t.write("lnk.js", b"identity lnk\n")
    os.symlink(os.path.join(t.outside, "secret.txt"), t.path("lnk.js.gz"))
    t.write("sub/index.html", b"<p>sub index</p>\n")
    t.write("sub/page.html", b"<p>sub page</p>\n")
    t.write("sub/.hidden", b"hidden in sub\n")
    t.write("sub/deeper/x.txt", b"deeper x\n")
    t.write("evil.com/index.html", b"not evil\n")
    os.makedirs(t.path("emptydir"))
    t.write(".env", b"SECRET_KEY=dotenv\n")
    t.write(".git/config", b"[core]\n\tbare = false\n")
    t.write(".well-known/security.txt", b"Contact: x@example.org\n")
    os.symlink("hello.txt", t.path("link_inside.txt"))
    os.symlink(t.path("hello.txt"), t.path("abs_link_inside.txt"))
    os.symlink("sub", t.path("link_dir_inside"))
    os.symlink("app.js", t.path("link_app.js"))
    os.symlink(".", t.path("link_self"))
    os.symlink("../outside/secret.txt", t.path("link_outside.txt"))
    os.symlink(os.path.join(t.outside, "secret.txt"),
               t.path("abs_link_outside.txt"))
    os.symlink("../outside", t.path("link_dir_outside"))
    os.symlink("/etc", t.path("link_etc"))
    os.symlink(".env", t.path("link_dotenv.txt"))
    os.symlink("link_loop", t.path("link_loop"))
    os.symlink("nope.txt", t.path("link_dangling"))
    os.mkfifo(t.path("pipe"))
    os.mkfifo(t.path("pipe.txt"))
    return t


@pytest.fixture(scope="session")
def tree():
    d = tempfile.TemporaryDirectory(prefix="talon-static-")
    yield build_tree(d.name)
    d.cleanup()


class Server(TalonServer):
    """Started by the constructor; stop() also checks the exit."""

    def __init__(self, binary, root):
        super().__init__([binary, "0", root],
                         tmp_prefix="talon-static-srv-", listen_host=HOST,
                         stop_timeout=10, out_name="out", err_name="err")
        self.start()

    def stop(self, timeout=None):
        rc = super().stop(timeout)
        self.check_clean_exit()
        return rc


def _ctor_checks(s):
    assert "ctor-checks ok" in s.stdout()


@pytest.fixture(scope="module")
def server(pytestconfig, tree):
    binary = pytestconfig.getoption("--mw-server")
    if not binary or not os.access(binary, os.X_OK):
        pytest.fail("--mw-server PATH to static_test_server is required")
    s = Server(binary, tree.rootlink)
    yield s
    finish(s, check=_ctor_checks)


# ---- raw HTTP client ---------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:100]!r}>"


class Conn:
    """One keep-alive connection; requests are written as raw bytes."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError(f"closed; buffered {self.buf[:200]!r}")
        self.buf += data

    def send(self, method, target, headers=None):
        lines = [f"{method} {target} HTTP/1.1", "Host: test"]
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def read(self, head=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.1 (\d{3}) ", lines[0])
        assert m, lines[0]
        headers = []
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers.append((k, v.strip()))
        r = Response(int(m.group(1)), headers, b"")
        assert r.header("Transfer-Encoding") is None, r
        if head or r.status in (204, 304):
            return r
        n = int(r.header("Content-Length"))
        while len(self.buf) < n:
            self._fill()
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def request(self, method, target, headers=None):
        self.send(method, target, headers)
        return self.read(head=(method == "HEAD"))

    def no_more_bytes(self, wait=0.2):
        """True if nothing else arrives within `wait` seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(10.0)
        return not data


def request(port, method, target, headers=None):
    with Conn(port) as c:
        return c.request(method, target, headers)


def get(port, target, headers=None):
    return request(port, "GET", target, headers)


def curl(*args, timeout=30):
    return subprocess.run(["curl", "-sS", "--max-time", str(timeout - 5),
                           *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


def curl_head(port, path, *args):
    """curl -D - -o /dev/null: returns (status, {lower-name: value})."""
    p = curl("-D", "-", "-o", "/dev/null", *args,
             f"http://{HOST}:{port}{path}")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs
