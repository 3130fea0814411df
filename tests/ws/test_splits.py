"""Representative cases with the input split at every byte boundary: the
bytes go out in two writes (TCP_NODELAY, a short pause between), so the
server's parser sees every possible cut of a header, mask and payload.
"""
import pytest

from wsclient import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                      WSClient, build_frame, close_payload)

PAUSE = 0.002


def splits(data):
    return range(0, len(data) + 1)


# ---- valid input: one connection, the case repeated at every split ---------

def run_valid(port, path, data, check):
    with WSClient.connect(port, path) as c:
        for at in splits(data):
            c.send_split(data, at, PAUSE)
            try:
                check(c)
            except AssertionError as e:
                raise AssertionError(f"split at {at}/{len(data)}: {e}")
        c.close_handshake(1000)


def test_split_text_echo(srv):
    data = build_frame(OP_TEXT, "Hello, κόσμε!".encode())

    def check(c):
        assert c.recv_text(2) == "Hello, κόσμε!"
    run_valid(srv.port, "/echo", data, check)


def test_split_16bit_length(srv):
    payload = bytes(range(256)) * 2  # 512 bytes: 16-bit length form
    data = build_frame(OP_BINARY, payload)

    def check(c):
        ev = c.recv_data(2)
        assert ev.opcode == OP_BINARY and ev.data == payload
    run_valid(srv.port, "/echo", data, check)


def test_split_64bit_length_sampled(srv):
    """A 64-bit length frame (65536 bytes): every split in the header and
    the first payload bytes, then every 4099th."""
    payload = bytes(range(256)) * 256
    data = build_frame(OP_BINARY, payload)
    points = list(range(0, 40)) + list(range(40, len(data) + 1, 4099)) + \
        [len(data) - 1, len(data)]
    with WSClient.connect(srv.port, "/echo") as c:
        for at in points:
            c.send_split(data, at, PAUSE)
            ev = c.recv_data(3)
            assert ev.data == payload, at


def test_split_fragments_with_ping(srv):
    text = "κόσμε".encode()
    data = (build_frame(OP_TEXT, text[:3], fin=False) +
            build_frame(OP_PING, b"mid") +
            build_frame(0, text[3:]))

    def check(c):
        ev = c.recv(2)
        assert ev.opcode == OP_PONG and ev.data == b"mid", ev
        ev = c.recv(2)
        assert ev.opcode == OP_TEXT and ev.data == text, ev
    run_valid(srv.port, "/echo", data, check)


def test_split_two_messages_and_ping(srv):
    data = (build_frame(OP_TEXT, b"one") + build_frame(OP_PING, b"") +
            build_frame(OP_BINARY, b"\x00two"))

    def check(c):
        evs = [c.recv(2) for _ in range(3)]
        assert [(e.opcode, e.data) for e in evs] == [
            (OP_TEXT, b"one"), (OP_PONG, b""), (OP_BINARY, b"\x00two")]
    run_valid(srv.port, "/echo", data, check)


# ---- errors and close: a new connection per split -------------------------

def run_each(port, path, data, check, points=None):
    for at in (points if points is not None else splits(data)):
        with WSClient.connect(port, path) as c:
            c.send_split(data, at, PAUSE)
            try:
                check(c)
            except AssertionError as e:
                raise AssertionError(f"split at {at}/{len(data)}: {e}")


def fails_with(code, before=()):
    def check(c):
        ev = c.expect_close(code, 3)
        assert [e.data for e in ev.before] == list(before)
        assert c.wait_eof(3)
    return check


def test_split_invalid_utf8(srv):
    data = build_frame(OP_TEXT, b"abc\xed\xa0\x80def")
    run_each(srv.port, "/echo", data, fails_with(1007))


def test_split_invalid_utf8_fragmented(srv):
    data = (build_frame(OP_TEXT, b"ab\xf0\x9f", fin=False) +
            build_frame(0, b"\x98\xff"))
    run_each(srv.port, "/echo", data, fails_with(1007))


def test_split_rsv_after_valid(srv):
    data = build_frame(OP_TEXT, b"ok") + build_frame(OP_TEXT, b"x", rsv=2)
    run_each(srv.port, "/echo", data, fails_with(1002, [b"ok"]))


def test_split_reserved_opcode(srv):
    data = build_frame(OP_BINARY, b"ok") + build_frame(11, b"zz")
    run_each(srv.port, "/echo", data, fails_with(1002, [b"ok"]))


def test_split_unmasked(srv):
    data = build_frame(OP_TEXT, b"unmasked frame", mask=False)
    run_each(srv.port, "/echo", data, fails_with(1002))


def test_split_close_1000_with_reason(srv):
    data = build_frame(OP_CLOSE, close_payload(1000, b"goodbye"))

    def check(c):
        c.expect_close(1000, 3)
        assert c.wait_eof(3)
    run_each(srv.port, "/echo", data, check)


def test_split_close_invalid_code(srv):
    data = build_frame(OP_CLOSE, close_payload(1005, b"no"))
    run_each(srv.port, "/echo", data, fails_with(1002))


def test_split_oversize_header(srv):
    """/small (1024): a 2000-byte frame, header only, split everywhere."""
    data = build_frame(OP_BINARY, b"", length=2000)
    run_each(srv.port, "/small", data, fails_with(1009))


def test_split_ping_too_long(srv):
    data = build_frame(OP_PING, b"p" * 126)
    run_each(srv.port, "/echo", data, fails_with(1002),
             points=range(0, 12))
