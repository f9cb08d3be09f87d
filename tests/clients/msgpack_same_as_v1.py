"""A MessagePack client (msgpack-python, the reference implementation, with the
`websockets` client) and a protocol v1 JSON client on the same channel must receive the
same messages, offsets included.

usage: msgpack_same_as_v1.py WS_BASE HTTP_BASE PUBLISH_KEY CHANNEL COUNT
Prints "N messages identical" and exits 0, or prints the first difference and exits 1.
"""
import asyncio
import json
import sys
import urllib.request

import msgpack
import websockets

WAIT = 10


async def next_frame(ws, binary):
    while True:
        frame = await asyncio.wait_for(ws.recv(), WAIT)
        if isinstance(frame, bytes) != binary:
            raise SystemExit(f"expected a {'binary' if binary else 'text'} frame, got {frame!r}")
        return msgpack.unpackb(frame, raw=False) if binary else json.loads(frame)


async def main():
    ws_base, http_base, key, channel, count = sys.argv[1:6]
    count = int(count)
    mp = await websockets.connect(f"{ws_base}/ws?format=msgpack&channels={channel}")
    js = await websockets.connect(f"{ws_base}/ws?channels={channel}")
    for ws, binary in ((mp, True), (js, False)):
        welcome = await next_frame(ws, binary)
        assert welcome["type"] == "welcome", welcome
        subscribed = await next_frame(ws, binary)
        assert subscribed["type"] == "subscribed", subscribed
        assert subscribed["channels"][0]["channel"] == channel, subscribed
    # A command on the MessagePack connection is answered in MessagePack.
    await mp.send(json.dumps({"op": "ping", "id": 7}))
    pong = await next_frame(mp, True)
    assert pong == {"type": "pong", "id": 7}, pong

    for i in range(count):
        data = {
            "symbol": "BTC-USD", "price": 43250.5 + i, "qty": i, "neg": -7 - i,
            "big": 18446744073709551615, "side": "buy" if i % 2 else "sell",
            "tags": ["a", "é", None, True, False, 1.25e-7], "nested": {"z": 1, "a": [[], {}]},
        }
        req = urllib.request.Request(
            f"{http_base}/publish/{channel}", data=json.dumps(data).encode(),
            headers={"Authorization": f"Bearer {key}"}, method="POST")
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            assert r.status == 200, r.status

    got_mp = [await next_frame(mp, True) for _ in range(count)]
    got_js = [await next_frame(js, False) for _ in range(count)]
    for i, (a, b) in enumerate(zip(got_mp, got_js)):
        if a != b or a["type"] != "message" or a["offset"] != i + 1:
            print(f"message {i} differs:\n msgpack {a!r}\n json    {b!r}")
            sys.exit(1)
    # Key order is the publisher's, as in the JSON envelope.
    if list(got_mp[0]["data"]) != list(got_js[0]["data"]) or list(got_mp[0]) != list(got_js[0]):
        print(f"key order differs: {list(got_mp[0]['data'])} vs {list(got_js[0]['data'])}")
        sys.exit(1)
    await mp.close()
    await js.close()
    print(f"{count} messages identical")


asyncio.run(main())
