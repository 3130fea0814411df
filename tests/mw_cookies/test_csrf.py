"""The CSRF middleware: tokens, unsafe methods, header and form field,
cross-session tokens, bad input."""
import base64
import json
import re
from urllib.parse import quote

import pytest

from conftest import get, post, request

TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{86}")
FORM = ("Content-Type", "application/x-www-form-urlencoded")
MISSING = "Forbidden: CSRF token missing\n"
INVALID = "Forbidden: CSRF token invalid\n"


def new_token(port, cookie=None, prefix="/f"):
    """(token, session cookie) for a new or given session."""
    r = get(port, f"{prefix}/token", cookie=cookie)
    assert r.status == 200, r
    token = r.text
    assert TOKEN_RE.fullmatch(token)
    if cookie is None:
        raw = r.cookie("tl.sid")
        assert raw, r
        cookie = f"tl.sid={raw}"
    else:
        assert r.set_cookies == []
    return token, cookie


def submit(port, cookie=None, token=None, method="POST", prefix="/f",
           header="X-CSRF-Token", body=None, headers=()):
    h = list(headers)
    if token is not None:
        h.append((header, token))
    return post(port, f"{prefix}/submit", cookie=cookie, headers=h, body=body,
                method=method)


def assert_forbidden(r, why):
    assert (r.status, r.text) == (403, why), r
    assert "accepted" not in r.text
    assert r.header("Cache-Control") == "no-store"


def test_safe_methods_pass(server):
    for m in ("GET", "HEAD", "OPTIONS"):
        r = request(server.port, m, "/f/submit")
        assert r.status == 200, (m, r)
    assert get(server.port, "/f/submit").text == "accepted GET"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_unsafe_without_token_forbidden(server, method):
    token, c = new_token(server.port)
    assert_forbidden(submit(server.port, c, method=method), MISSING)
    assert_forbidden(submit(server.port, None, method=method), MISSING)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_header_token_accepted(server, method):
    token, c = new_token(server.port)
    r = submit(server.port, c, token, method=method)
    assert (r.status, r.text) == (200, f"accepted {method}")


def test_token_stable_per_request_fresh_per_response(server):
    t1, c = new_token(server.port)
    t2, _ = new_token(server.port, c)
    assert t1 != t2  # masked differently
    assert submit(server.port, c, t1).status == 200
    assert submit(server.port, c, t2).status == 200
    # Within one request every call gives the same token: the form page
    # embeds what tl_csrf_token returned.
    r = get(server.port, "/f/form", cookie=c)
    m = re.search(r'name="_csrf" value="([^"]+)"', r.text)
    assert m and TOKEN_RE.fullmatch(m.group(1))
    assert submit(server.port, c, body=f"msg=hi&_csrf={m.group(1)}",
                  headers=[FORM]).status == 200


def test_form_field(server):
    token, c = new_token(server.port)
    r = submit(server.port, c, body=f"msg=hello+world&_csrf={token}&x=1",
               headers=[FORM])
    assert (r.status, r.text) == (200, "accepted POST")
    r = submit(server.port, c, body=f"_csrf={token}",
               headers=[("Content-Type",
                         "Application/X-WWW-Form-Urlencoded; charset=UTF-8")])
    assert r.status == 200


def test_form_field_percent_encoded(server):
    token, c = new_token(server.port)
    enc = "".join(f"%{ord(ch):02X}" for ch in token)
    r = submit(server.port, c, body=f"a=1&%5Fcsrf={enc}", headers=[FORM])
    assert r.status == 200
    # The first occurrence counts.
    r = submit(server.port, c, body=f"_csrf={token}&_csrf=bogus", headers=[FORM])
    assert r.status == 200
    r = submit(server.port, c, body=f"_csrf=bogus&_csrf={token}", headers=[FORM])
    assert_forbidden(r, INVALID)


def test_form_field_needs_form_content_type(server):
    token, c = new_token(server.port)
    r = submit(server.port, c, body=f"_csrf={token}",
               headers=[("Content-Type", "text/plain")])
    assert_forbidden(r, MISSING)
    r = submit(server.port, c, body=json.dumps({"_csrf": token}),
               headers=[("Content-Type", "application/json")])
    assert_forbidden(r, MISSING)
    r = submit(server.port, c, body=f"_csrf={token}")  # no Content-Type
    assert_forbidden(r, MISSING)
    # Similar-looking field names are not the field.
    for body in (f"x_csrf={token}", f"_csrfx={token}", f"_CSRF={token}",
                 f"_csrf%00={token}", f"_csrf"):
        assert_forbidden(submit(server.port, c, body=body, headers=[FORM]),
                         MISSING)


def test_query_string_token_not_accepted(server):
    token, c = new_token(server.port)
    r = post(server.port, f"/f/submit?_csrf={token}", cookie=c)
    assert_forbidden(r, MISSING)


def test_empty_header_falls_back_to_form(server):
    token, c = new_token(server.port)
    r = submit(server.port, c, "", body=f"_csrf={token}", headers=[FORM])
    assert r.status == 200


def test_wrong_tokens_rejected(server):
    token, c = new_token(server.port)
    flip = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    raw = base64.urlsafe_b64decode(token + "==")
    secret_b64 = base64.urlsafe_b64encode(
        bytes(a ^ b for a, b in zip(raw[:32], raw[32:]))).rstrip(b"=").decode()
    bads = [flip, token[:-1], token + "A", "x", "A" * 86, "%" * 86,
            secret_b64]  # the unmasked secret itself is no token
    # The standard-alphabet spelling differs only if the token has a '-' or
    # '_' (about 94% of random tokens): test it only then.
    std = token.replace("-", "+").replace("_", "/")
    if std != token:
        bads.append(std)
    for bad in bads:
        assert_forbidden(submit(server.port, c, bad), INVALID)
    assert submit(server.port, c, token).status == 200


def test_token_from_other_session_rejected(server):
    token_a, cookie_a = new_token(server.port)
    token_b, cookie_b = new_token(server.port)
    assert_forbidden(submit(server.port, cookie_b, token_a), INVALID)
    assert_forbidden(submit(server.port, cookie_a, token_b), INVALID)
    assert_forbidden(submit(server.port, cookie_b, body=f"_csrf={token_a}",
                            headers=[FORM]), INVALID)
    assert submit(server.port, cookie_a, token_a).status == 200
    assert submit(server.port, cookie_b, token_b).status == 200


def test_token_without_session_rejected(server):
    token, _ = new_token(server.port)
    assert_forbidden(submit(server.port, None, token), INVALID)
    assert_forbidden(submit(server.port, "tl.sid=forged", token), INVALID)


def test_session_of_another_store_rejected(server):
    # A validly signed session cookie (same secrets) whose session lives in
    # another router's store is no session here.
    token, _ = new_token(server.port)
    r = post(server.port, "/c/session/set?key=a&value=1")
    foreign = f"tl.sid={r.cookie('tl.sid')}"
    assert_forbidden(submit(server.port, foreign, token), INVALID)


def test_token_survives_regular_session_writes(server):
    token, c = new_token(server.port)
    r = post(server.port, "/f/session/set?key=cart&value=3", cookie=c,
             headers=[("X-CSRF-Token", token)])
    assert r.status == 200
    assert get(server.port, "/f/session/get?key=cart", cookie=c).text == "3"
    secret = get(server.port, "/f/session/get?key=tl.csrf", cookie=c).text
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
    assert submit(server.port, c, token).status == 200


def test_custom_options(server):
    token, c = new_token(server.port, prefix="/f2")
    r = submit(server.port, c, token, prefix="/f2", header="X-XSRF-TOKEN")
    assert (r.status, r.text) == (200, "accepted POST")
    r = submit(server.port, c, token, prefix="/f2")  # default header name
    assert_forbidden(r, MISSING)
    r = submit(server.port, c, prefix="/f2", body=f"tok={quote(token)}",
               headers=[FORM])
    assert r.status == 200
    r = submit(server.port, c, prefix="/f2", body=f"_csrf={token}",
               headers=[FORM])
    assert_forbidden(r, MISSING)
    secret = get(server.port, "/f2/session/get?key=xsrf", cookie=c)
    assert secret.status == 200 and len(secret.text) == 43
    # Sessions of /f and /f2 live in different stores.
    assert_forbidden(submit(server.port, c, token), INVALID)


def test_misconfigured_without_session_is_500(server):
    r = post(server.port, "/misconf/csrf", headers=[("X-CSRF-Token", "x")])
    assert r.status == 500
    assert "accepted" not in r.text


def test_token_needs_middleware(server):
    assert get(server.port, "/plain/csrf").text == "no token"


def test_large_form_body(server):
    token, c = new_token(server.port)
    body = "&".join(f"f{i}={'v' * 50}" for i in range(2000)) + f"&_csrf={token}"
    r = submit(server.port, c, body=body, headers=[FORM])
    assert r.status == 200
    assert_forbidden(submit(server.port, c, body=body[:-5], headers=[FORM]),
                     INVALID)
