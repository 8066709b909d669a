#!/usr/bin/env python3
"""Records an Iggy conversation for golden tests: a TCP proxy that forwards one client
connection to an Iggy server and writes what each side sent to OUT_DIR/client.bin and
OUT_DIR/server.bin.

usage: record_iggy.py LISTEN_PORT SERVER_HOST:SERVER_PORT OUT_DIR

Run the gateway with --iggy iggy://USER:PASS@127.0.0.1:LISTEN_PORT --iggy-connections 1,
drive it with a Kafka client, stop it: the files hold that one connection's bytes. (Used to
make iggy-backend/tests/data/; see iggy-backend/src/tests/recorded.rs.)
"""
import os
import socket
import sys
import threading


def pump(src, dst, out):
    with open(out, "wb") as f:
        while True:
            data = src.recv(65536)
            if not data:
                break
            f.write(data)
            f.flush()
            dst.sendall(data)
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main():
    port, server, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    host, sport = server.rsplit(":", 1)
    os.makedirs(out_dir, exist_ok=True)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    client, _ = listener.accept()
    upstream = socket.create_connection((host, int(sport)))
    a = threading.Thread(target=pump, args=(client, upstream, os.path.join(out_dir, "client.bin")))
    b = threading.Thread(target=pump, args=(upstream, client, os.path.join(out_dir, "server.bin")))
    a.start()
    b.start()
    a.join()
    b.join()


if __name__ == "__main__":
    main()
