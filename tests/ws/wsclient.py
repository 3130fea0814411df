"""A raw-socket WebSocket client for talon's tests (RFC 6455, client side).

Everything is done by hand so tests can send any byte sequence: the opening
handshake, a frame builder (masking, RSV bits, any opcode, any declared
length, unmasked frames) and a frame reader that reassembles fragmented
messages, returns control frames as they come, and reports close codes.
Every blocking call has a timeout.
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "common"))
import wsframe  # noqa: E402
from wsframe import (HOST, OP_BINARY, OP_CLOSE,  # noqa: E402,F401
                     OP_CONT, OP_PING, OP_PONG, OP_TEXT, Closed, FrameReader,
                     Timeout, accept_for, build_frame, mask_bytes, new_key)

DEFAULT_TIMEOUT = 5.0


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Event:
    """A data message (opcode TEXT/BINARY, fragments joined) or a control
    frame (PING/PONG/CLOSE). For CLOSE, `code` is the close code (None if
    the payload was empty) and `reason` the raw reason bytes."""

    def __init__(self, opcode, data, nframes=1):
        self.opcode = opcode
        self.data = data
        self.nframes = nframes
        self.code = None
        self.reason = b""
        if opcode == OP_CLOSE and len(data) >= 2:
            self.code = struct.unpack("!H", data[:2])[0]
            self.reason = data[2:]

    def __repr__(self):
        d = self.data if len(self.data) <= 40 else (
            self.data[:40] + b"...(%d bytes)" % len(self.data))
        if self.opcode == OP_CLOSE:
            return f"<close {self.code} {self.reason!r}>"
        return f"<op {self.opcode} {d!r}>"


# ---- HTTP -------------------------------------------------------------------

class HttpResponse:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def __repr__(self):
        return f"<HTTP {self.status} {self.headers} {self.body[:200]!r}>"


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k.strip().lower(), v.strip()))
    return status, reason, headers


def read_head(sock, timeout=DEFAULT_TIMEOUT):
    """Reads up to the end of an HTTP head; returns (head, rest)."""
    return wsframe.read_head(sock, timeout)


def read_http_response(sock, timeout=DEFAULT_TIMEOUT):
    """Reads one response (Content-Length or until EOF)."""
    head, rest = read_head(sock, timeout)
    status, reason, headers = parse_head(head)
    clen = None
    for k, v in headers:
        if k == "content-length":
            clen = int(v)
    body = rest
    deadline = time.monotonic() + timeout
    while clen is None or len(body) < clen:
        left = deadline - time.monotonic()
        if left <= 0:
            if clen is None:
                break
            raise Timeout(f"body incomplete: {len(body)}/{clen}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        body += chunk
    rest = b""
    if clen is not None and len(body) > clen:
        body, rest = body[:clen], body[clen:]
    r = HttpResponse(status, reason, headers, body, head)
    r.rest = rest  # bytes read past the response (pipelining)
    return r


def http_request(port, path, method="GET", headers=None, timeout=DEFAULT_TIMEOUT,
                 version="HTTP/1.1"):
    """One request on a fresh connection (Connection: close)."""
    hs = {"Host": f"{HOST}:{port}", "Connection": "close"}
    hs.update(headers or {})
    req = f"{method} {path} {version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in hs.items() if v is not None) + "\r\n"
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(req.encode())
        return read_http_response(s, timeout)


def upgrade_request(port, path, headers=None, key=None, version="HTTP/1.1",
                    drop=()):
    """The bytes of an upgrade request. `headers` adds or replaces (None
    removes); `drop` lists default headers to leave out."""
    key = key or new_key()
    hs = {
        "Host": f"{HOST}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    for d in drop:
        hs.pop(d, None)
    for k, v in (headers or {}).items():
        hs[k] = v
    lines = [f"GET {path} {version}"]
    for k, v in hs.items():
        if v is None:
            continue
        if isinstance(v, (list, tuple)):
            lines += [f"{k}: {x}" for x in v]
        else:
            lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


# ---- the client -------------------------------------------------------------

class WSClient(FrameReader):
    """A connected socket after the opening handshake."""

    def __init__(self, sock, leftover=b"", response=None):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.response = response
        self.frag_op = None
        self.frag_data = []
        self.eof = False

    # -- connect --
    @classmethod
    def connect(cls, port, path="/echo", headers=None, extra=b"",
                timeout=DEFAULT_TIMEOUT, nodelay=True, expect=101):
        """Handshake (plus `extra` bytes in the same write). Asserts the
        status is `expect` and, for 101, the accept key and headers."""
        data, key = upgrade_request(port, path, headers)
        sock = socket.create_connection((HOST, port), timeout=timeout)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(data + extra)
        head, rest = read_head(sock, timeout)
        status, reason, hdrs = parse_head(head)
        resp = HttpResponse(status, reason, hdrs, b"", head)
        if expect is not None:
            assert status == expect, f"expected {expect}, got {head!r} {rest!r}"
        if status == 101:
            assert resp.header("sec-websocket-accept") == accept_for(key), head
            assert resp.header("upgrade").lower() == "websocket", head
            assert "upgrade" in resp.header("connection").lower(), head
        return cls(sock, rest, resp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending --
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text.encode() if isinstance(text, str)
                        else text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=1000, reason=b"", **kw):
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    def send_split(self, data, at, pause=0.002):
        """Sends `data` in two writes split at offset `at`."""
        if at > 0:
            self.sock.sendall(data[:at])
            time.sleep(pause)
        if at < len(data):
            self.sock.sendall(data[at:])

    # -- receiving --
    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """One server frame: (fin, rsv, opcode, payload), checked against
        what a server without extensions may send."""
        fin, rsv, op, payload = self.read_frame(time.monotonic() + timeout)
        assert rsv == 0, f"server frame with RSV bits {rsv}"
        assert op in (0, 1, 2, 8, 9, 10), f"server frame with opcode {op}"
        if op >= 8:
            assert fin and len(payload) <= 125, "bad server control frame"
        return fin, rsv, op, payload

    def recv(self, timeout=DEFAULT_TIMEOUT):
        """The next event: a control frame, or a whole data message."""
        deadline = time.monotonic() + timeout
        while True:
            fin, rsv, op, payload = self.recv_frame(
                max(0.0, deadline - time.monotonic()))
            if op >= 8:
                return Event(op, payload)
            if op == OP_CONT:
                assert self.frag_op is not None, "server: stray continuation"
                self.frag_data.append(payload)
            else:
                assert self.frag_op is None, "server: data frame in message"
                self.frag_op = op
                self.frag_data = [payload]
            if fin:
                ev = Event(self.frag_op, b"".join(self.frag_data),
                           len(self.frag_data))
                self.frag_op, self.frag_data = None, []
                return ev

    def recv_data(self, timeout=DEFAULT_TIMEOUT, answer_pings=True):
        """The next data message (pings answered, pongs skipped). Fails on
        a close frame."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.recv(max(0.0, deadline - time.monotonic()))
            if ev.opcode == OP_PING:
                if answer_pings:
                    self.send_frame(OP_PONG, ev.data)
                continue
            if ev.opcode == OP_PONG:
                continue
            assert ev.opcode != OP_CLOSE, f"unexpected close: {ev}"
            return ev

    def recv_text(self, timeout=DEFAULT_TIMEOUT):
        ev = self.recv_data(timeout)
        assert ev.opcode == OP_TEXT, ev
        return ev.data.decode()

    def expect_close(self, code=None, timeout=DEFAULT_TIMEOUT, allow=()):
        """Reads until a close frame; returns it (and the data messages
        seen before it as .before). `code` is the expected close code (a
        collection allowed too)."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            try:
                ev = self.recv(max(0.0, deadline - time.monotonic()))
            except Closed:
                raise Closed(f"TCP closed without a close frame "
                             f"(expected close {code}); before: {before}")
            if ev.opcode == OP_CLOSE:
                ev.before = before
                if code is not None:
                    codes = code if isinstance(code, (tuple, list, set)) \
                        else (code,)
                    assert ev.code in codes, \
                        f"expected close {code}, got {ev} after {before}"
                return ev
            before.append(ev)

    def wait_eof(self, timeout=DEFAULT_TIMEOUT):
        """True if the server closes TCP within `timeout` (bytes that
        arrive meanwhile are discarded)."""
        if self.eof:
            return True
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                return True
            if not chunk:
                self.eof = True
                return True
            self.buf += chunk

    def quiet_for(self, seconds):
        """Asserts nothing arrives (and TCP stays open) for `seconds`."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        assert False, f"unexpected bytes or EOF: {chunk!r}"

    def echo(self, payload, opcode=OP_TEXT, timeout=DEFAULT_TIMEOUT):
        """Sends one message and asserts it comes back unchanged."""
        self.send_frame(opcode, payload)
        ev = self.recv_data(timeout)
        assert ev.opcode == opcode and ev.data == payload, \
            f"echo mismatch: sent {len(payload)} bytes op {opcode}, got {ev}"
        return ev

    def close_handshake(self, code=1000, timeout=DEFAULT_TIMEOUT):
        """Client-initiated close: sends `code`, expects it echoed (empty
        payload allowed when we sent none) and the server to close TCP."""
        self.send_close(code)
        ev = self.expect_close(None, timeout)
        if code is None:
            assert ev.code in (None, 1000), ev
        else:
            assert ev.code == code, ev
        assert self.wait_eof(timeout), "server did not close TCP"
        return ev
