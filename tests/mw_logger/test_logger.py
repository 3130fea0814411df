"""The logger middleware through the real server: every format's fields,
escaping, aborted requests, the FILE* sink and the callback sink, and a
slow sink (a pipe nobody reads) that must not slow the server down."""
import datetime
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import HOST, http, raw
from talon_server import skip_if_wrapped

UA = 'agent "q" \\ tail \xe9'          # sent as latin-1 bytes: quote, backslash, 0xe9
UA_BYTES = UA.encode("latin-1")
REFERER = "http://ref.example/page?x=1"

CLF_RE = re.compile(
    r'^(?P<host>\S+) - - \[(?P<time>[^\]]+)\] "(?P<req>(?:[^"\\]|\\.)*)" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-)'
    r'(?: "(?P<ref>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?'
    r' (?P<ms>\d+\.\d{3})(?P<aborted> aborted)?$')


def exercise(port):
    """Sends the scripted requests; returns the expected log records in
    order: (method, target, status, bytes, referer, ua, aborted)."""
    exp = []
    st, body = http(port, "GET", "/hello",
                    headers=[("Referer", REFERER), ("User-Agent", UA)])
    assert (st, body) == (200, b"hello world")
    exp.append(("GET", "/hello", 200, 11, REFERER, UA, False))

    st, body = http(port, "GET", "/nope?a=1")
    assert st == 404
    exp.append(("GET", "/nope?a=1", 404, len(body), None, None, False))

    st, body = http(port, "HEAD", "/hello")
    assert (st, body) == (200, b"")
    exp.append(("HEAD", "/hello", 200, 0, None, None, False))

    st, body = http(port, "POST", "/echo", body=b"abcdef")
    assert (st, body) == (200, b"abcdef")
    exp.append(("POST", "/echo", 200, 6, None, None, False))

    st, body = http(port, "GET", "/status/503")
    assert (st, body) == (503, b"status")
    exp.append(("GET", "/status/503", 503, 6, None, None, False))

    # 413 is answered by the core before any middleware: never logged.
    st, _ = http(port, "POST", "/echo", body=b"x" * 10000)
    assert st == 413

    target = '/hello?q=%22x%22&e=%0d%0a'
    st, _ = http(port, "GET", target)
    assert st == 200
    exp.append(("GET", target, 200, 11, None, None, False))

    # The client leaves before the deferred answer: logged as aborted.
    with socket.create_connection((HOST, port)) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.1)
    exp.append(("GET", "/slow", 200, 0, None, None, True))
    time.sleep(0.1)

    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-A", "curl-test/1",
                        f"http://{HOST}:{port}/hello"],
                       stdout=subprocess.PIPE, timeout=10)
    assert r.stdout == b"hello world"
    exp.append(("GET", "/hello", 200, 11, None, "curl-test/1", False))
    return exp


def clf_unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        if s[i] == "\\":
            if s[i + 1] == "x":
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            out += s[i + 1].encode()
            i += 2
            continue
        out += s[i].encode()
        i += 1
    return bytes(out)


def wait_lines(read, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = [l for l in read().splitlines() if l]
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def check_time(text, offset, t0, t1):
    if offset is None:  # JSON: ISO 8601
        t = datetime.datetime.fromisoformat(text)
    else:
        t = datetime.datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z")
        assert text.endswith(offset)
    if offset is None:
        pass
    ts = t.timestamp()
    assert t0 - 2 <= ts <= t1 + 2, (text, t0, t1)
    return t


def check_clf(lines, exp, combined, offset, t0, t1):
    assert len(lines) == len(exp), "\n".join(lines)
    for line, (m, target, status, nbytes, ref, ua, aborted) in zip(lines, exp):
        g = CLF_RE.match(line)
        assert g, f"not a log line: {line!r}"
        assert g["host"] == "127.0.0.1"
        check_time(g["time"], offset, t0, t1)
        assert clf_unescape(g["req"]) == f"{m} {target} HTTP/1.1".encode()
        assert int(g["status"]) == status
        assert g["bytes"] == (str(nbytes) if nbytes else "-")
        assert float(g["ms"]) >= 0
        if aborted:
            assert float(g["ms"]) >= 50  # it waited for the client to go
        assert bool(g["aborted"]) == aborted
        if combined:
            assert g["ref"] == (ref if ref else "-")
            assert clf_unescape(g["ua"]) == (ua.encode("latin-1") if ua else b"-")
        else:
            assert g["ref"] is None and g["ua"] is None
        # No raw control or non-ASCII bytes ever reach a text log.
        assert all(0x20 <= ord(c) < 0x7f for c in line), line


def check_json(lines, exp, offset, t0, t1):
    assert len(lines) == len(exp), "\n".join(lines)
    for line, (m, target, status, nbytes, ref, ua, aborted) in zip(lines, exp):
        o = json.loads(line)
        assert set(o) == {"time", "remote_addr", "method", "target", "path",
                          "protocol", "status", "bytes", "duration_ms",
                          "referer", "user_agent", "aborted"}
        t = check_time(o["time"], None, t0, t1)
        assert t.utcoffset() == offset
        assert o["remote_addr"] == "127.0.0.1"
        assert o["method"] == m
        assert o["target"] == target
        assert o["path"] == target.split("?")[0]
        assert o["protocol"] == "HTTP/1.1"
        assert o["status"] == status
        assert o["bytes"] == nbytes
        assert isinstance(o["duration_ms"], float) and o["duration_ms"] >= 0
        assert o["aborted"] is aborted
        assert o["referer"] == ref
        # 0xe9 alone is invalid UTF-8: U+FFFD, the line stays valid JSON.
        assert o["user_agent"] == (ua.replace("\xe9", "\ufffd") if ua else None)


@pytest.mark.parametrize("fmt", ["common", "combined", "json"])
def test_formats_file_and_callback(start, tmp_path, fmt):
    log = tmp_path / "access.log"
    # The callback logger uses local time: a fixed UTC+2 zone.
    s = start(fmt, str(log), env={"TZ": "XYZ-2"})
    t0 = time.time()
    exp = exercise(s.port)
    t1 = time.time()
    file_lines = wait_lines(lambda: log.read_text("utf-8"), len(exp))
    st, mem = http(s.port, "GET", "/_lines")
    assert st == 200
    mem_lines = mem.decode("utf-8").splitlines()
    if fmt == "json":
        check_json(file_lines, exp, datetime.timedelta(0), t0, t1)
        check_json(mem_lines, exp, datetime.timedelta(hours=2), t0, t1)
    else:
        check_clf(file_lines, exp, fmt == "combined", "+0000", t0, t1)
        check_clf(mem_lines, exp, fmt == "combined", "+0200", t0, t1)
    st, body = http(s.port, "GET", "/_stats")
    stats = json.loads(body)
    # /_lines was logged after its answer, /_stats not yet.
    assert stats["lines"] == len(exp) + 1
    assert stats["dropped"] == 0 and stats["write_errors"] == 0
    assert stats["bogus_rc"] == -30002  # TL_EINVAL for a non-logger


def test_default_sink_is_stdout(start):
    s = start("combined", "-")
    assert http(s.port, "GET", "/hello")[0] == 200
    lines = wait_lines(lambda: s.stdout(), 2)
    assert lines[0].startswith("listening on")
    assert re.match(r'^127\.0\.0\.1 - - \[.*\] "GET /hello HTTP/1\.1" 200 11 "-" "-" \d+\.\d{3}$',
                    lines[1]), lines


def fill_pipe_server(start, max_queue):
    r, w = os.pipe()
    s = start("common", f"fd:{w}", max_queue=max_queue, pass_fds=(w,))
    os.close(w)
    return s, r


def keepalive_requests(port, n):
    """n GETs on one keep-alive connection; returns the slowest latency."""
    worst = 0.0
    req = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection((HOST, port), timeout=5) as c:
        for _ in range(n):
            t = time.monotonic()
            c.sendall(req)
            buf = b""
            while not buf.endswith(b"hello world"):
                chunk = c.recv(4096)
                assert chunk, "server closed the connection"
                buf += chunk
            worst = max(worst, time.monotonic() - t)
    return worst


@skip_if_wrapped("asserts each of 1500 requests answers within 0.5 s; "
                 "a server slowed 20-50x can exceed that")
def test_slow_sink_drops_and_recovers(start):
    s, r = fill_pipe_server(start, 8192)
    n = 1500  # ~120 KB of lines: fills the 64 KiB pipe and the queue
    t = time.monotonic()
    worst = keepalive_requests(s.port, n)
    total = time.monotonic() - t
    assert worst < 0.5, f"a request took {worst:.3f}s with a stuck sink"
    assert total < 15
    st, body = http(s.port, "GET", "/_stats")
    stats = json.loads(body)
    assert stats["dropped"] > 0
    assert stats["lines"] + stats["dropped"] == n
    assert stats["queued_bytes"] <= 8192
    assert stats["write_errors"] == 0

    # Let the writer's last attempt time out (it polls ~100 ms), so that
    # only new lines can restart it. Then someone starts reading: the next
    # lines get through, preceded by the count of what was lost.
    time.sleep(0.5)
    data = bytearray()
    stop = threading.Event()

    def reader():
        os.set_blocking(r, False)
        while not stop.is_set():
            try:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                data.extend(chunk)
            except BlockingIOError:
                time.sleep(0.005)

    th = threading.Thread(target=reader)
    th.start()
    sent = n + 1  # the /_stats request
    try:
        deadline = time.monotonic() + 5
        while b"lines dropped" not in data and time.monotonic() < deadline:
            assert http(s.port, "GET", "/hello")[0] == 200
            sent += 1
            time.sleep(0.05)
        assert b"lines dropped" in data
        # One more after recovery, then a clean stop flushes the rest.
        assert http(s.port, "GET", "/status/201")[0] == 201
        sent += 1
        s.check_clean_exit(s.stop())
        time.sleep(0.2)
    finally:
        stop.set()
        th.join()
        os.close(r)
    lines = data.decode().splitlines()
    notices = [l for l in lines if l.startswith("talon logger:")]
    req_lines = [l for l in lines if not l.startswith("talon logger:")]
    assert len(notices) >= 1
    dropped = sum(int(re.fullmatch(r"talon logger: (\d+) lines dropped", l)[1])
                  for l in notices)
    assert all(CLF_RE.match(l) for l in req_lines)
    assert len(req_lines) + dropped == sent
    assert req_lines[-1].split('"')[1] == "GET /status/201 HTTP/1.1"


def test_stuck_sink_does_not_block_shutdown(start):
    s, r = fill_pipe_server(start, 4096)
    try:
        keepalive_requests(s.port, 1200)
        t = time.monotonic()
        rc = s.stop()
        assert time.monotonic() - t < 3.0
        s.check_clean_exit(rc)
    finally:
        os.close(r)


def test_sink_gone_counts_errors(start):
    r, w = os.pipe()
    s = start("json", f"fd:{w}", pass_fds=(w,))
    os.close(w)
    os.close(r)  # no reader at all: EPIPE (SIGPIPE is ignored by talon)
    for _ in range(5):
        assert http(s.port, "GET", "/hello")[0] == 200
    time.sleep(0.3)
    stats = json.loads(http(s.port, "GET", "/_stats")[1])
    assert stats["write_errors"] >= 1
    assert stats["lines"] + stats["dropped"] >= 5
    assert stats["queued_bytes"] == 0
