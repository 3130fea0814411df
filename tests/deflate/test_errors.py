"""Failures: RSV1 where it does not belong (1002), corrupt deflate data
and compressed text that is not UTF-8 (1007), inflate bombs and messages
that inflate past max_payload (1009, quickly, without the server's memory
growing)."""
import time
import zlib

import pytest

from dclient import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, TAIL,
                     DClient, build_frame, deflate_raw)
from pmdmodel import PMD
from talon_server import skip_if_wrapped

NEGOTIATED = ["/shared", "/dedicated", "/small-window", "/comp-only"]


def check_logged(srv, route, code):
    srv.wait_stats(lambda st: any(e["route"] == route and e["code"] == code
                                  for e in st["close_log"]),
                   what=f"close {code} on {route}")


@pytest.mark.parametrize("route,offer", [
    ("/plain", PMD), ("/plain", None), ("/shared", None),
    ("/dedicated", None)])
def test_rsv1_not_negotiated(srv, route, offer):
    with DClient.connect(srv.port, route, offer) as c:
        assert c.pmd is None
        c.echo("before")
        c.send_raw(build_frame(OP_TEXT, deflate_raw(b"hello" * 50),
                               rsv1=True))
        c.expect_close(1002)
        assert c.wait_eof()


@pytest.mark.parametrize("route", NEGOTIATED)
@pytest.mark.parametrize("op,payload", [
    (OP_PING, b"p"), (OP_PONG, b"p"), (OP_CLOSE, b"\x03\xe8")],
    ids=["ping", "pong", "close"])
def test_rsv1_on_control_frame(srv, route, op, payload):
    with DClient.connect(srv.port, route, PMD) as c:
        assert c.pmd is not None
        c.echo("before")
        c.send_raw(build_frame(op, payload, rsv1=True))
        c.expect_close(1002)


@pytest.mark.parametrize("route", NEGOTIATED)
@pytest.mark.parametrize("first_compressed", [True, False])
def test_rsv1_on_continuation(srv, route, first_compressed):
    with DClient.connect(srv.port, route, PMD) as c:
        t = b"continuation " * 100
        p = c.compress(t) if first_compressed else t
        h = len(p) // 2
        c.send_raw(build_frame(OP_TEXT, p[:h], fin=False,
                               rsv1=first_compressed) +
                   build_frame(0, p[h:], fin=True, rsv1=True))
        c.expect_close(1002)
        check_logged(srv, route, 1002)


@pytest.mark.parametrize("route", NEGOTIATED)
@pytest.mark.parametrize("rsv", [2, 1, 6, 7])
def test_rsv2_rsv3(srv, route, rsv):
    with DClient.connect(srv.port, route, PMD) as c:
        c.send_raw(build_frame(OP_TEXT, c.compress(b"x" * 300), rsv=rsv))
        c.expect_close(1002)


CORRUPT = [
    b"\xff\xff\xff\xff",                     # BTYPE 11
    b"\x00\x05\x00\x00\x00hello",            # stored, bad NLEN
    b"\x02\xff\xff",                          # fixed codes, invalid symbol
    bytes.fromhex("7bfffe"),                  # garbage
]


@pytest.mark.parametrize("route", NEGOTIATED + ["/limited", "/shared-comp"])
@pytest.mark.parametrize("i", range(len(CORRUPT)))
def test_corrupt(srv, route, i):
    with DClient.connect(srv.port, route, PMD) as c:
        c.echo("ok " * 100)
        c.send_raw(build_frame(OP_BINARY, CORRUPT[i], rsv1=True))
        c.expect_close(1007)
        check_logged(srv, route, 1007)


@pytest.mark.parametrize("route", NEGOTIATED)
def test_distance_too_far_back(srv, route):
    """A back-reference before the start of the message: corrupt on a
    fresh stream. With a dedicated decompressor and context takeover it
    refers into the previous message instead (fine)."""
    with DClient.connect(srv.port, route, PMD) as c:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        first = deflate_raw(b"0123456789abcdef" * 20, obj=co)
        second = deflate_raw(b"0123456789abcdef" * 20, obj=co)
        c.send_raw(build_frame(OP_BINARY, first, rsv1=True))
        assert c.recv_msg().data == b"0123456789abcdef" * 20
        c.send_raw(build_frame(OP_BINARY, second, rsv1=True))
        if c.client_no_takeover:
            c.expect_close(1007)
        else:
            assert c.recv_msg().data == b"0123456789abcdef" * 20


@pytest.mark.parametrize("route", NEGOTIATED)
def test_data_after_final_block(srv, route):
    with DClient.connect(srv.port, route, PMD) as c:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        fin = co.compress(b"final " * 50) + co.flush(zlib.Z_FINISH)
        # A message that ends its deflate stream is valid ...
        c.send_raw(build_frame(OP_TEXT, fin, rsv1=True))
        assert c.recv_msg().data == b"final " * 50
        # ... and the next one starts a new stream.
        c.echo(b"next " * 60, compress=True)
        # Bytes after the final block are not.
        c.send_raw(build_frame(OP_TEXT, fin + b"\x12\x34", rsv1=True))
        c.expect_close(1007)


@pytest.mark.parametrize("route", NEGOTIATED)
@pytest.mark.parametrize("bad", [b"\xc3\x28", b"abc\xe2\x82", b"\xed\xa0\x80",
                                 b"ok\xff" + b"x" * 500],
                         ids=["invalid2", "truncated", "surrogate", "ff"])
@pytest.mark.parametrize("fragments", [1, 3])
def test_compressed_text_invalid_utf8(srv, route, bad, fragments):
    with DClient.connect(srv.port, route, PMD) as c:
        # As binary the same bytes are fine.
        c.echo(bad, OP_BINARY, compress=True, fragments=fragments)
        c.send_msg(bad, OP_TEXT, compress=True, fragments=fragments)
        c.expect_close(1007)
        check_logged(srv, route, 1007)


def zeros_bomb(total):
    co = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    chunk = bytes(1 << 20)
    out = []
    for _ in range(total // len(chunk)):
        out.append(co.compress(chunk))
    out.append(co.flush(zlib.Z_SYNC_FLUSH))
    z = b"".join(out)
    assert z.endswith(TAIL)
    return z[:-4]


@pytest.fixture(scope="module")
def bomb_10m():
    return zeros_bomb(10 << 20)


@pytest.fixture(scope="module")
def bomb_100m():
    return zeros_bomb(100 << 20)


@pytest.mark.parametrize("fragments", [1, 4])
def test_bomb_limited(fresh_srv, bomb_10m, fragments):
    """~10 KB that inflate to 10 MB on a route with max_payload 64 KiB:
    1009 at once, and the server's memory does not move."""
    srv = fresh_srv
    assert len(bomb_10m) < 64 * 1024
    with DClient.connect(srv.port, "/limited", PMD) as c:
        c.echo("warm " * 100)
    rss0 = srv.rss_kib()
    for i in range(5):
        with DClient.connect(srv.port, "/limited", PMD) as c:
            t0 = time.monotonic()
            p = bomb_10m
            k = -(-len(p) // fragments)
            frames = b"".join(
                build_frame(OP_BINARY if j == 0 else 0, p[j * k:(j + 1) * k],
                            fin=j == fragments - 1, rsv1=j == 0)
                for j in range(fragments))
            c.send_raw(frames)
            c.expect_close(1009)
            assert time.monotonic() - t0 < 2.0
            assert c.wait_eof()
    check_logged(srv, "/limited", 1009)
    grown = srv.rss_kib() - rss0
    print(f"RSS growth after 5 bombs on /limited: {grown} KiB")
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"


def test_bomb_compressed_size_over_limit(fresh_srv, bomb_100m):
    """~100 KB compressed (100 MB inflated): over 64 KiB already as
    compressed bytes, refused before anything is inflated."""
    srv = fresh_srv
    rss0 = srv.rss_kib()
    with DClient.connect(srv.port, "/limited", PMD) as c:
        t0 = time.monotonic()
        try:
            c.send_raw(build_frame(OP_BINARY, bomb_100m, rsv1=True))
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.expect_close(1009)
        assert time.monotonic() - t0 < 2.0
    assert srv.rss_kib() - rss0 < 8 * 1024


@skip_if_wrapped("the RSS bound would measure valgrind's own memory")
@pytest.mark.parametrize("route", ["/shared", "/dedicated"])
def test_bomb_large_limit(fresh_srv, bomb_100m, route):
    """100 MB of zeros on a route with max_payload 64 MiB: 1009 at the
    limit; memory grows by about the limit, not a multiple of it."""
    srv = fresh_srv
    rss0 = srv.rss_kib()
    with DClient.connect(srv.port, route, PMD) as c:
        t0 = time.monotonic()
        c.send_raw(build_frame(OP_BINARY, bomb_100m, rsv1=True))
        c.expect_close(1009, timeout=30)
        took = time.monotonic() - t0
    grown = srv.rss_kib() - rss0
    print(f"{route}: 100 MB bomb -> 1009 in {took:.2f}s, RSS +{grown} KiB")
    if srv.sanitized():
        return  # ASan's realloc copies and quarantines: RSS is meaningless
    assert grown < (64 + 64 // 4 + 16) * 1024, f"RSS grew by {grown} KiB"


def test_inflated_exactly_max_payload(fresh_srv):
    """max_payload counts inflated bytes: 64 KiB passes, one more is 1009."""
    srv = fresh_srv
    with DClient.connect(srv.port, "/limited", PMD) as c:
        m = c.echo(bytes(64 * 1024), OP_BINARY, compress=True)
        assert m.compressed
        c.send_msg(bytes(64 * 1024 + 1), OP_BINARY, compress=True)
        c.expect_close(1009)


def test_uncompressed_over_limit_still_1009(fresh_srv):
    with DClient.connect(fresh_srv.port, "/limited", PMD) as c:
        c.send_msg(bytes(64 * 1024 + 1), OP_BINARY, compress=False)
        c.expect_close(1009)
