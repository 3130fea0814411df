"""tl_body_json through the real server: valid, invalid, deep, wrong
type, empty, too large, duplicates, chunked."""
import json
import re

from conftest import http, raw


def post(server, path, body, ctype="application/json", headers=()):
    h = list(headers)
    if ctype is not None:
        h.append(("Content-Type", ctype))
    st, b = http(server.port, "POST", path, headers=h, body=body)
    return st, b


def parsed(server, path, body, ctype="application/json"):
    st, b = post(server, path, body, ctype)
    assert st == 200, b
    return json.loads(b)


def test_valid_object(server):
    doc = {"b": [1, 2.5, {"c": None, "d": True}], "a": "\u00e9\u4e2d\U0001F600"}
    o = parsed(server, "/json", json.dumps(doc))
    assert o["has_json"] is True
    assert o["json"] == doc


def test_any_top_level_value(server):
    assert parsed(server, "/json", "42")["json"] == 42
    assert parsed(server, "/json", ' "s" ')["json"] == "s"
    assert parsed(server, "/json", "null")["has_json"] is True


def test_plus_json_and_params(server):
    assert parsed(server, "/json", "[1]", "application/vnd.api+json")["json"] == [1]
    assert parsed(server, "/json", "[2]", "Application/JSON; charset=UTF-8")["json"] == [2]
    st, b = post(server, "/json", "[3]", "application/json; charset=iso-8859-1")
    assert (st, b) == (415, b"JSON must be UTF-8\n")


def test_malformed_gives_400_with_position(server):
    for body in ['{"a":1,}', '{"a" 1}', "[1, 2", "{} x", "tru", '{"a":"\\u0000"}']:
        st, b = post(server, "/json", body)
        assert st == 400, body
        assert re.fullmatch(rb"invalid JSON: .+ at line \d+, column -?\d+ \(byte \d+\)\n", b), b
    st, b = post(server, "/json", '{\n  "a": 1,\n  "b": ]\n}')
    assert st == 400 and b"at line 3," in b


def test_invalid_utf8(server):
    st, b = post(server, "/json", b'["\xff\xfe"]')
    assert st == 400 and b.startswith(b"invalid JSON:")


def test_depth_limit(server):
    ok = "[" * 16 + "]" * 16
    assert parsed(server, "/json", ok)["has_json"] is True
    st, b = post(server, "/json", "[" * 17 + "]" * 17)
    assert (st, b) == (400, b"invalid JSON: nesting too deep\n")
    st, b = post(server, "/json", '{"a":' * 5000 + "1" + "}" * 5000)
    assert (st, b) == (400, b"invalid JSON: nesting too deep\n")
    # Brackets inside strings are not nesting.
    s = '["' + "[{" * 100 + '\\"]"]'
    assert parsed(server, "/json", s)["json"] == ["[{" * 100 + '"]']


def test_wrong_type_required_415(server):
    assert post(server, "/json", "{}", "text/plain") == (415, b"expected a JSON body\n")
    assert post(server, "/json", "{}", None) == (415, b"expected a JSON body\n")
    assert post(server, "/json", "{}", "application/jsonx")[0] == 415


def test_wrong_type_not_required_passes(server):
    o = parsed(server, "/json-opt", "{}", "text/plain")
    assert o["has_json"] is False and o["json"] is None


def test_empty_body_passes(server):
    o = parsed(server, "/json", "")
    assert o["has_json"] is False
    o = parsed(server, "/json", "", "text/plain")
    assert o["has_json"] is False


def test_too_large_413(server):
    body = json.dumps(["x" * 1000] * 66)  # > 64 KiB, < app limit
    assert len(body) > 65536
    st, b = post(server, "/json", body)
    assert (st, b) == (413, b"JSON body too large\n")


def test_duplicates(server):
    assert parsed(server, "/json", '{"a":1,"a":2}')["json"] == {"a": 2}
    st, b = post(server, "/json-opt", '{"a":1,"a":2}')
    assert st == 400 and b"duplicate" in b


def test_chunked_body(server):
    body = b'{"chunked": [1, 2, 3]}'
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5]), body[i:i + 5])
                      for i in range(0, len(body), 5)) + b"0\r\n\r\n"
    resp = raw(server.port, b"POST /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    head, _, rest = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(rest)["json"] == {"chunked": [1, 2, 3]}
