"""A small raw-socket WebSocket client for the pub/sub tests.

Like tests/ws/wsclient.py (hand-made handshake and frames, a timeout on
every blocking call; the framing from tests/common/wsframe.py) plus
helpers for pubsub_test_server's command protocol: every
command gets a reply "r:<command> ...", everything else a socket receives
(published and directly sent messages) is kept in order in `inbox`.
"""
import http.client
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
from wsframe import (HOST, OP_BINARY, OP_CLOSE, OP_CONT,  # noqa: E402,F401
                     OP_PING, OP_PONG, OP_TEXT, Closed, FrameReader, Timeout,
                     accept_for, build_frame, new_key, read_head)

TIMEOUT = 10.0

# talon error codes (include/talon/common.h)
TL_ENOMEM = -30001
TL_EINVAL = -30002
TL_EEXIST = -30003
TL_ENOENT = -30004
TL_ESTATE = -30005
TL_ECLOSED = -30006
TL_ETOOBIG = -30007
TL_TOPIC_MAX = 1024
BACKPRESSURE, DROPPED = 2 ** 31 - 1, 0  # TL_SEND_BACKPRESSURE, _DROPPED


def frame_size(n):
    """Bytes of an unmasked server frame with an n-byte payload."""
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


class Msg:
    """A data message."""
    __slots__ = ("op", "data")

    def __init__(self, op, data):
        self.op = op
        self.data = data

    @property
    def text(self):
        return self.data.decode("utf-8", "replace")

    def __repr__(self):
        d = self.data if len(self.data) <= 48 else (
            self.data[:48] + b"...(%d)" % len(self.data))
        return f"<{'T' if self.op == OP_TEXT else 'B'} {d!r}>"


class PSClient(FrameReader):
    def __init__(self, sock, leftover, path):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.path = path
        self.inbox = []  # data messages that are not replies, in order
        self.close_code = None  # set once a close frame arrived
        self.close_reason = b""
        self.eof = False
        self.id = None
        self.frag = None

    # ---- connect ----
    @classmethod
    def connect(cls, port, path="/ws", rcvbuf=None, timeout=TIMEOUT,
                hello=True):
        key = new_key()
        req = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((HOST, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req.encode())
        raw, rest = read_head(s, timeout)
        head = raw.decode("latin-1")
        assert head.startswith("HTTP/1.1 101"), head
        assert accept_for(key) in head, head
        c = cls(s, rest, path)
        if hello:
            r = c.reply("hello", timeout)
            c.id = int(r)
        return c

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def abort(self):
        """Close TCP with a reset (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    # ---- sending ----
    def send(self, text):
        self.sock.sendall(build_frame(OP_TEXT, text))

    def send_close(self, code=1000):
        self.sock.sendall(build_frame(OP_CLOSE, struct.pack("!H", code)))

    # ---- receiving ----
    def _frame(self, deadline):
        fin, rsv, op, payload = self.read_frame(deadline)
        assert rsv == 0, "RSV bits set"
        return fin, op, payload

    def _next(self, deadline):
        """The next data message off the wire (pings answered)."""
        while True:
            fin, op, payload = self._frame(deadline)
            if op == OP_PING:
                self.sock.sendall(build_frame(OP_PONG, payload))
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] \
                    if len(payload) >= 2 else None
                self.close_code = code
                self.close_reason = payload[2:]
                raise Closed(f"close frame {code} {payload[2:]!r}", code,
                             payload[2:])
            if op == OP_CONT:
                assert self.frag is not None, "stray continuation"
                self.frag[1].append(payload)
            else:
                assert self.frag is None, "data frame inside a message"
                self.frag = (op, [payload])
            if fin:
                op0, parts = self.frag
                self.frag = None
                return Msg(op0, b"".join(parts))

    def recv(self, timeout=TIMEOUT):
        """The next message that is not a reply (inbox first)."""
        if self.inbox:
            return self.inbox.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            m = self._next(deadline)
            if m.op == OP_TEXT and m.data.startswith(b"r:"):
                raise AssertionError(f"unexpected reply {m}")
            return m

    def recv_n(self, n, timeout=TIMEOUT):
        """n messages (inbox first); fails with what came so far."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            if self.inbox:
                out.append(self.inbox.pop(0))
                continue
            try:
                m = self._next(deadline)
            except (Timeout, Closed) as e:
                raise AssertionError(
                    f"got {len(out)} of {n} messages: {e}; last: {out[-3:]}")
            out.append(m)
        return out

    def reply(self, name, timeout=TIMEOUT):
        """Reads until the reply to command `name`; other messages go to
        the inbox. Returns the reply's text after "r:<name> "."""
        deadline = time.monotonic() + timeout
        pre = f"r:{name}".encode()
        while True:
            m = self._next(deadline)
            if m.op == OP_TEXT and (m.data == pre or
                                    m.data.startswith(pre + b" ")):
                return m.text[len(pre) + 1:]
            if m.op == OP_TEXT and m.data.startswith(b"r:error"):
                raise AssertionError(f"server: {m.text}")
            self.inbox.append(m)

    def cmd(self, text, timeout=TIMEOUT):
        """Sends a command and returns its reply (after the name)."""
        self.send(text)
        return self.reply(text.split(" ", 1)[0], timeout)

    def icmd(self, text, timeout=TIMEOUT):
        """cmd() for replies that are one integer."""
        return int(self.cmd(text, timeout))

    def drain_for(self, seconds):
        """Everything that arrives within `seconds` (plus the inbox)."""
        out, self.inbox = self.inbox, []
        deadline = time.monotonic() + seconds
        while True:
            try:
                out.append(self._next(deadline))
            except Timeout:
                return out

    def wait_close(self, timeout=TIMEOUT):
        """Reads (keeping data in the inbox) until a close frame or EOF;
        returns the close code (None for EOF without a close frame)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.inbox.append(self._next(deadline))
            except Closed as e:
                return e.code

    def wait_eof(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self.inbox.append(self._next(deadline))
            except Closed as e:
                if e.code is None:
                    return True
            except Timeout:
                return False
        return True


# ---- HTTP ---------------------------------------------------------------

def http_req(port, path, method="GET", body=None, timeout=TIMEOUT):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body,
                  headers={"Connection": "close"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_json(port, path, method="GET", body=None):
    status, data = http_req(port, path, method, body)
    assert status == 200, (path, status, data)
    return json.loads(data)
