#!/usr/bin/env python3
"""Reference echo server for validating the Autobahn harness itself.

Not part of tickrelay: it exists so run.sh can be checked against a
mature implementation (`pip install websockets`, then
`run.sh --server-cmd "python3 tests/autobahn/echo_reference.py {port}"`).
Settings mirror what tickrelay's --echo mode is meant to offer: no
permessage-deflate, 16 MiB message limit, no server-initiated pings.

Expected result with websockets 17.4: 289 passed, 12 failed. The 12 are
websockets' own design choices, not harness faults: 11 NON-STRICT (3.2,
3.3, 4.1.3, 4.1.4, 4.2.3, 4.2.4, 5.15: it fails the connection before
echoing the valid message queued ahead of the bad frame; 6.4.1-6.4.4: it
checks UTF-8 at message end, not fail-fast) and 7.1.5 (it answers a Close
inside a fragmented message with 1002 instead of 1000).
"""
import asyncio
import os
import sys

# websockets >= 15 fails messages of more than 4096 fragments with 1009
# (DoS guard); cases 9.3.x/9.4.x send 4 MiB in 64..256-byte fragments.
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(port):
    async with serve(
        echo,
        "127.0.0.1",
        port,
        compression=None,
        max_size=16 * 1024 * 1024,
        ping_interval=None,
        # Case 9.* pushes 16 MiB messages through; don't throttle reads.
        max_queue=None,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9001))
