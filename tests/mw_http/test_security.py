"""Security headers middleware (tl_security_headers)."""
from conftest import curl, request

SEC_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
               "Content-Security-Policy", "Content-Security-Policy-Report-Only",
               "Cross-Origin-Opener-Policy", "Cross-Origin-Resource-Policy",
               "Strict-Transport-Security")


def test_defaults(server):
    r = request(server.port, "GET", "/sec/default")
    assert r.status == 200 and r.body == b"ok\n"
    assert r.all("X-Content-Type-Options") == ["nosniff"]
    assert r.all("X-Frame-Options") == ["DENY"]
    assert r.all("Referrer-Policy") == ["no-referrer"]
    for name in SEC_HEADERS[3:]:
        assert r.header(name) is None, name


def test_defaults_never_send_hsts_even_with_forwarded_proto(server):
    r = request(server.port, "GET", "/sec/default",
                [("X-Forwarded-Proto", "https")])
    assert r.header("Strict-Transport-Security") is None


def test_custom_options(server):
    st, h, body = curl(f"http://127.0.0.1:{server.port}/sec/custom")
    assert st == 200
    assert h["x-frame-options"] == ["SAMEORIGIN"]
    assert h["referrer-policy"] == ["strict-origin-when-cross-origin"]
    assert h["content-security-policy"] == [
        "default-src 'self'; base-uri 'self'; form-action 'self'; "
        "frame-ancestors 'none'; object-src 'none'"]
    assert h["cross-origin-opener-policy"] == ["same-origin"]
    assert h["cross-origin-resource-policy"] == ["same-site"]
    assert h["x-content-type-options"] == ["nosniff"]
    # Plain HTTP, no proxy word: no HSTS.
    assert "strict-transport-security" not in h


def test_hsts_with_trusted_proxy(server):
    for proto in ("https", "HTTPS", "https, http", "https,http"):
        r = request(server.port, "GET", "/sec/custom",
                    [("X-Forwarded-Proto", proto)])
        assert r.all("Strict-Transport-Security") == [
            "max-age=31536000; includeSubDomains"], proto
    for proto in ("http", "http, https", "httpsx", "", "https-evil"):
        r = request(server.port, "GET", "/sec/custom",
                    [("X-Forwarded-Proto", proto)])
        assert r.header("Strict-Transport-Security") is None, proto


def test_off_options_and_report_only(server):
    r = request(server.port, "GET", "/sec/off", [("X-Forwarded-Proto", "https")])
    assert r.status == 200
    assert r.header("X-Frame-Options") is None
    assert r.header("Referrer-Policy") is None
    assert r.header("X-Content-Type-Options") is None
    assert r.header("Content-Security-Policy") is None
    assert r.all("Content-Security-Policy-Report-Only") == ["default-src 'none'"]
    # hsts_max_age without trust_proxy: never.
    assert r.header("Strict-Transport-Security") is None


def test_no_duplicate_when_set_earlier(server):
    r = request(server.port, "GET", "/sec/preset")
    assert r.all("X-Frame-Options") == ["SAMEORIGIN"]
    assert r.all("X-Content-Type-Options") == ["nosniff"]


def test_keepalive_each_response_gets_one_set(server):
    from conftest import Conn
    with Conn(server.port) as c:
        for _ in range(3):
            c.send("GET", "/sec/default")
        for _ in range(3):
            r = c.read()
            assert r.status == 200
            assert r.all("X-Frame-Options") == ["DENY"]
            assert r.all("X-Content-Type-Options") == ["nosniff"]


def test_app_level_covers_404_and_405(app_server):
    for method, path, status in (("GET", "/nowhere", 404),
                                 ("DELETE", "/only-get", 405),
                                 ("HEAD", "/only-get", 200)):
        r = request(app_server.port, method, path)
        assert r.status == status
        assert r.all("X-Frame-Options") == ["DENY"]
        assert r.all("X-Content-Type-Options") == ["nosniff"]
        assert r.all("Referrer-Policy") == ["no-referrer"]
