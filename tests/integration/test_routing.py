"""Routing, requests, responses and middleware, over raw sockets and curl."""
import json
import time

import pytest

from conftest import Conn, curl, get, request, stats


# ---- the hello example -----------------------------------------------------

def test_hello_root(hello):
    r = get(hello.port, "/")
    assert r.status == 200
    assert r.body == b"Hello World"
    assert r.header("Content-Type") == "text/plain"
    assert r.header("Content-Length") == "11"
    assert r.has_header("Date")


def test_hello_user_json(hello):
    r = get(hello.port, "/users/42")
    assert r.status == 200
    assert r.header("Content-Type") == "application/json"
    assert r.json() == {"id": "42"}
    r = get(hello.port, "/users/a%22b%20c")
    assert r.json() == {"id": 'a"b c'}


def test_hello_api(hello):
    r = get(hello.port, "/api/health")
    assert (r.status, r.json()) == (200, {"ok": True})
    r = get(hello.port, "/api/time")
    assert r.status == 200
    assert abs(r.json()["time"] - time.time()) < 5
    assert get(hello.port, "/api/nope").status == 404
    assert get(hello.port, "/users/").status == 404


def test_hello_with_curl(hello):
    p = curl("-i", f"http://127.0.0.1:{hello.port}/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert p.stdout.endswith(b"\r\n\r\nHello World")


# ---- request accessors -----------------------------------------------------

def test_echo_basics(server):
    r = get(server.port, "/echo/a%20b?x=1")
    assert r.status == 200
    j = r.json()
    assert j["method"] == "GET"
    assert j["path"] == "/echo/a b"
    assert j["target"] == "/echo/a%20b?x=1"
    assert j["qs"] == "x=1"
    assert j["version"] == 11
    assert j["remote"] == "127.0.0.1"
    assert j["headers"] == [["Host", "test"]]
    assert j["nheaders"] == 1
    assert j["body_len"] == 0 and j["body"] == ""
    assert j["body_ptr_null"] is False


def test_echo_no_query(server):
    j = get(server.port, "/echo").json()
    assert (j["path"], j["target"], j["qs"]) == ("/echo", "/echo", "")
    j = get(server.port, "/echo?").json()
    assert (j["path"], j["target"], j["qs"]) == ("/echo", "/echo?", "")


def test_query_decoding(server):
    target = ("/echo?a=1+2&b=x%20y&c=first&c=second&d&e=&sp%20ace=v"
              "&enc%3Dkey=z&pct=%41%42%2b&utf=%E2%82%AC&plus=%2B+")
    keys = "a,b,c,d,e,sp ace,enc=key,pct,utf,plus,missing"
    j = get(server.port, target, headers={"X-Query-Keys": keys}).json()
    assert j["qs"] == target.split("?", 1)[1]
    assert j["q"] == {
        "a": "1 2", "b": "x y", "c": "first", "d": "", "e": "",
        "sp ace": "v", "enc=key": "z", "pct": "AB+",
        "utf": "\u00e2\u0082\u00ac",  # the three UTF-8 bytes, escaped per byte
        "plus": "+ ", "missing": None,
    }


def test_percent_decoded_path_and_params(server):
    assert get(server.port, "/p/a%20b").text == "param:a b"
    # Matching runs on the raw path: an encoded '/' stays in one segment.
    assert get(server.port, "/p/a%2Fb").text == "param:a/b"
    assert get(server.port, "/p/%E2%82%AC").body == "param:€".encode()
    assert get(server.port, "/two/x%3Ay/x/%41").text == "two:x:y|A"
    j = get(server.port, "/echo/%7Efoo/%25").json()
    assert j["path"] == "/echo/~foo/%"


def test_headers_case_insensitive_and_repeated(server):
    hdrs = [("X-FOO", "a"), ("x-foo", "b"), ("X-Foo", "   c  "),
            ("X-Other", "o"), ("X-Empty", "")]
    j = get(server.port, "/echo?h=x-fOO", headers=hdrs).json()
    assert j["first"] == "a"
    assert j["want"] == ["a", "b", "c"]
    assert j["nheaders"] == 6
    assert j["headers"][1:] == [["X-FOO", "a"], ["x-foo", "b"],
                                ["X-Foo", "c"], ["X-Other", "o"],
                                ["X-Empty", ""]]
    j = get(server.port, "/echo?h=X-EMPTY", headers=hdrs).json()
    assert j["first"] == "" and j["want"] == [""]
    j = get(server.port, "/echo?h=x-absent", headers=hdrs).json()
    assert j["first"] is None and j["want"] == []


def test_methods_on_all_route(server):
    for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"):
        r = request(server.port, m, "/echo")
        assert r.status == 200, m
        assert r.json()["method"] == m


# ---- precedence -------------------------------------------------------------

@pytest.mark.parametrize("path,expected", [
    ("/p/me", "static:/p/me"),
    ("/p/you", "param:you"),
    ("/p/me/posts", "posts:me"),       # backtracks from static "me"
    ("/p/you/posts", "posts:you"),
    ("/p/me/other", "wild:me/other"),
    ("/p/a/b/c", "wild:a/b/c"),
    ("/p/", "wild:"),
    ("/p/m%65", "param:me"),           # raw path "m%65" is not "me"
    ("/p/x/posts/", "wild:x/posts/"),
])
def test_precedence(server, path, expected):
    r = get(server.port, path)
    assert r.status == 200, r
    assert r.text == expected


def test_trailing_slash_significant(server):
    assert get(server.port, "/hello").status == 200
    r = get(server.port, "/hello/")
    assert r.status == 404
    assert r.text == "nf:/hello/"


# ---- responses ---------------------------------------------------------------

def test_not_found_custom(server):
    r = get(server.port, "/nope/x%20y")
    assert r.status == 404
    assert r.header("X-Not-Found") == "custom"
    assert r.text == "nf:/nope/x y"
    assert int(r.header("Content-Length")) == len(r.body)


def test_405_with_allow(server):
    r = get(server.port, "/only-post")
    assert r.status == 405
    assert r.header("Allow") == "POST"
    r = request(server.port, "DELETE", "/getput")
    assert r.status == 405
    assert sorted(r.header("Allow").split(", ")) == ["GET", "HEAD", "PUT"]
    r = request(server.port, "POST", "/hello", body="x")
    assert r.status == 405
    assert sorted(r.header("Allow").split(", ")) == ["GET", "HEAD"]
    assert request(server.port, "POST", "/only-post", body="").text == "posted"
    assert request(server.port, "PUT", "/getput", body="").text == "PUT"


def test_head_on_get_route(server):
    with Conn(server.port) as c:
        g = c.request("GET", "/hello")
        h = c.request("HEAD", "/hello")
        assert h.status == 200
        assert h.header("Content-Length") == str(len(g.body)) == "13"
        assert h.header("Content-Type") == g.header("Content-Type")
        assert h.header("X-Hello") == "1"
        assert h.body == b""
        # no stray body bytes: the next response parses
        g2 = c.request("GET", "/hello")
        assert g2.body == b"hello, world\n"
        assert c.buf == b""


def test_head_on_all_route_and_404(server):
    with Conn(server.port) as c:
        h = c.request("HEAD", "/echo")
        assert h.status == 200
        assert int(h.header("Content-Length")) > 0
        h = c.request("HEAD", "/nope")
        assert h.status == 404
        assert h.header("Content-Length") == str(len("nf:/nope"))
        assert c.request("GET", "/hello").body == b"hello, world\n"
        assert c.buf == b""


def test_head_on_streamed_route(server):
    with Conn(server.port) as c:
        h = c.request("HEAD", "/stream")
        assert h.status == 200
        assert h.body == b""
        r = c.request("GET", "/hello")
        assert r.body == b"hello, world\n"
        assert c.buf == b""


def test_redirect(server):
    r = get(server.port, "/redirect")
    assert r.status == 301
    assert r.header("Location") == "/hello"
    p = curl("-L", f"http://127.0.0.1:{server.port}/redirect")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"hello, world\n"


@pytest.mark.parametrize("code", [204, 304])
def test_status_without_body(server, code):
    with Conn(server.port) as c:
        r = c.request("GET", f"/status/{code}")
        assert r.status == code
        assert r.header("Transfer-Encoding") is None
        if code == 204:
            assert r.header("Content-Length") is None
        r2 = c.request("GET", "/hello")  # nothing left over from the 204/304
        assert r2.status == 200 and r2.body == b"hello, world\n"
        assert c.buf == b""


def test_status_codes(server):
    r = get(server.port, "/status/418")
    assert (r.status, r.body) == (418, b"status body")
    assert get(server.port, "/status/99").status == 400
    assert get(server.port, "/status/1000").status == 400


def test_handler_without_answer(server):
    r = get(server.port, "/noanswer")
    assert r.status == 201
    assert r.header("X-No-Answer") == "1"
    assert r.header("Content-Length") == "0"
    assert r.body == b""


def test_header_injection_refused(server):
    r = get(server.port, "/inject")
    assert r.text == "TL_EINVAL TL_EINVAL 0"
    assert r.header("X-Injected") is None
    assert r.header("X-Bad") is None
    assert r.header("X-Good") == "fine"


def test_close_after(server):
    with Conn(server.port) as c:
        r = c.request("GET", "/close")
        assert r.text == "closing"
        assert r.header("Connection") == "close"
        assert c.wait_closed(2.0)


# ---- middleware ---------------------------------------------------------------

def test_app_middleware_locals(server):
    r = get(server.port, "/trace")
    assert r.text == "app1,app2,handler"
    assert r.header("X-Router") is None


def test_router_middleware(server):
    r = get(server.port, "/api/info")
    assert r.status == 200
    assert r.header("X-Router") == "api"
    assert r.header("X-Route") is None
    assert r.json() == {"where": "api", "path": "/api/info",
                        "trace": "app1,app2,router,handler"}
    r = get(server.port, "/api")
    assert r.status == 200
    assert r.json()["path"] == "/api"
    assert r.header("X-Router") == "api"


def test_route_middleware(server):
    r = get(server.port, "/api/guarded")
    assert r.header("X-Router") == "api"
    assert r.header("X-Route") == "guarded"
    assert r.json()["trace"] == "app1,app2,router,route,handler"
    r = get(server.port, "/api/guarded?deny=1")
    assert r.status == 401
    assert r.text == "denied"
    assert r.header("X-Router") == "api"
    assert r.header("X-Route") == "guarded"


def test_nested_router_middleware_order(server):
    r = get(server.port, "/api/v2/deep")
    assert r.status == 200
    assert r.header("X-Router") == "api"
    assert r.header("X-Router-V2") == "v2"
    assert r.header("X-Route") == "deep"
    assert r.json()["trace"] == "app1,app2,router,v2,route,handler"


def test_router_middleware_not_for_unmatched(server):
    r = get(server.port, "/api/nope")
    assert r.status == 404
    assert r.text == "nf:/api/nope"
    assert r.header("X-Router") is None
    assert get(server.port, "/api/").status == 404


def test_app_middleware_answers_early(server):
    for target, hdrs in (("/hello?early=1", None), ("/hello", {"X-Early": "1"}),
                         ("/nope?early", None), ("/only-post?early=1", None)):
        r = get(server.port, target, headers=hdrs)
        assert r.status == 403, target
        assert r.text == "early"
        assert r.header("X-Early") == "yes"


def test_middleware_error_gives_500(server):
    r = get(server.port, "/hello", headers={"X-MW-Error": "1"})
    assert r.status == 500
    assert r.text == "Internal Server Error\n"
    assert r.header("X-Hello") is None


def test_route_middleware_done_without_answer(server):
    r = get(server.port, "/mwdone")
    assert r.status == 202
    assert r.header("X-Mw-Done") == "1"
    assert r.body == b""


def test_async_middleware(server):
    t0 = time.monotonic()
    r = get(server.port, "/trace", headers={"X-Async-MW": "1"})
    dt = time.monotonic() - t0
    assert r.text == "app1,app2,async,handler"
    assert dt >= 0.015
    r = get(server.port, "/api/guarded", headers={"X-Async-MW": "1"})
    assert r.json()["trace"] == "app1,app2,async,router,route,handler"
    assert r.header("X-Route") == "guarded"
    r = get(server.port, "/nope", headers={"X-Async-MW": "1"})
    assert (r.status, r.text) == (404, "nf:/nope")
    r = get(server.port, "/only-post", headers={"X-Async-MW": "1"})
    assert (r.status, r.header("Allow")) == (405, "POST")


def test_async_middleware_then_async_handler(server):
    r = get(server.port, "/async?ms=20&id=mw", headers={"X-Async-MW": "1"})
    assert (r.status, r.text) == (200, "async:mw")


def test_locals_freed(start_server):
    s = start_server()
    port = s.port
    get(port, "/trace")
    get(port, "/nope")
    get(port, "/hello?early=1")
    get(port, "/only-post")
    get(port, "/trace", headers={"X-Async-MW": "1"})
    get(port, "/async?ms=10")
    st = stats(port)
    assert st["requests"] == 7
    assert st["trace_frees"] == 6  # all but the /stats request itself


def test_every_kind_of_answer_on_one_connection(server):
    """Responses from every path (404, 405, middleware answers, 500, empty
    handler, redirect, async) leave the connection clean for the next."""
    with Conn(server.port) as c:
        seq = [
            (("GET", "/nope", None), 404),
            (("GET", "/only-post", None), 405),
            (("GET", "/hello?early=1", None), 403),
            (("GET", "/hello", {"X-MW-Error": "1"}), 500),
            (("GET", "/noanswer", None), 201),
            (("GET", "/mwdone", None), 202),
            (("GET", "/redirect", None), 301),
            (("GET", "/api/guarded?deny=1", None), 401),
            (("GET", "/async?ms=5", None), 200),
            (("GET", "/trace", {"X-Async-MW": "1"}), 200),
            (("GET", "/status/204", None), 204),
            (("GET", "/stream", None), 200),
        ]
        for (m, t, h), status in seq:
            r = c.request(m, t, headers=h)
            assert r.status == status, (t, r)
        assert c.request("GET", "/hello").body == b"hello, world\n"
        assert c.buf == b""
        # and once more, all pipelined in one send
        from conftest import build_request
        c.send(b"".join(build_request(m, t, h) for (m, t, h), _ in seq))
        for (m, t, h), status in seq:
            assert c.read_response().status == status, t
        assert c.request("GET", "/hello").body == b"hello, world\n"


def test_body_on_get_and_empty_body(server):
    j = request(server.port, "GET", "/echo", body=b"abc").json()
    assert (j["body_len"], j["body"]) == (3, "abc")
    j = request(server.port, "POST", "/echo", body=b"").json()
    assert (j["body_len"], j["body"], j["body_ptr_null"]) == (0, "", False)
    j = request(server.port, "POST", "/echo", body=b"\x00\x01\xff").json()
    assert j["body"] == "\u0000\u0001\u00ff"
