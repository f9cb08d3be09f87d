"""A plain subscriber (the `websockets` client) for the fault tests, which stop and
continue this process with SIGSTOP / SIGCONT while the relay keeps publishing.

usage: subscriber.py WS_BASE CHANNEL
Prints "ready" once subscribed, reads until the connection ends, then prints
"closed after N messages" and exits 0.
"""
import asyncio
import json
import sys

import websockets


async def main():
    ws_base, channel = sys.argv[1:3]
    # No client-side keepalive: whatever ends this connection is the relay's doing.
    async with websockets.connect(f"{ws_base}/ws?channels={channel}", ping_interval=None) as ws:
        while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "subscribed":
            pass
        print("ready", flush=True)
        n = 0
        try:
            async for _ in ws:
                n += 1
        except websockets.ConnectionClosed:
            pass
    print(f"closed after {n} messages", flush=True)


asyncio.run(main())
