#!/usr/bin/env python3
"""kcat (librdkafka) against a running gateway, end to end.

usage: kcat_client.py BOOTSTRAP TOPIC   (TOPIC must exist, with several partitions)

kcat sends one header set per run, so each codec's run uses its own headers; keys are
spread over the partitions by librdkafka's partitioner; every seventh value is null
(kcat -Z turns an empty value into null). Consumes with -J and compares exactly.
"""
import json
import subprocess
import sys

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 2000


def expected(i):
    value = None if i % 7 == 0 else "value-%d-%s" % (i, "y" * (i % 53))
    return "key-%d" % i, value


def main(bootstrap, topic):
    for n, codec in enumerate(CODECS):
        lines = []
        for i in range(n * PER_CODEC, (n + 1) * PER_CODEC):
            key, value = expected(i)
            lines.append("%s\t%s" % (key, value or ""))
        subprocess.run(
            ["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-Z",
             "-z", codec, "-H", "codec=%s" % codec, "-H", "run=%d" % n,
             "-X", "linger.ms=20", "-X", "acks=all"],
            input="\n".join(lines) + "\n", text=True, check=True, timeout=120,
        )
    total = PER_CODEC * len(CODECS)
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", topic, "-J", "-e", "-o", "beginning"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    got = {}
    for line in out.splitlines():
        m = json.loads(line)
        if m["key"] in got:
            raise SystemExit("%s consumed twice" % m["key"])
        got[m["key"]] = m
    if len(got) != total:
        raise SystemExit("consumed %d records, expected %d" % (len(got), total))
    partitions = set()
    for i in range(total):
        key, value = expected(i)
        m = got.get(key)
        if m is None:
            raise SystemExit("%s missing" % key)
        if m["payload"] != value:
            raise SystemExit("%s: payload %r, expected %r" % (key, m["payload"], value))
        n = i // PER_CODEC
        want = ["codec", CODECS[n], "run", str(n)]
        if m.get("headers") != want:
            raise SystemExit("%s: headers %r, expected %r" % (key, m.get("headers"), want))
        partitions.add(m["partition"])
    if len(partitions) < 2:
        raise SystemExit("all records landed in partitions %r" % partitions)
    # Offsets: kcat -Q asks ListOffsets for a timestamp; -1 in the future finds nothing.
    q = subprocess.run(["kcat", "-Q", "-b", bootstrap, "-t", "%s:0:0" % topic],
                       capture_output=True, text=True, check=True, timeout=30).stdout
    if "offset 0" not in q:
        raise SystemExit("kcat -Q for time 0: %r" % q)
    print("kcat: %d records produced with %s and consumed back exactly" % (total, ", ".join(CODECS)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
