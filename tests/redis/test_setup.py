"""A Redis that accepts the connection and never answers, or answers
garbage: the start is bounded by connect_timeout_ms (a clear error, or
local-only by option), session lookups by command_timeout_ms (503), and
nothing crashes or leaks (check_clean_exit, ASan)."""
import asyncio
import socket
import subprocess
import threading
import time

from conftest import Node
from test_bridge import fake_redis, member, run, subscribe, expect
from test_sessions import cookie_from, request


class SilentRedis:
    """Accepts every connection, reads nothing, answers nothing."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.srv.settimeout(0.1)
        self.port = self.srv.getsockname()[1]
        self.held = []
        self.done = threading.Event()
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.done.is_set():
            try:
                c, _ = self.srv.accept()
                self.held.append(c)
            except OSError:
                pass

    def close(self):
        self.done.set()
        self.t.join()
        for c in self.held:
            c.close()
        self.srv.close()


def test_silent_redis_at_start_is_a_timeout_error(server_bin):
    s = SilentRedis()
    try:
        n = Node(server_bin, f"redis://127.0.0.1:{s.port}",
                 env={"REDIS_TIMEOUT_MS": "300"})
        t0 = time.monotonic()
        p = subprocess.run(n.command, env=n.env, capture_output=True,
                           text=True, timeout=60)
        n.close()
        assert p.returncode == 1, p
        assert "timed out" in p.stderr.lower(), p.stderr
        assert "listening on" not in p.stdout
        assert time.monotonic() - t0 < 10
        assert s.held, "the server never connected"
    finally:
        s.close()


def test_silent_redis_local_only_serves_and_retries(server_bin, redis):
    # A valid session cookie, made against a real Redis (same secret).
    cookie = cookie_from(server_bin, redis, "ann")
    s = SilentRedis()
    n = Node(server_bin, f"redis://127.0.0.1:{s.port}",
             env={"REDIS_TIMEOUT_MS": "300", "REDIS_LOCAL_ONLY": "1",
                  "REDIS_BACKOFF_MS": "100"}).start()
    try:
        # Not up, and it keeps trying (each try held, then timed out).
        time.sleep(1.2)
        st = n.redis_stats()
        assert st["state"] in (1, 3), st
        assert len(s.held) >= 4, len(s.held)

        async def go():
            x = await member(n, "x")
            y = await member(n, "y")
            for ws in (x, y):
                await subscribe(ws, "room")
            await x.send("pub room local")
            assert await expect(y) == "local"
            await x.close()
            await y.close()
        run(go())
        # A request that needs its session: 503 after the command timeout.
        t0 = time.monotonic()
        assert request(n, "/sess/me", cookie)[0] == 503
        assert time.monotonic() - t0 < 5
        assert request(n, "/sess/me") == (200, "nobody", None)
        t0 = time.monotonic()
        n.stop()
        n.check_clean_exit()
        assert time.monotonic() - t0 < 10
    finally:
        n.close()
        s.close()


def test_garbage_answers_to_session_lookups(server_bin, redis):
    cookie = cookie_from(server_bin, redis, "bea")

    def handler(c):
        c.settimeout(2)
        c.recv(4096)
        c.sendall(b"$5\r\nab")  # cut mid-reply, then closed
        time.sleep(0.05)
    port, stop = fake_redis(handler)
    n = Node(server_bin, f"redis://127.0.0.1:{port}",
             env={"REDIS_TIMEOUT_MS": "500", "REDIS_LOCAL_ONLY": "1"}).start()
    try:
        for _ in range(6):
            assert request(n, "/sess/me", cookie)[0] == 503
        assert request(n, "/worker")[0] == 200
        n.stop()
        n.check_clean_exit()
    finally:
        n.close()
        stop()


def test_stop_with_redis_silent_mid_stream(server_bin, redis):
    """Redis stops answering (SIGSTOP: the connections stay open) while
    publishes wait for their replies: the stop still ends, within the
    command timeout, and cleanly."""
    import os
    import signal
    n = Node(server_bin, redis.url, env={"REDIS_TIMEOUT_MS": "500"}).start()
    try:
        n.wait_state(lambda st: st["state"] == 2, what="connected")

        async def go():
            x = await member(n, "x")
            y = await member(n, "y")
            for ws in (x, y):
                await subscribe(ws, "room")
            os.kill(redis.proc.pid, signal.SIGSTOP)
            for i in range(50):
                await x.send(f"pub room {i}")
            for i in range(50):  # local delivery goes on
                assert await expect(y) == str(i)
            await x.close()
            await y.close()
        run(go())
        assert n.redis_stats()["buffered"] > 0
        t0 = time.monotonic()
        n.stop()
        n.check_clean_exit()
        assert time.monotonic() - t0 < 10
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
        n.close()
