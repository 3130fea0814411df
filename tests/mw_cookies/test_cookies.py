"""The cookies middleware: parsing, Set-Cookie, signed cookies, WebSocket."""
import asyncio
import os
import tempfile
from urllib.parse import quote

import pytest
import websockets
from websockets.exceptions import InvalidStatusCode

from conftest import (SECRET_NEW, SECRET_OLD, SECRET_OTHER, curl, get,
                      request, sign)


def cookie_val(server, header, name, prefix="/c"):
    r = get(server.port, f"{prefix}/cookie?name={quote(name)}", cookie=header)
    return r.text if r.status == 200 else None


# ---- parsing ------------------------------------------------------------

def test_basic_pairs(server):
    h = "a=1; b=two; c=3"
    assert cookie_val(server, h, "a") == "1"
    assert cookie_val(server, h, "b") == "two"
    assert cookie_val(server, h, "c") == "3"
    assert cookie_val(server, h, "d") is None


def test_no_cookie_header(server):
    r = get(server.port, "/c/cookie?name=a")
    assert (r.status, r.text) == (404, "absent")


def test_quoted_value_and_whitespace(server):
    h = '  a = "quoted" ;b=\t2\t;   c="";d="unbalanced'
    assert cookie_val(server, h, "a") == "quoted"
    assert cookie_val(server, h, "b") == "2"
    assert cookie_val(server, h, "c") == ""
    assert cookie_val(server, h, "d") == '"unbalanced'


def test_empty_value(server):
    r = get(server.port, "/c/cookie?name=e", cookie="e=; f=1")
    assert (r.status, r.body) == (200, b"")


def test_repeated_name_first_wins(server):
    assert cookie_val(server, "a=first; a=second", "a") == "first"


def test_repeated_across_cookie_headers(server):
    hs = [("Cookie", "a=one; b=1"), ("Cookie", "a=two; c=3")]
    r = request(server.port, "GET", "/c/cookie?name=a", hs)
    assert r.text == "one"
    r = request(server.port, "GET", "/c/cookie?name=c", hs)
    assert r.text == "3"


def test_malformed_pairs_skipped(server):
    h = "junk; =novalue; b@d=1; sp ace=2; ok=yes; ;; trailing"
    assert cookie_val(server, h, "ok") == "yes"
    assert cookie_val(server, h, "junk") is None
    assert cookie_val(server, h, "b@d") is None
    assert cookie_val(server, h, "sp ace") is None
    assert cookie_val(server, h, "trailing") is None
    assert cookie_val(server, h, "") is None


def test_value_may_contain_equals(server):
    assert cookie_val(server, "tok=a=b==; x=1", "tok") == "a=b=="


def test_middleware_not_run(server):
    r = get(server.port, "/plain/cookie?name=a", cookie="a=1")
    assert (r.status, r.text) == (404, "absent")
    r = get(server.port, "/plain/signed?name=a",
            cookie="a=v." + sign(SECRET_NEW, "a", "v"))
    assert (r.status, r.text) == (404, "absent")


def test_count_limit_configured(server):
    h = "a=1; b=2; c=3; d=4"
    assert cookie_val(server, h, "c", "/lim") == "3"
    assert cookie_val(server, h, "d", "/lim") is None


def test_byte_limit_never_cuts_a_value(server):
    # "a=1;" is 4 bytes, " b=" + 30 x + ";" is 34: 38 <= 40; " c=2" passes.
    h = "a=1; b=" + "x" * 30 + "; c=2"
    assert cookie_val(server, h, "a", "/lim") == "1"
    assert cookie_val(server, h, "b", "/lim") == "x" * 30
    assert cookie_val(server, h, "c", "/lim") is None
    # A single pair longer than the budget is dropped, not truncated.
    assert cookie_val(server, "big=" + "y" * 60, "big", "/lim") is None


def test_default_count_limit(server):
    h = "; ".join(f"k{i}={i}" for i in range(200))
    assert cookie_val(server, h, "k0") == "0"
    assert cookie_val(server, h, "k127") == "127"
    assert cookie_val(server, h, "k128") is None


# ---- Set-Cookie -----------------------------------------------------------

def test_set_cookie_all_attributes(server):
    r = get(server.port, "/c/set?name=sid&value=abc&path=/app&domain=example.com"
            "&max_age=3600&expires=784111777&secure=1&httponly=1&samesite=strict")
    assert r.status == 200
    assert r.set_cookies == [
        "sid=abc; Path=/app; Domain=example.com; Max-Age=3600; "
        "Expires=Sun, 06 Nov 1994 08:49:37 GMT; Secure; HttpOnly; SameSite=Strict"]


def test_set_cookie_minimal_and_lax(server):
    r = get(server.port, "/c/set?name=a&value=b")
    assert r.set_cookies == ["a=b"]
    r = get(server.port, "/c/set?name=a&value=&samesite=lax")
    assert r.set_cookies == ["a=; SameSite=Lax"]


def test_samesite_none_forces_secure(server):
    r = get(server.port, "/c/set?name=a&value=b&samesite=none")
    assert r.set_cookies == ["a=b; Secure; SameSite=None"]


def test_set_cookie_works_without_middleware(server):
    r = get(server.port, "/plain/set?name=a&value=b&path=/")
    assert (r.status, r.set_cookies) == (200, ["a=b; Path=/"])


def test_expires_far_future(server):
    r = get(server.port, "/c/set?name=a&value=b&expires=4102444800")
    assert r.set_cookies == ["a=b; Expires=Fri, 01 Jan 2100 00:00:00 GMT"]


@pytest.mark.parametrize("query", [
    "name=a&value=b%0d%0aX-Evil:%201",      # CRLF in the value
    "name=a&value=b%0aSet-Cookie:%20x=1",   # bare LF
    "name=a&value=b;%20Domain=evil.com",    # attribute smuggling
    "name=a&value=b,c",
    "name=a&value=b%20c",
    "name=a&value=%22q%22",
    "name=a&value=back%5Cslash",
    "name=a&value=%C3%A9",                  # non-ASCII
    "name=a&value=%7F",
    "name=a%3Db&value=c",                   # '=' in the name
    "name=a%20b&value=c",
    "name=a;b&value=c",
    "name=&value=c",
    "value=c",                              # no name
    "name=a",                               # no value
    "name=a&value=b&path=/x;%20Domain=evil.com",
    "name=a&value=b&path=/x%0d%0aX:1",
    "name=a&value=b&path=",
    "name=a&value=b&domain=evil.com/x",
    "name=a&value=b&domain=a%20b",
    "name=a&value=b&max_age=-1",
    "name=a&value=b&samesite=bogus",
    "name=__Secure-a&value=b",
    "name=__Host-a&value=b&secure=1",
    "name=__Host-a&value=b&secure=1&path=/&domain=example.com",
])
def test_set_cookie_refuses_bad_input(server, query):
    r = get(server.port, "/c/set?" + query)
    assert (r.status, r.text) == (400, "error TL_EINVAL\n"), r
    assert r.set_cookies == []
    assert r.header("X-Evil") is None


def test_prefixes_accepted_when_rules_met(server):
    r = get(server.port, "/c/set?name=__Host-a&value=b&secure=1&path=/")
    assert r.set_cookies == ["__Host-a=b; Path=/; Secure"]
    r = get(server.port, "/c/set?name=__Secure-a&value=b&samesite=none")
    assert r.set_cookies == ["__Secure-a=b; Secure; SameSite=None"]


def test_set_cookie_too_big(server):
    # Name and value together: at most 4096 bytes.
    r = get(server.port, "/c/set?name=a&value=" + "v" * 4096)
    assert (r.status, r.text, r.set_cookies) == (400, "error TL_ETOOBIG\n", [])
    r = get(server.port, "/c/set?name=a&value=" + "v" * 4095)
    assert r.status == 200 and r.set_cookies == ["a=" + "v" * 4095]


def test_clear_cookie(server):
    r = get(server.port, "/c/clear?name=a&path=/p&max_age=99&expires=784111777")
    assert r.set_cookies == [
        "a=; Path=/p; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"]


def test_curl_cookie_jar_round_trip(server):
    with tempfile.TemporaryDirectory() as d:
        jar = os.path.join(d, "jar")
        base = f"http://127.0.0.1:{server.port}"
        p = curl("-c", jar, f"{base}/c/set?name=theme&value=dark&path=/")
        assert p.stdout == b"ok"
        p = curl("-b", jar, f"{base}/c/cookie?name=theme")
        assert p.stdout == b"dark"
        p = curl("-b", jar, "-c", jar, f"{base}/c/clear?name=theme&path=/")
        p = curl("-b", jar, f"{base}/c/cookie?name=theme")
        assert p.stdout == b"absent"


# ---- signed cookies -----------------------------------------------------------

def set_signed(server, name, value, prefix="/c"):
    r = get(server.port, f"{prefix}/set_signed?name={name}&value={quote(value)}")
    assert r.status == 200, r
    return r.cookie(name)


def signed_val(server, name, raw, prefix="/c"):
    r = get(server.port, f"{prefix}/signed?name={name}", cookie=f"{name}={raw}")
    return r.text if r.status == 200 else None


def test_signed_cookie_format_is_hmac_sha256(server):
    raw = set_signed(server, "auth", "bob")
    assert raw == "bob." + sign(SECRET_NEW, "auth", "bob")
    assert len(raw.split(".")[1]) == 43


def test_signed_round_trip(server):
    for value in ["bob", "a.b.c", "", "x" * 1000]:
        raw = set_signed(server, "auth", value)
        assert signed_val(server, "auth", raw) == value
    # The raw cookie stays readable through tl_req_cookie.
    raw = set_signed(server, "auth", "bob")
    assert cookie_val(server, f"auth={raw}", "auth") == raw


def test_signed_tampering_rejected(server):
    raw = set_signed(server, "auth", "bob")
    value, sig = raw.split(".")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    cases = [
        "eve." + sig,                          # changed value
        "bob." + flipped,                      # changed signature
        "bob." + sig[:-1],                     # truncated
        "bob." + sig + "A",                    # extended
        "bob",                                 # unsigned
        "bob.",                                # empty signature
        "." + sig,                             # empty value, wrong sig
        "bob." + sign(SECRET_NEW, "other", "bob"),  # signed for another name
        "bob." + sign(SECRET_OTHER, "auth", "bob"),  # unknown secret
        "bob." + sig.upper(),
    ]
    for c in cases:
        assert signed_val(server, "auth", c) is None, c
    assert signed_val(server, "auth", raw) == "bob"


def test_signed_non_canonical_signature_rejected(server):
    sig = sign(SECRET_NEW, "auth", "bob")
    # The last base64url character carries 2 unused bits: another letter
    # with the same leading bits decodes alike but must not verify.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(sig[-1])
    other = alphabet[i ^ 1]
    assert signed_val(server, "auth", "bob." + sig[:-1] + other) is None


def test_secret_rotation(server):
    # Signed by a server that only knows the old secret...
    raw = set_signed(server, "auth", "carol", prefix="/old")
    assert raw == "carol." + sign(SECRET_OLD, "auth", "carol")
    # ...still verifies where the old secret is second in the list...
    assert signed_val(server, "auth", raw) == "carol"
    # ...while new signatures use the first secret, unknown to /old.
    new = set_signed(server, "auth", "carol")
    assert new != raw
    assert signed_val(server, "auth", new, prefix="/old") is None
    # A foreign secret is not accepted.
    foreign = set_signed(server, "auth", "carol", prefix="/other")
    assert signed_val(server, "auth", foreign) is None


def test_signed_without_secrets(server):
    r = get(server.port, "/nosecret/set_signed?name=a&value=b")
    assert (r.status, r.text, r.set_cookies) == (400, "error TL_ESTATE\n", [])
    r = get(server.port, "/plain/set_signed?name=a&value=b")
    assert (r.status, r.text, r.set_cookies) == (400, "error TL_ESTATE\n", [])
    raw = "b." + sign(SECRET_NEW, "a", "b")
    assert signed_val(server, "a", raw, prefix="/nosecret") is None


def test_signed_refuses_bad_value(server):
    r = get(server.port, "/c/set_signed?name=a&value=b%0d%0aX:1")
    assert (r.status, r.set_cookies) == (400, [])
    r = get(server.port, "/c/set_signed?name=a&value=" + "v" * 4060)
    assert (r.status, r.text) == (400, "error TL_ETOOBIG\n")


# ---- WebSocket upgrade ----------------------------------------------------------

async def ws_first_message(port, path, cookie=None):
    headers = {"Cookie": cookie} if cookie is not None else {}
    async with websockets.connect(f"ws://127.0.0.1:{port}{path}",
                                  extra_headers=headers, open_timeout=5) as ws:
        return await asyncio.wait_for(ws.recv(), 5)


async def ws_status(port, path, cookie=None):
    try:
        await ws_first_message(port, path, cookie)
    except InvalidStatusCode as e:
        return e.status_code
    return 101


def test_ws_upgrade_reads_cookie(server):
    msg = asyncio.run(ws_first_message(server.port, "/c/ws/cookie",
                                       "x=1; user=ann; user=other"))
    assert msg == "cookie:ann"


def test_ws_upgrade_without_cookie_rejected(server):
    assert asyncio.run(ws_status(server.port, "/c/ws/cookie")) == 401
    assert asyncio.run(ws_status(server.port, "/c/ws/cookie", "usr=ann")) == 401


def test_ws_upgrade_signed_cookie(server):
    raw = set_signed(server, "auth", "bob")
    msg = asyncio.run(ws_first_message(server.port, "/c/ws/signed",
                                       f"auth={raw}"))
    assert msg == "signed:bob"
    tampered = "eve." + raw.split(".")[1]
    assert asyncio.run(ws_status(server.port, "/c/ws/signed",
                                 f"auth={tampered}")) == 401
    assert asyncio.run(ws_status(server.port, "/c/ws/signed", "auth=bob")) == 401
