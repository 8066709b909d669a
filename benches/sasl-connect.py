#!/usr/bin/env python3
"""A reconnect storm: N new connections, each authenticated with SASL, then closed.

Speaks the Kafka protocol over plain sockets (Python's standard library only), so the
client's own cost stays small next to the gateway's: per connection, a TCP connect,
SaslHandshake v1 (key 17) and SaslAuthenticate v2 (key 36, flexible) once for PLAIN or
twice for SCRAM (RFC 5802: client-first, client-final with the proof; the server's
signature is checked), then close. No ApiVersions, no TLS: run it against a
SASL_PLAINTEXT listener to measure authentication alone. --mechanism NONE is the baseline
without SASL, for a PLAINTEXT listener: connect, one ApiVersions v0 request, close.

The SCRAM client salts and iterates the password (PBKDF2, the credential's iterations) for
every connection, as librdkafka and Kafka's Java client do; --cache-salted keeps the
salted password per (salt, iterations) instead, so that the client's PBKDF2 leaves the
machine's cores to the gateway.

With --pid, reads the gateway's CPU time (utime + stime in /proc/PID/stat) before and
after, and prints it per connection (each one authentication). Prints one line:

  MECHANISM N connections C workers: X connections/s, gateway Y CPU-ms per connection, client Z CPU-ms per connection, steal S%

  benches/sasl-connect.py --bootstrap 127.0.0.1:9092 --user bench --password bench-secret \\
      --mechanism SCRAM-SHA-512 -n 1000 -c 2 --pid "$GATEWAY_PID"

benches/sasl-connect.sh starts a gateway and runs it for each mechanism.
"""

import argparse
import base64
import hashlib
import hmac
import os
import socket
import struct
import sys
import threading
import time


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_uvarint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


class Conn:
    CLIENT_ID = b"sasl-connect"

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.correlation = 0

    def close(self):
        self.sock.close()

    def recv_exact(self, n):
        chunks = []
        while n:
            c = self.sock.recv(n)
            if not c:
                raise ConnectionError("connection closed by the gateway")
            chunks.append(c)
            n -= len(c)
        return b"".join(chunks)

    def request(self, key, version, body, flexible):
        self.correlation += 1
        header = struct.pack(">hhih", key, version, self.correlation, len(self.CLIENT_ID))
        header += self.CLIENT_ID
        if flexible:
            header += b"\x00"  # no tagged fields
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        (size,) = struct.unpack(">i", self.recv_exact(4))
        resp = self.recv_exact(size)
        (correlation,) = struct.unpack(">i", resp[:4])
        if correlation != self.correlation:
            raise ValueError(f"correlation id {correlation}, expected {self.correlation}")
        pos = 4
        if flexible:
            tags, pos = read_uvarint(resp, pos)
            assert tags == 0
        return resp, pos

    def handshake(self, mechanism):
        m = mechanism.encode()
        resp, pos = self.request(17, 1, struct.pack(">h", len(m)) + m, False)
        (error,) = struct.unpack(">h", resp[pos : pos + 2])
        if error:
            raise ValueError(f"SaslHandshake: error {error}")

    def authenticate(self, token):
        body = uvarint(len(token) + 1) + token + b"\x00"
        resp, pos = self.request(36, 2, body, True)
        (error,) = struct.unpack(">h", resp[pos : pos + 2])
        pos += 2
        n, pos = read_uvarint(resp, pos)
        message = resp[pos : pos + n - 1].decode() if n else None
        pos += max(n - 1, 0)
        if error:
            raise ValueError(f"SaslAuthenticate: error {error}: {message}")
        n, pos = read_uvarint(resp, pos)
        return resp[pos : pos + n - 1]


HASHES = {"SCRAM-SHA-256": hashlib.sha256, "SCRAM-SHA-512": hashlib.sha512}


def none(conn, _user, _password, _cache):
    resp, pos = conn.request(18, 0, b"", False)
    (error,) = struct.unpack(">h", resp[pos : pos + 2])
    if error:
        raise ValueError(f"ApiVersions: error {error}")


def plain(conn, user, password, _cache):
    conn.handshake("PLAIN")
    conn.authenticate(b"\x00" + user.encode() + b"\x00" + password.encode())


def scram(mechanism):
    h = HASHES[mechanism]
    name = h().name

    def login(conn, user, password, cache):
        conn.handshake(mechanism)
        nonce = base64.b64encode(os.urandom(24)).decode()
        first_bare = f"n={user},r={nonce}"
        server_first = conn.authenticate(("n,," + first_bare).encode()).decode()
        fields = dict(f.split("=", 1) for f in server_first.split(","))
        if not fields["r"].startswith(nonce):
            raise ValueError("the server's nonce does not extend ours")
        salt, iterations = base64.b64decode(fields["s"]), int(fields["i"])
        key = (salt, iterations)
        salted = cache.get(key) if cache is not None else None
        if salted is None:
            salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)
            if cache is not None:
                cache[key] = salted
        client_key = hmac.new(salted, b"Client Key", h).digest()
        stored_key = h(client_key).digest()
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(stored_key, auth_message, h).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = f"{final_bare},p={base64.b64encode(proof).decode()}"
        server_final = conn.authenticate(final.encode()).decode()
        server_key = hmac.new(salted, b"Server Key", h).digest()
        expected = base64.b64encode(hmac.new(server_key, auth_message, h).digest()).decode()
        if server_final != "v=" + expected:
            raise ValueError(f"bad server signature: {server_final}")

    return login


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def steal_mark():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:9]]
    return cpu[7], sum(cpu)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bootstrap", required=True, help="HOST:PORT of a SASL_PLAINTEXT listener")
    # (or of a PLAINTEXT listener, for NONE)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--mechanism", default="SCRAM-SHA-512", choices=["NONE", "PLAIN", *HASHES])
    p.add_argument("-n", type=int, default=1000, help="connections in all")
    p.add_argument("-c", type=int, default=1, help="workers, each connecting one after another")
    p.add_argument("--pid", type=int, help="the gateway's process id, for its CPU time")
    p.add_argument("--cache-salted", action="store_true", help="salt and iterate once per client")
    a = p.parse_args()
    host, port = a.bootstrap.rsplit(":", 1)
    login = {"NONE": none, "PLAIN": plain}.get(a.mechanism) or scram(a.mechanism)
    hz = os.sysconf("SC_CLK_TCK")
    counter = iter(range(a.n))
    lock = threading.Lock()
    errors = []

    def worker():
        cache = {} if a.cache_salted else None
        while True:
            with lock:
                if next(counter, None) is None or errors:
                    return
            try:
                conn = Conn(host, int(port))
                try:
                    login(conn, a.user, a.password, cache)
                finally:
                    conn.close()
            except Exception as e:  # noqa: BLE001 - reported and stops the run
                errors.append(e)
                return

    # One connection first, so that a wrong setup fails before timing.
    conn = Conn(host, int(port))
    login(conn, a.user, a.password, None)
    conn.close()

    g0 = cpu_ticks(a.pid) if a.pid else 0
    s0 = steal_mark()
    c0 = os.times()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.monotonic()
    c1 = os.times()
    s1 = steal_mark()
    g1 = cpu_ticks(a.pid) if a.pid else 0
    if errors:
        sys.exit(f"{a.mechanism}: {errors[0]!r}")
    rate = a.n / (t1 - t0)
    gateway = f"{(g1 - g0) * 1000 / hz / a.n:.3f}" if a.pid else "?"
    client = ((c1.user - c0.user) + (c1.system - c0.system)) * 1000 / a.n
    steal = (s1[0] - s0[0]) * 100 / max(s1[1] - s0[1], 1)
    print(
        f"{a.mechanism:<13} {a.n} connections {a.c} workers: {rate:7.0f} connections/s, "
        f"gateway {gateway} CPU-ms per connection, client {client:.3f} CPU-ms per connection, steal {steal:.0f}%",
        flush=True,
    )


if __name__ == "__main__":
    main()
