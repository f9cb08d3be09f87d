"""The real centrifuge-python SDK (PyPI) against tickrelay: the cases of scenario.mjs.

Usage: python_client.py <control server base URL> (see tests/centrifuge.rs). The control
server tells the WebSocket address (a loopback proxy in front of the relay), mints
tokens, publishes with POST /publish, cuts the proxied sockets and restarts the relay.
Exits non-zero on the first wrong answer.
"""

import asyncio
import json
import sys
import urllib.parse
import urllib.request

from centrifuge import (
    Client,
    ClientEventHandler,
    SubscriptionEventHandler,
)

BASE = sys.argv[1]


def log(m):
    print("python: " + m, flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError("FAILED: " + what)


def _http(method, path, body=b""):
    req = urllib.request.Request(BASE + path, data=body if method == "POST" else None, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


async def http(method, path, body=b""):
    return await asyncio.to_thread(_http, method, path, body)


async def token(sub, ttl):
    return await http("GET", f"/token?sub={sub}&ttl={ttl}")


async def publish(channel, raw):
    return await http("POST", "/publish/" + urllib.parse.quote(channel, safe=""), raw.encode())


async def wait_for(pred, what, secs=10.0):
    end = asyncio.get_running_loop().time() + secs
    while not pred():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.02)


class Counting(ClientEventHandler):
    def __init__(self):
        self.connects = 0

    async def on_connected(self, ctx):
        self.connects += 1


class Recording(SubscriptionEventHandler):
    def __init__(self):
        self.data = []
        self.subscribed = []
        self.unsubscribed = []

    async def on_publication(self, ctx):
        self.data.append(ctx.pub.data)

    async def on_subscribed(self, ctx):
        self.subscribed.append(ctx)

    async def on_unsubscribed(self, ctx):
        self.unsubscribed.append(ctx.code)


async def main():
    cfg = json.loads(await http("GET", "/config"))
    url = cfg["ws"]

    # 1. connect, subscribe, publications equal to the published data, a denied private
    #    channel, unsubscribe.
    events = Counting()
    c = Client(url, events=events, token=await token("alice", 3600),
               min_reconnect_delay=0.1, max_reconnect_delay=1.0, proxy=None)
    await c.connect()
    await c.ready(5)
    log("connected")
    basic = Recording()
    sub = c.new_subscription("signals:BASIC", events=basic)
    await sub.subscribe()
    await sub.ready(5)
    sent = ['{"i":1,"p":43250.5}', '{"s":"two\\nlines","a":[1,2]}', '{\n  "pretty": true\n}', '"plain"']
    for raw in sent:
        await publish("signals:BASIC", raw)
    await wait_for(lambda: len(basic.data) == len(sent), "the basic publications")
    check(basic.data == [json.loads(s) for s in sent], f"publications equal the published data: {basic.data}")
    log(f"publications {len(basic.data)} equal")

    denied = Recording()
    d = c.new_subscription("chat#bob", events=denied)
    await d.subscribe()
    await wait_for(lambda: denied.unsubscribed, "the denial of chat#bob")
    check(denied.unsubscribed[0] == 103, f"denied with 103, got {denied.unsubscribed}")
    own = c.new_subscription("chat#alice", events=Recording())
    await own.subscribe()
    await own.ready(5)
    log("denied 103")

    await sub.unsubscribe()
    await wait_for(lambda: basic.unsubscribed, "unsubscribed")
    await publish("signals:BASIC", '{"after":"unsubscribe"}')
    await asyncio.sleep(0.3)
    check(len(basic.data) == len(sent), "nothing arrives after unsubscribe")
    check(events.connects == 1, f"one connection so far, got {events.connects}")
    log("unsubscribed")

    # 2. recovery across severed connections while publishing goes on.
    rec = Recording()
    r = c.new_subscription("signals:REC", events=rec)
    await r.subscribe()
    await r.ready(5)
    n_total = 60
    for n in range(1, n_total + 1):
        await publish("signals:REC", json.dumps({"n": n}))
        if n in (15, 35):
            await http("POST", "/cut")
        await asyncio.sleep(0.025)
    await wait_for(lambda: len(rec.data) >= n_total, "every publication after the cuts", 20)
    await asyncio.sleep(0.2)
    seen = [d["n"] for d in rec.data]
    check(seen == list(range(1, n_total + 1)), f"every publication once, in order: {seen}")
    again = rec.subscribed[1:]
    check(len(again) >= 2, f"resubscribed after each cut: {len(rec.subscribed)}")
    check(all(s.was_recovering and s.recovered for s in again), f"recovered:true {again}")
    log(f"recovered {len(again)} times, {len(seen)} publications in order")

    # 3. a relay restart: a new epoch, so recovered:false.
    before = len(rec.subscribed)
    await http("POST", "/restart")
    await wait_for(lambda: len(rec.subscribed) > before, "the resubscribe after the restart", 20)
    last = rec.subscribed[-1]
    check(last.was_recovering and not last.recovered, f"after a restart recovered:false {last}")
    await publish("signals:REC", '{"n":"after restart"}')
    await wait_for(lambda: rec.data and rec.data[-1]["n"] == "after restart", "a publication after the restart")
    log("restart: recovered false")
    await c.disconnect()

    # 4. token expiry -> refresh -> the subscription goes on.
    refreshes = 0

    async def get_token():
        nonlocal refreshes
        refreshes += 1
        return await token("carol", 3)

    tev = Counting()
    t = Client(url, events=tev, token=await token("carol", 3), get_token=get_token,
               min_reconnect_delay=0.1, max_reconnect_delay=1.0, proxy=None)
    await t.connect()
    await t.ready(5)
    trec = Recording()
    ts = t.new_subscription("chat#carol", events=trec)
    await ts.subscribe()
    await ts.ready(5)
    await asyncio.sleep(5.5)  # past the first token's exp and the relay's leeway
    await publish("chat#carol", '{"still":"here"}')
    await wait_for(lambda: len(trec.data) == 1, "a publication after the first token expired")
    check(refreshes >= 1, "the SDK refreshed its token")
    check(tev.connects == 1, f"no reconnect for the refresh, got {tev.connects}")
    log(f"refreshed {refreshes} times, subscription continued")
    await t.disconnect()
    log("ALL CASES PASSED")


if __name__ == "__main__":
    asyncio.run(main())
