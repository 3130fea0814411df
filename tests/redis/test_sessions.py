"""Sessions in Redis (tl_redis_session_store) over real processes: two
workers_server processes (2 workers each) on one redis-server; a user
signed in through one is signed in on the other, a logout through either
ends the session everywhere, Redis's TTL expires it, and a Redis that is
gone or silent costs a 503 for requests that carry a session cookie, and
nothing else."""
import http.client
import os
import signal
import socket
import threading
import time

import pytest

from conftest import Node, bridged_nodes


def request(node, path, cookie=None, timeout=30):
    """GET `path`; (status, body, the sid cookie set or None)."""
    c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read().decode()
        sid = None
        for k, v in r.getheaders():
            if k.lower() == "set-cookie" and v.startswith("tl.sid="):
                sid = v.split(";", 1)[0]
        return r.status, body, sid
    finally:
        c.close()


def login(node, name):
    status, body, cookie = request(node, f"/sess/login?name={name}")
    assert status == 200 and body.startswith("ok "), (status, body)
    assert cookie and cookie != "tl.sid=", cookie
    return cookie


def me(node, cookie):
    status, body, _ = request(node, "/sess/me", cookie)
    assert status == 200, (status, body)
    return body


def session_keys(redis):
    return redis.command("KEYS", "talon:sess:*")


@pytest.fixture
def pair(server_bin, redis):
    with bridged_nodes(server_bin, redis.url, 2,
                       env={"SESSION_IDLE_S": "2", "REDIS_TIMEOUT_MS": "500",
                            "REDIS_BACKOFF_MS": "50"}) as started:
        yield started


def cookie_from(server_bin, redis, name):
    """A valid session cookie of `name`, made by a process of its own on
    `redis` (every workers_server signs with the same secret)."""
    good = Node(server_bin, redis.url).start()
    try:
        cookie = request(good, f"/sess/login?name={name}")[2]
        good.stop()
        good.check_clean_exit()
        return cookie
    finally:
        good.close()


def test_signed_in_on_one_process_is_signed_in_on_all(pair, redis):
    a, b = pair
    assert me(a, None) == "nobody"
    cookie = login(a, "alice")
    # Right away and many times: both workers of each process.
    for _ in range(10):
        assert me(b, cookie) == "alice"
        assert me(a, cookie) == "alice"
    keys = session_keys(redis)
    assert len(keys) == 1
    assert 0 < redis.command("TTL", keys[0]) <= 2
    # Logout through b ends it on a too: the old cookie opens nothing.
    status, body, cleared = request(b, "/sess/logout", cookie)
    assert (status, body) == (200, "bye")
    assert cleared == "tl.sid=", cleared
    assert me(a, cookie) == "nobody"
    assert me(b, cookie) == "nobody"
    assert session_keys(redis) == []
    # A second sign-in from a browser signed in through b: a new id (no
    # fixation), the old one gone from Redis.
    c1 = login(b, "bob")
    c2 = request(a, "/sess/login?name=bobby", c1)[2]
    assert c2 and c2 != c1
    assert me(b, c2) == "bobby"
    assert me(a, c1) == "nobody"
    assert len(session_keys(redis)) == 1


def test_expiry_is_redis_ttl_restarted_by_use(pair, redis):
    a, b = pair
    cookie = login(a, "carol")
    # Used every 0.5 s for 3 s (> the 2 s idle timeout): still alive,
    # because every lookup restarts the key's TTL (GETEX ... EX).
    for i in range(6):
        assert me((a, b)[i % 2], cookie) == "carol"
        time.sleep(0.5)
    # Unused for longer than the TTL: Redis deleted it.
    time.sleep(2.6)
    assert session_keys(redis) == []
    assert me(b, cookie) == "nobody"
    assert me(a, cookie) == "nobody"


def test_redis_gone_is_503_for_session_requests_only(pair, redis):
    a, b = pair
    cookie = login(a, "dave")
    redis.kill()
    # With a session cookie: 503 (not a silent sign-out), quickly.
    for n in (a, b):
        t0 = time.monotonic()
        status, body, _ = request(n, "/sess/me", cookie)
        assert status == 503, (status, body)
        assert time.monotonic() - t0 < 5
    # Without one nothing waits for Redis; other routes are untouched.
    assert request(a, "/sess/me") == (200, "nobody", None)
    assert request(b, "/worker")[0] == 200
    # Signing in needs Redis: the write fails at once (fast-fail window)
    # or is lost with the connection; either way no crash.
    request(a, "/sess/login?name=x")
    # Redis back (empty): sessions work again once reconnected.
    redis.start()
    deadline = time.monotonic() + 10
    while True:
        status, body, c = request(a, "/sess/login?name=erin")
        if status == 200 and c and me(b, c) == "erin":
            break
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.1)
    assert me(b, cookie) == "nobody"  # the old one went with the old Redis


def test_silent_redis_times_out_and_leaving_clients_are_safe(pair, redis):
    a, b = pair
    cookie = login(a, "frank")
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        # Clients that leave while their lookup is in flight: the answer
        # (here a timeout) must find nothing of theirs (ASan would see it).
        for n in (a, b):
            for _ in range(4):
                s = socket.create_connection(("127.0.0.1", n.port))
                s.sendall(b"GET /sess/me HTTP/1.1\r\nHost: x\r\nCookie: "
                          + cookie.encode() + b"\r\n\r\n")
                s.close()
        # One that waits: 503 once the connection has answered nothing for
        # the command timeout (500 ms, counted from its oldest unanswered
        # command, so maybe one of those above), not a hang.
        t0 = time.monotonic()
        status, _, _ = request(b, "/sess/me", cookie)
        assert status == 503
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    # Redis answers again: the next lookups reconnect and find the session
    # (on every worker: each has its own connection).
    for n in (a, b):
        deadline = time.monotonic() + 10
        while request(n, "/sess/me", cookie)[1] != "frank":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for _ in range(4):
        assert me(a, cookie) == "frank" and me(b, cookie) == "frank"


def test_redis_killed_with_lookups_in_flight(pair, redis):
    a, b = pair
    cookie = login(a, "grace")
    assert me(b, cookie) == "grace"  # one lookup answered
    os.kill(redis.proc.pid, signal.SIGSTOP)
    results = []

    def ask(n):
        results.append(request(n, "/sess/me", cookie)[0])

    threads = [threading.Thread(target=ask, args=((a, b)[i % 2],))
               for i in range(16)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # all sent, all waiting on the stopped Redis
    redis.kill()     # SIGKILL reaches a stopped process
    for t in threads:
        t.join(10)
    assert results == [503] * 16, results
    for n in (a, b):
        n.assert_alive()
    # Each failed lookup is counted, and the one answered before.
    stats = [n.redis_stats() for n in (a, b)]
    assert sum(st["command_errors"] for st in stats) >= 16, stats
    assert sum(st["commands"] for st in stats) >= 1, stats
