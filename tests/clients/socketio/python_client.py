"""python-socketio's client (PyPI; its own Engine.IO implementation) against tickrelay:
the cases of scenario.mjs. argv[1] is the control server (tests/socketio.rs), argv[2]
the mode: `default` (polling, then the upgrade) or `websocket`."""

import json
import sys
import time
import urllib.request

import socketio

base = sys.argv[1]
mode = sys.argv[2] if len(sys.argv) > 2 else "default"


def log(m):
    print(f"python {mode}: {m}", flush=True)


def check(cond, what):
    if not cond:
        raise AssertionError("FAILED: " + what)


def wait_for(pred, what, secs=10.0):
    end = time.time() + secs
    while not pred():
        if time.time() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


def post(path, body=b""):
    req = urllib.request.Request(base + path, data=body, method="POST")
    with urllib.request.urlopen(req) as r:
        return r.read().decode()


def publish(channel, data):
    post("/publish/" + urllib.parse.quote(channel), json.dumps(data).encode())


cfg = json.load(urllib.request.urlopen(base + "/config"))
transports = ["websocket"] if mode == "websocket" else ["polling", "websocket"]
sio = socketio.Client(reconnection_delay=0.2, reconnection_delay_max=1)
events = {}
connects = []
disconnects = []


@sio.on("*")
def any_event(event, *args):
    events.setdefault(event, []).append(args[0] if args else None)


@sio.event
def connect():
    connects.append(1)


@sio.event
def disconnect(*reason):
    disconnects.append(reason)


sio.connect(cfg["url"], transports=transports, wait_timeout=10)
wait_for(lambda: "connection_status" in events, "connection_status")
check(events["connection_status"][0]["status"] == "connected", "status connected")
wait_for(lambda: sio.transport() == "websocket", "the websocket transport")
log("connected over " + sio.transport())

sio.emit("subscribe", {"symbols": ["BTC", "ETH"]})
wait_for(lambda: "subscription_confirmed" in events, "subscription_confirmed")
check(events["subscription_confirmed"][0]["symbols"] == ["BTC", "ETH"], "confirmed BTC, ETH")
ack = sio.call("subscribe", ["ADA"], timeout=5)
check(ack["symbols"] == ["ADA"], "the ack carries ADA: %r" % (ack,))
check(sio.call("ping", timeout=5) == {}, "ping acked")
log("subscribed both ways, ack round trip")

tick = {"symbol": "BTC", "price": 45234.56, "change_24h": 2.45, "volume_24h": 28500000,
        "timestamp": "2024-01-15T10:30:00.000Z"}
publish("ticker:BTC", tick)
wait_for(lambda: "market_update" in events, "market_update")
check(events["market_update"][0] == {"BTC": tick}, "market_update equals: %r" % events["market_update"][0])
signal = {"symbol": "BTC", "signal": "BUY", "strength": 0.85, "reason": "momentum"}
publish("signals", signal)
wait_for(lambda: "trading_signal" in events, "trading_signal")
check(events["trading_signal"][0] == signal, "trading_signal equals")
mood = {"overall_sentiment": "BULLISH", "market_fear_greed": 72, "trending_topics": ["bitcoin"]}
publish("sentiment", mood)
wait_for(lambda: "sentiment_update" in events, "sentiment_update")
check(events["sentiment_update"][0] == mood, "sentiment_update equals")
log("market_update, trading_signal, sentiment_update equal the published data")

publish("ticker:SOL", {"symbol": "SOL", "price": 101})
sio.emit("subscribe", "SOL")
wait_for(lambda: any("SOL" in m for m in events["market_update"]), "the last value of SOL")
un = sio.call("unsubscribe", {"symbols": ["ADA"]}, timeout=5)
check(un["symbols"] == ["ADA"], "unsubscribed ADA")
publish("ticker:ADA", {"symbol": "ADA", "price": 1})
time.sleep(0.3)
check(not any("ADA" in m for m in events["market_update"]), "no ADA after unsubscribe")
check("error" not in events, "no error events: %r" % events.get("error"))
log("last value after subscribe, unsubscribe")

time.sleep(cfg["heartbeat_ms"] * 3 / 1000 + 0.3)
check(not disconnects and sio.connected, "disconnected: %r" % disconnects)
log("survived 3 ping intervals")

check(int(post("/cut")) >= 1, "a socket was cut")
wait_for(lambda: len(connects) == 2, "the reconnect", 15)
check(len(disconnects) == 1, "one disconnect: %r" % disconnects)
events["market_update"] = []
sio.call("subscribe", ["BTC"], timeout=5)
publish("ticker:BTC", {"symbol": "BTC", "price": 1})
wait_for(lambda: any(m.get("BTC", {}).get("price") == 1 for m in events["market_update"]),
         "BTC after the reconnect")
log("reconnected after the relay dropped the connection")
sio.disconnect()

other = socketio.Client(reconnection=False)
try:
    other.connect(cfg["url"], namespaces=["/admin"], transports=transports, wait_timeout=5)
    raise AssertionError("FAILED: /admin was accepted")
except socketio.exceptions.ConnectionError as e:
    log("wrong namespace: connect_error %s" % e)
finally:
    other.disconnect()
log("ALL CASES PASSED")
