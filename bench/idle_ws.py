#!/usr/bin/env python3
"""Bytes per idle connection: opens N connections to URL, and on each
either upgrades to a WebSocket (ws://, wss://) or makes one keep-alive
GET and reads its response (http://, https://); keeps them idle and
prints the server's RSS growth per connection (VmRSS of PID from /proc,
before and after, after a settle pause). Used by bench/tls.sh for talon
and Bun, plain and TLS. An HTTP server closes idle keep-alive connections
(talon after 5 s by default): keep N and --settle small enough that the
first connection is still open when RSS is read (the script checks).

    idle_ws.py PID URL [N=10000] [--cafile CA] [--settle S=2]
"""
import argparse
import asyncio
import base64
import os
import ssl
import sys
import time
from urllib.parse import urlparse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def one(host, port, path, ctx, sem, http):
    # A server at its connection limit refuses a few while upgrades are
    # in flight (the HTTP block is freed a loop turn after the socket
    # moved): retry those.
    for attempt in range(3):
        try:
            return await one_try(host, port, path, ctx, sem, http)
        except ConnectionResetError:
            if attempt == 2:
                raise
            await asyncio.sleep(0.5)


async def one_try(host, port, path, ctx, sem, http):
    async with sem:
        r, w = await asyncio.open_connection(
            host, port, ssl=ctx, server_hostname="localhost" if ctx else None)
        if http:
            w.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                     "\r\n").encode())
            head = await r.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:60])
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":", 1)[1])
            await r.readexactly(n)
            return r, w
        key = base64.b64encode(os.urandom(16)).decode()
        w.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head[:60])
        return r, w


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("url")
    ap.add_argument("n", type=int, nargs="?", default=10000)
    ap.add_argument("--cafile")
    ap.add_argument("--settle", type=float, default=2)
    a = ap.parse_args()
    u = urlparse(a.url)
    http = u.scheme in ("http", "https")
    ctx = None
    if u.scheme in ("wss", "https"):
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False
        if not a.cafile:
            ctx.verify_mode = ssl.CERT_NONE
    time.sleep(0.5)
    before = rss_kib(a.pid)
    sem = asyncio.Semaphore(200)
    t0 = time.monotonic()
    res = await asyncio.gather(*(one(u.hostname, u.port, u.path or "/",
                                     ctx, sem, http) for _ in range(a.n)),
                               return_exceptions=True)
    conns = [c for c in res if not isinstance(c, BaseException)]
    errs = [c for c in res if isinstance(c, BaseException)]
    if errs:
        print(f"{len(errs)} connections failed, e.g. {errs[0]!r}",
              file=sys.stderr)
        return 1
    took = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    after = rss_kib(a.pid)
    # Every connection must still be open (an HTTP server's idle timeout
    # may have closed the first ones): a closed one reads EOF at once.
    gone = sum(1 for r, w in conns if r.at_eof() or w.is_closing())
    if gone:
        print(f"{gone} of {a.n} connections were closed by the server before "
              "RSS was read: lower N or --settle", file=sys.stderr)
        return 1
    per = (after - before) * 1024 / a.n
    print(f"RESULT url={a.url} n={a.n} rss_before_kib={before} "
          f"rss_after_kib={after} bytes_per_conn={per:.0f} "
          f"open_s={took:.1f}")
    for r, w in conns:
        w.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
