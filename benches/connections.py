#!/usr/bin/env python3
"""Resident memory per idle connection: opens COUNT connections to a gateway, sends one
ApiVersions request on each (what every client sends first) and reads its answer, then
leaves them idle and reads the gateway's resident set size (VmRSS) from /proc.

    benches/connections.py PID HOST:PORT COUNT [HOLD_UNTIL]

Prints "connections rss_before_kib rss_after_kib kib_per_connection". With HOLD_UNTIL (a
path), keeps the connections open until that file exists, so that a load can run beside
them. The connections come
from 127.0.0.1 to 127.0.0.255 in turn, so that more of them fit than one source address's
ephemeral ports allow. Only the standard library is used.
"""

import os
import selectors
import socket
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def api_versions(correlation_id):
    client_id = b"footprint"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def main():
    pid = int(sys.argv[1])
    host, port = sys.argv[2].rsplit(":", 1)
    count = int(sys.argv[3])
    before = rss_kib(pid)
    sel = selectors.DefaultSelector()
    socks = []
    waiting = {}
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.0.{1 + i % 255}", 0))
        s.connect((host, int(port)))
        s.sendall(api_versions(i))
        s.setblocking(False)
        socks.append(s)
        waiting[s.fileno()] = (s, bytearray())
        sel.register(s, selectors.EVENT_READ)
        # Keep the backlog short: read answers as they come.
        if len(waiting) >= 256 or i == count - 1:
            drain(sel, waiting, 0 if i == count - 1 else 256)
    # Let the gateway settle (its allocator returns freed memory lazily).
    time.sleep(2)
    after = rss_kib(pid)
    print(f"{count} {before} {after} {(after - before) / count:.1f}", flush=True)
    if len(sys.argv) > 4:
        while not os.path.exists(sys.argv[4]):
            time.sleep(0.1)
    for s in socks:
        s.close()


def drain(sel, waiting, leave):
    while len(waiting) > leave:
        for key, _ in sel.select(timeout=10):
            s, got = waiting[key.fd]
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("gateway closed a connection")
            got += chunk
            if len(got) >= 4 and len(got) >= 4 + struct.unpack(">i", got[:4])[0]:
                sel.unregister(s)
                del waiting[key.fd]


if __name__ == "__main__":
    main()
