"""auth: login/logout with sessions, /me, and the WebSocket that only
logged-in users can open (after an asynchronous account check)."""
import asyncio
import re
import socket
import time

import pytest
import websockets
import websockets.exceptions

from conftest import HOST, Client, module_example, request

DELAY = 0.3  # LOOKUP_DELAY_MS: the simulated slow account check
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def auth(pytestconfig):
    yield from module_example(pytestconfig, "auth", env={
        "LOOKUP_DELAY_MS": str(int(DELAY * 1000)),
        "SESSION_SECRET": "smoke-test-secret-0123456789"})


def login(port, user, password, cookie=None):
    headers = dict(FORM)
    if cookie:
        headers["Cookie"] = cookie
    return request(port, "POST", "/login", headers,
                   f"user={user}&password={password}")


def session_cookie(r):
    """The tl.sid=... pair of a Set-Cookie, or None."""
    for v in r.header_all("Set-Cookie"):
        m = re.match(r"(tl\.sid=[^;]*)", v)
        if m:
            return m.group(1), v
    return None, None


def logged_in(port, user="alice", password="wonderland"):
    r = login(port, user, password)
    assert r.status == 303, r
    cookie, _ = session_cookie(r)
    assert cookie
    return cookie


def test_me_needs_login(auth):
    r = request(auth.port, "GET", "/me")
    assert r.status == 401
    assert r.json() == {"error": "login required"}
    r = request(auth.port, "GET", "/")
    assert r.status == 200 and b"action=/login" in r.body
    assert r.header("Set-Cookie") is None  # reading creates no session


@pytest.mark.parametrize("user,password", [("alice", "nope"), ("alice", ""),
                                           ("nobody", "wonderland"),
                                           ("", "")])
def test_bad_login(auth, user, password):
    r = login(auth.port, user, password)
    assert r.status == 401
    assert session_cookie(r) == (None, None)


def test_login_me_logout(auth):
    r = login(auth.port, "alice", "wonderland")
    assert r.status == 303 and r.header("Location") == "/me"
    cookie, attrs = session_cookie(r)
    assert cookie and "HttpOnly" in attrs and "SameSite=Lax" in attrs
    with Client(auth.port) as c:
        r = c.request("GET", "/me", {"Cookie": cookie})
        assert r.status == 200
        assert r.json() == {"user": "alice", "name": "Alice Liddell"}
        r = c.request("GET", "/", {"Cookie": cookie})
        assert b"new WebSocket" in r.body  # the logged-in page
        r = c.request("POST", "/logout", {"Cookie": cookie})
        assert r.status == 303 and r.header("Location") == "/"
        _, cleared = session_cookie(r)
        assert cleared and "Max-Age=0" in cleared
        # the old cookie names a destroyed session
        assert c.request("GET", "/me", {"Cookie": cookie}).status == 401


def test_login_regenerates_session(auth):
    bob = logged_in(auth.port, "bob", "builder")
    r = login(auth.port, "alice", "wonderland", cookie=bob)
    alice, _ = session_cookie(r)
    assert alice and alice != bob
    assert request(auth.port, "GET", "/me", {"Cookie": bob}).status == 401
    me = request(auth.port, "GET", "/me", {"Cookie": alice}).json()
    assert me["user"] == "alice"


def test_tampered_cookie(auth):
    cookie = logged_in(auth.port)
    forged = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    assert request(auth.port, "GET", "/me", {"Cookie": forged}).status == 401


def ws_url(auth):
    return f"ws://{HOST}:{auth.port}/ws"


def ws_status(auth, **kw):
    """The HTTP status a refused upgrade gets."""
    async def run():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with websockets.connect(ws_url(auth), **kw):
                pass
        return e.value.status_code
    return asyncio.run(asyncio.wait_for(run(), 10))


def test_ws_refused_without_session(auth):
    assert ws_status(auth) == 401
    cookie = logged_in(auth.port)
    assert ws_status(auth, extra_headers={"Cookie": cookie[:-2] + "xx"}) == 401


def test_ws_greets_and_echoes(auth):
    cookie = logged_in(auth.port)

    async def run():
        t0 = time.monotonic()
        async with websockets.connect(ws_url(auth),
                                      extra_headers={"Cookie": cookie}) as ws:
            opened = time.monotonic() - t0
            assert await ws.recv() == "hello, Alice Liddell"
            await ws.send("ping")
            assert await ws.recv() == "ping"
            await ws.send(b"\x00\x01bin")
            assert await ws.recv() == b"\x00\x01bin"
        return opened
    opened = asyncio.run(asyncio.wait_for(run(), 10))
    # The upgrade waited for the asynchronous account check.
    assert opened >= DELAY * 0.9, opened
    m = auth.wait_stdout(r"account check for alice: ok after (\d+) ms")
    assert int(m.group(1)) >= DELAY * 1000 * 0.9


def test_ws_checks_run_concurrently(auth):
    """Pending checks do not block the loop: three upgrades and a plain
    request at once finish in about one delay, not three."""
    cookie = logged_in(auth.port, "bob", "builder")

    async def one():
        async with websockets.connect(ws_url(auth),
                                      extra_headers={"Cookie": cookie}) as ws:
            return await ws.recv()

    async def run():
        t0 = time.monotonic()
        greetings = await asyncio.gather(one(), one(), one())
        return greetings, time.monotonic() - t0
    greetings, took = asyncio.run(asyncio.wait_for(run(), 10))
    assert greetings == ["hello, Bob the Builder"] * 3
    # one after the other would take at least 3 * DELAY
    assert DELAY * 0.9 <= took < DELAY * 3, took


def test_ws_locked_account(auth):
    cookie = logged_in(auth.port, "mallory", "letmein")
    assert request(auth.port, "GET", "/me", {"Cookie": cookie}).status == 200
    t0 = time.monotonic()
    assert ws_status(auth, extra_headers={"Cookie": cookie}) == 403
    assert time.monotonic() - t0 >= DELAY * 0.9  # refused by the async check
    auth.wait_stdout(r"account check for mallory: refused")


def test_ws_cross_origin(auth):
    cookie = logged_in(auth.port)
    assert ws_status(auth, extra_headers={"Cookie": cookie},
                     origin="http://evil.example") == 403

    async def run():
        async with websockets.connect(
                ws_url(auth), extra_headers={"Cookie": cookie},
                origin=f"http://{HOST}:{auth.port}") as ws:
            return await ws.recv()
    assert asyncio.run(asyncio.wait_for(run(), 10)) == "hello, Alice Liddell"


def test_ws_client_leaves_during_check(auth):
    cookie = logged_in(auth.port, "bob", "builder")
    with socket.create_connection((HOST, auth.port), timeout=5) as s:
        s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   f"Cookie: {cookie}\r\n\r\n").encode())
        time.sleep(0.05)
    auth.wait_stdout(r"bob left during the account check")
    time.sleep(DELAY)  # the timer would have fired by now: it was stopped
    assert request(auth.port, "GET", "/me", {"Cookie": cookie}).status == 200
    assert "account check for bob: ok" not in auth.stdout().split(
        "bob left during the account check")[-1]
