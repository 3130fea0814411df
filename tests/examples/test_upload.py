"""upload: multipart uploads with curl -F, listing, limits (413), and no
temporary files left behind."""
import hashlib
import json
import os
import re
import socket

import pytest

from conftest import HOST, curl, module_example, request

MiB = 1 << 20
NAME_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{16}(\.[a-z0-9]{1,8})?$")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("upload")


@pytest.fixture(scope="module")
def upload(pytestconfig, workdir):
    # UPLOAD_DIR does not exist yet: the example creates it (and .tmp).
    env = {"UPLOAD_DIR": str(workdir / "uploads")}
    yield from module_example(pytestconfig, "upload", env=env)


@pytest.fixture
def up(upload, workdir):
    """The server and its directory; after each test, .tmp must be empty."""
    d = workdir / "uploads"
    yield upload, d
    assert os.listdir(d / ".tmp") == [], "temporary files left behind"


def stored(d):
    return sorted(n for n in os.listdir(d) if not n.startswith("."))


def make_file(d, name, size, seed=b""):
    p = d / name
    block = hashlib.sha256(seed + name.encode()).digest() * 4096
    with open(p, "wb") as f:
        left = size
        while left:
            f.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    return p


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def post(port, *forms, headers=()):
    args = []
    for f in forms:
        args += ["-F", f]
    for h in headers:
        args += ["-H", h]
    p = curl("-o", "-", "-w", "\n%{http_code}", *args,
             f"http://{HOST}:{port}/upload")
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition(b"\n")
    return int(code), body


def test_dirs_created(up):
    _, d = up
    assert d.is_dir() and (d / ".tmp").is_dir()


def test_index_page(up):
    ex, _ = up
    r = request(ex.port, "GET", "/")
    assert r.status == 200
    assert b'enctype=multipart/form-data' in r.body
    assert b"action=/upload" in r.body


def test_upload_list_download(up, tmp_path):
    ex, d = up
    before = set(stored(d))
    a = make_file(tmp_path, "notes.txt", 1000)
    b = make_file(tmp_path, "photo.JPG", 3 * MiB + 17)
    code, body = post(ex.port, f"file=@{a}", f"file=@{b};type=image/jpeg",
                      "title=holiday")
    assert code == 201, body
    saved = json.loads(body)["saved"]
    assert [s["filename"] for s in saved] == ["notes.txt", "photo.JPG"]
    assert [s["size"] for s in saved] == [1000, 3 * MiB + 17]
    assert all(s["field"] == "file" for s in saved)
    names = [s["name"] for s in saved]
    assert all(NAME_RE.match(n) for n in names), names
    assert names[0].endswith(".txt") and names[1].endswith(".jpg")
    assert set(stored(d)) - before == set(names)
    assert sha(d / names[0]) == sha(a) and sha(d / names[1]) == sha(b)

    listing = request(ex.port, "GET", "/files").json()
    sizes = {f["name"]: f["size"] for f in listing}
    assert sizes[names[0]] == 1000 and sizes[names[1]] == 3 * MiB + 17

    r = request(ex.port, "GET", f"/files/{names[1]}")
    assert r.status == 200
    assert hashlib.sha256(r.body).hexdigest() == sha(b)
    assert r.header("Content-Disposition") == "attachment"


def test_client_names_never_used(up, tmp_path):
    ex, d = up
    f = make_file(tmp_path, "x.bin", 10)
    before = set(stored(d))
    code, body = post(ex.port, f'a=@{f};filename="../../evil.sh"',
                      f'b=@{f};filename=".htaccess"',
                      f'c=@{f};filename="my archive.tar.gz"')
    assert code == 201, body
    saved = json.loads(body)["saved"]
    assert saved[0]["filename"] == "evil.sh"  # sanitized by talon
    names = [s["name"] for s in saved]
    assert all(NAME_RE.match(n) for n in names), names
    assert names[0].endswith(".sh") and names[2].endswith(".gz")
    assert not any(n.startswith(".") for n in names)
    assert set(stored(d)) - before == set(names)
    assert not (d.parent / "evil.sh").exists()
    for bad in ("..%2f..%2fetc%2fpasswd", ".tmp", "%2e%2e", "nope",
                names[0] + "x"):
        r = request(ex.port, "GET", f"/files/{bad}")
        assert r.status == 404
        assert r.header("Content-Type").startswith("text/plain")


def test_file_over_limit(up, tmp_path):
    ex, d = up
    before = stored(d)
    ok = make_file(tmp_path, "ok.bin", 100)
    big = make_file(tmp_path, "big.bin", 8 * MiB + 1)
    code, body = post(ex.port, f"file=@{ok}", f"file=@{big}")
    assert code == 413, body
    assert stored(d) == before  # the first file was not kept either
    # exactly at the limit is fine
    edge = make_file(tmp_path, "edge.bin", 8 * MiB)
    code, body = post(ex.port, f"file=@{edge}")
    assert code == 201, body


def test_too_many_files(up, tmp_path):
    ex, d = up
    before = stored(d)
    f = make_file(tmp_path, "s.txt", 10)
    code, body = post(ex.port, *[f"file=@{f}"] * 5)
    assert code == 413, body
    assert stored(d) == before
    code, body = post(ex.port, *[f"file=@{f}"] * 4)
    assert code == 201 and len(json.loads(body)["saved"]) == 4


def test_body_over_app_limit(up):
    """A declared body over the route's max_body_bytes (4 x 8 MiB + 64
    KiB) is refused by talon's core before any byte of it is read."""
    ex, d = up
    before = stored(d)
    with socket.create_connection((HOST, ex.port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: multipart/form-data; boundary=XX\r\n"
                  b"Content-Length: %d\r\n\r\n" % (40 * MiB))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data
    assert stored(d) == before


def test_not_multipart(up):
    ex, _ = up
    r = request(ex.port, "POST", "/upload",
                {"Content-Type": "application/json"}, "{}")
    assert r.status == 415


def test_no_file(up):
    ex, _ = up
    code, _ = post(ex.port, "title=nothing")
    assert code == 400


def test_malformed_multipart(up):
    ex, _ = up
    body = (b"--XX\r\nContent-Disposition: form-data; name=\"f\"; "
            b"filename=\"a.txt\"\r\n\r\n" + b"x" * 5000)  # no closing boundary
    r = request(ex.port, "POST", "/upload",
                {"Content-Type": "multipart/form-data; boundary=XX"}, body)
    assert r.status == 400


def test_browser_post_redirects(up, tmp_path):
    ex, _ = up
    f = make_file(tmp_path, "page.html", 50)
    p = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
             "-H", "Accept: text/html,application/xhtml+xml",
             "-F", f"file=@{f}", f"http://{HOST}:{ex.port}/upload")
    assert p.stdout.decode() == f"303 http://{HOST}:{ex.port}/"
