"""The middleware with shared state, with 4 workers (on a machine with
fewer cores, too): sessions, the rate limiter and the logger must behave
as with one. Every response says which worker ran it (X-Worker), so the
tests show that their connections were spread over the workers rather
than assume it."""
import asyncio
import gzip
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import websockets

from conftest import HOST, WORKERS

ALL = set(range(WORKERS))


def cookie_of(headers):
    m = re.match(r"(tl\.sid=[^;]*)", headers.get("set-cookie", ""))
    assert m, headers
    return m.group(1)


def on_every_worker(srv, method, path, headers=None, check=None,
                    most=400):
    """Repeats a request, each on a new connection, until every worker
    has answered it at least twice; `check(status, body)` runs on every
    answer. Returns {worker: answers}."""
    seen = {}
    for _ in range(most):
        status, h, body = srv.request(method, path, headers)
        if check:
            check(status, body)
        w = int(h["x-worker"])
        seen[w] = seen.get(w, 0) + 1
        if set(seen) == ALL and min(seen.values()) >= 2:
            return seen
    raise AssertionError(f"connections reached only workers {seen}")


# ---- sessions ---------------------------------------------------------------

def test_a_session_is_valid_on_every_worker(srv):
    status, h, sid = srv.request("POST", "/login?user=alice")
    assert status == 200, sid
    cookie = cookie_of(h)
    made_on = int(h["x-worker"])

    def valid(status, body):
        assert (status, body) == (200, "alice 0")
    seen = on_every_worker(srv, "GET", "/whoami", {"Cookie": cookie}, valid)
    assert made_on in seen and len(seen) == WORKERS


def test_writes_through_one_worker_are_read_on_the_others(srv):
    status, h, _ = srv.request("POST", "/login?user=bob")
    assert status == 200
    cookie = {"Cookie": cookie_of(h)}
    writers = set()
    # Each increment reads the value another connection (often another
    # worker) wrote, so a store per worker would lose counts.
    for n in range(1, 41):
        status, h, body = srv.request("POST", "/bump", cookie)
        assert (status, body) == (200, str(n))
        writers.add(int(h["x-worker"]))
    assert len(writers) >= 2, writers
    assert srv.request("GET", "/whoami", cookie)[2] == "bob 40"


def test_sessions_made_concurrently_on_all_workers(srv):
    """Many clients log in at once (the store is written from all workers
    at the same time); each session is then valid, with its own data."""
    def one(i):
        status, h, _ = srv.request("POST", f"/login?user=u{i}")
        assert status == 200
        made = int(h["x-worker"])
        status, h, body = srv.request("GET", "/whoami",
                                      {"Cookie": cookie_of(h)})
        assert (status, body) == (200, f"u{i} 0")
        return made, int(h["x-worker"])
    with ThreadPoolExecutor(16) as ex:
        pairs = list(ex.map(one, range(200)))
    assert {m for m, _ in pairs} == ALL
    assert any(m != r for m, r in pairs)  # read on another worker


def test_logout_on_one_worker_ends_the_session_on_all(srv):
    status, h, _ = srv.request("POST", "/login?user=carol")
    cookie = {"Cookie": cookie_of(h)}
    assert srv.request("GET", "/whoami", cookie)[0] == 200
    status, h, body = srv.request("GET", "/logout", cookie)
    assert (status, body) == (200, "bye")

    def gone(status, body):
        assert (status, body) == (401, "nobody")
    on_every_worker(srv, "GET", "/whoami", cookie, gone)


# ---- rate limit ---------------------------------------------------------------

def test_the_rate_limit_counts_a_client_once_across_workers(srv):
    """Burst 40, no refill during the test: of 100 requests from one
    client, on 100 connections spread over the workers and sent 16 at a
    time, exactly 40 pass, whatever worker each lands on."""
    before = srv.stats()["rl"]

    def one(i):
        status, h, _ = srv.request("GET", "/limited", {"X-Client": "c1"})
        return status, int(h["x-worker"])
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(100)))
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 40 and statuses.count(429) == 60, statuses
    assert {w for s, w in results if s == 200} and \
        len({w for _, w in results}) == WORKERS
    after = srv.stats()["rl"]
    assert after["allowed"] - before["allowed"] == 40
    assert after["limited"] - before["limited"] == 60
    # Another client has its own bucket, on every worker.
    statuses = [srv.request("GET", "/limited", {"X-Client": "c2"})[0]
                for _ in range(41)]
    assert statuses == [200] * 40 + [429]


# ---- logger -------------------------------------------------------------------

def wait_logged(srv, total, timeout=60):
    """Waits until the file logger produced `total` lines and wrote them
    all; returns the stats."""
    deadline = time.monotonic() + timeout
    while True:
        st = srv.stats()
        # The /_stats request itself is logged after its answer.
        if st["log"]["lines"] >= total and st["log"]["queued_bytes"] == 0:
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.05)


def test_log_lines_stay_whole_under_load_from_all_workers(srv):
    """16 clients at once, 800 requests over 200 connections, with long
    targets (lines of up to ~3 KB, so that the writer's 4 KiB writes are
    full of lines from different workers): every line in the file is one
    whole JSON object, each request is there exactly once, and the
    callback sink was never entered by two workers at once."""
    def client(c):
        import http.client
        workers = set()
        for k in range(5):  # 5 connections of 8 keep-alive requests
            conn = http.client.HTTPConnection(HOST, srv.port, timeout=60)
            for i in range(8):
                pad = "x" * ((c * 131 + k * 17 + i * 389) % 3000)
                conn.request("GET", f"/load/{c}-{k}-{i}?pad={pad}")
                r = conn.getresponse()
                assert r.status == 200 and r.read() == b"ok"
                workers.add(int(r.getheader("X-Worker")))
            conn.close()
        return workers
    before = srv.stats()
    with ThreadPoolExecutor(16) as ex:
        workers = set().union(*ex.map(client, range(20)))
    assert workers == ALL
    st = wait_logged(srv, before["log"]["lines"] + 800)
    assert st["log"]["dropped"] == 0 and st["log"]["write_errors"] == 0
    assert st["sink"]["overlaps"] == 0
    assert st["sink"]["lines"] >= before["sink"]["lines"] + 800

    lines = srv.log_lines()
    targets = []
    for line in lines:
        assert line.endswith("\n"), line[:200]
        rec = json.loads(line)  # a torn or mixed line is not JSON
        if rec.get("path", "").startswith("/load/"):
            assert rec["status"] == 200 and rec["method"] == "GET"
            targets.append(rec["target"])
    expected = [f"/load/{c}-{k}-{i}?pad=" +
                "x" * ((c * 131 + k * 17 + i * 389) % 3000)
                for c in range(20) for k in range(5) for i in range(8)]
    assert sorted(targets) == sorted(expected)


def test_websocket_sessions_are_logged_once_on_every_worker(srv):
    """Sockets opened on all workers: each gets one open and one close
    line, paired by an id no other socket has."""
    async def one(i):
        async with websockets.connect(
                f"ws://{HOST}:{srv.port}/ws?n={i}") as ws:
            await ws.send(f"hello {i}")
            assert await ws.recv() == f"hello {i}"

    async def all_of_them():
        await asyncio.gather(*(one(i) for i in range(48)))
    before = srv.stats()["log"]["lines"]
    asyncio.run(asyncio.wait_for(all_of_them(), 60))
    # 48 upgrade lines (101), 48 opens, 48 closes.
    deadline = time.monotonic() + 30
    while True:
        wait_logged(srv, before + 3 * 48)
        recs = [json.loads(x) for x in srv.log_lines()]
        ws = [r for r in recs if r.get("type") == "ws" and
              r["target"].startswith("/ws?n=")]
        if len([r for r in ws if r["event"] == "close"]) == 48:
            break
        assert time.monotonic() < deadline, ws
        time.sleep(0.05)
    opens = {r["id"]: r["target"] for r in ws if r["event"] == "open"}
    closes = {r["id"]: r["target"] for r in ws if r["event"] == "close"}
    assert len(opens) == 48 and opens == closes
    assert sorted(opens.values()) == sorted(f"/ws?n={i}" for i in range(48))
    upgrades = [r for r in recs if r.get("status") == 101 and
                r["path"] == "/ws"]
    assert len(upgrades) == 48


# ---- the middleware without shared state ----------------------------------
# Request ids, security headers, CORS, compression, static files, CSRF,
# server-sent events and metrics keep no state that requests change; this
# runs them on all workers at once (in the ThreadSanitizer build, that is
# the check; metrics also read every worker's counters while they move).

def test_stateless_middleware_on_all_workers_at_once(srv):
    status, h, token = srv.request("GET", "/csrf")
    assert status == 200
    cookie = cookie_of(h)

    def one(i):
        kind = i % 6
        if kind == 0:  # static, compress
            status, h, body = srv.request("GET", "/s/big.txt")
            assert (status, body) == (200, srv.big) and h["etag"]
            status, h, body = srv.request(
                "GET", "/big", {"Accept-Encoding": "gzip"}, raw=True)
            assert status == 200 and h["content-encoding"] == "gzip"
            assert gzip.decompress(body).decode() == srv.big
        elif kind == 1:  # a CORS preflight
            status, h, _ = srv.request(
                "OPTIONS", "/load/x",
                {"Origin": "https://a.example",
                 "Access-Control-Request-Method": "PUT"})
            assert status == 204
            assert h["access-control-allow-origin"] == "*"
        elif kind == 2:  # CSRF: the token from another connection
            status, h, body = srv.request(
                "POST", "/csrf", {"Cookie": cookie, "X-CSRF-Token": token})
            assert (status, body) == (200, "ok")
            status, _, body = srv.request(
                "POST", "/csrf",
                {"Cookie": cookie, "X-CSRF-Token": "x" + token})
            assert (status, body.strip()) == (403, "Forbidden: CSRF token invalid")
        elif kind == 3:  # server-sent events
            status, h, body = srv.request("GET", "/events")
            assert status == 200
            assert h["content-type"] == "text/event-stream"
            assert body.count("event: n\n") == 5
            assert [ln for ln in body.splitlines()
                    if ln.startswith("data: ")] == \
                [f"data: {n}" for n in range(1, 6)]
        elif kind == 4:  # metrics: the counters of all workers
            status, h, body = srv.request("GET", "/metrics")
            assert status == 200
            total = [ln for ln in body.splitlines()
                     if ln.startswith('talon_http_responses_total{class="2xx"}')]
            assert len(total) == 1 and int(total[0].split()[-1]) > 0
        else:
            status, h, body = srv.request("GET", f"/load/plain-{i}",
                                          {"Origin": "https://b.example"})
            assert (status, body) == (200, "ok")
            assert h["access-control-allow-origin"] == "*"
        assert h["x-content-type-options"] == "nosniff"
        return h["x-request-id"], int(h["x-worker"])
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, range(600)))
    ids = [r for r, _ in results]
    assert len(set(ids)) == len(ids)  # fresh ids, none shared
    assert {w for _, w in results} == ALL
