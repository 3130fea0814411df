"""The client against talon's own servers: every server feature from the
other side (text, binary, large messages, ping/pong, close codes both
ways, subprotocols, headers, failures with status and headers,
backpressure and drain, pub/sub from a client socket, workers), and the
connect failures that need no hostile server (refused, DNS, timeout)."""
import socket
import time

import pytest

from conftest import HOST


def url(server, path):
    return f"ws://{HOST}:{server.port}{path}"


def test_text_binary_and_large_echo(probe, echo):
    r = probe(url(echo, "/ws"),
              ["text hello", "text h\u00e9llo \u2603", "binary 00ff10",
               "big 3000000", "await 4", "close 1000 done"])
    m = r.messages()
    assert [x["op"] for x in m] == ["text", "text", "binary", "binary"]
    assert m[0]["data"] == "hello"
    assert m[1]["data"] == "h\u00e9llo \u2603"
    assert m[2]["len"] == 3 and m[2]["head"] == "00ff10"
    big = bytes(i % 251 for i in range(3000000))
    s = 0
    for b in big:
        s = (s * 31 + b) & 0xffffffff
    assert m[3]["len"] == 3000000 and m[3]["sum"] == s
    c = r.one("close")
    assert c["code"] == 1000 and r.rc == 0


def test_open_context_and_stats(probe, echo):
    r = probe(url(echo, "/ws"), ["text a", "text bb", "await 2", "stats",
                                 "close 1000"], args=["--data", "ctx-1"])
    assert r.one("open")["data"] == "ctx-1"
    st = r.one("stats")
    assert st["messages_in"] == 2 and st["messages_out"] == 2
    assert st["bytes_in"] == 3 and st["bytes_out"] == 3
    assert st["client"] is True and st["ws_count"] == 1


def test_ping_pong_both_ways(probe, ws_server):
    # Our ping is answered with a pong by the server; the server's ping
    # (asked for with "ping-me") is answered by the client automatically,
    # which the server reports as "got-pong:srv-ping".
    r = probe(url(ws_server, "/ping"),
              ["ping cli", "text ping-me", "await 1", "sleep 100",
               "close 1000"])
    assert r.one("pong")["data"] == "cli"
    assert r.one("ping")["data"] == "srv-ping"
    assert r.messages()[0]["data"] == "got-pong:srv-ping"


def test_close_codes_from_server(probe, ws_server):
    r = probe(url(ws_server, "/close-me"), ["text close-me"])
    c = r.one("close")
    assert c["code"] == 4000 and c["reason"] == "bye"
    r = probe(url(ws_server, "/gaps"), ["text close:3001"])
    c = r.one("close")
    assert c["code"] == 3001 and c["reason"] == "by app"


def test_close_codes_from_client(probe, ws_server):
    r = probe(url(ws_server, "/echo"), ["close 4321 client bye"])
    assert r.one("closing")["rc"] == 0
    assert r.one("close")["code"] == 4321  # the server echoes the code
    r = probe(url(ws_server, "/echo"), ["close0"])
    assert r.one("close")["code"] == 1005
    # Codes a client must not send are refused without a frame.
    r = probe(url(ws_server, "/echo"), ["close 1006", "close 1000"])
    rcs = [e["rc"] for e in r.of("closing")]
    assert rcs[0] < 0 and rcs[1] == 0


def test_server_max_payload_closes_1009(probe, ws_server):
    r = probe(url(ws_server, "/small"), ["big 2000"])
    assert r.one("close")["code"] == 1009


def test_client_max_payload(probe, echo):
    # The client's own limit: the echo of a too large message fails the
    # socket with 1009 (the server sends it unfragmented).
    r = probe(url(echo, "/ws"), ["big 5000"], args=["--max-payload", "4096"])
    assert r.one("close")["code"] == 1009


def test_subprotocol_and_headers(probe, ws_server):
    r = probe(url(ws_server, "/proto"), ["await 1", "close 1000"],
              args=["-s", "chat.v1", "-s", "chat.v2"])
    assert r.one("open")["protocol"] == "chat.v2"
    assert r.messages()[0]["data"] == "proto:chat.v2"
    r = probe(url(ws_server, "/auth"), ["text whoami", "await 2",
                                        "close 1000"],
              args=["-H", "X-User: alice"])
    assert [m["data"] for m in r.messages()] == ["hello alice",
                                                 "user:alice"]


def test_non_101_reports_status_and_headers(probe, ws_server):
    r = probe(url(ws_server, "/auth"), [], args=["--data", "who"])
    f = r.one("fail")
    assert f["reason"] == "status" and f["status"] == 401
    names = {k.lower(): v for k, v in f["headers"]}
    assert "x-auth-error" in names
    assert f["data"] == "who"  # the context block reaches on_fail
    assert not r.of("open") and not r.of("close")


def test_404_and_plain_http_route(probe, ws_server):
    r = probe(url(ws_server, "/nothing-here"), [])
    assert r.one("fail")["status"] == 404


def test_refused(probe):
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = probe(f"ws://{HOST}:{port}/", [])
    f = r.one("fail")
    assert f["reason"] == "connect" and f["code"] == "ECONNREFUSED"


def test_dns_failure(probe):
    r = probe("ws://no-such-host.invalid/", [])
    f = r.one("fail")
    assert f["reason"] == "dns" and f["code"].startswith("EAI_")


def test_localhost_resolves_and_connects(probe, echo):
    # "localhost" may resolve to ::1 first; the client goes on to the
    # next address when one is refused (echo listens on 0.0.0.0).
    r = probe(f"ws://localhost:{echo.port}/ws", ["text x", "await 1",
                                                 "close 1000"])
    assert r.messages()[0]["data"] == "x"


def test_connect_timeout(probe):
    # A listener whose backlog is full: SYNs go unanswered, the connect
    # hangs until the client's own timeout.
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(0)
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect((HOST, s.getsockname()[1]))
            except BlockingIOError:
                pass
            fillers.append(f)
        t = time.monotonic()
        r = probe(f"ws://{HOST}:{s.getsockname()[1]}/", [],
                  args=["--connect-ms", "500", "--handshake-ms", "500"])
        f = r.one("fail")
        assert f["reason"] == "timeout", f
        assert time.monotonic() - t < 5
    finally:
        for f in fillers:
            f.close()
        s.close()


def test_bad_urls_and_options(probe):
    for u in ("http://x/", "ws://", "ws://h:0/", "ws://h:99999/",
              "ws://h/#frag", "ws://u@h/"):
        r = probe(u, [])
        assert r.one("connect-error")["rc"] == "TL_EINVAL", u
    r = probe("ws://h/", [], args=["-H", "NoColon"])
    assert r.one("connect-error")["rc"] == "TL_EINVAL"
    r = probe("ws://h/", [], args=["-s", "a b"])
    assert r.one("connect-error")["rc"] == "TL_EINVAL"


def test_deflate_both_ways(probe, echo):
    # echo offers permessage-deflate; 100 KiB of text compresses well.
    text = "abcdefgh" * 12800
    for mode in ("shared", "dedicated"):
        r = probe(url(echo, "/ws"), [f"text {text}", "text small",
                                     f"text {text}", "await 3",
                                     "close 1000"],
                  args=["--deflate", mode])
        m = r.messages()
        assert [x["len"] for x in m] == [len(text), 5, len(text)]
        assert m[0]["data"] == text and m[2]["data"] == text


def test_deflate_window_bits(probe, echo):
    text = "0123456789" * 5000
    r = probe(url(echo, "/ws"), [f"text {text}", "await 1", "close 1000"],
              args=["--deflate", "dedicated", "--window", "9"])
    assert r.messages()[0]["data"] == text


def test_deflate_server_window(probe, echo):
    # The server is asked for a 2^10 window; the dedicated inflater is
    # made that small, and messages larger than it still inflate right.
    text = "".join(f"{i:05d}" for i in range(20000))
    r = probe(url(echo, "/ws"), [f"text {text}", f"text {text}", "await 2",
                                 "close 1000"],
              args=["--deflate", "dedicated", "--server-window", "10"])
    assert [m["data"] for m in r.messages()] == [text, text]
    r = probe(url(echo, "/ws"), [], args=["--deflate", "shared",
                                          "--server-window", "16"])
    assert r.one("connect-error")["rc"] == "TL_EINVAL"


def test_backpressure_and_drain(probe, ws_server):
    # 400 sends of 64 KiB in one callback: the kernel takes a few MiB,
    # the rest waits in the client's backlog, so sends report
    # backpressure (and past max_backpressure, 1 MiB, drop); the server
    # reads and echoes, the backlog empties and drain comes.
    r = probe(url(ws_server, "/echo"),
              ["flood 400 65536", "awaitdrain", "text after", "await 1",
               "close 1000"], args=["--backpressure", "1048576"])
    f = r.one("flood")
    assert f["backpressure"] > 0
    assert f["ok"] + f["backpressure"] + f["dropped"] == 400
    assert r.of("drain")  # the echo server reads: the backlog drains
    # What was accepted comes back echoed (dropped ones never left).
    assert r.messages()[0]["len"] == 65536


def test_pubsub_from_a_client_socket(probe, echo):
    # The client socket subscribes to a local topic; a publish to it goes
    # out masked on the client socket, and echo sends it back.
    r = probe(url(echo, "/ws"), ["sub news", "apppub news breaking",
                                 "await 1", "unsub news",
                                 "apppub news ignored", "text end",
                                 "await 2", "close 1000"])
    assert r.one("sub")["rc"] == 0
    assert [m["data"] for m in r.messages()] == ["breaking", "end"]


def test_connect_on_a_worker(probe, echo):
    r = probe(url(echo, "/ws"), ["text w", "await 1", "close 1000"],
              args=["--workers", "2"])
    assert r.one("open")["worker"] == 1
    assert r.messages()[0]["data"] == "w"


def test_connect_before_listen_and_from_a_thread(probe, echo):
    # Made before tl_app_listen: starts when the loop runs, beside the
    # app's own listener.
    r = probe(url(echo, "/ws"), ["text l", "await 1", "close 1000"],
              args=["--listen"])
    assert r.messages()[0]["data"] == "l"
    # From a thread that is not a worker, while the app runs: handed to
    # worker 0.
    r = probe(url(echo, "/ws"), ["text t", "await 1", "close 1000"],
              args=["--from-thread"])
    assert r.one("open")["worker"] == 0
    assert r.messages()[0]["data"] == "t"


def test_client_idle_timeout(probe, echo):
    # The client's own idle_timeout_s: a quiet server gets 1001 from it.
    t = time.monotonic()
    r = probe(url(echo, "/ws"), [], args=["--idle-s", "1"])
    c = r.one("close")
    assert c["code"] == 1001 and c["reason"] == "idle timeout"
    assert time.monotonic() - t < 5
