#!/usr/bin/env python3
"""librdkafka's own transactions example (examples/transactions.c, built by
scripts/install-test-deps.sh) against the gateway: a consume-transform-produce loop that
sums the integers of each input record into an output record, in transactions of at most
100 records with the consumed offsets sent to each transaction (KIP-447, cooperative-sticky
assignment).

It reads half of the input and is stopped with SIGINT (it commits what it holds on its way
out), is killed with SIGKILL in the middle of the second half (a new instance aborts the
open transaction and resumes from the committed offsets), and finishes the rest. Output
read_committed must hold each input's sum exactly once; the group's committed offsets must
cover the whole input.

usage: rdkafka_transactions_example.py EXAMPLE_BIN BOOTSTRAP IN_TOPIC OUT_TOPIC
       (both topics exist; IN_TOPIC has 2 partitions)
"""
import collections
import signal
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

example, bootstrap, in_topic, out_topic = sys.argv[1:5]
GROUP = "librdkafka_transactions_example_group"  # fixed by the example
N = 600


def produce(first, last):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(first, last):
        # The example sums the integers of a value: "i 1" gives i + 1, unique and non-zero.
        p.produce(in_topic, key=str(i).encode(), value=f"{i} 1".encode(), partition=i % 2)
    assert p.flush(30) == 0, "input not produced"


def committed_output():
    """Every value of OUT_TOPIC a read_committed consumer sees, up to the end."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"checker-{time.time()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(out_topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            sys.exit(f"checker: {m.error()}")
        got.append(int(m.value()))
    c.close()
    return got


def wait_for(count, proc, what):
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what}: the example exited early with {proc.returncode}")
        got = committed_output()
        if len(got) >= count:
            return got
        time.sleep(1)
    sys.exit(f"{what}: {len(committed_output())} of {count} output records after 120 s")


def start():
    # Its output goes where this script's goes, for the test to show.
    return subprocess.Popen([example, bootstrap, in_topic, out_topic])


def check(got, upto):
    counts = collections.Counter(got)
    dups = [v for v, c in counts.items() if c > 1]
    assert not dups, f"sums seen more than once in read_committed output: {sorted(dups)[:10]}"
    missing = sorted(set(range(1, upto + 1)) - set(counts))
    assert not missing, f"sums missing from the output: {missing[:10]} ({len(missing)})"


produce(0, N // 2)
proc = start()
got = wait_for(N // 2, proc, "first half")
proc.send_signal(signal.SIGINT)
assert proc.wait(60) == 0, "the example did not stop cleanly on SIGINT"
check(committed_output(), N // 2)
print(f"first half: {len(got)} records, stopped cleanly")

produce(N // 2, N)
proc = start()
# Kill it once it has written part of the second half, likely inside a transaction.
wait_for(N // 2 + 50, proc, "second half")
proc.kill()
proc.wait()
print("killed midway")
proc = start()
wait_for(N, proc, "after the kill")
time.sleep(2)  # a duplicate would need this long to show up
proc.send_signal(signal.SIGINT)
assert proc.wait(90) == 0, "the example did not stop cleanly on SIGINT"
got = committed_output()
check(got, N)
assert len(got) == N, f"{len(got)} output records for {N} inputs"

c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
offsets = c.committed([TopicPartition(in_topic, p) for p in (0, 1)], timeout=30)
c.close()
assert [tp.offset for tp in offsets] == [N // 2, N // 2], f"committed offsets {offsets}"
print(f"librdkafka's transactions example: {N} inputs, {N} outputs exactly once")
