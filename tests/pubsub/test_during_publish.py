"""Handlers that run during a publish (dropped, close, subscription)
subscribe, unsubscribe, close and kill sockets while the publish walks the
topic; sockets close while others publish. pubsub.h: "the publish visits
the subscribers it started with that are still subscribed"."""
import threading
import time

N = 300
SIZE = 4096


def seqs(msgs, topic="t"):
    out = []
    for m in msgs:
        parts = m.data.split(b":", 2)
        if parts[0] == topic.encode() and len(parts) == 3:
            out.append(int(parts[1]))
    return out


def make_subs(srv, nslow, nfast, action, slow_path="/slow", topic="t",
          extra_fast_topics=()):
    fast = [srv.connect("/big") for _ in range(nfast)]
    slow = [srv.connect(slow_path, rcvbuf=4096) for _ in range(nslow)]
    for c in fast:
        assert c.cmd("subm " + " ".join((topic,) + tuple(extra_fast_topics))) \
            == str(1 + len(extra_fast_topics))
    for k, c in enumerate(slow):
        assert c.icmd(f"sub {topic}") == 0
        act = action(k, slow) if callable(action) else action
        if act:
            assert int(c.cmd(f"ondrop {act}")) > 0
    pub = srv.connect("/big")
    return fast, slow, pub


def flood(pub, topic="t", n=N, size=SIZE):
    ok, bp, drop, err, posdrop = map(
        int, pub.cmd(f"flood {topic} {n} {size}", timeout=30).split(" "))
    assert err == 0
    assert ok + bp + drop == n
    return ok, bp, drop


def fast_got(c, n_extra, topic="t"):
    """Reads N flood messages plus n_extra others; returns the others."""
    got = c.recv_n(N + n_extra, timeout=20)
    assert seqs(got, topic) == list(range(N))
    others = [m.text for m in got if not m.data.startswith(b"t:")]
    assert c.drain_for(0.1) == []
    return others


def test_unsubscribe_in_dropped_handler(srv):
    fast, slow, pub = make_subs(srv, 4, 3, "unsub t")
    ok, bp, drop = flood(pub)
    assert drop == 0  # the fast ones took every message
    for c in fast:
        assert fast_got(c, 0) == []
    for c in slow:
        info = srv.sock(c.id)
        assert info["dropped_calls"] == 1, info  # left after the first drop
        assert info["dropped_count"] == 1, info
        assert info["drop_action_runs"] == 1 and \
            info["last_drop_action_rc"] == 0, info
        assert info["ntopics"] == 0
    assert srv.count("t") == 3
    st = srv.stats()
    assert st["leaves"] == 4 and st["joins"] == 7
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0
    # what the slow ones got before dropping: a prefix of the flood
    for c in slow:
        got = seqs(c.drain_for(0.3))
        assert got == list(range(len(got))) and len(got) < N


def test_terminate_in_dropped_handler(srv):
    """Each slow subscriber terminates itself on its first drop; its close
    handler publishes "bye" to the topic being walked (a nested publish,
    which may make another slow one drop and terminate)."""
    fast, slow, pub = make_subs(srv, 4, 3, "terminate")
    flood(pub)
    byes = {f"bye {c.id}" for c in slow}
    for c in fast:
        assert sorted(fast_got(c, 4)) == sorted(byes)
    srv.wait_stats(lambda s: s["closes"] == 4, what="slow ones closed")
    for c in slow:
        info = srv.sock(c.id)
        assert info["closed"] == 1 and info["close_code"] == 1006, info
        assert info["dropped_count"] == 1, info
    assert srv.count("t") == 3
    st = srv.stats()
    assert st["leaves"] == 4
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0
    for c in slow:
        assert c.wait_eof()


def test_kill_other_subscriber_in_dropped_handler(srv):
    """slow[k]'s dropped handler terminates slow[k+1] (visited later in the
    same walk, or already visited)."""
    def act(k, slow):
        return f"kill {slow[k + 1].id}" if k + 1 < len(slow) else None

    fast, slow, pub = make_subs(srv, 5, 3, act)
    flood(pub)
    st = srv.wait_stats(lambda s: s["closes"] >= 1, what="a kill")
    time.sleep(0.2)
    closed = [c for c in slow if srv.sock(c.id)["closed"]]
    alive = [c for c in slow if not srv.sock(c.id)["closed"]]
    assert slow[0] in alive and closed
    for c in fast:
        assert sorted(fast_got(c, len(closed))) == \
            sorted(f"bye {c.id}" for c in closed)
    assert srv.count("t") == 3 + len(alive)
    st = srv.stats()
    assert st["leaves"] == len(closed)
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0


def test_resubscribe_in_dropped_handler(srv):
    """Unsubscribe and subscribe again from the dropped handler: the new
    slot is not visited by the walk in progress; counts stay right."""
    fast, slow, pub = make_subs(srv, 3, 3, "resub t")
    flood(pub)
    for c in fast:
        assert fast_got(c, 0) == []
    assert srv.count("t") == 6
    total = 0
    for c in slow:
        info = srv.sock(c.id)
        assert info["dropped_calls"] >= 1
        assert info["dropped_count"] == info["dropped_calls"], info
        assert info["drop_action_runs"] == info["dropped_calls"]
        assert info["last_drop_action_rc"] == 0
        assert info["ntopics"] == 1
        total += info["dropped_calls"]
    st = srv.stats()
    assert st["leaves"] == total and st["joins"] == 6 + total
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0


def test_close_in_dropped_handler(srv):
    """tl_ws_close from the dropped handler: later publishes skip the
    closing socket (one drop each); after the handshake it leaves."""
    fast, slow, pub = make_subs(srv, 3, 3, "close")
    flood(pub)
    for c in fast:
        assert fast_got(c, 0) == []
    for c in slow:
        info = srv.sock(c.id)
        assert info["dropped_calls"] == 1, info
        assert info["last_drop_action_rc"] == 0
    for c in slow:
        assert c.wait_close(timeout=20) == 4001
        c.send_close(4001)
    srv.wait_stats(lambda s: s["closes"] == 3, what="closes")
    assert srv.count("t") == 3
    byes = sorted(f"bye {c.id}" for c in slow)
    for c in fast:
        assert sorted(m.text for m in c.recv_n(3)) == byes


def test_publish_in_dropped_handler(srv):
    """A nested publish (to another topic) from the dropped handler."""
    fast, slow, pub = make_subs(srv, 3, 2, "pub side", extra_fast_topics=("side",))
    flood(pub)
    total = sum(srv.sock(c.id)["dropped_calls"] for c in slow)
    assert total >= 3
    for c in fast:
        others = fast_got(c, total)
        assert len(others) == total
        assert {o.split(" ")[0] for o in others} == {"droppub"}
    for c in slow:
        info = srv.sock(c.id)
        assert info["last_drop_action_rc"] > 0  # reached the fast ones


def test_close_on_backpressure_limit_mid_publish(srv):
    """/cobl subscribers are closed with 1008 in the middle of the walk;
    their close handlers publish "bye" to the walked topic."""
    fast, slow, pub = make_subs(srv, 3, 3, None, slow_path="/cobl")
    flood(pub)
    byes = sorted(f"bye {c.id}" for c in slow)
    for c in fast:
        assert sorted(fast_got(c, 3)) == byes
    for c in slow:
        assert c.wait_close(timeout=20) == 1008
        got = seqs(c.inbox)
        assert got == list(range(len(got))) and len(got) < N
    srv.wait_stats(lambda s: s["closes"] == 3, what="closes")
    for c in slow:
        info = srv.sock(c.id)
        assert info["close_code"] == 1008 and info["dropped_count"] == 1
    assert srv.count("t") == 3
    st = srv.stats()
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0


def test_sockets_closing_while_publishing(srv):
    """One socket publishes in bursts while 40 subscribers disconnect
    (resets and close frames) concurrently."""
    subs = [srv.connect() for _ in range(40)]
    for c in subs:
        assert c.icmd("sub storm") == 0
    pub = srv.connect()
    pub2 = srv.connect()
    stop = threading.Event()
    results = []

    def publisher(c):
        while not stop.is_set():
            r = c.cmd("flood storm 50 256", timeout=20).split(" ")
            results.append(list(map(int, r)))

    ts = [threading.Thread(target=publisher, args=(c,)) for c in (pub, pub2)]
    for t in ts:
        t.start()
    try:
        for k, c in enumerate(subs):
            if k % 2:
                c.abort()
            else:
                try:
                    c.send_close(1000)
                except OSError:
                    pass
                c.close()
            time.sleep(0.005)
        srv.wait_stats(lambda s: s["closes"] == 40, timeout=20,
                       what="all subscribers gone")
    finally:
        stop.set()
        for t in ts:
            t.join(30)
    assert results and all(r[3] == 0 for r in results)
    assert srv.count("storm") == 0
    assert pub.icmd("pub storm x") == 0
    st = srv.stats()
    assert st["leaves"] == 40 and st["joins"] == 40
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0
