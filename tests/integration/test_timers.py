"""The app's timers (include/talon/timer.h) and its stop hook
(tl_app_on_stop), over a real server: one-shot timers answering deferred
responses, repeating timers that stop themselves, stopped timers that
never fire, a timer started before tl_app_listen, and a stop that is not
held up by timers nobody stopped."""
import signal
import time

from conftest import (SHUTDOWN_TIMEOUT, Conn, build_request, get, stats,
                      wait_stats)


def test_one_shot_timer_answers_deferred_response(server):
    t0 = time.monotonic()
    r = get(server.port, "/async?ms=80&id=once")
    assert (r.status, r.text) == (200, "async:once")
    assert time.monotonic() - t0 >= 0.075


def test_repeating_timer_stops_itself(server):
    before = stats(server.port)
    r = get(server.port, "/timer/ticks?n=5&ms=20")
    assert r.status == 200
    lines = r.text.splitlines()
    assert lines[:5] == [f"tick-{i}" for i in range(5)]
    assert len(lines) == 6 and lines[5].startswith("elapsed="), lines
    # Five periods of 20 ms on the app's clock; a loaded machine may take
    # longer, never less.
    assert 100 <= int(lines[5][len("elapsed="):]) < 3000
    assert stats(server.port)["aborts"] == before["aborts"]


def test_repeating_timer_stopped_when_client_leaves(server):
    before = stats(server.port)
    c = Conn(server.port, timeout=5)
    c.send(build_request("GET", "/timer/ticks?n=100000&ms=5"))
    assert b"tick-0" in c.sock.recv(4096)
    c.close()
    st = wait_stats(server.port, "aborts", before["aborts"] + 1)
    assert st["aborts"] == before["aborts"] + 1
    # The abort callback stopped the timer: the server goes on as before.
    assert get(server.port, "/async?ms=10&id=after").text == "async:after"


def test_stopped_timer_never_fires(server):
    r = get(server.port, "/timer/cancel")
    assert (r.status, r.text) == (200, "fired=0")
    assert stats(server.port)["cancelled_fired"] == 0


def test_timer_started_before_listen_runs(server):
    a = wait_stats(server.port, "heartbeats", 1)["heartbeats"]
    time.sleep(0.15)
    b = stats(server.port)["heartbeats"]
    assert a > 0 and b > a


def test_sigint_with_running_timers_stops_promptly(start_server):
    """Timers nobody stopped (the 10 ms heartbeat started before listen,
    and repeating timers started by requests) neither keep the server
    running after SIGINT nor leak; the stop hook runs once."""
    s = start_server()
    for _ in range(3):
        assert get(s.port, "/timer/forever").text == "started"
    assert wait_stats(s.port, "heartbeats", 1)["heartbeats"] > 0
    t0 = time.monotonic()
    s.send_signal(signal.SIGINT)
    assert s.wait_exit(5) == 0
    assert time.monotonic() - t0 < 1.0
    assert s.stdout().count("on_stop: heartbeats=") == 1
    s.check_clean_exit()


def test_timers_keep_firing_while_stopping(start_server):
    """A stop lets in-flight responses finish: the timers that finish them
    go on firing, a repeating one included; the stop hook runs before
    they are done."""
    s = start_server()
    with Conn(s.port, timeout=5) as c:
        c.send(build_request("GET", "/timer/ticks?n=10&ms=30"))
        time.sleep(0.05)
        s.send_signal(signal.SIGTERM)
        r = c.read_response(timeout=SHUTDOWN_TIMEOUT + 2)
        assert r.status == 200
        assert r.text.splitlines()[-1].startswith("elapsed=")
        assert r.text.count("tick-") == 10
    assert s.wait_exit(5) == 0
    assert s.stdout().count("on_stop: heartbeats=") == 1
    s.check_clean_exit()
