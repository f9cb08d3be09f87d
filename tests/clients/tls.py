"""The native protocol over TLS with real clients: Python's `ssl`, `http.client` and
Debian's `websockets`, trusting only the test CA (tests/keys/tls_ca.pem).

usage: tls.py PORT CA PUBLISH_KEY ALICE_TOKEN
Checks, against a relay on 127.0.0.1:PORT serving tests/keys/tls_a.pem for `localhost`:
TLS 1.2 and 1.3 each with ALPN http/1.1; a client offering only h2 refused; wss
subscribe, publish over https and over wss, delivery, GET /history over https; JWT auth
(an anonymous subscribe to a private channel refused, the owner's token accepted, a
private publish delivered to its owner only, /history of it 401 without the token).
Prints one line per case and "ALL TLS CASES PASSED".
"""
import asyncio
import http.client
import json
import socket
import ssl
import sys

import websockets

PORT, CA, KEY, ALICE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
HOST = "localhost"


def context(version=None, alpn=("http/1.1",)):
    ctx = ssl.create_default_context(cafile=CA)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def handshake(ctx):
    with socket.create_connection(("127.0.0.1", int(PORT)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HOST) as s:
            return s.version(), s.selected_alpn_protocol(), dict(x[0] for x in s.getpeercert()["subject"])


def https(method, path, body=None, token=None):
    c = http.client.HTTPSConnection(HOST, int(PORT), context=context(), timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    out = (r.status, r.read().decode())
    c.close()
    return out


async def recv_type(ws, want):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if m["type"] == want:
            return m
        assert m["type"] in ("welcome", "subscribed"), m


async def main():
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        got, alpn, subject = handshake(context(version))
        assert (got, alpn) == (name, "http/1.1"), (got, alpn)
        assert subject["commonName"] == "tickrelay test server A", subject
        print(f"{name} with ALPN http/1.1: ok", flush=True)
    try:
        handshake(context(alpn=("h2",)))
        raise AssertionError("an h2-only client was accepted")
    except ssl.SSLError as e:
        assert "no application protocol" in str(e).lower(), e
    print("h2-only client refused with no_application_protocol: ok", flush=True)

    base = f"wss://{HOST}:{PORT}/ws"
    ctx = context()
    async with websockets.connect(f"{base}?channels=signals", ssl=ctx, ping_interval=None) as sub:
        await recv_type(sub, "subscribed")
        status, body = https("POST", "/publish/signals", json.dumps({"n": 1}), KEY)
        assert status == 200, (status, body)
        m = await recv_type(sub, "message")
        assert (m["channel"], m["data"], m["offset"]) == ("signals", {"n": 1}, 1), m
        async with websockets.connect(f"{base}?token={KEY}", ssl=ctx, ping_interval=None) as pub:
            await pub.send(json.dumps({"op": "publish", "channel": "signals", "data": {"n": 2}, "id": 7}))
            reply = await recv_type(pub, "published")
            assert (reply["id"], reply["offset"]) == (7, 2), reply
        m = await recv_type(sub, "message")
        assert (m["data"], m["offset"]) == ({"n": 2}, 2), m
    print("wss subscribe, publish over https and wss, delivery: ok", flush=True)

    status, body = https("GET", "/history/signals?limit=5")
    assert status == 200, (status, body)
    history = json.loads(body)
    assert [m["data"]["n"] for m in history["messages"]] == [1, 2], history
    print("GET /history over https: ok", flush=True)

    async with websockets.connect(base, ssl=ctx, ping_interval=None) as anon:
        await recv_type(anon, "welcome")
        await anon.send(json.dumps({"op": "subscribe", "channels": ["user:alice"], "id": "s"}))
        err = await recv_type(anon, "error")
        assert err["code"] == "unauthorized", err
    async with websockets.connect(f"{base}?token={ALICE}", ssl=ctx, ping_interval=None) as alice:
        await recv_type(alice, "welcome")
        await alice.send(json.dumps({"op": "subscribe", "channels": ["user:alice"], "id": "s"}))
        await recv_type(alice, "subscribed")
        status, _ = https("POST", "/publish/user:alice", json.dumps({"fill": 3}), KEY)
        assert status == 200, status
        m = await recv_type(alice, "message")
        assert (m["channel"], m["data"]) == ("user:alice", {"fill": 3}), m
    assert https("GET", "/history/user:alice")[0] == 401
    status, body = https("GET", "/history/user:alice", token=ALICE)
    assert status == 200 and json.loads(body)["messages"][0]["data"] == {"fill": 3}, (status, body)
    print("JWT auth over TLS: ok", flush=True)
    print("ALL TLS CASES PASSED", flush=True)


asyncio.run(main())
