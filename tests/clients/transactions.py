#!/usr/bin/env python3
"""Transactions through confluent-kafka (librdkafka): a transactional producer commits some
transactions and aborts others, interleaved with a second transactional producer on the same
partitions; a read_committed consumer reads exactly the committed records, in order, and a
read_uncommitted one reads all of them. Then a consume-transform-produce loop copies the
committed records to a second topic with send_offsets_to_transaction, is stopped midway
(its open transaction aborted by a new instance with the same transactional id, which fences
the old one), and resumes from the committed offsets: the output holds each input exactly
once.

usage: transactions.py BOOTSTRAP IN_TOPIC OUT_TOPIC   (both exist, IN_TOPIC with 2 partitions)
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

bootstrap, topic, out_topic = sys.argv[1], sys.argv[2], sys.argv[3]


def producer(txn_id, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "linger.ms": 0,
        "transaction.timeout.ms": 60000,
    }
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def read_all(isolation, topic, expect_count, group=None, timeout=30):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group or f"reader-{isolation}-{time.time()}",
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.subscribe([topic])
    got = []
    eof = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                if len(got) >= expect_count and len(eof) == len(c.assignment()):
                    break
                continue
            sys.exit(f"consumer error: {m.error()}")
        eof.discard(m.partition())
        got.append((m.partition(), m.value().decode()))
    c.close()
    return got


# Two producers, interleaved on both partitions: a commits even transactions, aborts odd
# ones; b commits all of its own.
a = producer(f"{topic}-a")
b = producer(f"{topic}-b")
committed = []
everything = []
for t in range(6):
    a.begin_transaction()
    b.begin_transaction()
    for i in range(5):
        for part in (0, 1):
            va = f"a-{t}-{i}-{part}"
            vb = f"b-{t}-{i}-{part}"
            a.produce(topic, value=va.encode(), partition=part)
            b.produce(topic, value=vb.encode(), partition=part)
            everything += [(part, va), (part, vb)]
            committed.append((part, vb))
            if t % 2 == 0:
                committed.append((part, va))
        a.flush(30)
        b.flush(30)
    if t % 2 == 0:
        a.commit_transaction(30)
    else:
        a.abort_transaction(30)
    b.commit_transaction(30)

rc = read_all("read_committed", topic, len(committed))
ru = read_all("read_uncommitted", topic, len(everything))


def per_partition(records):
    out = {}
    for part, v in records:
        out.setdefault(part, []).append(v)
    return out


def same(got, want, what):
    g, w = per_partition(got), per_partition(want)
    for part in (0, 1):
        # Order within each producer follows the log; across producers it depends on
        # which flush landed first, so compare per producer.
        for prefix in ("a-", "b-"):
            gp = [v for v in g.get(part, []) if v.startswith(prefix)]
            wp = [v for v in w.get(part, []) if v.startswith(prefix)]
            if gp != wp:
                sys.exit(f"{what}: partition {part} producer {prefix}: got {gp} want {wp}")
    if sorted(got) != sorted(want):
        sys.exit(f"{what}: {len(got)} records, want {len(want)}")


same(rc, committed, "read_committed")
same(ru, everything, "read_uncommitted")
print(f"read_committed saw {len(rc)} committed of {len(ru)} records")

# A fenced producer: a new instance with a's transactional id takes over; the old one's
# next transaction fails with a fatal error.
a2 = producer(f"{topic}-a")
try:
    a.begin_transaction()
    a.produce(topic, value=b"zombie", partition=0)
    a.flush(10)
    a.commit_transaction(10)
    sys.exit("a fenced producer committed")
except KafkaException as e:
    if not (e.args[0].fatal() or e.args[0].code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH)):
        sys.exit(f"fenced producer: unexpected error {e}")
    print(f"fenced producer refused: {e.args[0].name()}")
a2.begin_transaction()
a2.produce(topic, value=b"after-fence", partition=0)
a2.commit_transaction(30)
rc = read_all("read_committed", topic, len(committed) + 1)
vals = [v for _, v in rc]
if "zombie" in vals or "after-fence" not in vals:
    sys.exit(f"after fencing: zombie={'zombie' in vals} after-fence={'after-fence' in vals}")

# Consume-transform-produce, exactly once: copy the committed records of `topic` to
# `out_topic`, upper-cased, committing the input offsets in the same transaction.
group = f"{topic}-copier"


def copier(txn_id, stop_after=None):
    p = producer(txn_id)
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    c.subscribe([topic])
    copied = 0
    eof = set()
    deadline = time.time() + 60
    while time.time() < deadline:
        msgs = c.consume(10, 0.5)
        batch = []
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                sys.exit(f"copier consumer error: {m.error()}")
            eof.discard(m.partition())
            batch.append(m)
        if not batch:
            if c.assignment() and len(eof) == len(c.assignment()):
                break
            continue
        p.begin_transaction()
        for m in batch:
            p.produce(out_topic, value=m.value().upper(), key=m.value())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        if stop_after is not None and copied + len(batch) > stop_after:
            # Crash midway: the transaction stays open; the producer is dropped unflushed.
            p.flush(10)
            c.close()
            return copied, p
        p.commit_transaction(30)
        copied += len(batch)
    c.close()
    return copied, p


first, dead = copier(f"{group}-txn", stop_after=len(rc) // 2)
second, _ = copier(f"{group}-txn")
out = read_all("read_committed", out_topic, len(rc))
keys = sorted(v for _, v in out)
want = sorted(v.upper() for v in vals)
if keys != want:
    sys.exit(f"copy: {len(keys)} records, want {len(want)}; duplicates: "
             f"{sorted(set(k for k in keys if keys.count(k) > 1))[:5]}")
print(f"consume-transform-produce copied {len(keys)} records exactly once "
      f"({first} before the crash, {second} after)")
