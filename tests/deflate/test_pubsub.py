"""Publish to subscribers with mixed compression: negotiated with a
shared (context-free) compressor, negotiated with server_no_context_takeover
on a dedicated route, dedicated with context (must get the message
uncompressed: the once-compressed frame is built by a fresh stream),
not negotiated, and a route without compression. Everyone gets the right
bytes; RSV1 exactly where expected."""
import asyncio
import random
import zlib

import pytest
import websockets

from dclient import OP_BINARY, OP_TEXT, DClient
from pmdmodel import PMD, SNCT

# name -> (route, offer, expect compressed large messages)
SUBS = {
    "shared": ("/pub-shared", PMD, True),
    "shared-w10": ("/pub-shared", PMD + "; server_max_window_bits=10", True),
    "shared-none": ("/pub-shared", None, False),
    "ded-ctx": ("/pub-dedicated", PMD, False),
    "ded-snct": ("/pub-dedicated", PMD + SNCT, True),
    "ded-snct-w9": ("/pub-dedicated",
                    PMD + SNCT + "; server_max_window_bits=9", True),
    "ded-none": ("/pub-dedicated", None, False),
    "plain": ("/pub-plain", PMD, False),
}


def text(n, seed):
    rnd = random.Random(seed)
    w = ["pub", "sub", "topic", "fan-out", "deflate", "ü", "€"]
    s = "x " + " ".join(rnd.choice(w) for _ in range(n // 3 + 10))
    return s.encode()[:n].decode("utf-8", "ignore")


@pytest.fixture
def subs(fresh_srv):
    cs = {name: DClient.connect(fresh_srv.port, r, o)
          for name, (r, o, _) in SUBS.items()}
    fresh_srv.wait_stats(lambda st: st["subs"] == len(cs), what="subscribed")
    yield fresh_srv, cs
    for c in cs.values():
        c.close()


def publish_and_check(cs, publisher, msg, op, big):
    cmd = ("pub " if op == OP_TEXT else "pubb ").encode() + msg
    cs[publisher].send_msg(cmd, OP_TEXT)
    got = {}
    for name, c in cs.items():
        m = c.recv_msg()
        assert m.opcode == op, (name, m)
        assert m.data == msg, (name, m)
        assert len(m.frames) == 1
        want = SUBS[name][2] and big
        assert m.compressed == want, \
            f"{name}: RSV1={m.compressed}, expected {want}"
        got[name] = m
    return got


def publish_ex_and_check(cs, flag, msg, want_compressed):
    cs["plain"].send_msg(f"p{flag} ".encode() + msg, OP_TEXT)
    for name, c in cs.items():
        m = c.recv_msg()
        assert m.opcode == OP_TEXT and m.data == msg, (name, m)
        want = SUBS[name][2] and want_compressed
        assert m.compressed == want, \
            f"p{flag} {name}: RSV1={m.compressed}, expected {want}"


def test_publish_ex_forces_or_skips_compression(subs):
    """tl_app_publish_ex: 1 compresses under compress_threshold (128) for
    every subscriber that takes context-free frames, 0 never compresses,
    whatever the size; context-keeping subscribers get it plain always."""
    srv, cs = subs
    small = b"a" * 100  # under the threshold, compresses well
    big = text(5000, 7).encode()
    publish_ex_and_check(cs, 1, small, True)
    publish_ex_and_check(cs, 0, big, False)
    publish_ex_and_check(cs, 1, big, True)


def test_mixed_subscribers(subs):
    srv, cs = subs
    names = list(cs)
    for i in range(30):
        publisher = names[i % len(names)]
        n = [10, 127, 128, 1000, 50000, 300000][i % 6]
        op = OP_TEXT if i % 2 == 0 else OP_BINARY
        msg = text(n, i).encode()
        got = publish_and_check(cs, publisher, msg, op, big=len(msg) >= 128)
        if len(msg) >= 128:
            # One compressed copy per window size, shared.
            assert got["shared"].frames[0][3] == got["ded-snct"].frames[0][3]
        # The dedicated-context subscriber's own compressor is untouched:
        # its echoes inflate in sequence with the context it kept.
        for c in (cs["ded-ctx"], cs["shared"]):
            for k in range(2):
                c.echo(text(3000, 100 + i).encode())


def test_repeat_beyond_a_small_window(subs):
    """A message whose repeat lies further back than a subscriber's
    window (513 to 700 bytes back, against server_max_window_bits=9)
    must not be compressed with a distance that window cannot reach:
    every subscriber inflates it with the window it agreed (the w9 one
    fails otherwise)."""
    srv, cs = subs
    rnd = random.Random(5)
    for n in (520, 700, 1000, 1024, 1100):
        head = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz")
                     for _ in range(max(513, n - 400)))
        msg = (head + head)[:n]
        assert len(msg) == n
        got = publish_and_check(cs, "plain", msg, OP_BINARY, big=True)
        for name, bits in (("ded-snct-w9", 9), ("shared-w10", 10),
                           ("shared", 15)):
            assert strict_inflate(got[name].frames[0][3], bits) == msg, name


def strict_inflate(payload, bits):
    """Inflates like a receiver that keeps only a 2**bits window: zlib
    gives at most one byte per call, so every back-reference is read from
    the window, and one further back fails ("invalid distance too far
    back"). A one-shot inflate would also accept distances into the
    output it is still making."""
    d = zlib.decompressobj(-bits)
    out = bytearray()
    data = payload + b"\x00\x00\xff\xff"
    while True:
        chunk = d.decompress(data, 1)
        data = d.unconsumed_tail
        out += chunk
        # A one-call compressor may end the message with a final block.
        if d.eof or (not chunk and not data):
            return bytes(out)


def test_incompressible_publish(subs):
    srv, cs = subs
    for i in range(5):
        msg = random.Random(i).randbytes(20000)
        cs["plain"].send_msg(b"pubb " + msg, OP_BINARY)
        for name, c in cs.items():
            m = c.recv_msg()
            assert m.data == msg, name
            # Compressed only if it got smaller (it does not).
            assert m.wire_len <= len(msg) + 16


def test_interleaved_direct_and_published(subs):
    """Direct sends and publishes to the same dedicated-context socket in
    one loop turn keep order and the compressor's context."""
    srv, cs = subs
    c = cs["ded-ctx"]
    for i in range(10):
        big = text(5000, i)
        c.send_msg(big)                       # echo, compressed w/ context
        cs["shared"].send_msg("pub " + big)   # published, uncompressed
        c.send_msg(big)
        got = [c.recv_msg() for _ in range(3)]
        assert [m.data for m in got] == [big.encode()] * 3
        for other in cs:
            if other != "ded-ctx":
                assert cs[other].recv_msg().data == big.encode()


async def _ws_subs(port):
    uri = f"ws://127.0.0.1:{port}"
    a = await websockets.connect(uri + "/pub-shared", max_size=None)
    b = await websockets.connect(uri + "/pub-dedicated", max_size=None)
    c = await websockets.connect(uri + "/pub-dedicated", max_size=None,
                                 compression=None)
    d = await websockets.connect(uri + "/pub-plain", max_size=None)
    await asyncio.sleep(0.1)
    for i in range(20):
        msg = text([50, 500, 70000][i % 3], i)
        await a.send("pub " + msg)
        for ws in (a, b, c, d):
            assert await asyncio.wait_for(ws.recv(), 10) == msg
        await b.send(msg)
        assert await asyncio.wait_for(b.recv(), 10) == msg
    for ws in (a, b, c, d):
        await ws.close()


def test_websockets_subscribers(fresh_srv):
    asyncio.run(_ws_subs(fresh_srv.port))
