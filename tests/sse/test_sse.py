"""Server-sent events over real sockets: the wire format (data split at
CRLF, CR and LF), the head, Last-Event-ID, retry, keep-alive comments,
invalid names, the end of a stream, a client that leaves, backpressure
and drops, and a stop with streams open."""
import json
import signal
import time

from conftest import Stream, request, stats, wait_stats, TalonServer
from talon_server import finish


def test_head_and_first_event(srv):
    s = Stream(srv.port, "/stream")
    try:
        assert s.status == 200
        assert s.headers["content-type"] == "text/event-stream"
        assert s.headers["cache-control"] == "no-cache"
        assert s.headers["x-accel-buffering"] == "no"
        assert s.headers["transfer-encoding"] == "chunked"
        assert s.headers["x-kept"] == "yes"
        ev = s.wait_events(1)
        # no Last-Event-ID; an event name or id with a line break and a
        # two-line comment are refused
        assert ev[0] == {"event": "start", "id": "",
                         "data": "none|TL_EINVAL|TL_EINVAL|TL_EINVAL"}
        assert s.raw == (b"event: start\n"
                         b"data: none|TL_EINVAL|TL_EINVAL|TL_EINVAL\n\n")
    finally:
        s.close()


def test_data_lines_split_at_every_line_break(srv):
    s = Stream(srv.port, "/stream")
    try:
        s.wait_events(1)
        start = len(s.raw)
        data = b"a\r\nb\rc\nd\n\nlast"
        status, body = request(srv.port, "POST", "/broadcast?event=multi&id=7",
                               data)
        assert status == 200
        results = json.loads(body)
        assert len(results) >= 1 and all(r > 0 for r in results), results
        ev = s.wait_events(2)
        want = (b"event: multi\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n"
                b"data: last\nid: 7\n\n")
        assert s.raw[start:] == want
        assert ev[1] == {"event": "multi", "data": "a\nb\nc\nd\n\nlast",
                         "id": "7"}
        # a trailing line break survives as an empty last data line;
        # empty data is one empty data line; no event name: "message"
        for payload, wire, parsed in (
                (b"x\r\n", b"data: x\ndata: \n\n", "x\n"),
                (b"", b"data: \n\n", ""),
                (b"\r", b"data: \ndata: \n\n", "\n"),
                (b" lead", b"data:  lead\n\n", " lead")):
            start = len(s.raw)
            n = len(s.events())
            request(srv.port, "POST", "/broadcast", payload)
            ev = s.wait_events(n + 1)
            assert s.raw[start:] == wire
            assert ev[-1]["data"] == parsed and ev[-1]["event"] == "message"
    finally:
        s.close()


def test_last_event_id_reaches_the_handler(srv):
    s = Stream(srv.port, "/stream", headers=[("Last-Event-ID", "41")])
    try:
        assert s.wait_events(1)[0]["data"].startswith("41|")
    finally:
        s.close()


def test_retry_first(srv):
    s = Stream(srv.port, "/stream?retry=1500")
    try:
        s.wait_events(1)
        assert s.raw.startswith(b"retry: 1500\n\n")
        assert s.retry == 1500
    finally:
        s.close()


def test_keepalive_comments_when_idle(srv):
    s = Stream(srv.port, "/stream?ka=150")
    try:
        s.wait_events(1)
        t0 = time.monotonic()
        s.read_until(lambda: (s.events(), len(s.comments) >= 3)[1], 5)
        assert time.monotonic() - t0 >= 0.3  # not faster than asked
        assert s.comments[:3] == ["keep-alive"] * 3
        assert len(s.events()) == 1  # comments are not events
    finally:
        s.close()


def test_no_keepalive_by_default_within_a_second(srv):
    s = Stream(srv.port, "/stream")
    try:
        s.wait_events(1)
        n = len(s.raw)
        time.sleep(1.2)
        s.pump(0.1)
        assert len(s.raw) == n  # default keep-alive is 15 s
    finally:
        s.close()


def test_client_leaving_calls_on_close(srv):
    before = stats(srv.port)
    s = Stream(srv.port, "/stream")
    s.wait_events(1)
    wait_stats(srv.port, lambda st: st["opened"] == before["opened"] + 1)
    s.close()
    st = wait_stats(srv.port, lambda st: st["closed"] == before["closed"] + 1)
    assert st["open"] == before["open"]
    # a broadcast no longer reaches it
    status, body = request(srv.port, "POST", "/broadcast", b"x")
    assert len(json.loads(body)) == st["open"]


def test_end_finishes_the_response_and_keeps_the_connection(srv):
    s = Stream(srv.port, "/end?n=3")
    try:
        s.read_until(lambda: s.done)
        assert [e["data"] for e in s.events()] == ["event 0", "event 1",
                                                   "event 2"]
        # keep-alive: another request on the same connection
        s.sock.sendall(b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n")
        buf = s.buf
        while b"\r\n\r\n" not in buf:
            buf += s.sock.recv(65536)
        assert buf.startswith(b"HTTP/1.1 200 ")
    finally:
        s.close()


def test_backpressure_waits_for_drain(srv):
    # 8 MB: more than the kernel's socket buffers hold
    n, size = 2000, 4000
    before = stats(srv.port)
    s = Stream(srv.port, f"/flood?n={n}&size={size}", read=False,
               rcvbuf=16384)
    try:
        time.sleep(0.5)  # not reading: the server must stop at backpressure
        st = stats(srv.port)
        sent = st["flood_sent"] - before["flood_sent"]
        assert st["flood_backpressure"] > before["flood_backpressure"]
        assert 0 < sent < n, st
        time.sleep(0.3)
        assert stats(srv.port)["flood_sent"] - before["flood_sent"] == sent
        s.read_head()
        s.read_until(lambda: s.done, timeout=20)
        ev = s.events()
        assert [e["id"] for e in ev] == [str(i) for i in range(n)]
        assert all(len(e["data"]) == size for e in ev)
        st = stats(srv.port)
        assert st["flood_sent"] - before["flood_sent"] == n
        assert st["flood_drains"] > before["flood_drains"]
    finally:
        s.close()


def test_events_over_max_buffered_are_dropped_whole(srv):
    before = stats(srv.port)
    s = Stream(srv.port, "/drop?n=100&size=16000&max=256000")
    try:
        s.read_until(lambda: s.done, timeout=10)
        st = stats(srv.port)
        accepted = st["drop_accepted"] - before["drop_accepted"]
        dropped = st["drop_dropped"] - before["drop_dropped"]
        assert accepted + dropped == 100
        assert dropped > 0 and 0 < accepted <= 256000 // 16000
        ev = s.events()
        # what was accepted arrived whole and in order; nothing partial
        assert [e["id"] for e in ev] == [str(i) for i in range(accepted)]
        assert all(e["data"] == "d" * 16000 for e in ev)
    finally:
        s.close()


def test_stop_ends_open_streams(server_bin):
    srv = TalonServer([server_bin, "0"], name="sse_test_server",
                      tmp_prefix="talon-sse-").start()
    streams = [Stream(srv.port, "/stream") for _ in range(3)]
    try:
        for s in streams:
            s.wait_events(1)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        for s in streams:
            s.read_until(lambda: s.done, timeout=4)  # the last chunk came
        assert time.monotonic() - t0 < 2.5  # not the 5 s shutdown timeout
        srv.proc.wait(timeout=5)
        assert srv.stdout().count("stream closed by stop") == 3
    finally:
        for s in streams:
            s.close()
        finish(srv, check_alive=False)
