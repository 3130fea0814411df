"""Slowloris: many connections that send a request one byte at a time,
never finishing it. The server cuts each one off at its header timeout
(1 s from the first byte of a head, or from the head to the complete
body) with 408 or a close, keeps serving canaries meanwhile, and holds
little memory per dripping connection.

(tests/integration/test_errors.py has the single-connection version;
this is the crowd.)"""
import time

import pytest

from conftest import (HEADER_TIMEOUT, HOST, KiB, SLACK, Canaries,
                      after_attack, collect_for, connect, report_memory)


def drip(srv, data, nconns, pause, head=b""):
    """Opens nconns connections, sends `head` to each in one write, then
    `data` one byte at a time: every `pause` seconds one more byte to
    every connection still open. Returns, per connection, (seconds from
    its first byte (of `head` if any) to the server's answer or close,
    bytes the server sent)."""
    socks = [connect(srv.port) for _ in range(nconns)]
    first = [None] * nconns
    for i, s in enumerate(socks):
        if head:
            s.sendall(head)
            first[i] = time.monotonic()
        s.setblocking(False)
    done = [None] * nconns
    got = [b""] * nconns
    pos = 0
    deadline = time.monotonic() + HEADER_TIMEOUT + SLACK + 5
    try:
        while any(d is None for d in done):
            assert time.monotonic() < deadline, \
                f"{sum(d is None for d in done)} dripping connections " \
                f"still open after {HEADER_TIMEOUT + SLACK + 5:.1f}s"
            if pos < len(data):
                for i, s in enumerate(socks):
                    if done[i] is not None:
                        continue
                    try:
                        s.send(data[pos:pos + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        done[i] = time.monotonic()
                        continue
                    except BlockingIOError:
                        continue
                    if first[i] is None:
                        first[i] = time.monotonic()
                pos += 1
            # Collect answers and closes for `pause` seconds.
            collect_for(socks, done, got, pause)
    finally:
        for s in socks:
            s.close()
    assert pos < len(data), "the whole request was sent: drip too fast"
    return [(done[i] - first[i], got[i]) for i in range(nconns)]


def check_cut_off(results, what):
    """Each connection got 408 (or nothing) and then a close, within the
    header timeout and the slack; never a 2xx."""
    times = sorted(t for t, _ in results)
    statuses = {}
    for t, got in results:
        if got:
            assert got.startswith(b"HTTP/1.1 408 "), \
                f"{what}: expected 408 or a bare close, got {got[:200]!r}"
            assert b"\r\nConnection: close\r\n" in got, got[:300]
        statuses[408 if got else "close"] = \
            statuses.get(408 if got else "close", 0) + 1
    assert times[0] >= HEADER_TIMEOUT * 0.75, \
        f"{what}: a connection was cut after {times[0]:.2f}s, before the " \
        f"{HEADER_TIMEOUT}s header timeout"
    assert times[-1] <= HEADER_TIMEOUT + SLACK, \
        f"{what}: a connection lived {times[-1]:.2f}s " \
        f"(timeout {HEADER_TIMEOUT}s + slack {SLACK}s)"
    print(f"  {what}: {len(results)} connections cut after "
          f"{times[0]:.2f}..{times[-1]:.2f}s, {statuses}")


HEAD = (b"GET /hello HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
        b"User-Agent: slowloris\r\n" + b"X-Pad: " + b"p" * 400 + b"\r\n\r\n")
BODY = (b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n"
        + b"b" * 2000)


@pytest.mark.parametrize("nconns", [200])
def test_slowloris_heads(srv, nconns):
    """200 connections drip a 480-byte head a byte every 20 ms (so it
    would take ~10 s): all cut off at the header timeout."""
    base = srv.rss_kib()
    with Canaries(srv) as can:
        results = drip(srv, HEAD, nconns, 0.02)
        can.sample()
    check_cut_off(results, "slow heads")
    # Per connection: the connection block and its input buffer (talon
    # keeps a partial head, reserving 16 KiB); 64 KiB each is generous.
    report_memory("slowloris heads", base, can.peak_rss,
                  nconns * 64 + (16 if not srv.is_asan() else 64) * KiB,
                  f"{nconns} connections")
    after_attack(srv)


@pytest.mark.parametrize("nconns", [100])
def test_slowloris_bodies(srv, nconns):
    """The head arrives whole at once, then the 2000-byte body drips a
    byte every 20 ms: 408 at the header timeout (head to complete
    body)."""
    head_len = BODY.index(b"\r\n\r\n") + 4
    base = srv.rss_kib()
    with Canaries(srv) as can:
        results = drip(srv, BODY[head_len:], nconns, 0.02,
                       head=BODY[:head_len])
        can.sample()
    check_cut_off(results, "slow bodies")
    report_memory("slowloris bodies", base, can.peak_rss,
                  nconns * 64 + (16 if not srv.is_asan() else 64) * KiB,
                  f"{nconns} connections")
    after_attack(srv)
