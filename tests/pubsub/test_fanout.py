"""Fan-out to many sockets and topics, the subscription handler's events,
and the close handler's goodbye to the topics a socket is still on."""
from collections import Counter

from psclient import DROPPED, frame_size

NSOCK, NTOPIC = 50, 20


def topics_of(i):
    """Socket i's topics: 3 or fewer distinct ones out of NTOPIC."""
    return sorted({f"t{i % NTOPIC}", f"t{(i * 3 + 1) % NTOPIC}",
                   f"t{(i * 7 + 5) % NTOPIC}"})


def test_fanout_counts(srv):
    socks = [srv.connect() for _ in range(NSOCK)]
    subs = {}
    for i, c in enumerate(socks):
        ts = topics_of(i)
        assert c.cmd("subm " + " ".join(ts)) == str(len(ts))
        for t in ts:
            subs.setdefault(t, []).append(i)
    names = [f"t{k}" for k in range(NTOPIC)]
    counts = socks[0].cmd("countm " + " ".join(names)).split(" ")
    assert [int(x) for x in counts] == [len(subs.get(t, [])) for t in names]
    st = srv.stats()
    assert st["joins"] == sum(len(v) for v in subs.values())
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0

    # an outside publisher: one message per topic
    pub = srv.connect()
    for t in names:
        want = frame_size(len("m:" + t)) if subs.get(t) else DROPPED
        assert pub.icmd(f"pub {t} m:{t}") == want, t
    for i, c in enumerate(socks):
        got = sorted(m.text for m in c.recv_n(len(topics_of(i))))
        assert got == sorted("m:" + t for t in topics_of(i)), i

    # every socket publishes to each of its topics: everyone else on the
    # topic gets it, the sender does not
    for i, c in enumerate(socks):
        c.send("pubm " + f"from:{i} " + " ".join(topics_of(i)))
    expect = {i: Counter() for i in range(NSOCK)}
    for i in range(NSOCK):
        for t in topics_of(i):
            for j in subs[t]:
                if j != i:
                    expect[j][f"from:{i}"] += 1
    for i, c in enumerate(socks):
        r = c.reply("pubm").split(" ")
        others = [t for t in topics_of(i) if len(subs[t]) > 1]
        assert [int(x) for x in r] == [len(others), 0,
                                       len(topics_of(i)) - len(others), 0]
    for i, c in enumerate(socks):
        n = sum(expect[i].values())
        got = Counter(m.text for m in c.recv_n(n))
        assert got == expect[i], i
        assert c.drain_for(0.05) == [], i
    assert pub.drain_for(0.05) == []


def test_subscription_events(srv):
    a, b, c = srv.connect(), srv.connect(), srv.connect()
    assert a.icmd("sub x") == 0
    assert b.icmd("sub x") == 0
    assert c.icmd("sub x") == 0
    assert b.icmd("sub x") == 0  # no-op: no event
    assert b.icmd("unsub x") == 0
    assert b.icmd("unsub x") < 0  # not subscribed: no event
    assert a.icmd("sub y") == 0
    st = srv.stats()
    ev = [(e["id"], e["topic"], e["new"], e["old"]) for e in st["log"]
          if e["ev"] == "sub"]
    assert ev == [(a.id, "x", 1, 0), (b.id, "x", 2, 1), (c.id, "x", 3, 2),
                  (b.id, "x", 2, 3), (a.id, "y", 1, 0)]
    assert all(e["state"] == 1 for e in st["log"])  # TL_WS_OPEN
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0


def test_close_handler_sees_topics_and_says_bye(srv):
    x = srv.connect()
    y, z, w = srv.connect(), srv.connect(), srv.connect()
    assert x.cmd("subm A B") == "2"
    assert y.icmd("sub A") == 0
    assert z.icmd("sub B") == 0
    assert w.cmd("subm A B") == "2"
    seq0 = srv.stats()["nlog"]
    x.send_close(1000)
    assert x.wait_close() == 1000
    bye = f"bye {x.id}"
    assert y.recv().text == bye
    assert z.recv().text == bye
    assert [m.text for m in w.recv_n(2)] == [bye, bye]
    st = srv.wait_stats(lambda s: s["closes"] == 1, what="close")
    log = [e for e in srv.stats(seq0)["log"]]
    assert [e["ev"] for e in log] == ["close", "sub", "sub"]
    close = log[0]
    assert close["id"] == x.id and close["code"] == 1000
    assert close["ntopics"] == 2
    assert sorted(close["topics"].split(",")) == ["A", "B"]
    assert close["state"] == 3  # TL_WS_CLOSED in the close handler
    assert close["bye"] == [frame_size(len(bye))] * 2
    # then the subscription handler, once per topic, after the close
    # handler, with the counts going down
    leaves = sorted((e["topic"], e["new"], e["old"], e["state"], e["id"])
                    for e in log[1:])
    assert leaves == [("A", 2, 3, 3, x.id), ("B", 2, 3, 3, x.id)]
    assert srv.count("A") == 2 and srv.count("B") == 2
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0
    for c in (y, z, w):
        assert c.drain_for(0.05) == []


def test_close_handler_bye_on_every_kind_of_close(srv):
    """Client close frame, reset, server close, terminate, publish then
    terminate: each time the close handler's goodbye reaches the others
    and the socket leaves its topics."""
    watcher = srv.connect()
    assert watcher.icmd("sub room") == 0
    kinds = ["frame", "reset", "server-close", "terminate", "pubclose"]
    cs = {k: srv.connect() for k in kinds}
    for c in cs.values():
        assert c.icmd("sub room") == 0
    assert srv.count("room") == 1 + len(kinds)
    cs["frame"].send_close(1001)
    cs["reset"].abort()
    cs["server-close"].send("close 4000")
    assert cs["server-close"].wait_close() == 4000
    cs["server-close"].send_close(4000)
    cs["terminate"].send("terminate")
    cs["pubclose"].send("pubclose room last-words")
    got = [m.text for m in watcher.recv_n(len(kinds) + 1)]
    byes = {t for t in got if t.startswith("bye ")}
    assert byes == {f"bye {c.id}" for c in cs.values()}
    # pubclose: its publish arrives before its goodbye
    pc = cs["pubclose"].id
    assert got.index("last-words") < got.index(f"bye {pc}")
    srv.wait_stats(lambda s: s["closes"] == len(kinds), what="all closed")
    assert srv.count("room") == 1
    st = srv.stats()
    codes = {e["id"]: e["code"] for e in st["log"] if e["ev"] == "close"}
    assert codes[cs["frame"].id] == 1001
    assert codes[cs["reset"].id] == 1006
    assert codes[cs["server-close"].id] == 4000
    assert codes[cs["terminate"].id] == 1006
    assert codes[pc] == 1006
    assert st["sub_events_closed"] == len(kinds)
    assert st["count_mismatch"] == 0 and st["is_mismatch"] == 0
    assert watcher.drain_for(0.05) == []


def test_last_subscriber_leaving_frees_topic(srv):
    a, b = srv.connect(), srv.connect()
    for k in range(5):
        assert a.icmd(f"sub gone{k}") == 0
    a.send_close(1000)
    assert a.wait_close() == 1000
    srv.wait_stats(lambda s: s["closes"] == 1, what="close")
    st = srv.stats()
    assert [e["new"] for e in st["log"] if e["ev"] == "sub" and
            e["state"] == 3] == [0] * 5
    # the close handler's goodbyes found nobody (it is excluded)
    close = [e for e in st["log"] if e["ev"] == "close"][0]
    assert close["bye"] == [DROPPED] * 5
    for k in range(5):
        assert b.icmd(f"count gone{k}") == 0
        assert b.icmd(f"pub gone{k} x") == DROPPED
