"""Ordering: for one socket, direct sends and the publishes it receives
arrive in the order they were made, within one callback, across
callbacks and with several publishers (pubsub.h: "in the order its
direct sends and the publishes it receives happened")."""
import threading


def expected(tag, n, direct=True):
    out = []
    for i in range(n):
        if direct:
            out.append(f"{tag} d{i} ")
        out.append(f"{tag} p{i} ")
    return out


def prefixes(msgs):
    """The "TAG dN " / "TAG pN " prefix of each message (padding cut)."""
    out = []
    for m in msgs:
        t = m.text
        a = t.index(" ")
        b = t.index(" ", a + 1)
        out.append(t[:b + 1])
    return out


def test_mixed_one_callback_self(srv):
    """publish_to_self: the socket's own sends and its publishes,
    interleaved in one callback."""
    s1, s2 = srv.connect("/self"), srv.connect("/self")
    assert s1.icmd("sub t") == 0 and s2.icmd("sub t") == 0
    assert s1.cmd("mixed 0 50 t A 10") == "50 50"
    assert prefixes(s1.recv_n(100)) == expected("A", 50)
    assert prefixes(s2.recv_n(50)) == expected("A", 50, direct=False)


def test_mixed_one_callback_large(srv):
    """Big enough to flush mid-callback (the cork limit is 64 KiB)."""
    s1, s2 = srv.connect("/self"), srv.connect("/self")
    assert s1.icmd("sub t") == 0 and s2.icmd("sub t") == 0
    assert s1.cmd("mixed 0 120 t L 3000", timeout=20) == "120 120"
    got = s1.recv_n(240, timeout=20)
    assert prefixes(got) == expected("L", 120)
    assert all(len(m.data) == 3000 for m in got)
    assert prefixes(s2.recv_n(120, timeout=20)) == \
        expected("L", 120, direct=False)


def test_mixed_to_another_socket(srv):
    """Socket P sends directly to C and publishes to C's topic."""
    c = srv.connect()
    p = srv.connect()
    assert c.icmd("sub t") == 0
    assert p.cmd(f"mixed {c.id} 40 t B 20") == "40 40"
    assert prefixes(c.recv_n(80)) == expected("B", 40)
    assert p.cmd(f"mixed {c.id} 60 t C 2500", timeout=20) == "60 60"
    assert prefixes(c.recv_n(120, timeout=20)) == expected("C", 60)


def test_mixed_across_callbacks(srv):
    """Several commands in one TCP write (one loop turn) and in separate
    writes: each callback's output in order, callbacks in order."""
    s1 = srv.connect("/self")
    assert s1.icmd("sub t") == 0
    from psclient import build_frame, OP_TEXT
    batch = b"".join(build_frame(OP_TEXT, f"mixed 0 5 t X{k} 8")
                     for k in range(10))
    s1.sock.sendall(batch)
    for k in range(10):
        s1.reply("mixed")
    want = []
    for k in range(10):
        want += expected(f"X{k}", 5)
    assert prefixes(s1.recv_n(100)) == want
    # separate writes, replies awaited in between, plus a plain send and
    # an app publish in between
    want = []
    for k in range(5):
        assert s1.cmd(f"mixed 0 3 t Y{k} 8") == "3 3"
        want += expected(f"Y{k}", 3)
        assert int(s1.cmd(f"send Y{k} s0 ")) > 0
        want.append(f"Y{k} s0 ")
        assert int(s1.cmd(f"apub t Y{k} a0 ")) > 0
        want.append(f"Y{k} a0 ")
    assert prefixes(s1.recv_n(len(want))) == want


def test_several_publishers(srv):
    """Publishers A and B each interleave direct sends to C and publishes
    to C's topic, concurrently: C's stream is A's callbacks and B's
    callbacks, each whole and in order."""
    c = srv.connect()
    a, b = srv.connect(), srv.connect()
    assert c.icmd("sub t") == 0
    rounds = 8

    def run(pubc, tag):
        for r in range(rounds):
            assert pubc.cmd(f"mixed {c.id} 10 t {tag}{r} 300") == "10 10"

    ta = threading.Thread(target=run, args=(a, "A"))
    tb = threading.Thread(target=run, args=(b, "B"))
    ta.start()
    tb.start()
    ta.join(30)
    tb.join(30)
    got = prefixes(c.recv_n(2 * rounds * 20, timeout=20))
    # split into blocks of 20 (one callback each): every block is one whole
    # callback, and each publisher's blocks come in its order
    blocks = [got[i:i + 20] for i in range(0, len(got), 20)]
    tags = []
    for blk in blocks:
        tag = blk[0].split(" ")[0]
        assert blk == expected(tag, 10), blk
        tags.append(tag)
    assert [t for t in tags if t[0] == "A"] == [f"A{r}" for r in range(rounds)]
    assert [t for t in tags if t[0] == "B"] == [f"B{r}" for r in range(rounds)]
    assert c.drain_for(0.1) == []


def test_http_publish_between_ws_sends_keeps_order(srv):
    """Direct sends from one callback, an HTTP publish, another callback:
    the subscriber sees them in that order."""
    c = srv.connect()
    p = srv.connect()
    assert c.icmd("sub t") == 0
    for k in range(20):
        assert int(p.cmd(f"sendto {c.id} w{k} ")) > 0
        assert srv.publish("t", f"h{k} ") > 0
    got = prefixes_simple(c.recv_n(40))
    want = []
    for k in range(20):
        want += [f"w{k}", f"h{k}"]
    assert got == want


def prefixes_simple(msgs):
    return [m.text.strip() for m in msgs]
