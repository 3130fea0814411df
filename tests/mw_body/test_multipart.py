"""tl_body_multipart: curl -F and crafted bodies; limits; temp files are
0600, removed at the end of every request (autouse fixture in conftest)
unless kept; malformed input is 400 and leaves no file behind."""
import json
import os
import stat
import subprocess

from conftest import HOST, http


def fnv(data):
    h = 14695981039346656037
    for c in data:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def fields(o):
    return [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in o["fields"]]


def curl(server, path, *args):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
                        *args, f"http://{HOST}:{server.port}{path}"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def raw_mp(server, body, boundary="BOUND", ctype=None, path="/upload"):
    ct = ctype or f"multipart/form-data; boundary={boundary}"
    return http(server.port, "POST", path, headers=[("Content-Type", ct)], body=body)


def mkfile(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_curl_fields_and_files(server, tmp_path, upload_dir):
    d1 = os.urandom(5000)
    d2 = b"plain text\r\n--not a boundary\r\n"
    f1 = mkfile(tmp_path, "photo.bin", d1)
    f2 = mkfile(tmp_path, "notes.txt", d2)
    code, b = curl(server, "/upload", "-F", "a=1", "-F", "a=two words",
                   "-F", f"file=@{f1};type=image/png", "-F", f"other=@{f2}")
    assert code == 200, b
    o = json.loads(b)
    assert fields(o) == [(b"a", b"1"), (b"a", b"two words")]
    assert o["count_a"] == 2
    files = o["files"]
    assert len(files) == 2
    assert o["file_field_index"] == 0
    for f, (field, name, data, ctype) in zip(files, [
            (b"file", b"photo.bin", d1, "image/png"),
            (b"other", b"notes.txt", d2, "text/plain")]):
        assert bytes.fromhex(f["field"]) == field
        assert bytes.fromhex(f["filename"]) == name
        assert f["content_type"] == ctype
        assert f["size"] == len(data) == f["disk_size"]
        assert f["fnv"] == fnv(data)
        assert f["mode"] == 0o600
        assert os.path.dirname(f["path"]) == upload_dir
        assert os.path.basename(f["path"]).startswith("talon-upload-")
        assert not os.path.exists(f["path"])  # removed when the response finished


def test_keep_claims_files(server, tmp_path):
    data = b"keep me" * 100
    f = mkfile(tmp_path, "k.txt", data)
    code, b = curl(server, "/upload-keep", "-F", f"f=@{f}", "-F", f"g=@{f}")
    assert code == 200, b
    o = json.loads(b)
    assert o["keep_errors"] == 0 and o["keep_fake"] == -30002
    for info in o["files"]:
        p = info["path"]
        assert os.path.exists(p)
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
        with open(p, "rb") as fh:
            assert fh.read() == data
        os.unlink(p)


def test_file_size_limit(server, tmp_path):
    ok = mkfile(tmp_path, "ok.bin", b"x" * 100000)
    big = mkfile(tmp_path, "big.bin", b"x" * 100001)
    code, b = curl(server, "/upload", "-F", f"f=@{ok}")
    assert code == 200 and json.loads(b)["files"][0]["size"] == 100000
    code, b = curl(server, "/upload", "-F", f"small=@{ok}", "-F", f"f=@{big}")
    assert (code, b) == (413, b"multipart: file too large\n")


def test_total_limit_removes_written_files(server, tmp_path):
    f = mkfile(tmp_path, "f.bin", b"y" * 80000)
    code, b = curl(server, "/upload", "-F", f"a=@{f}", "-F", f"b=@{f}")
    assert (code, b) == (413, b"multipart: form too large\n")


def test_file_count_limit(server, tmp_path):
    f = mkfile(tmp_path, "f.txt", b"z")
    args = []
    for i in range(3):
        args += ["-F", f"f{i}=@{f}"]
    code, b = curl(server, "/upload", *args)
    assert code == 200 and len(json.loads(b)["files"]) == 3
    code, b = curl(server, "/upload", *args, "-F", f"f3=@{f}")
    assert (code, b) == (413, b"multipart: too many files\n")


def test_field_count_limit(server):
    args = []
    for i in range(5):
        args += ["-F", f"k{i}=v"]
    code, b = curl(server, "/upload", *args)
    assert code == 200 and json.loads(b)["count"] == 5
    code, b = curl(server, "/upload", *args, "-F", "k5=v")
    assert (code, b) == (413, b"multipart: too many fields\n")


def part(name, content, filename=None, ctype=None, extra=b""):
    cd = b'Content-Disposition: form-data; name="' + name + b'"'
    if filename is not None:
        cd += b'; filename="' + filename + b'"'
    h = cd + b"\r\n"
    if ctype:
        h += b"Content-Type: " + ctype + b"\r\n"
    return h + extra + b"\r\n" + content


def body_of(parts, boundary=b"BOUND", preamble=b"", epilogue=b""):
    out = preamble
    for p in parts:
        out += b"--" + boundary + b"\r\n" + p + b"\r\n"
    return out + b"--" + boundary + b"--" + epilogue


def test_quoted_boundary_and_crlf_edges(server):
    bnd = b"a:b=c?d ()+_,-./x"
    v1 = b"line1\r\n\r\nline2\r\n"       # CRLFs inside, and at the end
    v2 = b"\r\n--a:b=c?d not at line start --a:b=c?d ()+_,-./x"  # near-misses
    body = (b"preamble text\r\n"
            + b"--" + bnd + b"  \t\r\n" + part(b"v1", v1) + b"\r\n"
            + b"--" + bnd + b"\r\n" + part(b"v2", v2) + b"\r\n"
            + b"--" + bnd + b"\r\n" + part(b"e", b"") + b"\r\n"
            + b"--" + bnd + b"--\r\nepilogue --" + bnd + b" junk")
    st, b = raw_mp(server, body, ctype='multipart/form-data; boundary="a:b=c?d ()+_,-./x"')
    assert st == 200, b
    assert fields(json.loads(b)) == [(b"v1", v1), (b"v2", v2), (b"e", b"")]


def test_no_crlf_before_first_boundary_and_defaults(server):
    body = body_of([part(b"f", b"\x00\x01data", filename=b"d.bin")])
    st, b = raw_mp(server, body)
    assert st == 200, b
    f = json.loads(b)["files"][0]
    assert f["content_type"] == "application/octet-stream"
    assert f["fnv"] == fnv(b"\x00\x01data")


def test_path_traversal_and_control_bytes_in_filename(server):
    cases = [(b"../../x", b"x"), (b"..\\..\\win.ini", b"win.ini"), (b"..", b""),
             (b"/etc/passwd", b"passwd"), (b'q\\"uote\x01\x7f.txt', b'q"uote.txt')]
    for batch in (cases[:3], cases[3:]):  # /upload-keep takes 3 files at most
        body = body_of([part(b"f", b"1", filename=sent) for sent, _ in batch])
        st, b = raw_mp(server, body, path="/upload-keep")
        assert st == 200, b
        o = json.loads(b)
        names = [bytes.fromhex(f["filename"]) for f in o["files"]]
        assert names == [want for _, want in batch]
        for f in o["files"]:
            assert os.path.basename(f["path"]).startswith("talon-upload-")
            os.unlink(f["path"])


def test_header_injection_in_filename(server):
    # The CRLF ends the header line inside the quoted string: malformed.
    body = body_of([part(b"f", b"data", filename=b"evil\r\nContent-Type: text/html")])
    assert raw_mp(server, body) == (400, b"multipart: bad part headers\n")
    # An extra header line after a complete disposition is just ignored.
    body = body_of([part(b"f", b"data", filename=b"ok.txt",
                         extra=b"X-Injected: 1\r\n")])
    st, b = raw_mp(server, body)
    assert st == 200 and bytes.fromhex(json.loads(b)["files"][0]["filename"]) == b"ok.txt"


def test_empty_file_input_skipped(server):
    body = body_of([part(b"f", b"", filename=b"", ctype=b"application/octet-stream"),
                    part(b"g", b"", filename=b"empty.txt"),
                    part(b"n", b"v")])
    st, b = raw_mp(server, body)
    o = json.loads(b)
    assert st == 200
    assert [bytes.fromhex(f["filename"]) for f in o["files"]] == [b"empty.txt"]
    assert o["files"][0]["size"] == 0
    assert fields(o) == [(b"n", b"v")]


def test_escaped_quote_in_name(server):
    body = body_of([b'Content-Disposition: form-data; name="a\\"b"\r\n\r\nv'])
    st, b = raw_mp(server, body)
    assert st == 200 and fields(json.loads(b)) == [(b'a"b', b"v")]


def test_missing_closing_boundary(server):
    good = part(b"f", b"data", filename=b"x.txt")
    # Truncated after the content: the file part must not be kept.
    assert raw_mp(server, b"--BOUND\r\n" + good) == (400, b"multipart: missing closing boundary\n")
    # A delimiter that is not followed by a part nor closed.
    assert raw_mp(server, b"--BOUND\r\n" + good + b"\r\n--BOUND") == \
        (400, b"multipart: missing closing boundary\n")


def test_error_after_a_file_removes_it(server):
    body = (b"--BOUND\r\n" + part(b"f", b"filedata", filename=b"x.txt")
            + b"\r\n--BOUND\r\nNo-Colon-Here\r\n\r\nv\r\n--BOUND--")
    assert raw_mp(server, body) == (400, b"multipart: bad part headers\n")


def test_bad_boundary_and_headers(server):
    good = body_of([part(b"a", b"1")])
    assert raw_mp(server, good, ctype="multipart/form-data") == \
        (400, b"multipart: missing or invalid boundary\n")
    assert raw_mp(server, good, ctype="multipart/form-data; boundary=" + "b" * 71) == \
        (400, b"multipart: missing or invalid boundary\n")
    assert raw_mp(server, good, ctype='multipart/form-data; boundary="BOUND') == \
        (400, b"multipart: missing or invalid boundary\n")
    assert raw_mp(server, good, boundary="OTHER") == (400, b"multipart: boundary not found\n")
    for headers in [b"",                                        # none at all
                    b"Content-Type: text/plain\r\n",            # no disposition
                    b"Content-Disposition: attachment; name=\"a\"\r\n",
                    b"Content-Disposition: form-data\r\n",      # no name
                    b"Content-Disposition: form-data; name=\"a\r\n",
                    b"Content-Disposition: form-data;\r\n name=\"a\"\r\n",  # obs-fold
                    b"Bad Header: x\r\nContent-Disposition: form-data; name=a\r\n"]:
        body = b"--BOUND\r\n" + headers + b"\r\nv\r\n--BOUND--"
        assert raw_mp(server, body) == (400, b"multipart: bad part headers\n"), headers
    body = b"--BOUND\r\nContent-Disposition: form-data; name=a\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\nv\r\n--BOUND--"
    assert raw_mp(server, body) == (400, b"multipart: part headers too long or unterminated\n")
    body = b"--BOUNDjunk\r\n" + part(b"a", b"1") + b"\r\n--BOUND--"
    assert raw_mp(server, body) == (400, b"multipart: bad boundary line\n")


def test_wrong_type(server):
    assert http(server.port, "POST", "/upload", headers=[("Content-Type", "application/json")],
                body=b"{}") == (415, b"expected multipart/form-data\n")
    # Not required: other types pass; multipart is parsed on /any too.
    st, b = http(server.port, "POST", "/any", headers=[("Content-Type", "text/plain")], body=b"x")
    assert st == 200 and json.loads(b)["files"] == []
    st, b = raw_mp(server, body_of([part(b"a", b"1")]), path="/any")
    assert st == 200 and fields(json.loads(b)) == [(b"a", b"1")]


def test_large_upload_near_app_limit(server, tmp_path):
    # The app's max_body_bytes (512 KiB) answers 413 before middleware.
    f = mkfile(tmp_path, "huge.bin", b"h" * (600 * 1024))
    code, _ = curl(server, "/any", "-F", f"f=@{f}")
    assert code == 413
    f = mkfile(tmp_path, "near.bin", os.urandom(500 * 1024))
    code, b = curl(server, "/any", "-F", f"f=@{f}")
    assert code == 200
    info = json.loads(b)["files"][0]
    assert info["size"] == 500 * 1024
    with open(f, "rb") as fh:
        assert info["fnv"] == fnv(fh.read())
