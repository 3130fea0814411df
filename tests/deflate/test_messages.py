"""Messages through every compression mode, checked on the wire with the
raw client: RSV1 only on the first frame of compressed messages, none
under the threshold, payloads inflating (with the agreed window and
context takeover) to the right bytes, fragmented compressed messages
from the client, many messages keeping context, tl_ws_send_ex."""
import os
import random
import zlib

import pytest

from dclient import OP_BINARY, OP_PING, OP_TEXT, DClient, build_frame
from pmdmodel import CNCT, PMD, SNCT

# (route, offer): every mode, and the interesting agreements within one.
MODES = [
    ("/shared", PMD),
    ("/shared", PMD + "; server_max_window_bits=10"),
    ("/shared-comp", PMD),
    ("/dedicated", PMD),
    ("/dedicated", PMD + SNCT + CNCT),
    ("/dedicated", PMD + SNCT),
    ("/dedicated", PMD + CNCT),
    ("/dedicated", PMD + "; server_max_window_bits=9"),
    ("/small-window", PMD),
    ("/level9", PMD),
    ("/comp-only", PMD),
    ("/threshold0", PMD),
]
IDS = [f"{r}:{o[len(PMD):] or 'plain'}" for r, o in MODES]


def text(n, seed=0):
    rnd = random.Random(seed)
    words = ["talon", "deflate", "Fenster", "über", "€uro", "😀", "window",
             "context", "takeover"]
    out = []
    size = 0
    while size < n:
        w = rnd.choice(words) + " "
        out.append(w)
        size += len(w.encode())
    return "".join(out).encode()[:n].decode("utf-8", "ignore")


def rand(n, seed=0):
    return random.Random(seed).randbytes(n)


@pytest.fixture(params=MODES, ids=IDS)
def client(request, srv):
    route, offer = request.param
    c = DClient.connect(srv.port, route, offer)
    assert c.pmd is not None, c.head
    c.route = route
    yield c
    c.close()


def threshold(c):
    return 1 if c.route == "/threshold0" else 128


def test_small_messages_uncompressed(client):
    """Under compress_threshold the server sends without RSV1, whatever
    the client sent."""
    for n in (1, 10, 127):
        if n >= threshold(client):
            continue
        for compress in (True, False):
            m = client.echo("a" * n, compress=compress)
            assert not m.compressed, m.frames[0][:3]
            mb = client.echo(b"\x00" * n, OP_BINARY, compress=compress)
            assert not mb.compressed


def test_empty_message(client):
    for compress in (True, False):
        m = client.echo(b"", OP_TEXT, compress=compress)
        assert not m.compressed
        m = client.echo(b"", OP_BINARY, compress=compress)
        assert not m.compressed
    # And the stream still works after empty compressed messages.
    m = client.echo(text(5000, 1))
    assert m.compressed


@pytest.mark.parametrize("n", [128, 129, 1000, 70000, 1 << 20])
def test_large_compressible(client, n):
    t = text(n, n).encode()
    for compress in (True, False):
        m = client.echo(t, OP_TEXT, compress=compress)
        assert m.compressed, m
        assert m.wire_len < len(t) * 0.7
        b = client.echo(t, OP_BINARY, compress=compress)
        assert b.compressed


def test_threshold_boundary(client):
    th = threshold(client)
    m = client.echo(b"z" * th)
    assert m.compressed
    if th > 1:
        m = client.echo(b"z" * (th - 1))
        assert not m.compressed


@pytest.mark.parametrize("n", [200, 5000, 300000])
def test_random_data(client, n):
    d = rand(n, n)
    for compress in (True, False):
        m = client.echo(d, OP_BINARY, compress=compress)
        # A shared (context-free) compressor may send it uncompressed when
        # that is smaller; a context-keeping one compresses anyway.
        if not client.server_no_takeover:
            assert m.compressed
        else:
            assert m.wire_len <= n + 16


@pytest.mark.parametrize("fragments", [2, 3, 7, 50])
def test_fragmented_compressed_from_client(client, fragments):
    """A compressed message split into frames, RSV1 on the first only."""
    for t in (text(20000, fragments).encode(), rand(3000, fragments)):
        op = OP_TEXT if t[:1].isascii() and len(t) == 20000 else OP_BINARY
        client.echo(t, op, compress=True, fragments=fragments)
        client.echo(t, op, compress=False, fragments=fragments)


def test_fragmented_with_ping_between(client):
    t = text(10000, 3).encode()
    payload = client.compress(t)
    k = len(payload) // 3
    frames = (build_frame(OP_TEXT, payload[:k], fin=False, rsv1=True) +
              build_frame(OP_PING, b"mid") +
              build_frame(0, payload[k:2 * k], fin=False) +
              build_frame(OP_PING, b"mid2") +
              build_frame(0, payload[2 * k:], fin=True))
    client.send_raw(frames)
    m = client.recv_msg()
    assert m.data == t


def test_fragment_boundary_inside_utf8(client):
    """Compressed text whose frames (of compressed bytes) cut anywhere:
    UTF-8 is checked after inflating, on the whole message."""
    t = ("€😀ü" * 2000).encode()
    for fragments in (2, 5, 13):
        client.echo(t, OP_TEXT, compress=True, fragments=fragments)


def test_many_messages_context(client):
    """Many messages in a row, mixed compressed and not from our side;
    the client's inflater keeps context unless server_no_context_takeover
    was agreed, so a server that reset or kept context wrongly fails."""
    rnd = random.Random(7)
    sizes = []
    for i in range(120):
        n = rnd.choice([0, 5, 127, 128, 300, 2000, 20000])
        t = text(n, i % 5).encode()
        compress = rnd.random() < 0.7
        op = OP_TEXT if rnd.random() < 0.5 else OP_BINARY
        m = client.echo(t, op, compress=compress)
        sizes.append((n, m.wire_len, m.compressed))
    # With context takeover (and a window that holds it), a repeat of the
    # previous message costs a few bytes.
    # Random bytes: the only match is the previous copy.
    t = rand(8000, 99)
    first = client.echo(t, OP_BINARY)
    second = client.echo(t, OP_BINARY)
    if not client.server_no_takeover and client.server_bits == 15:
        assert first.compressed and second.compressed
        assert second.wire_len < 200 < 7000 < first.wire_len, (first, second)
    elif client.server_no_takeover:
        assert second.wire_len == first.wire_len


def test_pipelined_burst(client):
    """Many messages in one write; replies in order."""
    msgs = [text(50 + 37 * i, i).encode() for i in range(200)]
    out = b""
    for i, t in enumerate(msgs):
        p = client.compress(t) if i % 3 else t
        out += build_frame(OP_TEXT, p, rsv1=bool(i % 3))
    client.send_raw(out)
    for t in msgs:
        m = client.recv_msg()
        assert m.data == t


def test_server_generated(client):
    """Larger messages made by the server (text, and random binary)."""
    for n in (1 << 20, 4 << 20):
        client.send_msg(f"big {n}")
        m = client.recv_msg(timeout=30)
        assert m.opcode == OP_TEXT and len(m.data) == n and m.compressed
        client.send_msg(f"rnd {n}")
        m = client.recv_msg(timeout=30)
        assert m.opcode == OP_BINARY and len(m.data) == n


def test_window_respected(srv):
    """With server_max_window_bits=N agreed, the server's frames inflate
    with exactly an N-bit window (the client inflates with -N)."""
    for bits in (9, 10, 12):
        with DClient.connect(srv.port, "/dedicated",
                             PMD + f"; server_max_window_bits={bits}") as c:
            assert c.server_bits == bits
            for i in range(5):
                c.echo(text(200000, i).encode())
        with DClient.connect(srv.port, "/shared",
                             PMD + f"; server_max_window_bits={bits}") as c:
            for i in range(5):
                c.echo(text(200000, i).encode())
    with DClient.connect(srv.port, "/small-window", PMD) as c:
        assert c.server_bits == 9
        for i in range(5):
            c.echo(text(200000, i).encode())


def test_compress_level(srv):
    """compress_level reaches zlib: the same messages on a route at level 9
    come back whole and in fewer bytes on the wire than on /dedicated
    (the default, level 1), where zlib looks at far fewer matches."""
    msgs = [text(3000, i).encode() for i in range(20)]
    wire = {}
    for route in ("/dedicated", "/level9"):
        with DClient.connect(srv.port, route, PMD) as c:
            wire[route] = sum(c.echo(m).wire_len for m in msgs)
    assert wire["/level9"] < wire["/dedicated"], wire


def test_client_window_8(srv):
    """A client that compresses with a tiny window (zlib's smallest raw
    window is 9 bits) and says client_max_window_bits=8."""
    with DClient.connect(srv.port, "/dedicated",
                         PMD + "; client_max_window_bits=8") as c:
        c.deflater = zlib.compressobj(9, zlib.DEFLATED, -9)
        for i in range(10):
            c.echo(text(30000, i).encode())


# -- tl_ws_send_ex ---------------------------------------------------------

@pytest.mark.parametrize("route", ["/sendex", "/sendex-ded"])
def test_send_ex(srv, route):
    small = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"  # 40, compressible
    large = text(5000, 9)
    with DClient.connect(srv.port, route, PMD) as c:
        c.send_msg("c1 " + small)
        m = c.recv_msg()
        assert m.data == small.encode() and m.compressed
        # Past 51 bytes the shared compressor is libdeflate's (which
        # stores up to 51 bytes as they are); under it, a zlib stream.
        for n in (51, 52, 127):
            c.send_msg("c1 " + "a" * n)
            m = c.recv_msg()
            assert m.data == b"a" * n and m.compressed, n
        c.send_msg("c0 " + large)
        m = c.recv_msg()
        assert m.data == large.encode() and not m.compressed
        c.send_msg("cd " + small)
        m = c.recv_msg()
        assert m.data == small.encode() and not m.compressed
        c.send_msg("cd " + large)
        m = c.recv_msg()
        assert m.data == large.encode() and m.compressed
        for i in range(1, 20):
            for kind in ("c1", "c0", "cd"):
                t = text(60 * i, i)
                c.send_msg(f"{kind} {t}", compress=bool(i % 2))
                assert c.recv_msg().data == t.encode()
    # Not negotiated: compress=1 changes nothing.
    with DClient.connect(srv.port, route, None) as c:
        c.send_msg("c1 " + large)
        m = c.recv_msg()
        assert m.data == large.encode() and not m.compressed


@pytest.mark.parametrize("route", ["/sendex", "/sendex-ded"])
def test_send_ex_empty_compressed(srv, route):
    """tl_ws_send_ex(ws, "", 0, TEXT, 1): an empty message, forced
    compressed, between others. If it goes out with RSV1 its payload must
    be a complete deflate block (RFC 7692 7.2.3.6: 0x00), else the
    client's inflater is left inside a stored block and the next message
    fails to inflate."""
    with DClient.connect(srv.port, route, PMD) as c:
        seq = ["c1 " + text(400, 1), "c1 ", "c1 ", "c1 " + text(400, 2),
               "c1 ", "cd " + text(5000, 3)]
        for cmd in seq:
            c.send_msg(cmd)
            m = c.recv_msg()
            assert m.data == cmd[3:].encode(), (cmd[:20], m)
            if m.compressed:
                assert m.wire_len > 0, \
                    f"{route}: {cmd[:10]!r}: RSV1 frame with an empty payload"
