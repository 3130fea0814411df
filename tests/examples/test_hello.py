"""hello: the program itself (started on port 0, answering, stopped with
SIGTERM and exit code 0). Its routes are tested in-process with talon's
test client: tests/testkit/test_example_hello.c."""
import pytest

from conftest import Client, module_example


@pytest.fixture(scope="module")
def hello(pytestconfig):
    yield from module_example(pytestconfig, "hello")


def test_serves_over_keep_alive(hello):
    with Client(hello.port) as c:  # keep-alive: two on one connection
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"Hello World"
        r = c.request("GET", "/api/health")
        assert r.status == 200 and r.json() == {"ok": True}
