#!/usr/bin/env python3
"""One WebSocket upgrade against the server under test, before the suite runs.

Usage: probe.py PORT PATH

A wrong path or a broken handshake would otherwise show up only as every case
failing with "The WebSocket opening handshake was never completed!". Exits 0
on a 101 answer (then sends a masked close 1000), else prints why and exits 1.
"""
import base64
import os
import socket
import sys


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % (path, port, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError as exc:
        print("GET %s failed: %s" % (path, exc))
        return 1
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    if status.split(" ")[1:2] != ["101"]:
        print("GET %s answered %r, not 101" % (path, status or "nothing"))
        return 1
    try:
        s.sendall(bytes([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]))  # close 1000
        s.close()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
