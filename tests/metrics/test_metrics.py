"""Server-wide counters and the Prometheus endpoint: exact deltas of
responses by class, bytes in and out, connections, WebSocket messages,
publishes, drops and refused upgrades; the text format; the C API agrees."""
import re
import socket
import time

from conftest import HOST, build, get, raw_exchange, scrape, stats_c
from wsclient import WSClient

CLASS = 'app_http_responses_total{class="%s"}'


def test_text_format(srv):
    status, headers, body, _ = get(srv.port, "/internal/m?x=1")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    assert text.endswith("\n")
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter")
            names.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        assert re.fullmatch(r'app_[a-z_]+(\{class="(1xx|2xx|3xx|4xx|5xx|other)"\})? \d+',
                            line), line
    assert names == {
        "app_connections", "app_websockets", "app_http_responses_total",
        "app_http_responses_aborted_total", "app_bytes_received_total",
        "app_bytes_sent_total", "app_ws_messages_received_total",
        "app_ws_messages_sent_total", "app_ws_messages_dropped_total",
        "app_ws_upgrades_refused_total", "app_pubsub_publishes_total"}


def test_head_and_other_methods(srv):
    status, headers, body, _ = get(srv.port, "/internal/m", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, _, _, _ = get(srv.port, "/internal/m", method="POST")
    assert status == 404  # passed on: no route
    status, _, _, _ = get(srv.port, "/internal/m/more")
    assert status == 404


def test_responses_by_class_and_bytes_exactly(srv):
    m0, req0, ans0 = scrape(srv.port)
    sent = received = 0
    for target, n in (("/ok", 3), ("/redirect", 2), ("/fail", 1),
                      ("/nothing", 4)):
        for _ in range(n):
            req = build("GET", target)
            received += len(raw_exchange(srv.port, req))
            sent += len(req)
    m1, req1, _ = scrape(srv.port)
    # the first scrape finished after it read the counters: it counts here
    assert m1[CLASS % "2xx"] - m0[CLASS % "2xx"] == 3 + 1
    assert m1[CLASS % "3xx"] - m0[CLASS % "3xx"] == 2
    assert m1[CLASS % "4xx"] - m0[CLASS % "4xx"] == 4
    assert m1[CLASS % "5xx"] - m0[CLASS % "5xx"] == 1
    assert m1[CLASS % "1xx"] == m0[CLASS % "1xx"]
    assert m1[CLASS % "other"] == m0[CLASS % "other"]
    # every byte: the requests since, and the answers since the first
    # scrape's (which went out after it read the counters)
    assert m1["app_bytes_received_total"] - m0["app_bytes_received_total"] \
        == sent + req1
    assert m1["app_bytes_sent_total"] - m0["app_bytes_sent_total"] \
        == ans0 + received


def test_connections_gauge(srv):
    # connections of earlier tests may still be closing: wait until only
    # the scrape's own is open
    deadline = time.monotonic() + 5
    while True:
        base, _, _ = scrape(srv.port)
        if base["app_connections"] == 1:
            break
        assert time.monotonic() < deadline, base
        time.sleep(0.02)
    socks = [socket.create_connection((HOST, srv.port)) for _ in range(5)]
    try:
        deadline = time.monotonic() + 5
        while True:
            m, _, _ = scrape(srv.port)
            if m["app_connections"] == base["app_connections"] + 5:
                break
            assert time.monotonic() < deadline, m
        for s in socks:
            s.close()
        deadline = time.monotonic() + 5
        while True:
            m, _, _ = scrape(srv.port)
            if m["app_connections"] == base["app_connections"]:
                break
            assert time.monotonic() < deadline, m
    finally:
        for s in socks:
            s.close()


def test_aborted_responses(srv):
    m0, _, _ = scrape(srv.port)
    s = socket.create_connection((HOST, srv.port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.1)
    s.close()
    scrapes = 1  # m0's, counted once it finished
    deadline = time.monotonic() + 5
    while True:
        m, _, _ = scrape(srv.port)
        if m["app_http_responses_aborted_total"] == \
                m0["app_http_responses_aborted_total"] + 1:
            break
        scrapes += 1
        assert time.monotonic() < deadline, m
    # the aborted response is not counted by class: only the scrapes are
    assert m[CLASS % "2xx"] - m0[CLASS % "2xx"] == scrapes
    for cls in ("1xx", "3xx", "4xx", "5xx", "other"):
        assert m[CLASS % cls] == m0[CLASS % cls]


def test_websocket_counters(srv):
    m0, _, _ = scrape(srv.port)
    a = WSClient.connect(srv.port, "/ws")
    b = WSClient.connect(srv.port, "/ws")
    try:
        m, _, _ = scrape(srv.port)
        assert m["app_websockets"] == m0["app_websockets"] + 2
        assert m[CLASS % "1xx"] == m0[CLASS % "1xx"] + 2  # the 101s
        a.echo(b"one")                      # 1 in, 1 out
        a.send_text("pub:news")             # 1 in, a publish to 2
        assert a.recv_text() == "news"
        assert b.recv_text() == "news"
        m, _, _ = scrape(srv.port)
        assert m["app_ws_messages_received_total"] - \
            m0["app_ws_messages_received_total"] == 2
        assert m["app_ws_messages_sent_total"] - \
            m0["app_ws_messages_sent_total"] == 3
        assert m["app_pubsub_publishes_total"] - \
            m0["app_pubsub_publishes_total"] == 1
    finally:
        a.close_handshake()
        b.close()
    deadline = time.monotonic() + 5
    while scrape(srv.port)[0]["app_websockets"] != m0["app_websockets"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_drops_and_refused_upgrades(srv):
    m0, _, _ = scrape(srv.port)
    c = WSClient.connect(srv.port, "/narrow")
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        c.send_text("flood")
        deadline = time.monotonic() + 5
        while True:
            m, _, _ = scrape(srv.port)
            if m["app_ws_messages_dropped_total"] > \
                    m0["app_ws_messages_dropped_total"]:
                break
            assert time.monotonic() < deadline, m
        assert m["app_ws_messages_dropped_total"] - \
            m0["app_ws_messages_dropped_total"] == 1  # the loop stops there
    finally:
        c.close()
    # refused: a foreign origin (403), a bad version (426), no key (400),
    # a route-level middleware (401)
    WSClient.connect(srv.port, "/picky",
                     headers={"Origin": "http://evil.example"},
                     expect=403).close()
    WSClient.connect(srv.port, "/picky",
                     headers={"Origin": "http://ok.example"}).close()
    req = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert raw_exchange(srv.port, req).startswith(b"HTTP/1.1 426 ")
    req = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert raw_exchange(srv.port, req).startswith(b"HTTP/1.1 400 ")
    WSClient.connect(srv.port, "/gated", expect=401).close()
    m, _, _ = scrape(srv.port)
    assert m["app_ws_upgrades_refused_total"] - \
        m0["app_ws_upgrades_refused_total"] == 4


def test_c_api_agrees_with_the_text(srv):
    # sockets the tests before closed without a handshake may still be
    # closing: wait until none is open, so nothing moves in between
    deadline = time.monotonic() + 5
    while scrape(srv.port)[0]["app_websockets"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    c = stats_c(srv.port)            # read before /stats-c answered
    m, _, _ = scrape(srv.port)       # read after /stats-c finished
    assert m[CLASS % "2xx"] == c["r2"] + 1
    for key, name in (("r1", "1xx"), ("r3", "3xx"), ("r4", "4xx"),
                      ("r5", "5xx"), ("r0", "other")):
        assert m[CLASS % name] == c[key]
    assert m["app_websockets"] == c["websockets"] == c["ws_count"]
    assert m["app_pubsub_publishes_total"] == c["publishes"]
    assert m["app_ws_upgrades_refused_total"] == c["refused"]
    assert m["app_http_responses_aborted_total"] == c["aborted"]
    assert m["app_bytes_received_total"] > c["bytes_in"]
