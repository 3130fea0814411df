"""Rate limit middleware (tl_rate_limit). All test traffic comes from
127.0.0.1, so per-client behaviour uses routes whose key callback reads the
X-Client header (no header: exempt; "fail": the callback errs)."""
import json
import time

from conftest import Conn, curl, request
from talon_server import skip_if_wrapped


def stats(port, name):
    r = request(port, "GET", f"/rl/stats?name={name}")
    assert r.status == 200
    return json.loads(r.body)


def test_burst_then_429_then_refill_by_address(server):
    p = server.port
    # rate 1/s, burst 3, keyed by the peer address.
    with Conn(p) as c:
        for i in range(3):
            r = c.request("GET", "/rl/ip")
            assert r.status == 200, i
            assert r.header("X-Handler") == "yes"
            assert r.header("RateLimit-Limit") is None  # headers off
        r = c.request("GET", "/rl/ip")
        assert r.status == 429
        assert r.header("Retry-After") == "1"
        assert r.body == b"Too Many Requests\n"
        assert r.header("Content-Type").startswith("text/plain")
        assert r.header("X-Handler") is None  # handler not reached
    # Other methods on the same route share the bucket; a new connection
    # is the same client.
    st, h, body = curl("-X", "POST", "-d", "x", f"http://127.0.0.1:{p}/rl/ip")
    assert st == 429 and h["retry-after"] == ["1"] and "x-handler" not in h
    s = stats(p, "ip")
    assert s["keys"] == 1 and s["allowed"] == 3 and s["limited"] == 2
    time.sleep(1.15)
    assert request(p, "GET", "/rl/ip").status == 200  # one token back
    assert request(p, "GET", "/rl/ip").status == 429


def test_keys_independent_with_headers(server):
    p = server.port
    # rate 2/s, burst 2, IETF headers.
    with Conn(p) as c:
        r = c.request("GET", "/rl/key", [("X-Client", "alice")])
        assert r.status == 200
        assert r.header("RateLimit-Limit") == "2"
        assert r.header("RateLimit-Remaining") == "1"
        assert r.header("RateLimit-Reset") == "1"
        r = c.request("GET", "/rl/key", [("X-Client", "alice")])
        assert r.status == 200 and r.header("RateLimit-Remaining") == "0"
        r = c.request("GET", "/rl/key", [("X-Client", "alice")])
        assert r.status == 429
        assert r.header("Retry-After") == "1"
        assert r.header("RateLimit-Remaining") == "0"
        # bob has his own bucket.
        for _ in range(2):
            assert c.request("GET", "/rl/key", [("X-Client", "bob")]).status == 200
        assert c.request("GET", "/rl/key", [("X-Client", "bob")]).status == 429
        # Keys are exact: case and length matter.
        assert c.request("GET", "/rl/key", [("X-Client", "Alice")]).status == 200
        # No key: exempt, never limited.
        for _ in range(10):
            r = c.request("GET", "/rl/key")
            assert r.status == 200 and r.header("RateLimit-Limit") is None
    s = stats(p, "key")
    assert s["keys"] == 3
    assert s["limited"] == 2
    time.sleep(0.6)  # 2 tokens/s: one back after 0.5 s
    assert request(p, "GET", "/rl/key", [("X-Client", "alice")]).status == 200
    assert request(p, "GET", "/rl/key", [("X-Client", "alice")]).status == 429


def test_long_keys_are_truncated_not_overflowing(server):
    p = server.port
    long_a = "k" * 127 + "A" + "z" * 3000
    long_b = "k" * 127 + "B"
    # Both truncate to the same 127-byte key: one bucket.
    assert request(p, "GET", "/rl/key", [("X-Client", long_a)]).status == 200
    assert request(p, "GET", "/rl/key", [("X-Client", long_b)]).status == 200
    assert request(p, "GET", "/rl/key", [("X-Client", long_a)]).status == 429


def test_key_callback_error_is_500(server):
    r = request(server.port, "GET", "/rl/key", [("X-Client", "fail")])
    assert r.status == 500
    assert r.header("X-Handler") is None


def test_x_headers_custom_message_and_retry_after_rounding(server):
    p = server.port
    # rate 0.25/s, burst 1: a token every 4 s.
    r = request(p, "GET", "/rl/x", [("X-Client", "c1")])
    assert r.status == 200
    assert r.header("X-RateLimit-Limit") == "1"
    assert r.header("X-RateLimit-Remaining") == "0"
    assert r.header("X-RateLimit-Reset") == "4"
    assert r.header("RateLimit-Limit") is None
    r = request(p, "GET", "/rl/x", [("X-Client", "c1")])
    assert r.status == 429
    assert r.header("Retry-After") == "4"
    assert r.body == b"slow down\n"
    time.sleep(1.1)
    r = request(p, "GET", "/rl/x", [("X-Client", "c1")])
    assert r.status == 429
    assert r.header("Retry-After") == "3"  # 2.9 s left, rounded up


def flood(port, keys, batch=500):
    """One request per key on /rl/many, pipelined; returns status counts."""
    counts = {}
    with Conn(port, timeout=30) as c:
        for i in range(0, len(keys), batch):
            part = keys[i:i + batch]
            c.sock.sendall(b"".join(
                b"GET /rl/many HTTP/1.1\r\nHost: t\r\nX-Client: %s\r\n\r\n"
                % k.encode() for k in part))
            for _ in part:
                r = c.read()
                counts[r.status] = counts.get(r.status, 0) + 1
    return counts


@skip_if_wrapped("the RSS bound would measure valgrind's own memory")
def test_memory_bound_with_many_keys(server):
    p = server.port
    # rate 0.001/s, burst 1, max_keys 1000.
    flood(p, ["warm%d" % i for i in range(2000)])
    rss0 = server.rss_kb()
    n = 50000
    counts = flood(p, ["key%06d" % i for i in range(n)])
    assert counts == {200: n}  # every key new: a full bucket each
    s = stats(p, "many")
    assert s["max_keys"] == 1000
    assert s["keys"] == 1000
    assert s["evicted"] == 2000 + n - 1000
    rss1 = server.rss_kb()
    # An unbounded table would have grown by ~11 MB (65536 entries of
    # ~176 bytes). Plain builds grow by nothing; ASan by its quarantine
    # (capped at 4 MB by conftest).
    assert rss1 - rss0 < 6 * 1024, (rss0, rss1)
    # Behaviour: the 1000 most recent keys are still held (their bucket is
    # empty), older ones were evicted (a fresh, full bucket again).
    assert flood(p, ["key%06d" % (n - 1)]) == {429: 1}
    assert flood(p, ["key%06d" % (n - 1000)]) == {429: 1}
    assert flood(p, ["key%06d" % 0]) == {200: 1}
    assert stats(p, "many")["keys"] == 1000


def test_lru_keeps_recently_used(server):
    p = server.port
    assert flood(p, ["hot"]) == {200: 1}
    assert flood(p, ["fill%d" % i for i in range(999)]) == {200: 999}
    # Table: hot (oldest) + 999 fills. Touch hot, then add one new key:
    # the least recently used (fill0) goes, not hot.
    assert flood(p, ["hot"]) == {429: 1}
    assert flood(p, ["newcomer"]) == {200: 1}
    assert flood(p, ["hot"]) == {429: 1}
    assert flood(p, ["fill1"]) == {429: 1}
    assert flood(p, ["fill0"]) == {200: 1}
    assert stats(p, "many")["keys"] == 1000


def test_stats_route_rejects_unknown(server):
    assert request(server.port, "GET", "/rl/stats?name=nope").status == 404
