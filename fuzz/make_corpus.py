#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/<name>, from readable recipes.

Run from anywhere: `python3 fuzz/make_corpus.py`. It deletes and rewrites only the
seeds it names, so inputs added by hand (or minimized crash reproducers) stay. The input
layouts are the ones documented on each function in src/fuzzing.rs.
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(fin, opcode, payload, mask=b"\x12\x34\x56\x78", declared=None, rsv=0):
    """A client frame. `mask=None` sends it unmasked; `declared` overrides the length
    field (for headers that claim more than is sent)."""
    n = len(payload) if declared is None else declared
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n <= 0xFFFF:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(s, **kw):
    return frame(True, TEXT, s.encode() if isinstance(s, str) else s, **kw)


def close(code, reason=b""):
    return frame(True, CLOSE, struct.pack(">H", code) + reason)


COMMANDS = {
    "subscribe": '{"op":"subscribe","channels":["ticker:BTC-USD","signals"],"id":1}',
    "subscribe-one": '{"op":"subscribe","channel":"alerts","id":"s"}',
    "subscribe-batch": '{"op":"subscribe","channels":["a","b","c","d","a","user:x@y.z","notes/1#2"],"id":2}',
    "unsubscribe": '{"op":"unsubscribe","channels":["signals"],"id":3}',
    "publish": '{"op":"publish","channel":"ticker:BTC-USD","data":{"price":43250.5,"q":[1,2]},"id":4}',
    "publish-scalar": '{"id":-7,"op":"publish","channel":"t","data": "x\\"y\\u00e9" }',
    "publish-escaped-key": '{"op":"publish","channel":"t","d\\u0061ta":1}',
    "publish-dup-data": '{"op":"publish","channel":"t","data":1,"data":2}',
    "auth": '{"op":"auth","token":"k\\n\\u0000","id":"a\\"b"}',
    "ping": '{"op":"ping","id":18446744073709551615}',
    "ping-neg": '{"op":"ping","id":-9223372036854775808,"x":[{}]}',
    "unknown-op": '{"op":"nope","id":5}',
    "bad-channel": '{"op":"subscribe","channels":["no spaces"]}',
    "not-object": '[1,2,3]',
    "deep": '{"op":"publish","channel":"c","data":' + "[" * 40 + "]" * 40 + "}",
    "unicode": '{"op":"subscribe","channels":["caf\u00e9"],"id":"\u20ac"}',
}

PUBLISH = {
    # byte 0: limits (low 2 bits: max data 0/1/16/64K; next 2: max items 1/2/3/10000)
    "single": b"\x0f" + b' {"price": 1.50}\n',
    "single-string": b"\x0f" + b'"a\\"b"',
    "batch": b"\x0f"
    + b'{"channel":"a","data":{"x":1.0}}\n\n{"data":[1],"channel":"b:c"}\r\n',
    "batch-bad-line": b"\x0f" + b'{"channel":"a","data":1}\n{"channel":"no spaces","data":1}\n',
    "batch-too-many": b"\x03" + b'{"channel":"a","data":1}\n{"channel":"a","data":2}',
    "batch-trailing": b"\x0f" + b'{"channel":"a","data":1} x\n',
    "batch-nested-data-key": b"\x0f" + b'{"channel":"a","x":{"data":2},"data":3}',
    "channel-name": b"\x0f" + b"ticker:BTC-USD",
    "channel-alphabet": b"\x0f" + b"AZaz09_.:@/#-",
    "channel-128": b"\x0f" + b"x" * 128,
    "channel-129": b"\x0f" + b"x" * 129,
}

# read_path: byte 0 flags (1 echo, 2 publish key set, 4|8 message limit 16/125/126/1024,
# 16 small queue, 32 raw, 64 publisher, 128 pre-subscribed); byte 1 write size (0: one
# write); then the client's bytes.
RELAY_1024 = 0x0C
PUBLISHER = 0x02 | 0x40
EURO = "\u20ac".encode()
frag_cmd = '{"op":"ping","id":"frag\u20ac"}'.encode()
cut = frag_cmd.index(EURO[0]) + 1

READ_PATH = {
    "ping": (RELAY_1024, 0, text('{"op":"ping","id":1}')),
    "subscribe-then-close": (
        RELAY_1024,
        0,
        text('{"op":"subscribe","channels":["a","b","c"],"id":1}')
        + text('{"op":"unsubscribe","channel":"b"}')
        + close(1000, b"bye"),
    ),
    "publish-to-self": (
        RELAY_1024 | PUBLISHER,
        0,
        text('{"op":"subscribe","channels":["t"]}')
        + text('{"op":"publish","channel":"t","data":{"p":1},"id":9}')
        + text('{"op":"publish","channel":"t","data":[' + "1," * 200 + "1]}"),
    ),
    "publish-raw-presubscribed": (
        RELAY_1024 | PUBLISHER | 0x20 | 0x80,
        0,
        text('{"op":"publish","channel":"a","data":"x"}'),
    ),
    "auth": (
        RELAY_1024 | 0x02,
        0,
        text('{"op":"auth","token":"k","id":1}')
        + text('{"op":"publish","channel":"c","data":null}'),
    ),
    "too-many-subscriptions": (
        RELAY_1024,
        0,
        text('{"op":"subscribe","channels":["a","b","c","d","e"]}')
        + text('{"op":"subscribe","channels":["a","b","c","d"]}')
        + text('{"op":"subscribe","channels":["e"]}'),
    ),
    "fragmented-utf8-split": (
        RELAY_1024,
        0,
        frame(False, TEXT, frag_cmd[:cut])
        + frame(True, PING, b"hi")
        + frame(False, CONT, frag_cmd[cut : cut + 1])
        + frame(True, PONG, b"")
        + frame(True, CONT, frag_cmd[cut + 1 :]),
    ),
    "fragmented-byte-writes": (
        RELAY_1024,
        1,
        frame(False, TEXT, frag_cmd[:cut]) + frame(True, CONT, frag_cmd[cut:]),
    ),
    "unmasked": (RELAY_1024, 0, text('{"op":"ping"}', mask=None) + close(1000)),
    "len-125": (RELAY_1024, 0, text('{"op":"ping","p":"' + "x" * 106 + '"}')),
    "len-126": (RELAY_1024, 0, text('{"op":"ping","p":"' + "x" * 107 + '"}')),
    "len-126-limit-125": (0x04, 0, text('{"op":"ping","p":"' + "x" * 107 + '"}')),
    "len-65535-header": (RELAY_1024, 0, frame(True, TEXT, b"{}", declared=65535)),
    "len-65536-header": (RELAY_1024, 0, frame(True, TEXT, b"{}", declared=65536)),
    "len-64MiB-header": (RELAY_1024, 0, frame(True, TEXT, b"", declared=64 << 20)),
    "len-top-bit": (RELAY_1024, 0, frame(True, TEXT, b"", declared=1 << 63)),
    "ping-126": (RELAY_1024, 0, frame(True, PING, b"p" * 126)),
    "fragmented-ping": (RELAY_1024, 0, frame(False, PING, b"")),
    "continuation-first": (RELAY_1024, 0, frame(True, CONT, b"x")),
    "text-mid-fragment": (RELAY_1024, 0, frame(False, TEXT, b"a") + text("b")),
    "over-limit-fragments": (
        0x00,
        0,
        frame(False, TEXT, b"{" + b" " * 10) + frame(True, CONT, b" " * 10 + b"}"),
    ),
    "invalid-utf8": (RELAY_1024, 0, text(b'{"op":"ping\xff"}')),
    "binary": (RELAY_1024, 0, frame(True, BINARY, b"{}")),
    "reserved-bit": (RELAY_1024, 0, text("{}", rsv=4)),
    "reserved-opcode": (RELAY_1024, 0, frame(True, 0x3, b"")),
    "close-1-byte": (RELAY_1024, 0, frame(True, CLOSE, b"\x03")),
    "close-1005": (RELAY_1024, 0, close(1005)),
    "close-4000-reason": (RELAY_1024, 0, close(4000, EURO * 3)),
    "close-bad-utf8": (RELAY_1024, 0, close(1000, b"\xff")),
    "echo-binary-fragments": (
        0x01 | 0x0C,
        3,
        frame(False, BINARY, b"\x00\xff")
        + frame(True, PING, b"x")
        + frame(True, CONT, b"\x01")
        + text("not json")
        + close(1000),
    ),
    "slow-queue": (
        RELAY_1024 | 0x10,
        0,
        b"".join(text('{"op":"ping","id":%d}' % i) for i in range(40)),
    ),
}

UPGRADE_OK = (
    "GET /ws?channels=ticker%3ABTC-USD,signals&format=raw HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)


def without(line):
    return UPGRADE_OK.replace(line + "\r\n", "")


UPGRADE = {
    "rfc-example": UPGRADE_OK,
    "lowercase": UPGRADE_OK.lower().replace("dghlihnhbxbszsbub25jzq==", "dGhlIHNhbXBsZSBub25jZQ=="),
    "no-host": without("Host: example.com"),
    "two-hosts": UPGRADE_OK.replace("Host: example.com\r\n", "Host: a\r\nHost: b\r\n"),
    "no-connection": without("Connection: keep-alive, Upgrade"),
    "no-upgrade": without("Upgrade: websocket"),
    "no-key": without("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
    "two-keys": UPGRADE_OK.replace(
        "Sec-WebSocket-Version", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version"
    ),
    "key-noncanonical": UPGRADE_OK.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZR=="),
    "key-short": UPGRADE_OK.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
    "version-8": UPGRADE_OK.replace("Version: 13", "Version: 8"),
    "version-list": UPGRADE_OK.replace("Version: 13", "Version: 13, 8"),
    "post": UPGRADE_OK.replace("GET", "POST", 1),
    "http10": UPGRADE_OK.replace("HTTP/1.1", "HTTP/1.0", 1),
    "tabs": UPGRADE_OK.replace("keep-alive, Upgrade", "\tkeep-alive,\tUPGRADE\t"),
    "obs-text": UPGRADE_OK.replace("keep-alive, Upgrade", "Upgrade, caf\u00e9"),
    "bad-query": UPGRADE_OK.replace("format=raw", "channels=a%zz,b c&format=xml"),
}

# frame_encode: kind byte (low 3 bits: frame/raw/message/close/pong/replies; bits 3-6 the
# opcode for `frame`; top 2 bits the length class: ~125/126, ~65535/65536, any, rest),
# offset (8 bytes LE), ts (8), channel length (1) and bytes, length selector (3), seed.
def fe(kind, length_sel, seed=b"x", offset=1046, ts=1732270000123, channel=b"ticker:BTC-USD"):
    return (
        bytes([kind])
        + struct.pack("<QQ", offset, ts)
        + bytes([len(channel)])
        + channel
        + struct.pack("<I", length_sel)[:3]
        + seed
    )


FRAME_ENCODE = {
    "text-125": fe(0 << 6 | 1 << 3 | 0, 125),
    "text-126": fe(0 << 6 | 1 << 3 | 0, 126),
    "binary-0": fe(0 << 6 | 2 << 3 | 0, 0),
    "raw-65535": fe(1 << 6 | 1, 63),
    "raw-65536": fe(1 << 6 | 1, 64),
    "message-big": fe(2 << 6 | 2, 69_999, seed=b'{"p":1}'),
    "message-rest": fe(3 << 6 | 2, 0, seed=b'{"price":43250.50}'),
    "close-cut-utf8": fe(0 << 6 | 3, 200, seed=EURO, offset=1008),
    "pong-125": fe(0 << 6 | 4, 125),
    "replies": fe(3 << 6 | 5, 0, seed=b'bad "quote" \\ \n\x01'),
    "replies-no-id": fe(3 << 6 | 8 | 6, 0, seed=b"x", offset=(1 << 64) - 1),
}


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# token: arbitrary JWTs (all refused: expired, wrong key, alg none, string exp, wrong
# algorithm, malformed) and, for the signed-then-tampered half, a first byte that picks
# the tampered position and a `sub`.
TOKEN_SECRET = b"fuzz-jwt-secret-of-a-decent-length"


def _b64(x):
    import base64
    return base64.urlsafe_b64encode(x).rstrip(b"=")


def _jwt(header, claims, key=TOKEN_SECRET):
    import hashlib, hmac, json
    signing_input = _b64(json.dumps(header).encode()) + b"." + _b64(json.dumps(claims).encode())
    return signing_input + b"." + _b64(hmac.new(key, signing_input, hashlib.sha256).digest())


FUTURE = 4102444800  # 2100-01-01
TOKEN = {
    "expired": _jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "42", "exp": 1000}),
    "wrong-key": _jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "42", "exp": FUTURE}, b"other"),
    "alg-none": _b64(b'{"alg":"none"}') + b"." + _b64(('{"sub":"42","exp":%d}' % FUTURE).encode()) + b".",
    "string-exp": _jwt({"alg": "HS256"}, {"sub": "42", "exp": str(FUTURE)}),
    "rs256-header": _jwt({"alg": "RS256"}, {"sub": "42", "exp": FUTURE}),
    "two-dots": b"a.b",
    "empty": b"",
    "sub-plain": b"\x05user-42",
    "sub-unicode": "\x09\u00e9\u4e2d#7".encode(),
}


# Socket.IO long-polling bodies: Engine.IO packets joined by 0x1e (src/fuzzing/socketio.rs).
SOCKETIO = {
    "connect_subscribe_pong": '40\x1e42["subscribe",{"symbols":["BTC","ETH"]}]\x1e3',
    "ack_list_and_string": '421["subscribe",["ADA"]]\x1e4222["unsubscribe","ADA"]\x1e427["ping"]',
    "auth_and_namespace": '40{"token":"abc"}\x1e40/admin,{"token":"t"}\x1e41',
    "binary_and_probe": '451-["x",{"_placeholder":true,"num":0}]\x1e2probe\x1e5\x1e6',
    "crs_data": '{"symbol":"BTC","price":45234.56,"change_24h":2.45}',
}


def main():
    for name, data in TOKEN.items():
        write("token", name, data)
    for name, cmd in COMMANDS.items():
        write("command", name, cmd)
    for name, body in PUBLISH.items():
        write("publish", name, body)
    for name, (flags, cut_at, stream) in READ_PATH.items():
        write("read_path", name, bytes([flags, cut_at]) + stream)
    for name, head in UPGRADE.items():
        write("upgrade", name, head)
    for name, data in FRAME_ENCODE.items():
        write("frame_encode", name, data)
    for name, body in SOCKETIO.items():
        write("socketio", name, body)


if __name__ == "__main__":
    main()
