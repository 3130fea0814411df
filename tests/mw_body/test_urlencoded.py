"""tl_body_urlencoded: repeated keys, '+' and % decoding, limits, types."""
import json
import subprocess

from conftest import HOST, http

FORM = "application/x-www-form-urlencoded"


def post(server, body, ctype=FORM, path="/form"):
    h = [("Content-Type", ctype)] if ctype else []
    return http(server.port, "POST", path, headers=h, body=body)


def fields(o):
    return [(bytes.fromhex(n), bytes.fromhex(v)) for n, v in o["fields"]]


def test_repeated_keys_and_decoding(server):
    st, b = post(server, "a=1&b=x+y&a=2&c=%41%42%c3%A9&d&&e=&%zz=%4&k+k=v%2Bw&=z")
    assert st == 200, b
    o = json.loads(b)
    assert fields(o) == [(b"a", b"1"), (b"b", b"x y"), (b"a", b"2"),
                         (b"c", b"AB\xc3\xa9"), (b"d", b""), (b"e", b""),
                         (b"%zz", b"%4"), (b"k k", b"v+w"), (b"", b"z")]
    assert o["count"] == 9 and o["count_a"] == 2
    assert bytes.fromhex(o["a"]) == b"1" and bytes.fromhex(o["a1"]) == b"2"


def test_nul_byte_value(server):
    o = json.loads(post(server, "n=a%00b")[1])
    assert fields(o) == [(b"n", b"a\x00b")]


def test_charset_param_and_case(server):
    st, b = post(server, "a=%E2%9C%93", "Application/X-WWW-Form-Urlencoded; charset=UTF-8")
    assert st == 200 and bytes.fromhex(json.loads(b)["a"]) == "\u2713".encode()


def test_field_limit(server):
    body = "&".join(f"f{i}={i}" for i in range(20))
    assert json.loads(post(server, body)[1])["count"] == 20
    body += "&f20=20"
    assert post(server, body) == (413, b"too many form fields\n")
    # Empty pairs do not count.
    assert post(server, "&&&&&&&&&&&&&&&&&&&&&&&&a=1")[0] == 200


def test_size_limit(server):
    assert post(server, "a=" + "x" * 5000) == (413, b"form too large\n")


def test_wrong_type(server):
    assert post(server, "a=1", "application/json") == (415, b"expected a URL-encoded form\n")
    assert post(server, "a=1", None)[0] == 415
    st, b = post(server, "a=1", "text/plain", path="/any")
    assert st == 200 and json.loads(b)["count"] == 0


def test_curl_form(server):
    r = subprocess.run(["curl", "-sS", "--max-time", "5",
                        "--data-urlencode", "msg=hello world & more=1",
                        "-d", "a=1", "-d", "a=2",
                        f"http://{HOST}:{server.port}/form"],
                       stdout=subprocess.PIPE, timeout=10, check=True)
    o = json.loads(r.stdout)
    assert fields(o) == [(b"msg", b"hello world & more=1"), (b"a", b"1"), (b"a", b"2")]
