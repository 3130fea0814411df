"""The parsers' `error` option: refusals are answered by the application's
callback (here as JSON) with the parser's status and message, for all
three parsers; a callback that answers nothing leaves the status with an
empty body."""
import json

from conftest import raw


def post(server, path, body, ctype):
    """(status, headers dict with lower-case names, body bytes)."""
    if isinstance(body, str):
        body = body.encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n"
            + (f"Content-Type: {ctype}\r\n" if ctype else "") + "\r\n")
    resp = raw(server.port, head.encode() + body)
    head, _, rest = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, rest


def hooked(server, path, body, ctype):
    st, h, b = post(server, path, body, ctype)
    assert h["content-type"] == "application/json", (st, h, b)
    assert h["x-content-type-options"] == "nosniff"
    doc = json.loads(b)
    assert doc["status"] == st
    return st, doc["message"], doc["arg"]


def test_json_refusals(server):
    st, msg, arg = hooked(server, "/json-hook", "[1,", "application/json")
    assert (st, arg) == (400, "json")
    assert msg.startswith("invalid JSON: ") and not msg.endswith("\n")
    assert hooked(server, "/json-hook", "[1]", "text/plain") == \
        (415, "expected a JSON body", "json")
    assert hooked(server, "/json-hook", "[1]",
                  "application/json; charset=latin1") == \
        (415, "JSON must be UTF-8", "json")
    assert hooked(server, "/json-hook", "[" * 17 + "]" * 17,
                  "application/json") == \
        (400, "invalid JSON: nesting too deep", "json")
    assert hooked(server, "/json-hook", "[" + "1," * 40000 + "1]",
                  "application/json") == (413, "JSON body too large", "json")


def test_accepted_bodies_do_not_call_it(server):
    st, h, b = post(server, "/json-hook", '{"a":1}', "application/json")
    assert st == 200 and json.loads(b)["json"] == {"a": 1}


def test_silent_hook_sends_the_status_alone(server):
    st, h, b = post(server, "/json-silent", "[1,", "application/json")
    assert (st, b, h.get("content-length")) == (400, b"", "0")


def test_form_refusals(server):
    assert hooked(server, "/form-hook", "a=1", "text/plain") == \
        (415, "expected a URL-encoded form", "form")
    assert hooked(server, "/form-hook", "&".join(["a=1"] * 21),
                  "application/x-www-form-urlencoded") == \
        (413, "too many form fields", "form")


def test_multipart_refusals_remove_files_first(server):
    assert hooked(server, "/upload-hook", "x", "multipart/form-data") == \
        (400, "multipart: missing or invalid boundary", "upload")
    body = (b"--BOUND\r\nContent-Disposition: form-data; name=\"f\"; "
            b"filename=\"x.txt\"\r\n\r\nfiledata\r\n--BOUND\r\n"
            b"No-Colon-Here\r\n\r\nv\r\n--BOUND--")
    assert hooked(server, "/upload-hook", body,
                  "multipart/form-data; boundary=BOUND") == \
        (400, "multipart: bad part headers", "upload")
    # The autouse fixture checks that the file written before the error
    # is gone.
