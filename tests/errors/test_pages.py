"""Error pages the app decides: the error middleware answers 404, 405,
tl_res_fail and a failing middleware, router level before app level, in
order, with TL_NEXT passing on; without any, talon's own pages."""
from conftest import get


def test_404_goes_through_error_middleware(hooked):
    r = get(hooked.port, "/nothing/here")
    assert r.status == 404
    assert r.header("Content-Type") == "text/html; charset=utf-8"
    assert r.text == "<h1>404 Not Found</h1><p>code=0 req=GET /nothing/here</p>\n"
    # the first app-level error middleware ran and passed it on
    assert r.header("X-Error-Seen") == "app"
    assert not r.closed  # keep-alive survives an error page


def test_405_keeps_allow_and_gets_the_page(hooked):
    r = get(hooked.port, "/post-only")
    assert r.status == 405
    assert r.header("Allow") == "POST"
    assert r.text.startswith("<h1>405 Method Not Allowed</h1>")


def test_handler_fail_with_status(hooked):
    r = get(hooked.port, "/fail/409")
    assert r.status == 409
    assert r.text == ("<h1>409 Conflict</h1><p>code=TL_EIO req=GET /fail/409"
                      "</p>\n")
    # headers set before the failure are discarded
    assert r.header("X-Before-Fail") is None


def test_fail_status_must_be_an_error(hooked):
    r = get(hooked.port, "/fail/302")
    assert (r.status, r.text) == (200, "TL_EINVAL")
    r = get(hooked.port, "/fail/600")
    assert (r.status, r.text) == (200, "TL_EINVAL")


def test_middleware_negative_return_is_500_with_code(hooked):
    r = get(hooked.port, "/mw-code")
    assert r.status == 500
    assert "code=TL_EIO" in r.text
    assert "handler ran" not in r.text


def test_middleware_fail_stops_the_chain(hooked):
    r = get(hooked.port, "/mw-fail")
    assert r.status == 403
    assert r.text.startswith("<h1>403 Forbidden</h1>")


def test_deferred_response_fails_later(hooked):
    r = get(hooked.port, "/fail-later")
    assert r.status == 503
    assert "code=TL_EAGAIN" in r.text


def test_router_error_middleware_first(hooked):
    r = get(hooked.port, "/api/fail/404")
    assert r.status == 404
    assert r.header("Content-Type") == "application/json"
    assert r.text == '{"error":404,"by":"api"}'
    # the app's error middleware did not run
    assert r.header("X-Error-Seen") is None


def test_405_is_app_level(hooked):
    # a 405 matched no route: the router's error middleware is not asked
    r = get(hooked.port, "/api/post-only")
    assert (r.status, r.header("Allow")) == (405, "POST")
    assert r.text.startswith("<h1>405 Method Not Allowed</h1>")


def test_router_passes_server_errors_to_the_app(hooked):
    r = get(hooked.port, "/api/fail/502")
    assert r.status == 502
    assert r.header("X-Error-Seen") == "app"
    assert r.text.startswith("<h1>502 Bad Gateway</h1>")


def test_unmatched_path_under_a_router_sees_app_level_only(hooked):
    r = get(hooked.port, "/api/none")
    assert r.status == 404
    assert r.text.startswith("<h1>404")


def test_next_to_the_default_page(hooked):
    r = get(hooked.port, "/pass/fail/410")
    assert r.status == 410
    assert r.text == "Gone\n"
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("X-Error-Seen") == "app"


def test_error_middleware_may_defer(hooked):
    r = get(hooked.port, "/deferpage/fail/429")
    assert (r.status, r.text) == (429, "late page 429\n")


def test_error_middleware_changes_status_and_done_without_body(hooked):
    r = get(hooked.port, "/teapot")
    assert r.status == 418
    assert r.body == b""


def test_failing_inside_error_middleware_gets_default(hooked):
    r = get(hooked.port, "/again")
    assert r.status == 502
    assert r.text == "Bad Gateway\n"


def test_head_request_error_page_has_no_body(hooked):
    r = get(hooked.port, "/nothing", method="HEAD")
    assert r.status == 404
    assert int(r.header("Content-Length")) > 0
    assert r.body == b""


def test_failure_after_head_sent_closes(hooked):
    r = get(hooked.port, "/stream-fail")
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    # the chunked body is cut: no terminating chunk, connection closed
    assert r.closed
    assert r.body == b"7\r\npartial\r\n"


def test_default_pages_without_error_middleware(plain):
    r = get(plain.port, "/nothing")
    assert (r.status, r.text) == (404, "Not Found\n")
    r = get(plain.port, "/post-only")
    assert (r.status, r.text, r.header("Allow")) == (
        405, "Method Not Allowed\n", "POST")
    r = get(plain.port, "/mw-code")
    assert (r.status, r.text) == (500, "Internal Server Error\n")
    r = get(plain.port, "/fail/409")
    assert (r.status, r.text) == (409, "Conflict\n")
    assert r.header("X-Before-Fail") is None
    r = get(plain.port, "/fail-later")
    assert (r.status, r.text) == (503, "Service Unavailable\n")
