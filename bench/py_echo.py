#!/usr/bin/env python3
"""A Python `websockets` echo server for bench/wsclient.sh (Debian's
python3-websockets). Prints "listening on http://HOST:PORT".

    py_echo.py PORT
"""
import asyncio
import sys

import websockets


async def echo(ws, path=None):
    async for msg in ws:
        await ws.send(msg)


async def main(port):
    async with websockets.serve(echo, "127.0.0.1", port, compression=None,
                                max_size=None):
        print(f"py_echo: listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
