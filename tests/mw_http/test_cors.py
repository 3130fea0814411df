"""CORS middleware (tl_cors) through the real server."""
from conftest import curl, request

A = "https://a.example"
B = "https://b.example:8443"
EVIL = "https://evil.example"


def preflight(port, path, origin, method="PUT", req_headers=None):
    h = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if req_headers is not None:
        h.append(("Access-Control-Request-Headers", req_headers))
    return request(port, "OPTIONS", path, h)


# ---- origin list -----------------------------------------------------------

def test_list_preflight_allowed(server):
    r = preflight(server.port, "/cors/list", A, req_headers="Content-Type, X-Api-Key")
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == A
    assert r.header("Access-Control-Allow-Methods") == "GET,HEAD,PUT,PATCH,POST,DELETE"
    # Default: the requested headers are reflected, and the answer varies.
    assert r.header("Access-Control-Allow-Headers") == "Content-Type, X-Api-Key"
    assert r.header("Access-Control-Max-Age") == "600"
    assert "Origin" in r.all("Vary")
    assert "Access-Control-Request-Headers" in r.all("Vary")
    assert r.header("Access-Control-Allow-Credentials") is None
    assert r.header("X-Handler") is None  # never reached the handler
    assert r.body == b""


def test_list_second_origin_with_port(server):
    r = preflight(server.port, "/cors/list", B)
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == B
    assert r.header("Access-Control-Allow-Headers") is None  # none requested


def test_list_preflight_disallowed_is_403_without_cors_headers(server):
    for origin in (EVIL, "https://a.example.evil.test", "http://a.example",
                   "https://a.example:443", "null"):
        r = preflight(server.port, "/cors/list", origin)
        assert r.status == 403, origin
        assert r.header("Access-Control-Allow-Origin") is None
        assert r.header("Access-Control-Allow-Methods") is None
        assert r.header("X-Handler") is None
        assert "Origin" in r.all("Vary")


def test_list_actual_request_allowed(server):
    st, h, body = curl("-H", f"Origin: {A}", f"http://127.0.0.1:{server.port}/cors/list")
    assert st == 200 and body == b"ok\n"
    assert h["access-control-allow-origin"] == [A]
    assert h["access-control-expose-headers"] == ["X-Total, X-Page"]
    assert "Origin" in h["vary"]
    assert "access-control-allow-methods" not in h  # preflight only


def test_list_actual_request_disallowed_still_served(server):
    st, h, body = curl("-X", "POST", "-d", "x=1", "-H", f"Origin: {EVIL}",
                       f"http://127.0.0.1:{server.port}/cors/list")
    assert st == 200 and body == b"ok\n"
    assert h["x-handler"] == ["yes"]
    assert not any(k.startswith("access-control-") for k in h)
    assert "Origin" in h["vary"]


def test_list_no_origin_gets_vary_only(server):
    r = request(server.port, "GET", "/cors/list")
    assert r.status == 200
    assert r.all("Vary") == ["Origin"]
    assert r.header("Access-Control-Allow-Origin") is None


def test_origin_case_insensitive(server):
    r = request(server.port, "GET", "/cors/list", [("Origin", "HTTPS://A.EXAMPLE")])
    assert r.header("Access-Control-Allow-Origin") == "HTTPS://A.EXAMPLE"


def test_options_without_request_method_is_not_preflight(server):
    r = request(server.port, "OPTIONS", "/cors/list", [("Origin", A)])
    assert r.status == 200
    assert r.header("X-Handler") == "yes"
    assert r.header("Access-Control-Allow-Origin") == A
    assert r.header("Access-Control-Allow-Methods") is None


def test_malformed_request_headers_not_reflected(server):
    r = preflight(server.port, "/cors/list", A, req_headers="X-A, <script>")
    assert r.status == 204
    assert r.header("Access-Control-Allow-Headers") is None
    r = preflight(server.port, "/cors/list", A, req_headers="X-A;" + "b" * 10)
    assert r.header("Access-Control-Allow-Headers") is None
    r = preflight(server.port, "/cors/list", A, req_headers="x" * 3000)
    assert r.header("Access-Control-Allow-Headers") is None


def test_origin_smuggling_attempts(server):
    # A list of origins, an embedded space or a huge origin is never allowed.
    for origin in (f"{A}, {EVIL}", f"{A} x", A + "/" + "a" * 2000):
        r = request(server.port, "GET", "/cors/list", [("Origin", origin)])
        assert r.status == 200
        assert r.header("Access-Control-Allow-Origin") is None, origin


# ---- "*" -------------------------------------------------------------------

def test_any_default_is_literal_star_without_vary(server):
    r = preflight(server.port, "/cors/any", EVIL, method="DELETE",
                  req_headers="X-Custom")
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.header("Access-Control-Allow-Credentials") is None
    assert r.header("Access-Control-Allow-Headers") == "X-Custom"
    assert r.header("Access-Control-Max-Age") is None
    assert "Origin" not in r.all("Vary")
    r = request(server.port, "GET", "/cors/any", [("Origin", "null")])
    assert r.header("Access-Control-Allow-Origin") == "*"
    assert r.all("Vary") == []
    assert r.header("Access-Control-Expose-Headers") is None


def test_any_with_credentials_reflects_origin(server):
    r = request(server.port, "GET", "/cors/anycred", [("Origin", EVIL)])
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") == EVIL
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert "Origin" in r.all("Vary")
    assert "*" not in [v for k, v in r.headers]
    r = preflight(server.port, "/cors/anycred", EVIL)
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == EVIL
    assert r.header("Access-Control-Allow-Credentials") == "true"


def test_any_with_credentials_refuses_null_origin(server):
    r = request(server.port, "GET", "/cors/anycred", [("Origin", "null")])
    assert r.status == 200
    assert r.header("Access-Control-Allow-Origin") is None
    assert r.header("Access-Control-Allow-Credentials") is None
    assert preflight(server.port, "/cors/anycred", "null").status == 403


# ---- callback ----------------------------------------------------------------

def test_callback_allows_and_refuses(server):
    ok = "https://app.trusted.test"
    r = preflight(server.port, "/cors/cb", ok, method="POST",
                  req_headers="X-Evil")
    assert r.status == 204
    assert r.header("Access-Control-Allow-Origin") == ok
    assert r.header("Access-Control-Allow-Credentials") == "true"
    assert r.header("Access-Control-Allow-Methods") == "GET,POST"
    # Configured list, not the reflected request.
    assert r.header("Access-Control-Allow-Headers") == "Content-Type, X-Token"
    assert "Access-Control-Request-Headers" not in r.all("Vary")
    for bad in ("http://app.trusted.test", "https://trusted.test.evil",
                "https://.trusted.test"):
        r = preflight(server.port, "/cors/cb", bad)
        assert r.status == 403, bad
        assert r.header("Access-Control-Allow-Origin") is None
    r = request(server.port, "GET", "/cors/cb", [("Origin", ok)])
    assert r.header("Access-Control-Allow-Origin") == ok
    assert r.header("Access-Control-Allow-Credentials") == "true"


# ---- app level ----------------------------------------------------------------

def test_app_level_preflight_for_paths_without_options_route(app_server):
    p = app_server.port
    for path in ("/only-get", "/only-post", "/nowhere"):
        r = preflight(p, path, A, method="POST", req_headers="Content-Type")
        assert r.status == 204, path
        assert r.header("Access-Control-Allow-Origin") == A
        assert r.header("Access-Control-Allow-Credentials") == "true"
        assert r.header("Access-Control-Allow-Headers") == "Content-Type"
        assert r.header("Allow") is None
    # Not a preflight: the router's own answers, with CORS headers added.
    r = request(p, "OPTIONS", "/only-get", [("Origin", A)])
    assert r.status == 405
    assert r.header("Access-Control-Allow-Origin") == A
    r = request(p, "GET", "/nowhere", [("Origin", A)])
    assert r.status == 404
    assert r.header("Access-Control-Allow-Origin") == A
    r = request(p, "GET", "/only-get", [("Origin", EVIL)])
    assert r.status == 200 and r.header("Access-Control-Allow-Origin") is None


def test_app_level_preflight_via_curl(app_server):
    st, h, body = curl("-X", "OPTIONS", "-H", f"Origin: {A}",
                       "-H", "Access-Control-Request-Method: PATCH",
                       f"http://127.0.0.1:{app_server.port}/only-get")
    assert st == 204 and body == b""
    assert h["access-control-allow-origin"] == [A]
    assert h["access-control-allow-methods"] == ["GET,HEAD,PUT,PATCH,POST,DELETE"]
    st, h, _ = curl("-X", "OPTIONS", "-H", f"Origin: {EVIL}",
                    "-H", "Access-Control-Request-Method: PATCH",
                    f"http://127.0.0.1:{app_server.port}/only-get")
    assert st == 403
    assert "access-control-allow-origin" not in h
