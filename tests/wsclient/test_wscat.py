"""examples/wscat, driven as a user would: lines on stdin, messages on
stdout, exit codes and messages on stderr."""
import subprocess
import time

from conftest import HOST, frame, read_frame, read_head, upgrade_answer


def test_lines_out_messages_in(wscat, echo):
    r = wscat(f"ws://{HOST}:{echo.port}/ws", "one\ntwo words\n\nthree\n")
    assert r.rc == 0, r.stderr
    # Every reply printed, each on its own line, before the exit.
    assert r.stdout == "one\ntwo words\n\nthree\n"
    assert r.stderr == ""


def test_prints_what_arrived_before_the_close(wscat, raw_server):
    def h(sock, srv):
        _, hd = read_head(sock)
        sock.sendall(upgrade_answer(hd) + frame(1, b"welcome"))
        got = []
        while True:
            fin, op, data, masked = read_frame(sock)
            if op == 8:
                break
            got.append(data)
        # Replies to the last lines leave after the client's close frame
        # has arrived; the client still prints them.
        for g in got:
            sock.sendall(frame(1, b"re:" + g))
        sock.sendall(frame(8, (1000).to_bytes(2, "big")))
    srv = raw_server(h)
    r = wscat(srv.url("/chat/lobby"), "a\nb\n")
    assert r.rc == 0, r.stderr
    assert r.stdout == "welcome\nre:a\nre:b\n"


def test_headers_and_subprotocol(wscat, raw_server):
    def h(sock, srv):
        line, hd = read_head(sock)
        srv.requests.append(hd)
        sock.sendall(upgrade_answer(hd, b"Sec-WebSocket-Protocol: v2\r\n") +
                     frame(1, hd.get("x-token", "").encode()))
        while read_frame(sock)[1] != 8:
            pass
        sock.sendall(frame(8, (1000).to_bytes(2, "big")))
    srv = raw_server(h)
    r = wscat(srv.url(), "", args=["-H", "X-Token: s3cret", "-s", "v1",
                                   "-s", "v2", "-v"])
    assert r.rc == 0, r.stderr
    assert r.stdout == "s3cret\n"
    assert srv.requests[0]["sec-websocket-protocol"] == "v1, v2"
    assert "subprotocol v2" in r.stderr


def test_refused_exits_non_zero(wscat):
    import socket
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    r = wscat(f"ws://{HOST}:{port}/", "")
    assert r.rc == 1
    assert "connection refused" in r.stderr
    assert r.stdout == ""


def test_status_other_than_101(wscat, ws_server):
    r = wscat(f"ws://{HOST}:{ws_server.port}/auth", "")
    assert r.rc == 1
    assert "HTTP 401" in r.stderr
    assert "X-Auth-Error" in r.stderr  # the response's headers follow


def test_usage_and_bad_url(wscat):
    assert wscat("http://example.com/", "").rc == 2
    r = subprocess.run([wscat.path], capture_output=True)
    assert r.returncode == 2 and b"usage" in r.stderr


def test_server_close_code_exit(wscat, ws_server):
    r = wscat(f"ws://{HOST}:{ws_server.port}/close-me", "close-me\n",
              args=["-w", "5"])
    assert r.rc == 3
    assert "4000" in r.stderr and "bye" in r.stderr


def test_slash_commands(wscat, ws_server):
    r = wscat(f"ws://{HOST}:{ws_server.port}/ping",
              "/ping hi\nping-me\n/close 4001 enough\n",
              args=["--slash", "-P", "-w", "2"])
    assert r.rc == 0, r.stderr
    assert "< pong: hi" in r.stdout


def test_stdin_kept_open_until_the_server_closes(wscat, ws_server):
    # The server closes first (idle timeout of /idle: 1 s) while stdin is
    # still open: wscat exits on its own.
    p = subprocess.Popen([wscat.path, f"ws://{HOST}:{ws_server.port}/idle"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    t = time.monotonic()
    try:
        rc = p.wait(timeout=10)  # stdin stays open meanwhile
    finally:
        p.kill()
    took = time.monotonic() - t
    err = p.stderr.read().decode()
    p.stdin.close()
    assert rc == 0, err  # 1001 is a normal close
    assert 0.5 < took < 8
