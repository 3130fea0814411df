"""RFC 6455 conformance against ws_test_server's /echo route (64 MiB
limits), organised like the Autobahn testsuite's sections:
1 framing, 2 ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation,
6 UTF-8, 7 close, 9 limits/performance; plus masking and max_payload.
"""
import os
import struct
import time

import pytest

from wsclient import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG,
                      OP_TEXT, WSClient, build_frame, close_payload)

MiB = 1024 * 1024


@pytest.fixture
def ws(srv):
    c = WSClient.connect(srv.port, "/echo")
    yield c
    c.close()


def expect_fail(c, code, timeout=3.0):
    """The server fails the connection: a close frame with `code`, then it
    closes TCP."""
    ev = c.expect_close(code, timeout)
    assert c.wait_eof(timeout), "server did not close TCP after its close"
    return ev


def pattern(n, seed=0):
    """n bytes of a deterministic, non-repeating-ish pattern."""
    if n == 0:
        return b""
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (block * (n // 251 + 1))[:n]


def text_pattern(n):
    return (b"abcdefghijklmnopqrstuvwxyz0123456789*" * (n // 37 + 1))[:n]


# ---- 1 framing ----------------------------------------------------------------

LENGTHS = [0, 1, 125, 126, 127, 128, 65535, 65536, 65537]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_1_framing_lengths(ws, n, opcode):
    payload = text_pattern(n) if opcode == OP_TEXT else pattern(n)
    ev = ws.echo(payload, opcode)
    # The server's frame uses the minimal length encoding.
    assert ev.nframes == 1


@pytest.mark.parametrize("n,chunk", [(125, 1), (126, 1), (127, 3),
                                     (65535, 997), (65536, 4096),
                                     (65537, 65536), (300000, 1)])
def test_1_framing_chunked(ws, n, chunk):
    """The frame's bytes arrive in many small writes."""
    payload = pattern(n, seed=n)
    data = build_frame(OP_BINARY, payload)
    if chunk == 1:
        # Byte by byte for the header and the first bytes, then the rest.
        for i in range(16):
            ws.send_raw(data[i:i + 1])
            time.sleep(0.001)
        ws.send_raw(data[16:])
    else:
        for i in range(0, len(data), chunk):
            ws.send_raw(data[i:i + chunk])
    ev = ws.recv_data(10)
    assert ev.opcode == OP_BINARY and ev.data == payload


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_1_framing_16mib(ws, opcode):
    n = 16 * MiB
    payload = text_pattern(n) if opcode == OP_TEXT else os.urandom(n)
    data = build_frame(opcode, payload)
    for i in range(0, len(data), 1 << 20):
        ws.send_raw(data[i:i + (1 << 20)])
    ev = ws.recv_data(30)
    assert ev.opcode == opcode
    assert len(ev.data) == n
    assert ev.data == payload


def test_1_framing_16mib_odd_chunks(ws):
    payload = os.urandom(16 * MiB)
    data = build_frame(OP_BINARY, payload)
    step = 65537 + 3
    for i in range(0, len(data), step):
        ws.send_raw(data[i:i + step])
    ev = ws.recv_data(30)
    assert ev.data == payload


def test_1_framing_non_minimal_length_accepted(ws):
    """A 5-byte payload announced in a 16-bit and in a 64-bit length field
    (the RFC puts minimality on the sender; talon documents acceptance)."""
    key = b"\x01\x02\x03\x04"
    from wsclient import mask_bytes
    body = mask_bytes(b"short", key)
    ws.send_raw(b"\x81\xfe\x00\x05" + key + body)
    assert ws.recv_text() == "short"
    ws.send_raw(b"\x82\xff" + struct.pack("!Q", 5) + key + body)
    ev = ws.recv_data()
    assert ev.opcode == OP_BINARY and ev.data == b"short"


def test_1_framing_64bit_length_top_bit(ws):
    ws.send_raw(b"\x82\xff" + struct.pack("!Q", 1 << 63) + b"\0\0\0\0")
    expect_fail(ws, 1002)


def test_1_framing_declared_too_big_for_limit(ws):
    """1 GiB announced on the 64 MiB route: 1009 from the header alone."""
    ws.send_raw(b"\x82\xff" + struct.pack("!Q", 1 << 30) + b"\0\0\0\0")
    expect_fail(ws, 1009)


# ---- 2 ping/pong ------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125)),
                                     b"\xff" * 125])
def test_2_ping_pong_payload(ws, payload):
    ws.send_frame(OP_PING, payload)
    ev = ws.recv()
    assert ev.opcode == OP_PONG and ev.data == payload
    ws.echo(b"still open")


def test_2_ping_126_bytes(ws):
    ws.send_frame(OP_PING, b"a" * 126)
    expect_fail(ws, 1002)


def test_2_ping_126_bytes_header_only(ws):
    """The 16-bit length form on a control frame fails at the header."""
    ws.send_raw(b"\x89\xfe\x00\x7e")
    expect_fail(ws, 1002)


def test_2_ping_fragmented(ws):
    ws.send_frame(OP_PING, b"frag", fin=False)
    expect_fail(ws, 1002)


def test_2_unsolicited_pong_ignored(ws, srv):
    ws.send_frame(OP_PONG, b"unsolicited")
    ws.send_frame(OP_PONG, b"")
    ws.send_frame(OP_TEXT, b"after pong")
    ev = ws.recv()
    assert ev.opcode == OP_TEXT and ev.data == b"after pong"


def test_2_ten_pings_in_order(ws):
    data = b"".join(build_frame(OP_PING, b"ping-%d" % i) for i in range(10))
    ws.send_raw(data)
    for i in range(10):
        ev = ws.recv()
        assert ev.opcode == OP_PONG and ev.data == b"ping-%d" % i, (i, ev)
    ws.echo(b"after pings")


def test_2_ten_pings_separate_writes(ws):
    for i in range(10):
        ws.send_frame(OP_PING, b"p%d" % i)
    for i in range(10):
        ev = ws.recv()
        assert ev.opcode == OP_PONG and ev.data == b"p%d" % i


def test_2_ping_counted(ws, srv):
    before = srv.stats()["pings"]
    ws.send_frame(OP_PING, b"count me")
    assert ws.recv().opcode == OP_PONG
    srv.wait_stats(lambda s: s["pings"] >= before + 1, what="ping handler")


def test_2_server_ping_answered(srv):
    """/ping: tl_ws_ping on "ping-me"; our pong reaches the pong handler."""
    st0 = srv.stats()
    with WSClient.connect(srv.port, "/ping") as c:
        c.send_text("ping-me")
        ev = c.recv()
        assert ev.opcode == OP_PING and ev.data == b"srv-ping", ev
        c.send_frame(OP_PONG, ev.data)
        assert c.recv_text() == "got-pong:srv-ping"
        # An unsolicited pong reaches the pong handler too.
        c.send_frame(OP_PONG, b"unasked")
        assert c.recv_text() == "got-pong:unasked"
        c.close_handshake()
    st = srv.stats()
    assert st["ping_rc"] == 10  # 8-byte payload + 2-byte header
    assert st["pongs"] == st0["pongs"] + 2
    assert st["last_pong"] == "unasked"


# ---- 3 reserved bits ------------------------------------------------------------

@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
def test_3_rsv_on_text(ws, rsv):
    ws.send_frame(OP_TEXT, b"Hello", rsv=rsv)
    ev = expect_fail(ws, 1002)
    assert ev.before == []


@pytest.mark.parametrize("rsv", [1, 2, 4, 7])
def test_3_rsv_after_echo_same_write(ws, rsv):
    """A valid message, then a frame with RSV bits, then a ping, in one
    write: the message is echoed, then 1002; the ping is never answered."""
    ws.send_raw(build_frame(OP_TEXT, b"first") +
                build_frame(OP_TEXT, b"bad", rsv=rsv) +
                build_frame(OP_PING, b"never"))
    ev = expect_fail(ws, 1002)
    assert [(e.opcode, e.data) for e in ev.before] == [(OP_TEXT, b"first")]


@pytest.mark.parametrize("opcode", [OP_BINARY, OP_PING, OP_PONG, OP_CLOSE])
def test_3_rsv_on_other_frames(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"abc"
    ws.send_frame(opcode, payload, rsv=4)
    expect_fail(ws, 1002)


def test_3_rsv_on_continuation(ws):
    ws.send_raw(build_frame(OP_TEXT, b"a", fin=False) +
                build_frame(OP_CONT, b"b", rsv=4))
    expect_fail(ws, 1002)


# ---- 4 opcodes ---------------------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_4_reserved_opcode(ws, opcode):
    ws.send_frame(opcode, b"")
    expect_fail(ws, 1002)


@pytest.mark.parametrize("opcode", [3, 7, 11, 15])
def test_4_reserved_opcode_after_echo(ws, opcode):
    ws.send_raw(build_frame(OP_TEXT, b"ok") +
                build_frame(opcode, b"payload") +
                build_frame(OP_PING, b"never"))
    ev = expect_fail(ws, 1002)
    assert [(e.opcode, e.data) for e in ev.before] == [(OP_TEXT, b"ok")]


# ---- 5 fragmentation --------------------------------------------------------------

def test_5_text_two_fragments(ws):
    ws.send_raw(build_frame(OP_TEXT, b"Hello, ", fin=False) +
                build_frame(OP_CONT, b"world"))
    assert ws.recv_text() == "Hello, world"


def test_5_binary_two_fragments_separate_writes(ws):
    ws.send_frame(OP_BINARY, b"\x00\x01", fin=False)
    time.sleep(0.05)
    ws.send_frame(OP_CONT, b"\x02\x03")
    ev = ws.recv_data()
    assert ev.opcode == OP_BINARY and ev.data == b"\x00\x01\x02\x03"


def test_5_text_many_fragments(ws):
    text = text_pattern(300)
    frames = [build_frame(OP_TEXT, text[:1], fin=False)]
    frames += [build_frame(OP_CONT, text[i:i + 1], fin=False)
               for i in range(1, 299)]
    frames.append(build_frame(OP_CONT, text[299:]))
    ws.send_raw(b"".join(frames))
    assert ws.recv_text().encode() == text


def test_5_empty_fragments(ws):
    ws.send_raw(build_frame(OP_TEXT, b"", fin=False) +
                build_frame(OP_CONT, b"", fin=False) +
                build_frame(OP_CONT, b"x", fin=False) +
                build_frame(OP_CONT, b""))
    assert ws.recv_text() == "x"
    ws.send_raw(build_frame(OP_BINARY, b"", fin=False) +
                build_frame(OP_CONT, b""))
    ev = ws.recv_data()
    assert ev.opcode == OP_BINARY and ev.data == b""


def test_5_pings_between_fragments_one_write(ws):
    ws.send_raw(build_frame(OP_TEXT, b"frag1", fin=False) +
                build_frame(OP_PING, b"p1") +
                build_frame(OP_CONT, b"frag2", fin=False) +
                build_frame(OP_PING, b"p2") +
                build_frame(OP_CONT, b"frag3"))
    evs = [ws.recv() for _ in range(3)]
    assert [(e.opcode, e.data) for e in evs] == [
        (OP_PONG, b"p1"), (OP_PONG, b"p2"), (OP_TEXT, b"frag1frag2frag3")]


def test_5_ping_mid_message_answered_at_once(ws):
    """The pong comes while the message is still incomplete."""
    ws.send_raw(build_frame(OP_TEXT, b"part one ", fin=False) +
                build_frame(OP_PING, b"now"))
    ev = ws.recv(2)
    assert ev.opcode == OP_PONG and ev.data == b"now"
    ws.quiet_for(0.1)
    ws.send_frame(OP_CONT, b"part two")
    assert ws.recv_text() == "part one part two"


def test_5_ping_mid_frame_split(ws):
    """A ping between fragments, with the fragments themselves split
    across writes."""
    f1 = build_frame(OP_BINARY, b"A" * 1000, fin=False)
    p = build_frame(OP_PING, b"mid")
    f2 = build_frame(OP_CONT, b"B" * 1000)
    ws.send_raw(f1[:500])
    time.sleep(0.01)
    ws.send_raw(f1[500:] + p[:3])
    time.sleep(0.01)
    ws.send_raw(p[3:])
    ev = ws.recv(2)
    assert ev.opcode == OP_PONG and ev.data == b"mid"
    ws.send_raw(f2)
    ev = ws.recv_data()
    assert ev.data == b"A" * 1000 + b"B" * 1000


@pytest.mark.parametrize("fin", [True, False])
def test_5_continuation_without_start(ws, fin):
    ws.send_frame(OP_CONT, b"orphan", fin=fin)
    expect_fail(ws, 1002)


def test_5_continuation_after_complete_message(ws):
    ws.send_raw(build_frame(OP_TEXT, b"done") +
                build_frame(OP_CONT, b"orphan"))
    ev = expect_fail(ws, 1002)
    assert [e.data for e in ev.before] == [b"done"]


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_5_new_data_frame_inside_message(ws, second):
    ws.send_raw(build_frame(OP_TEXT, b"start", fin=False) +
                build_frame(second, b"intruder"))
    ev = expect_fail(ws, 1002)
    assert ev.before == []


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_5_fragmented_control(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"ctl"
    ws.send_frame(opcode, payload, fin=False)
    expect_fail(ws, 1002)


def test_5_fragmented_control_inside_message(ws):
    ws.send_raw(build_frame(OP_TEXT, b"a", fin=False) +
                build_frame(OP_PING, b"x", fin=False))
    expect_fail(ws, 1002)


# ---- 6 UTF-8 --------------------------------------------------------------------------

VALID_UTF8 = [
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
    "κόσμε".encode(),
    "\u0000".encode(),
    b"\xc2\x80",                # U+0080
    b"\xdf\xbf",                # U+07FF
    b"\xe0\xa0\x80",            # U+0800
    b"\xed\x9f\xbf",            # U+D7FF
    b"\xee\x80\x80",            # U+E000
    b"\xef\xbf\xbf",            # U+FFFF
    b"\xf0\x90\x80\x80",        # U+10000
    b"\xf4\x8f\xbf\xbf",        # U+10FFFF
    "😀 emoji and ascii".encode(),
    ("ü" * 5000).encode(),
]

INVALID_UTF8 = [
    ("overlong /", b"\xc0\xaf"),
    ("overlong c1", b"\xc1\xbf"),
    ("overlong 3-byte", b"\xe0\x80\xaf"),
    ("overlong 3-byte max", b"\xe0\x9f\xbf"),
    ("overlong 4-byte", b"\xf0\x80\x80\xaf"),
    ("overlong 4-byte max", b"\xf0\x8f\xbf\xbf"),
    ("surrogate D800", b"\xed\xa0\x80"),
    ("surrogate DFFF", b"\xed\xbf\xbf"),
    ("surrogate pair", b"\xed\xa0\x80\xed\xb0\x80"),
    ("above U+10FFFF", b"\xf4\x90\x80\x80"),
    ("f5 lead", b"\xf5\x80\x80\x80"),
    ("f7 lead", b"\xf7\xbf\xbf\xbf"),
    ("fe", b"\xfe"),
    ("ff", b"\xff"),
    ("fe fe ff ff", b"\xfe\xfe\xff\xff"),
    ("lone continuation", b"\x80"),
    ("lone continuation bf", b"abc\xbfdef"),
    ("truncated 2 at end", "κόσμ".encode() + b"\xce"),
    ("truncated 3 at end", b"abc\xe2\x82"),
    ("truncated 4 at end", b"abc\xf0\x9f\x98"),
    ("truncated mid", b"\xe2\x82abc"),
    ("bad continuation", b"abc\xc3\x28def"),
    ("5-byte form", b"\xf8\x88\x80\x80\x80"),
    ("6-byte form", b"\xfc\x84\x80\x80\x80\x80"),
    ("valid then invalid", "κόσμε".encode() + b"\xed\xa0\x80edited"),
]


@pytest.mark.parametrize("data", VALID_UTF8, ids=range(len(VALID_UTF8)))
def test_6_valid_utf8(ws, data):
    ws.echo(data, OP_TEXT)


@pytest.mark.parametrize("data", VALID_UTF8[:6], ids=range(6))
def test_6_valid_utf8_split_in_fragments(ws, data):
    """Every split point of a valid text into two fragments (multi-byte
    sequences cut across fragments)."""
    for at in range(len(data) + 1):
        ws.send_raw(build_frame(OP_TEXT, data[:at], fin=False) +
                    build_frame(OP_CONT, data[at:]))
    for at in range(len(data) + 1):
        ev = ws.recv_data()
        assert ev.opcode == OP_TEXT and ev.data == data, at


def test_6_valid_utf8_byte_per_fragment(ws):
    data = "κόσμε 😀 \U0010ffff".encode()
    frames = [build_frame(OP_TEXT, data[:1], fin=False)]
    frames += [build_frame(OP_CONT, data[i:i + 1], fin=i + 1 == len(data))
               for i in range(1, len(data))]
    ws.send_raw(b"".join(frames))
    assert ws.recv_data().data == data


@pytest.mark.parametrize("name,data", INVALID_UTF8,
                         ids=[n for n, _ in INVALID_UTF8])
def test_6_invalid_utf8(ws, name, data):
    ws.send_frame(OP_TEXT, data)
    ev = expect_fail(ws, 1007)
    assert ev.before == []


@pytest.mark.parametrize("name,data", INVALID_UTF8[:12] + INVALID_UTF8[17:20],
                         ids=[n for n, _ in INVALID_UTF8[:12] +
                              INVALID_UTF8[17:20]])
def test_6_invalid_utf8_split_across_fragments(ws, name, data):
    """The invalid sequence is cut between two fragments."""
    at = max(1, len(data) // 2)
    ws.send_raw(build_frame(OP_TEXT, data[:at], fin=False) +
                build_frame(OP_CONT, data[at:]))
    expect_fail(ws, 1007)


@pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80",
                                 b"\xf4\x90"])
def test_6_fail_fast_first_fragment(ws, bad):
    """The first fragment holds an invalid sequence; the rest of the
    message never comes: the server must close with 1007 anyway."""
    ws.send_frame(OP_TEXT, b"hello " + bad + b" world", fin=False)
    expect_fail(ws, 1007, timeout=2.0)


def test_6_fail_fast_mid_fragment(ws):
    """The invalid byte is in the middle of a frame whose remaining
    payload never arrives."""
    payload = b"valid text " + b"\xff" + b"x" * 1000
    frame = build_frame(OP_TEXT, payload)
    ws.send_raw(frame[:8 + 12])  # 8-byte header, payload up to "\xff"
    expect_fail(ws, 1007, timeout=2.0)


def test_6_fail_fast_later_fragment(ws):
    ws.send_raw(build_frame(OP_TEXT, b"fine ", fin=False) +
                build_frame(OP_CONT, b"still fine ", fin=False) +
                build_frame(OP_CONT, b"bad \xed\xa0\x80", fin=False))
    expect_fail(ws, 1007, timeout=2.0)


def test_6_binary_is_not_checked(ws):
    ws.echo(b"\xff\xfe\xed\xa0\x80\xc0", OP_BINARY)


# ---- 7 close ----------------------------------------------------------------------------

def test_7_close_1000(ws, srv):
    n = srv.stats()["nclose_log"]
    ws.send_close(1000, b"bye now")
    ev = ws.expect_close(1000)
    assert ws.wait_eof(3), "server did not close TCP after the handshake"
    e = srv.wait_close_logged(n, "/echo")
    assert e["code"] == 1000 and e["reason"] == "bye now"


def test_7_close_without_payload(ws, srv):
    n = srv.stats()["nclose_log"]
    ws.send_close(None)
    ev = ws.expect_close(None)
    assert ev.code in (None, 1000), ev
    assert ws.wait_eof(3)
    assert srv.wait_close_logged(n, "/echo")["code"] == 1005


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009,
                                  1010, 1011, 3000, 3999, 4000, 4999])
def test_7_valid_codes_echoed(ws, code):
    ws.send_close(code, b"reason")
    ws.expect_close(code)
    assert ws.wait_eof(3)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016,
                                  1100, 2000, 2999, 5000, 65535])
def test_7_invalid_codes(ws, code):
    ws.send_close(code)
    expect_fail(ws, 1002)


def test_7_one_byte_payload(ws):
    ws.send_frame(OP_CLOSE, b"\x03")
    expect_fail(ws, 1002)


def test_7_invalid_utf8_reason(ws):
    ws.send_frame(OP_CLOSE, close_payload(1000) + b"bad \xff reason")
    expect_fail(ws, 1007)


def test_7_max_reason(ws):
    ws.send_close(1000, b"r" * 123)
    ws.expect_close(1000)
    assert ws.wait_eof(3)


def test_7_frames_after_close_ignored(ws):
    ws.send_raw(build_frame(OP_CLOSE, close_payload(1000)) +
                build_frame(OP_TEXT, b"after close") +
                build_frame(OP_PING, b"after close"))
    ev = ws.expect_close(1000)
    assert ev.before == []
    # Nothing but EOF follows the close frame.
    assert ws.wait_eof(3)
    assert bytes(ws.buf) == b"", bytes(ws.buf)


def test_7_close_after_echo_same_write(ws):
    ws.send_raw(build_frame(OP_TEXT, b"one") +
                build_frame(OP_BINARY, b"two") +
                build_frame(OP_CLOSE, close_payload(1001)))
    ev = ws.expect_close(1001)
    assert [(e.opcode, e.data) for e in ev.before] == [
        (OP_TEXT, b"one"), (OP_BINARY, b"two")]
    assert ws.wait_eof(3)


def test_7_close_mid_fragmented_message(ws):
    """A close between fragments ends the connection; the partial message
    is not delivered."""
    ws.send_raw(build_frame(OP_TEXT, b"partial", fin=False) +
                build_frame(OP_CLOSE, close_payload(1000)))
    ev = ws.expect_close(1000)
    assert ev.before == []
    assert ws.wait_eof(3)


def test_7_tcp_drop_reports_1006(ws, srv):
    n = srv.stats()["nclose_log"]
    ws.echo(b"x")
    ws.close()
    assert srv.wait_close_logged(n, "/echo")["code"] == 1006


def test_7_server_close(srv):
    """tl_ws_close(ws, 4000, "bye"): the close frame comes, sends after it
    are dropped, a second tl_ws_close is TL_ESTATE, and the server waits
    for our close before closing TCP."""
    n = srv.stats()["nclose_log"]
    with WSClient.connect(srv.port, "/close-me") as c:
        c.echo(b"before")
        c.send_text("close-me")
        ev = c.expect_close(4000, 3)
        assert ev.reason == b"bye"
        assert ev.before == []
        c.quiet_for(0.5)  # still open: waiting for our close
        st = srv.stats()
        assert st["close_me_rc"] == 0
        assert st["close_me_again_rc"] == -30005  # TL_ESTATE
        assert st["close_me_send_rc"] == 0        # TL_WS_DROPPED
        assert not srv.closes_since(n, "/close-me")
        c.send_close(4000, b"ok")
        assert c.wait_eof(3), "server did not close TCP after our close"
        assert c.buf == b"", "bytes after the server's close frame"
    e = srv.wait_close_logged(n, "/close-me")
    assert e["code"] == 4000 and e["reason"] == "ok"


def test_7_server_close_answer_with_different_code(srv):
    n = srv.stats()["nclose_log"]
    with WSClient.connect(srv.port, "/close-me") as c:
        c.send_text("close-me")
        c.expect_close(4000, 3)
        c.send_close(1000)
        assert c.wait_eof(3)
    assert srv.wait_close_logged(n, "/close-me")["code"] == 1000


def test_7_server_close_peer_never_answers(srv):
    """A peer that ignores the server's close is cut after the close
    timeout (5 s)."""
    n = srv.stats()["nclose_log"]
    with WSClient.connect(srv.port, "/close-me") as c:
        c.send_text("close-me")
        c.expect_close(4000, 3)
        t0 = time.monotonic()
        # Data frames we keep sending are ignored and do not extend it.
        for i in range(3):
            c.send_text(b"ignored %d" % i)
            time.sleep(0.3)
        assert c.wait_eof(9), "server never closed TCP"
        took = time.monotonic() - t0
        assert 4.0 <= took <= 7.5, took
        assert c.buf == b"", bytes(c.buf)
    # No close frame was received: the close code is 1006 (ws.h: "1006 if
    # the connection was lost without a close frame"; RFC 6455 7.1.5).
    e = srv.wait_close_logged(n, "/close-me")
    assert e["code"] == 1006, e


def test_7_server_close_peer_drops_tcp(srv):
    """After the server's close the peer closes TCP without a close frame:
    the close handler gets 1006 (no close frame was received)."""
    n = srv.stats()["nclose_log"]
    with WSClient.connect(srv.port, "/close-me") as c:
        c.send_text("close-me")
        c.expect_close(4000, 3)
    e = srv.wait_close_logged(n, "/close-me")
    assert e["code"] == 1006, e


# ---- 9 limits / performance-ish -----------------------------------------------------

def test_9_thousand_messages_one_write(ws):
    msgs = [b"message %d " % i + b"x" * (i % 200) for i in range(1000)]
    ws.send_raw(b"".join(build_frame(OP_TEXT, m) for m in msgs))
    for i, m in enumerate(msgs):
        ev = ws.recv_data(10)
        assert ev.data == m, i


def test_9_thousand_binary_mixed_sizes(ws):
    msgs = [pattern(i * 37 % 70000, seed=i) for i in range(1000)]
    data = b"".join(build_frame(OP_BINARY, m) for m in msgs)
    ws.send_raw(data)
    for i, m in enumerate(msgs):
        ev = ws.recv_data(10)
        assert ev.opcode == OP_BINARY and ev.data == m, i


def test_9_one_mib_in_thousand_fragments(ws):
    payload = os.urandom(MiB)
    n = 1000
    step = len(payload) // n + 1
    parts = [payload[i:i + step] for i in range(0, len(payload), step)]
    assert len(parts) == n
    frames = [build_frame(OP_BINARY if i == 0 else OP_CONT, p,
                          fin=i == n - 1) for i, p in enumerate(parts)]
    ws.send_raw(b"".join(frames))
    ev = ws.recv_data(10)
    assert ev.opcode == OP_BINARY and ev.data == payload


def test_9_text_one_mib_in_fragments_cut_mid_sequence(ws):
    """1 MiB of 3-byte characters in 4099-byte fragments: every fragment
    boundary cuts a sequence."""
    payload = ("€" * (MiB // 3)).encode()
    step = 4099
    parts = [payload[i:i + step] for i in range(0, len(payload), step)]
    frames = [build_frame(OP_TEXT if i == 0 else OP_CONT, p,
                          fin=i == len(parts) - 1) for i, p in enumerate(parts)]
    ws.send_raw(b"".join(frames))
    ev = ws.recv_data(10)
    assert ev.opcode == OP_TEXT and ev.data == payload


# ---- masking and max_payload -------------------------------------------------------

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_unmasked_frame(ws, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"plain"
    ws.send_frame(opcode, payload, mask=False)
    expect_fail(ws, 1002)


def test_unmasked_after_echo(ws):
    ws.send_raw(build_frame(OP_TEXT, b"masked") +
                build_frame(OP_TEXT, b"unmasked", mask=False))
    ev = expect_fail(ws, 1002)
    assert [e.data for e in ev.before] == [b"masked"]


def test_zero_mask_key(ws):
    ws.echo(b"zero mask")  # random key
    ws.send_frame(OP_TEXT, b"zero key", mask_key=b"\0\0\0\0")
    assert ws.recv_text() == "zero key"


@pytest.fixture
def small(srv):
    c = WSClient.connect(srv.port, "/small")
    yield c
    c.close()


def test_max_payload_exact(small):
    small.echo(b"a" * 1024, OP_TEXT)
    small.echo(pattern(1024), OP_BINARY)


@pytest.mark.parametrize("declared", [1025, 2000, 65536, 1 << 40])
def test_max_payload_header_only(small, declared):
    """Only the header of an oversized frame is sent: the close 1009 must
    come without waiting for the payload."""
    small.send_raw(build_frame(OP_BINARY, b"", length=declared))
    expect_fail(small, 1009, timeout=2.0)


def test_max_payload_whole_frame(small):
    small.send_frame(OP_TEXT, b"b" * 1025)
    expect_fail(small, 1009)


def test_max_payload_fragmented(small):
    """600 + 600 bytes: the second fragment's header already exceeds."""
    small.send_frame(OP_BINARY, b"c" * 600, fin=False)
    time.sleep(0.05)
    small.send_raw(build_frame(OP_CONT, b"", length=600))
    expect_fail(small, 1009, timeout=2.0)


def test_max_payload_many_fragments(small):
    frames = [build_frame(OP_BINARY, b"d" * 100, fin=False)]
    frames += [build_frame(OP_CONT, b"d" * 100, fin=False) for _ in range(20)]
    small.send_raw(b"".join(frames))
    expect_fail(small, 1009)


def test_max_payload_fragments_within_limit(small):
    frames = [build_frame(OP_BINARY, b"e" * 256, fin=False)]
    frames += [build_frame(OP_CONT, b"e" * 256, fin=i == 2) for i in range(3)]
    small.send_raw(b"".join(frames))
    ev = small.recv_data()
    assert ev.data == b"e" * 1024


def test_max_payload_controls_do_not_count(small):
    """Pings between fragments do not count towards the message size."""
    frames = [build_frame(OP_BINARY, b"f" * 1000, fin=False)]
    frames += [build_frame(OP_PING, b"p" * 125) for _ in range(5)]
    frames.append(build_frame(OP_CONT, b"f" * 24))
    small.send_raw(b"".join(frames))
    for _ in range(5):
        assert small.recv().opcode == OP_PONG
    assert small.recv_data().data == b"f" * 1024


# ---- the close handler ran once for every opened socket ---------------------------

def test_zz_every_open_got_one_close(srv):
    st = srv.wait_stats(lambda s: s["opens"] == s["closes"], timeout=8,
                        what="opens == closes")
    assert st["opens"] > 100
    assert st["errors"] == 0
