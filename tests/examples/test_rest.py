"""rest: JSON CRUD, validation, 404/405, CORS, request ids, rate limit,
access log."""
import re
import time

import pytest

from conftest import Client, module_example, request

ORIGIN = "http://app.example"
JSON = {"Content-Type": "application/json"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}"
                     r"-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def rest(pytestconfig):
    # A burst large enough for every test of the module but the one that
    # starts its own server to hit the limit.
    yield from module_example(pytestconfig, "rest", env={
        "CORS_ORIGIN": ORIGIN, "RATE_BURST": "100000", "RATE_LIMIT": "1000"})


def create(c, title, **extra):
    import json
    r = c.request("POST", "/api/todos", JSON,
                  json.dumps({"title": title, **extra}))
    assert r.status == 201, r
    return r


def test_crud(rest):
    import json
    with Client(rest.port) as c:
        r = create(c, "write docs")
        todo = r.json()
        assert todo["title"] == "write docs" and todo["done"] is False
        tid = todo["id"]
        assert r.header("Location") == f"/api/todos/{tid}"
        assert r.header("Content-Type") == "application/json"

        r = c.request("GET", f"/api/todos/{tid}")
        assert r.status == 200 and r.json() == todo

        r = c.request("GET", "/api/todos")
        assert r.status == 200 and todo in r.json()
        assert int(r.header("X-Total-Count")) == len(r.json())

        r = c.request("PUT", f"/api/todos/{tid}", JSON,
                      json.dumps({"title": "write more docs", "done": True}))
        assert r.status == 200
        assert r.json() == {"id": tid, "title": "write more docs",
                            "done": True}

        r = c.request("PATCH", f"/api/todos/{tid}", JSON, '{"done": false}')
        assert r.status == 200
        assert r.json() == {"id": tid, "title": "write more docs",
                            "done": False}

        r = c.request("GET", "/api/todos?done=false")
        assert any(t["id"] == tid for t in r.json())
        r = c.request("GET", "/api/todos?done=true")
        assert all(t["id"] != tid for t in r.json())

        r = c.request("DELETE", f"/api/todos/{tid}")
        assert r.status == 204 and r.body == b""
        assert c.request("GET", f"/api/todos/{tid}").status == 404
        assert c.request("DELETE", f"/api/todos/{tid}").status == 404
        assert all(t["id"] != tid for t in c.request("GET", "/api/todos").json())


def test_unicode_title_round_trips(rest):
    with Client(rest.port) as c:
        r = create(c, 'quote " backslash \\ ünï 😀')
        tid = r.json()["id"]
        assert c.request("GET", f"/api/todos/{tid}").json()["title"] == \
            'quote " backslash \\ ünï 😀'


@pytest.mark.parametrize("body,status", [
    ('{"title":', 400),                     # malformed: tl_body_json
    ('{"title":"a"} x', 400),               # trailing data
    ("", 400),                              # no body at all
    ("[1,2]", 422),                         # not an object
    ('{"done":true}', 422),                 # title missing
    ('{"title":42}', 422),                  # wrong type
    ('{"title":""}', 422),                  # empty
    ('{"title":"' + "x" * 201 + '"}', 422),  # too long
    ('{"title":"a","done":"yes"}', 422),    # done not a boolean
])
def test_create_validation(rest, body, status):
    r = request(rest.port, "POST", "/api/todos", JSON, body)
    assert r.status == status, r
    assert_json_error(r)


def assert_json_error(r, contains=""):
    """Every error of the API is {"error": "..."} in application/json,
    also those tl_body_json finds (its `error` option)."""
    assert r.header("Content-Type") == "application/json", r
    doc = r.json()
    assert list(doc) == ["error"] and isinstance(doc["error"], str), doc
    assert contains in doc["error"], doc
    assert not doc["error"].endswith("\n")
    return doc["error"]


def test_malformed_json_is_a_json_error(rest):
    for method, path in (("POST", "/api/todos"), ("PUT", "/api/todos/1"),
                         ("PATCH", "/api/todos/1")):
        r = request(rest.port, method, path, JSON, '{"title": "x",}')
        assert r.status == 400, r
        assert_json_error(r, "invalid JSON: ")
    r = request(rest.port, "POST", "/api/todos", JSON,
                '{"a":' * 9 + "1" + "}" * 9)
    assert r.status == 400
    assert assert_json_error(r) == "invalid JSON: nesting too deep"


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-"
                                   "urlencoded", "application/jsonx", None])
def test_wrong_content_type(rest, ctype):
    r = request(rest.port, "POST", "/api/todos",
                {"Content-Type": ctype} if ctype else {}, "title=x")
    assert r.status == 415, r
    assert assert_json_error(r) == "expected a JSON body"
    assert r.header("X-Content-Type-Options") == "nosniff"


def test_json_in_another_charset(rest):
    r = request(rest.port, "POST", "/api/todos",
                {"Content-Type": "application/json; charset=latin1"},
                '{"title":"x"}')
    assert r.status == 415
    assert assert_json_error(r) == "JSON must be UTF-8"


def test_body_over_the_parser_limit(rest):
    body = '{"title":"' + "x" * (70 << 10) + '"}'  # over 64 KiB
    r = request(rest.port, "POST", "/api/todos", JSON, body)
    assert r.status == 413
    assert assert_json_error(r) == "JSON body too large"


def test_put_patch_validation(rest):
    with Client(rest.port) as c:
        tid = create(c, "v").json()["id"]
        r = c.request("PUT", f"/api/todos/{tid}", JSON, '{"title":"only"}')
        assert r.status == 422 and "done" in r.json()["error"]
        r = c.request("PATCH", f"/api/todos/{tid}", JSON, "{}")
        assert r.status == 422
        r = c.request("PATCH", f"/api/todos/{tid}", JSON, '{"title":null}')
        assert r.status == 422
        # nothing changed
        assert c.request("GET", f"/api/todos/{tid}").json()["title"] == "v"
        # unknown id: 404 before looking at the body
        r = c.request("PATCH", "/api/todos/999999", JSON, '{"done":true}')
        assert r.status == 404


@pytest.mark.parametrize("path", ["/api/todos/999999", "/api/todos/abc",
                                  "/api/todos/0", "/api/todos/-1",
                                  "/api/todos/1x",
                                  "/api/todos/99999999999999999999",
                                  "/nope", "/api/nope"])
def test_not_found(rest, path):
    r = request(rest.port, "GET", path)
    assert r.status == 404
    assert r.json() == {"error": r.json()["error"]}


@pytest.mark.parametrize("method,path", [("DELETE", "/api/todos"),
                                         ("PUT", "/api/todos"),
                                         ("POST", "/api/todos/1")])
def test_method_not_allowed(rest, method, path):
    r = request(rest.port, method, path, JSON, "{}")
    assert r.status == 405
    allow = {m.strip() for m in r.header("Allow").split(",")}
    assert "GET" in allow
    assert method not in allow


def test_cors(rest):
    r = request(rest.port, "GET", "/api/todos", {"Origin": ORIGIN})
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    assert "X-Request-Id" in r.header("Access-Control-Expose-Headers")
    assert "Origin" in r.header("Vary")
    # preflight, answered by tl_cors before routing
    r = request(rest.port, "OPTIONS", "/api/todos/1", {
        "Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "content-type"})
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == ORIGIN
    assert "PATCH" in r.header("Access-Control-Allow-Methods")
    assert r.header("Access-Control-Allow-Headers").lower() == "content-type"
    assert r.header("Access-Control-Max-Age") == "600"
    # another origin: served, without CORS headers; its preflight refused
    r = request(rest.port, "GET", "/api/todos", {"Origin": "http://evil.example"})
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") is None
    r = request(rest.port, "OPTIONS", "/api/todos", {
        "Origin": "http://evil.example",
        "Access-Control-Request-Method": "POST"})
    assert r.status == 403


def test_request_id(rest):
    r = request(rest.port, "GET", "/api/todos", {"X-Request-Id": "abc-123.x_y"})
    assert r.header("X-Request-Id") == "abc-123.x_y"
    r = request(rest.port, "GET", "/api/todos")
    assert UUID_RE.match(r.header("X-Request-Id"))
    r = request(rest.port, "GET", "/api/todos", {"X-Request-Id": "a b;c"})
    assert UUID_RE.match(r.header("X-Request-Id"))  # insane: replaced
    # also on answers that never reach a handler
    r = request(rest.port, "DELETE", "/api/todos", {"X-Request-Id": "r405"})
    assert r.status == 405 and r.header("X-Request-Id") == "r405"


def test_access_log(rest):
    request(rest.port, "GET", "/api/todos?log=probe",
            {"User-Agent": "smoke-test"})
    rest.wait_stdout(r'"GET /api/todos\?log=probe HTTP/1.1" 200 \d+ "-" '
                     r'"smoke-test"')


def test_rate_limit(start_example):
    ex = start_example("rest", env={"RATE_BURST": "5", "RATE_LIMIT": "0.5",
                                    "CORS_ORIGIN": ORIGIN})
    with Client(ex.port) as c:
        statuses = []
        for i in range(8):
            r = c.request("GET", "/api/todos", {"X-Request-Id": f"rl{i}",
                                                "Origin": ORIGIN})
            statuses.append(r.status)
            if r.status == 429:
                limited = r
        assert statuses == [200] * 5 + [429] * 3, statuses
        assert int(limited.header("Retry-After")) >= 1
        assert limited.header("RateLimit-Limit") == "5"
        assert limited.header("RateLimit-Remaining") == "0"
        # a 429 still carries the id and CORS headers (a page can read it)
        assert limited.header("X-Request-Id") == "rl7"
        assert limited.header("Access-Control-Allow-Origin") == ORIGIN
    # the bucket refills: 0.5 token/s, one request after 2 s
    time.sleep(2.2)
    assert request(ex.port, "GET", "/api/todos").status == 200
