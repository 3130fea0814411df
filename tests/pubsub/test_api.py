"""The calls of talon/pubsub.h one by one: return values, topic limits,
listing, is_subscribed, subscriber counts, publish_to_self, opcodes."""
from psclient import (BACKPRESSURE, DROPPED, OP_BINARY, OP_TEXT, TL_EINVAL,
                      TL_ENOENT, TL_ETOOBIG, TL_TOPIC_MAX, frame_size)


def test_subscribe_publish_basic(srv):
    a, b = srv.connect(), srv.connect()
    assert a.id != b.id
    assert b.icmd("sub news") == 0
    assert a.icmd("pub news hello") == frame_size(5)
    m = b.recv()
    assert (m.op, m.data) == (OP_TEXT, b"hello")
    assert a.icmd("pubb news \x01bin") == frame_size(4)
    m = b.recv()
    assert (m.op, m.data) == (OP_BINARY, b"\x01bin")
    # a is not subscribed: it gets nothing
    assert a.drain_for(0.2) == []


def test_publish_return_values(srv):
    a, b, c = srv.connect(), srv.connect(), srv.connect()
    # nobody subscribed
    assert a.icmd("pub t x") == DROPPED
    # only the sender subscribed (publish_to_self off): nobody to reach
    assert a.icmd("sub t") == 0
    assert a.icmd("pub t x") == DROPPED
    # one other subscriber: the frame's size
    assert b.icmd("sub t") == 0
    assert a.icmd("pub t x") == frame_size(1)
    assert b.recv().data == b"x"
    assert c.icmd("sub t") == 0
    for n in (0, 1, 125, 126, 1000, 65535, 65536, 70000):
        payload = "y" * n
        assert a.icmd(f"pub t {payload}") == frame_size(n), n
        for cl in (b, c):
            m = cl.recv()
            assert m.data == payload.encode(), (n, len(m.data))
    assert a.drain_for(0.2) == []
    # tl_app_publish from a socket's callback reaches the sender too
    assert a.icmd("apub t all") == frame_size(3)
    for cl in (a, b, c):
        assert cl.recv().data == b"all"


def test_bad_opcode(srv):
    a, b = srv.connect(), srv.connect()
    assert b.icmd("sub t") == 0
    for op in (0, 3, 8, 9, 10, 15):
        assert a.icmd(f"pubop {op} t x") == TL_EINVAL, op
        # also to a topic nobody is on
        assert a.icmd(f"pubop {op} nobody x") == TL_EINVAL, op
    assert a.icmd("pubop 1 t ok") == frame_size(2)
    assert a.icmd("pubop 2 t ok") == frame_size(2)
    got = b.recv_n(2)
    assert [(m.op, m.data) for m in got] == [(OP_TEXT, b"ok"),
                                             (OP_BINARY, b"ok")]
    assert b.drain_for(0.2) == []


def test_topic_length_limits(srv):
    a, b = srv.connect(), srv.connect()
    exact = "e" * TL_TOPIC_MAX
    over = "o" * (TL_TOPIC_MAX + 1)
    assert a.icmd(f"sub {exact}") == 0
    assert a.icmd(f"is {exact}") == 1
    assert a.icmd(f"count {exact}") == 1
    assert b.icmd(f"pub {exact} max") == frame_size(3)
    assert a.recv().data == b"max"
    topics = a.cmd("topics").split(" ")
    assert topics == ["1", exact]

    assert a.icmd(f"sub {over}") == TL_ETOOBIG
    assert a.icmd(f"is {over}") == 0
    assert a.icmd(f"count {over}") == 0
    assert a.icmd(f"unsub {over}") == TL_ENOENT
    # the too-long topic is not truncated to the exact one
    assert a.icmd(f"sub {'e' * TL_TOPIC_MAX}e") == TL_ETOOBIG
    assert a.icmd(f"count {exact}") == 1
    assert a.cmd("topics") == f"1 {exact}"

    # empty topic
    assert a.icmd("sub ") == TL_EINVAL
    assert a.icmd("unsub ") == TL_ENOENT
    assert a.icmd("is ") == 0
    assert a.icmd("count ") == 0
    assert b.icmd("pub  x") == TL_EINVAL
    assert srv.publish("", "x") == TL_EINVAL
    assert srv.count("") == 0
    assert a.drain_for(0.2) == []
    st = srv.stats()
    assert st["joins"] == 1 and st["leaves"] == 0


def test_publish_topic_too_long(srv):
    """pubsub.h: TL_ETOOBIG for a topic longer than TL_TOPIC_MAX, from
    tl_ws_publish and tl_app_publish (socket and HTTP handler)."""
    a = srv.connect()
    over = "o" * (TL_TOPIC_MAX + 1)
    assert a.icmd(f"pub {over} x") == TL_ETOOBIG
    assert a.icmd(f"apub {over} x") == TL_ETOOBIG
    assert srv.publish(over, "x") == TL_ETOOBIG
    assert a.icmd(f"pub {'e' * TL_TOPIC_MAX} x") == 0  # ok, nobody there


def test_subscribe_twice_is_noop(srv):
    a, b = srv.connect(), srv.connect()
    assert a.icmd("sub dup") == 0
    assert a.icmd("sub dup") == 0
    assert a.icmd("sub dup") == 0
    assert a.icmd("count dup") == 1
    assert a.cmd("topics") == "1 dup"
    assert b.icmd("pub dup once") == frame_size(4)
    assert a.recv().data == b"once"
    assert a.drain_for(0.2) == []  # not delivered twice
    st = srv.stats()
    assert st["joins"] == 1
    assert a.icmd("unsub dup") == 0
    assert a.icmd("count dup") == 0
    assert a.icmd("unsub dup") == TL_ENOENT


def test_unsubscribe_not_subscribed(srv):
    a, b = srv.connect(), srv.connect()
    assert a.icmd("unsub never") == TL_ENOENT
    assert b.icmd("sub other") == 0
    # the topic exists (b is on it) but a is not subscribed
    assert a.icmd("unsub other") == TL_ENOENT
    assert a.icmd("count other") == 1
    assert b.icmd("is other") == 1
    st = srv.stats()
    assert st["leaves"] == 0 and st["joins"] == 1


def test_is_subscribed_and_topic_listing(srv):
    a = srv.connect()
    names = [f"room:{i}" for i in range(10)]
    assert a.cmd("subm " + " ".join(names)) == "10"
    assert a.icmd("is room:3") == 1
    assert a.icmd("is room:10") == 0
    assert a.icmd("is room:") == 0
    got = a.cmd("topics").split(" ")
    assert got[0] == "10"
    assert sorted(got[1:]) == sorted(names)
    assert "(past-end-not-null)" not in got
    for t in ("room:0", "room:5", "room:9"):
        assert a.icmd(f"unsub {t}") == 0
        assert a.icmd(f"is {t}") == 0
    left = [t for t in names if t not in ("room:0", "room:5", "room:9")]
    got = a.cmd("topics").split(" ")
    assert got[0] == "7"
    assert sorted(got[1:]) == sorted(left)
    assert a.cmd("unsuball") == "7 0"
    assert a.cmd("topics") == "0"
    for t in names:
        assert srv.count(t) == 0


def test_publish_to_self(srv):
    s1 = srv.connect("/self")
    s2 = srv.connect("/self")
    w = srv.connect("/ws")
    for c in (s1, s2, w):
        assert c.icmd("sub room") == 0
    # /self: the sender receives its own message too
    assert s1.icmd("pub room from-self") == frame_size(9)
    for c in (s1, s2, w):
        assert c.recv().data == b"from-self"
    # /ws: the sender is excluded
    assert w.icmd("pub room from-ws") == frame_size(7)
    assert s1.recv().data == b"from-ws"
    assert s2.recv().data == b"from-ws"
    assert w.drain_for(0.2) == []
    # alone on a topic: /self still reaches itself, /ws nobody
    assert s1.icmd("sub solo1") == 0
    assert s1.icmd("pub solo1 me") == frame_size(2)
    assert s1.recv().data == b"me"
    assert w.icmd("sub solo2") == 0
    assert w.icmd("pub solo2 me") == DROPPED
    assert w.drain_for(0.2) == []


def test_direct_send_and_publish_results_agree(srv):
    a, b = srv.connect(), srv.connect()
    assert b.icmd("sub t") == 0
    assert a.icmd("send hello") == frame_size(5)
    assert a.recv().data == b"hello"
    assert a.icmd(f"sendto {b.id} direct") == frame_size(6)
    assert b.recv().data == b"direct"


def test_subscriber_count_joins_leaves_closes(srv):
    cs = [srv.connect() for _ in range(6)]
    assert srv.count("c") == 0
    for i, c in enumerate(cs):
        assert c.icmd("sub c") == 0
        assert srv.count("c") == i + 1
        assert cs[0].icmd("count c") == i + 1
    assert cs[0].icmd("unsub c") == 0
    assert srv.count("c") == 5
    assert cs[1].icmd("sub c") == 0  # no-op
    assert srv.count("c") == 5
    # a client that closes leaves
    cs[2].send_close(1000)
    assert cs[2].wait_close() == 1000
    srv.wait_stats(lambda s: s["closes"] == 1, what="one close")
    assert srv.count("c") == 4
    # a client that vanishes (reset) leaves
    cs[3].abort()
    srv.wait_stats(lambda s: s["closes"] == 2, what="two closes")
    assert srv.count("c") == 3
    # server-side close / terminate
    cs[4].send("close 1000")
    assert cs[4].wait_close() == 1000
    cs[4].send_close(1000)  # finish the handshake: the close handler runs
    cs[5].send("terminate")
    assert cs[5].wait_eof()
    srv.wait_stats(lambda s: s["closes"] == 4, what="four closes")
    assert srv.count("c") == 1
    assert cs[1].icmd("count c") == 1
    st = srv.stats()
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0
    assert st["joins"] == 6 and st["leaves"] == 5


def test_subscribe_after_close_started(srv):
    """Subscribing while CLOSING is allowed; in the close handler the
    socket is CLOSED: the log records the state of every event."""
    a, b = srv.connect(), srv.connect()
    assert a.icmd("sub t") == 0
    # closepub: tl_ws_close then publish: b still receives it; the reply
    # after the close is dropped by talon
    a.send("closepub t after-close")
    assert a.wait_close() == 4002
    assert b.icmd("sub t") == 0
    a.close()
    srv.wait_stats(lambda s: s["closes"] == 1, what="close")
    assert [m.text for m in a.inbox if m.text.startswith("r:")] == []
    st = srv.stats()
    ev = [e for e in st["log"] if e["id"] == a.id]
    assert [e["ev"] for e in ev] == ["sub", "close", "sub"]
    assert ev[2]["topic"] == "t" and ev[2]["state"] == 3  # TL_WS_CLOSED


def test_unsubscribe_then_publish(srv):
    s1, s2 = srv.connect("/self"), srv.connect("/self")
    assert s1.icmd("sub t") == 0 and s2.icmd("sub t") == 0
    assert s1.cmd("unsubpub t gone") == f"0 {frame_size(4)}"
    assert s2.recv().data == b"gone"
    assert s1.drain_for(0.2) == []
    assert s2.cmd("unsubpub t none") == f"0 {DROPPED}"
    assert srv.count("t") == 0


def test_no_subscribers_costs_nothing(srv):
    a = srv.connect()
    r = a.cmd("nobody ghost 1000").split(" ")
    rws, rapp, heap_delta, count = map(int, r)
    assert (rws, rapp) == (DROPPED, DROPPED)
    assert heap_delta == 0, f"publishing to nobody allocated {heap_delta} B"
    assert count == 0
    assert srv.count("ghost") == 0
    assert a.icmd("is ghost") == 0
    assert a.cmd("topics") == "0"
    assert srv.publish("ghost", "x") == DROPPED
    st = srv.stats()
    assert st["sub_events"] == 0
    assert all(e.get("topic") != "ghost" for e in st["log"])
    # a topic that existed and emptied behaves the same
    assert a.icmd("sub was") == 0
    assert a.icmd("unsub was") == 0
    r = a.cmd("nobody was 100").split(" ")
    assert list(map(int, r)) == [0, 0, 0, 0]


def test_drops_in_one_callback(srv):
    """A subscriber over its max_backpressure gets published messages
    dropped (counted, `dropped` told); a publish whose only copy was dropped
    returns 0; what was accepted arrives, in order; `drain` fires once the
    backlog empties."""
    pub = srv.connect()
    slow = srv.connect("/slow", rcvbuf=4096)
    assert slow.icmd("sub s") == 0
    ok, bp, drop, err, posdrop = map(int, pub.cmd("flood s 400 4096")
                                     .split(" "))
    assert err == 0
    assert ok + bp + drop == 400
    assert ok + bp >= 1 and drop >= 1, (ok, bp, drop)
    info = srv.sock(slow.id)
    # the slow socket was the only subscriber: every 0 is one of its drops
    assert info["dropped_count"] == drop
    assert info["dropped_calls"] == drop
    got = slow.recv_n(ok + bp, timeout=20)
    seqs = [int(m.data.split(b":")[1]) for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(len(m.data) == 4096 for m in got)
    assert slow.drain_for(0.3) == []
    srv.wait_stats(lambda s: s["drains"] >= 1, what="drain after drops")
