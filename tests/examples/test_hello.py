"""hello: plain routes and a mounted sub-router."""
import pytest

from conftest import Client, module_example, request


@pytest.fixture(scope="module")
def hello(pytestconfig):
    yield from module_example(pytestconfig, "hello")


def test_root(hello):
    r = request(hello.port, "GET", "/")
    assert r.status == 200
    assert r.body == b"Hello World"
    assert r.header("Content-Type").startswith("text/plain")


def test_params_and_subrouter(hello):
    with Client(hello.port) as c:  # keep-alive: three on one connection
        r = c.request("GET", "/users/a%22b")
        assert r.status == 200 and r.json() == {"id": 'a"b'}
        r = c.request("GET", "/api/health")
        assert r.status == 200 and r.json() == {"ok": True}
        r = c.request("GET", "/api/time")
        assert r.status == 200 and isinstance(r.json()["time"], int)


def test_unknown_and_wrong_method(hello):
    assert request(hello.port, "GET", "/nope").status == 404
    r = request(hello.port, "POST", "/", body="x")
    assert r.status == 405
    assert "GET" in r.header("Allow")
