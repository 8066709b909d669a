#!/usr/bin/env python3
"""One round of the transactions benchmark against a gateway at BOOTSTRAP: confluent-kafka
(librdkafka) produces N records of 100 B to a new one-partition topic as an idempotent
producer, then as a transactional producer committing every 100 records and every 10,000;
then consumes the last topic read_uncommitted and read_committed. Prints one line per phase:
name and records per second.

usage: transactions.py BOOTSTRAP N TAG
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
admin = AdminClient({"bootstrap.servers": bootstrap})
value = b"x" * 100


def topic(name):
    t = f"bench-{tag}-{name}"
    for f in admin.create_topics([NewTopic(t, 1, 1)]).values():
        f.result()
    return t


def conf(**extra):
    c = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 1000000,
        "enable.idempotence": True,
    }
    c.update(extra)
    return c


def produce(t, per_txn):
    p = Producer(conf(**({"transactional.id": f"{t}-txn"} if per_txn else {})))
    if per_txn:
        p.init_transactions(30)
    start = time.perf_counter()
    sent = 0
    while sent < n:
        count = min(per_txn or n, n - sent)
        if per_txn:
            p.begin_transaction()
        for _ in range(count):
            while True:
                try:
                    p.produce(t, value=value, partition=0)
                    break
                except BufferError:
                    p.poll(0.01)
        sent += count
        if per_txn:
            p.commit_transaction(60)
    p.flush(60)
    return n / (time.perf_counter() - start)


def consume(t, isolation, want):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{t}-{isolation}",
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
            # Without it librdkafka pauses 1 s whenever its prefetch queue fills, which
            # would decide the figure.
            "fetch.queue.backoff.ms": 0,
        }
    )
    c.assign([__import__("confluent_kafka").TopicPartition(t, 0, 0)])
    got = 0
    start = None
    while got < want:
        msgs = c.consume(10000, 5)
        if not msgs:
            break
        if start is None:
            start = time.perf_counter()
        got += sum(1 for m in msgs if not m.error())
    rate = got / (time.perf_counter() - start)
    c.close()
    if got != want:
        sys.exit(f"{isolation}: read {got} of {want}")
    return rate


print(f"produce idempotent {produce(topic('idem'), 0):.0f}")
print(f"produce txn-100 {produce(topic('t100'), 100):.0f}")
t = topic("t10k")
print(f"produce txn-10000 {produce(t, 10000):.0f}")
print(f"consume read_uncommitted {consume(t, 'read_uncommitted', n):.0f}")
print(f"consume read_committed {consume(t, 'read_committed', n):.0f}")
