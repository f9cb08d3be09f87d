"""permessage-deflate with a real client: Python's `websockets`, which offers the
extension by default and then compresses every message it sends.

usage: deflate.py WS_BASE CHANNEL SUBSCRIBERS MESSAGES PUBLISH_KEY
Opens SUBSCRIBERS compressing subscribers of CHANNEL (each checks the relay's
extension answer), publishes one compressed message over WebSocket (the relay must
inflate it), prints "ready", then reads MESSAGES messages on every subscriber
(data {"seq": 1..MESSAGES, ...}) and prints "ok".
"""
import asyncio
import json
import sys

import websockets


async def subscriber(base, channel):
    ws = await websockets.connect(f"{base}/ws?channels={channel}", ping_interval=None)
    ext = ws.response_headers.get("Sec-WebSocket-Extensions", "")
    assert "permessage-deflate" in ext and "server_no_context_takeover" in ext, ext
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "subscribed":
        pass
    return ws


async def main():
    base, channel, subscribers, messages, key = sys.argv[1:6]
    subs = [await subscriber(base, channel) for _ in range(int(subscribers))]
    async with websockets.connect(f"{base}/ws?token={key}", ping_interval=None) as pub:
        data = {"note": "compressed by the client " * 20}
        await pub.send(json.dumps({"op": "publish", "channel": "signals:inflated", "data": data, "id": 1}))
        while True:
            reply = json.loads(await asyncio.wait_for(pub.recv(), 10))
            if reply["type"] == "published":
                break
            assert reply["type"] == "welcome", reply
    print("ready", flush=True)
    for ws in subs:
        for seq in range(1, int(messages) + 1):
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert m["type"] == "message" and m["data"]["seq"] == seq, m
        await ws.close()
    print("ok", flush=True)


asyncio.run(main())
