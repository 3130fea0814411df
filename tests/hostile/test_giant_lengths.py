"""Giant declared lengths: a Content-Length of 99999999999, a chunk size of
ffffffffffff, WebSocket frames declaring 2^63-1 or 2^62 bytes. The server
answers at once (413, or close 1009) from the declaration alone and never
sizes an allocation by it: its memory does not move.

(tests/integration/test_errors.py covers lengths just over the limit; the
ws suites cover max_payload + 1. These are the absurd ones, repeated.)"""
import struct

import pytest

from conftest import (HOST, OP_BINARY, WS_MAX_PAYLOAD, build_frame, Canaries, Closed, KiB,
                      after_attack, connect, read_until_closed,
                      report_memory, ws_connect)

REPEAT = 30


def post(headers, body=b""):
    return (b"POST /body HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
            + headers + b"\r\n" + body)


HTTP_CASES = {
    "cl-99999999999": (post(b"Content-Length: 99999999999\r\n", b"x" * 100),
                       (413,)),
    "cl-2^64-1": (post(b"Content-Length: 18446744073709551615\r\n", b"x"),
                  (413,)),
    "cl-overflow": (post(b"Content-Length: 18446744073709551616\r\n", b"x"),
                    (400,)),
    "chunk-ffffffffffff": (post(b"Transfer-Encoding: chunked\r\n",
                                b"ffffffffffff\r\n" + b"y" * 100), (413,)),
    "chunk-2^64-1": (post(b"Transfer-Encoding: chunked\r\n",
                          b"ffffffffffffffff\r\n" + b"y" * 10), (413,)),
    "chunk-overflow": (post(b"Transfer-Encoding: chunked\r\n",
                            b"1ffffffffffffffff\r\ny"), (400,)),
    "second-chunk-huge": (post(b"Transfer-Encoding: chunked\r\n",
                               b"4\r\nabcd\r\nfffffffffff\r\nzz"), (413,)),
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_http_giant_length(srv, case):
    data, statuses = HTTP_CASES[case]
    base = srv.rss_kib()
    with Canaries(srv) as can:
        for i in range(REPEAT):
            s = connect(srv.port)
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            got, closed = read_until_closed(s, 5)
            s.close()
            assert closed, f"{case}: connection left open: {got[:200]!r}"
            status = int(got.split(b" ", 2)[1]) if got else None
            assert status in statuses, f"{case}: got {got[:300]!r}"
            assert b"\r\nConnection: close\r\n" in got, got[:300]
            can.sample()
    # Nothing was allocated for the declared sizes: what grows is the
    # canaries' and the connections' ordinary memory.
    report_memory(f"http {case} x{REPEAT}", base, can.peak_rss,
                  4 * 1024 if not srv.is_asan() else 24 * 1024)
    after_attack(srv)


def frame_head(b0, length, mask_key=b"\x01\x02\x03\x04"):
    """A masked frame head declaring `length` in the 64-bit form (even a
    value with the most significant bit set)."""
    return bytes((b0, 0x80 | 127)) + struct.pack("!Q", length) + mask_key


WS_CASES = {
    "2^63-1": (frame_head(0x82, (1 << 63) - 1) + b"\x00" * 64, 1009),
    "2^62": (frame_head(0x82, 1 << 62) + b"\x00" * 64, 1009),
    "max_payload+1": (frame_head(0x82, WS_MAX_PAYLOAD + 1), 1009),
    # The most significant bit must be 0 (RFC 6455 5.2).
    "2^64-1": (frame_head(0x82, (1 << 64) - 1) + b"\x00" * 8, 1002),
    # A first fragment, then a continuation declaring 2^62 bytes.
    "continuation-2^62": (bytes((0x02, 0x80 | 4)) + b"\x00" * 4 + b"abcd"
                          + frame_head(0x00, 1 << 62), 1009),
    # Fragments that add up past max_payload.
    "fragments-sum": (build_frame(OP_BINARY, b"\x00" * (WS_MAX_PAYLOAD - 10),
                                  fin=False)
                      + frame_head(0x80, 1 << 40), 1009),
    # A control frame may not use the 16- or 64-bit length forms.
    "ping-2^62": (frame_head(0x89, 1 << 62), 1002),
}


@pytest.mark.parametrize("case", list(WS_CASES))
def test_ws_giant_length(srv, case):
    data, code = WS_CASES[case]
    repeat = REPEAT if len(data) < 64 * KiB else 5
    base = srv.rss_kib()
    with Canaries(srv) as can:
        for _ in range(repeat):
            with ws_connect(srv.port, "/echo") as c:
                try:
                    c.send_raw(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    ev = c.expect_close(code, timeout=5)
                except Closed as e:
                    raise AssertionError(f"{case}: no close frame: {e}")
                assert not ev.before, ev.before
                assert c.wait_eof(5), f"{case}: TCP left open"
            can.sample()
    st = srv.stats()
    assert st["close_codes"][str(code)] == repeat, st
    report_memory(f"ws {case} x{repeat}", base, can.peak_rss,
                  4 * 1024 + (WS_MAX_PAYLOAD // KiB if repeat < REPEAT else 0)
                  if not srv.is_asan() else 24 * 1024)
    after_attack(srv)
