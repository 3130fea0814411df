"""The framing layer shared by the tests' raw WebSocket clients
(tests/ws/wsclient.py, tests/deflate/dclient.py, tests/pubsub/psclient.py):
constants, the two exceptions, the client frame builder, the handshake's
accept value and a buffered reader of server frames. Each client adds its
own handshake options and message-level checks on top (which RSV bits it
allows, how it reassembles and answers)."""
import base64
import hashlib
import os
import socket
import struct
import time

HOST = "127.0.0.1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0, 1, 2
OP_CLOSE, OP_PING, OP_PONG = 8, 9, 10


class Timeout(AssertionError):
    """Nothing arrived in time."""


class Closed(AssertionError):
    """The server closed TCP (EOF or reset) while we expected a frame, or
    (psclient) a close frame arrived: then `code` and `reason` are set."""

    def __init__(self, msg="", code=None, reason=b""):
        super().__init__(msg)
        self.code = code
        self.reason = reason


def mask_bytes(data, key):
    """XOR `data` with the 4-byte `key` (fast for large buffers)."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(
        n, "big")


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True,
                mask_key=None, length=None):
    """Bytes of one client frame. `rsv` is a 3-bit value (4 = RSV1,
    2 = RSV2, 1 = RSV3). `length` overrides the declared payload length
    (the payload bytes are still `payload`)."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    if mask_key is None:
        mask_key = os.urandom(4)
    return head + mask_key + mask_bytes(payload, mask_key)


def new_key():
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    """The Sec-WebSocket-Accept value the server must answer `key` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()
                            ).decode()


def read_head(sock, timeout):
    """Reads up to the end of an HTTP head (a handshake answer); returns
    (head, rest), head with its final CRLF CRLF (Timeout / Closed)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout(f"no complete HTTP head within {timeout}s: {buf!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise Closed(f"connection closed before a complete head: {buf!r}")
        buf += chunk
    i = buf.index(b"\r\n\r\n") + 4
    return buf[:i], buf[i:]


class FrameReader:
    """Reads server frames from `self.sock` through `self.buf` (a
    bytearray holding what arrived after the handshake); sets `self.eof`
    when the server closed TCP. Mixed into each client class."""

    def _fill(self, need, deadline):
        """Waits until `self.buf` holds `need` bytes (Timeout / Closed)."""
        while len(self.buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"timed out waiting for {need} bytes "
                              f"(have {len(self.buf)})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, min(need - len(self.buf),
                                                      1 << 22)))
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError) as e:
                self.eof = True
                raise Closed(f"connection reset: {e}")
            if not chunk:
                self.eof = True
                raise Closed(f"EOF while waiting for {need} bytes "
                             f"(have {len(self.buf)})")
            self.buf += chunk

    def read_frame(self, deadline):
        """One server frame as (fin, rsv, opcode, payload); asserts it is
        unmasked, as server frames must be. The caller checks the rest."""
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frame is masked"
        n = b1 & 0x7F
        hl = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        self._fill(hl, deadline)
        if n == 126:
            n = struct.unpack("!H", self.buf[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", self.buf[2:10])[0]
        self._fill(hl + n, deadline)
        payload = bytes(self.buf[hl:hl + n])
        del self.buf[:hl + n]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload
