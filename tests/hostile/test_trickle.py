"""WebSocket slowloris: frames and fragmented messages trickled so slowly
that they never complete. Any byte used to push the idle deadline, so a
socket sending one byte of a frame every 20 s stayed open for good. Now a
frame, or a fragmented message, must be complete within the route's
message_timeout_s of its first byte (2 s on /slowmsg, 30 s by default):
past it the server sends close 1008 and closes TCP. Checked here:

  - a crowd of sockets trickling a frame a byte every 0.3 s, from its
    first header byte or after a whole header, is cut at the message
    timeout (not before, and within the slack), canaries served meanwhile;
  - a message sent as complete one-byte fragments every 0.3 s (with a
    ping between fragments, or not) is cut the same way: complete frames
    do not restart the time of an unfinished message;
  - slow senders whose frames and messages do complete in time are not
    cut, however long they go on; and on a route whose idle timeout is
    shorter than its message timeout, bytes of an unfinished frame still
    count as traffic for the idle timeout.
"""
import struct
import threading
import time

import pytest

from conftest import (OP_BINARY, OP_TEXT, SLACK, WS_IDLE_TIMEOUT,
                      WS_MESSAGE_TIMEOUT, Canaries, after_attack, build_frame,
                      collect_for, scaled, ws_connect)

OP_CONT, OP_CLOSE, OP_PING, OP_PONG = 0, 8, 9, 10
PAUSE = 0.3  # seconds between two sends of a trickling client


def server_frames(data):
    """The server's (unmasked) frames in `data`, as (opcode, payload);
    an incomplete frame at the end is left out."""
    out, i = [], 0
    while i + 2 <= len(data):
        op, n = data[i] & 0x0F, data[i + 1] & 0x7F
        h = 2
        if n == 126:
            if i + 4 > len(data):
                break
            n, h = struct.unpack("!H", data[i + 2:i + 4])[0], 4
        elif n == 127:
            if i + 10 > len(data):
                break
            n, h = struct.unpack("!Q", data[i + 2:i + 10])[0], 10
        if i + h + n > len(data):
            break
        out.append((op, bytes(data[i + h:i + h + n])))
        i += h + n
    return out


def close_code(data):
    """The code of the server's close frame in `data`, or None."""
    for op, payload in server_frames(data):
        if op == OP_CLOSE:
            return struct.unpack("!H", payload[:2])[0] if payload else 1005
    return None


# How long a trickle goes on at most: the timeout, the slack and more.
TRICKLE_LIMIT = WS_MESSAGE_TIMEOUT + SLACK + 3


def trickle(srv, path, nconns, steps, pause=PAUSE):
    """Opens nconns WebSockets on `path`; then every `pause` seconds sends
    the next of `steps` (byte strings) to every socket still open, until
    all are closed by the server, or for TRICKLE_LIMIT seconds (the steps
    must last longer). Returns, per socket, (seconds from its first send
    to the server's close, bytes the server sent after the handshake);
    None for the time if it stayed open."""
    assert len(steps) * pause > TRICKLE_LIMIT + 1, "trickle too short"
    clients = [ws_connect(srv.port, path) for _ in range(nconns)]
    socks = [c.sock for c in clients]
    got = [bytearray(c.buf) for c in clients]
    first = [None] * nconns
    done = [None] * nconns
    try:
        for s in socks:
            s.setblocking(False)
        t0 = time.monotonic()
        for step in steps:
            if all(d is not None for d in done) or \
                    time.monotonic() - t0 > TRICKLE_LIMIT:
                break
            for i, s in enumerate(socks):
                if done[i] is not None:
                    continue
                try:
                    s.send(step)
                except (BrokenPipeError, ConnectionResetError):
                    done[i] = time.monotonic()
                    continue
                except BlockingIOError:
                    continue
                if first[i] is None:
                    first[i] = time.monotonic()
            collect_for(socks, done, got, pause)
    finally:
        for s in socks:
            s.close()
    return [(None if done[i] is None else done[i] - first[i], bytes(got[i]))
            for i in range(nconns)]


def check_cut(results, what):
    """Every socket got close 1008 and EOF between 0.75 x and the message
    timeout plus the slack after its first byte."""
    open_ = sum(t is None for t, _ in results)
    assert open_ == 0, \
        f"{what}: {open_} of {len(results)} sockets still open after " \
        f"{TRICKLE_LIMIT:.1f}s (message timeout {WS_MESSAGE_TIMEOUT}s)"
    times = sorted(t for t, _ in results)
    codes = {}
    for _, got in results:
        c = close_code(got)
        codes[c] = codes.get(c, 0) + 1
    assert codes == {1008: len(results)}, f"{what}: close codes {codes}"
    assert times[0] >= WS_MESSAGE_TIMEOUT * 0.75, \
        f"{what}: a socket was cut after {times[0]:.2f}s, before the " \
        f"{WS_MESSAGE_TIMEOUT}s message timeout"
    assert times[-1] <= WS_MESSAGE_TIMEOUT + SLACK, \
        f"{what}: a socket lived {times[-1]:.2f}s (message timeout " \
        f"{WS_MESSAGE_TIMEOUT}s + slack {SLACK}s)"
    print(f"  {what}: {len(results)} sockets cut with 1008 after "
          f"{times[0]:.2f}..{times[-1]:.2f}s")


# Long enough that trickling it takes far longer than the timeout.
FRAME = build_frame(OP_TEXT, b"t" * 200)


@pytest.mark.parametrize("whole_header", [False, True],
                         ids=["from-first-byte", "after-header"])
def test_trickled_frame_is_cut(srv, whole_header):
    """100 sockets send a 206-byte frame a byte every 0.3 s (it would take
    a minute): from its first header byte, or after its whole header in
    one write. All get 1008 at the message timeout."""
    n = scaled(srv, 100, minimum=10)
    steps = ([FRAME[:6]] if whole_header else []) + \
        [FRAME[i:i + 1] for i in range(6 if whole_header else 0, len(FRAME))]
    before = srv.stats()["close_codes"]["1008"]
    with Canaries(srv) as can:
        results = trickle(srv, "/slowmsg", n, steps)
        can.sample()
    check_cut(results, "trickled frames")
    srv.wait_stats(lambda st: st["close_codes"]["1008"] >= before + n,
                   what=f"{n} more closes with 1008")
    after_attack(srv)


@pytest.mark.parametrize("pings", [False, True], ids=["plain", "pings"])
def test_trickled_fragments_are_cut(srv, pings):
    """Sockets send a message as complete one-byte fragments, one every
    0.3 s (and a ping after each, answered with a pong): each frame is
    whole, the message never is. All get 1008 at the message timeout."""
    n = scaled(srv, 50, minimum=10)
    steps = [build_frame(OP_TEXT, b"f", fin=False)]
    steps += [build_frame(OP_CONT, b"f", fin=False) for _ in range(100)]
    if pings:
        steps = [s + build_frame(OP_PING, b"p") for s in steps]
    with Canaries(srv) as can:
        results = trickle(srv, "/slowmsg", n, steps)
        can.sample()
    check_cut(results, "trickled fragments")
    if pings:
        for _, got in results:
            pongs = [op for op, _ in server_frames(got) if op == OP_PONG]
            assert len(pongs) >= WS_MESSAGE_TIMEOUT / PAUSE - 2, pongs
    after_attack(srv)


def slow_but_complete(srv, kind, seconds, errors):
    """One client that keeps sending slowly for `seconds`, every frame and
    message complete within the message timeout; each must be echoed."""
    try:
        with ws_connect(srv.port, "/slowmsg") as c:
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < seconds:
                i += 1
                msg = b"%s %d " % (kind.encode(), i) + b"x" * 300
                if kind == "pieces":
                    # One frame in three writes, 0.3 s apart (0.6 s).
                    f = build_frame(OP_BINARY, msg)
                    for part in (f[:3], f[3:100], f[100:]):
                        c.send_raw(part)
                        time.sleep(PAUSE)
                    ev = c.recv_data(5)
                elif kind == "fragments":
                    # Three fragments, 0.3 s apart, a ping between.
                    c.send_frame(OP_TEXT, msg[:10], fin=False)
                    time.sleep(PAUSE)
                    c.send_frame(OP_PING, b"k")
                    c.send_frame(OP_CONT, msg[10:20], fin=False)
                    time.sleep(PAUSE)
                    c.send_frame(OP_CONT, msg[20:], fin=True)
                    ev = c.recv_data(5)
                elif kind == "late":
                    # A frame held unfinished for 1.5 s (of 2 s) each time.
                    f = build_frame(OP_TEXT, msg)
                    c.send_raw(f[:50])
                    time.sleep(WS_MESSAGE_TIMEOUT * 0.75)
                    c.send_raw(f[50:])
                    ev = c.recv_data(5)
                else:
                    # Whole messages, one every 0.3 s.
                    c.send_frame(OP_TEXT, msg)
                    ev = c.recv_data(5)
                    time.sleep(PAUSE)
                assert ev.data == msg, (kind, ev)
            c.close_handshake()
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(f"{kind}: {e!r}")


def test_slow_complete_senders_not_cut(srv):
    """Four slow clients at once, for more than twice the message timeout
    plus the slack: whole messages every 0.3 s; a frame in three writes
    0.3 s apart; three fragments 0.3 s apart with a ping between; a frame
    left unfinished for three quarters of the timeout. None is cut, every
    message is echoed."""
    seconds = 2 * (WS_MESSAGE_TIMEOUT + SLACK)
    errors = []
    threads = [threading.Thread(target=slow_but_complete,
                                args=(srv, kind, seconds, errors))
               for kind in ("whole", "pieces", "fragments", "late")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    assert not errors, errors
    assert srv.stats()["close_codes"]["1008"] == 0


def test_unfinished_frame_counts_for_idle(srv):
    """On /idle (idle timeout 1 s, message timeout the default 30 s), a
    frame trickled a byte every 0.3 s keeps the socket open past the idle
    timeout; once complete it is echoed."""
    f = build_frame(OP_TEXT, b"i" * 10)
    with ws_connect(srv.port, "/idle") as c:
        t0 = time.monotonic()
        for i in range(len(f) - 1):
            c.send_raw(f[i:i + 1])
            time.sleep(PAUSE)
        assert time.monotonic() - t0 > 3 * WS_IDLE_TIMEOUT
        c.send_raw(f[-1:])
        assert c.recv_data(5).data == b"i" * 10
