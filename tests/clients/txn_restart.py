#!/usr/bin/env python3
"""Exactly-once consume-transform-produce across a gateway restart, through confluent-kafka
(librdkafka): N records are produced to IN_TOPIC, then a copier (read_committed consumer in a
group, transactional producer, offsets sent to each transaction) copies them upper-cased to
OUT_TOPIC. A third of the way in, with a transaction open (records produced and acknowledged,
offsets sent, not committed), it prints KILL and waits for a line on stdin: meanwhile the
gateway is killed (SIGKILL) and started again on the same address. The copier then goes on
as a Kafka application does: it commits the open transaction, or aborts it and rewinds to
the committed offsets when the client says the transaction must be aborted. At the end a
read_committed consumer must read each input exactly once in OUT_TOPIC.

Prints one line of JSON: how many records were copied before and after the restart, how the
open transaction ended, and how many transactions were aborted.

usage: txn_restart.py BOOTSTRAP IN_TOPIC OUT_TOPIC N   (both topics exist)
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

bootstrap, in_topic, out_topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
group = f"{in_topic}-copier"
values = [f"v{i:06d}" for i in range(n)]

p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
for v in values:
    p.produce(in_topic, value=v.encode())
if p.flush(30) != 0:
    sys.exit("the input was not all delivered")

producer = Producer(
    {
        "bootstrap.servers": bootstrap,
        "transactional.id": f"{group}-txn",
        "linger.ms": 0,
        "transaction.timeout.ms": 60000,
        # A restart takes a few seconds: keep trying rather than give up the transaction.
        "message.timeout.ms": 60000,
        # librdkafka re-bootstraps when every broker is down (a one-broker cluster's restart)
        # and decommissions the broker it knew; a send_offsets_to_transaction() that then
        # looks for the group coordinator hangs (confluentinc/librdkafka#5511, open).
        "metadata.recovery.strategy": "none",
    }
)
producer.init_transactions(60)
consumer = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "session.timeout.ms": 45000,
    }
)
consumer.subscribe([in_topic])


def rewind():
    """Back to the group's committed offsets, after an aborted transaction."""
    committed = consumer.committed(consumer.assignment(), 30)
    for tp in committed:
        if tp.offset < 0:
            tp.offset = 0  # nothing committed yet: from the start (auto.offset.reset)
        consumer.seek(tp)


def commit_or_abort():
    """Commits the open transaction; True if it committed. Retries what the client says is
    retriable, aborts (and rewinds) what it says must be aborted."""
    global aborted
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            producer.commit_transaction(60)
            return True
        except KafkaException as e:
            err = e.args[0]
            if err.retriable():
                time.sleep(0.2)
                continue
            if err.txn_requires_abort():
                producer.abort_transaction(60)
                aborted += 1
                rewind()
                return False
            raise
    sys.exit("the transaction neither committed nor aborted in time")


copied_before = copied_after = aborted = 0
restarted = False
open_txn_outcome = None
eof = set()
deadline = time.time() + 240
while time.time() < deadline:
    msgs = consumer.consume(50, 0.5)
    batch = []
    for m in msgs:
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            if m.error().retriable() or m.error().code() == KafkaError._TRANSPORT:
                continue
            sys.exit(f"copier consumer error: {m.error()}")
        eof.discard(m.partition())
        batch.append(m)
    if not batch:
        if restarted and consumer.assignment() and len(eof) == len(consumer.assignment()):
            break
        continue
    producer.begin_transaction()
    for m in batch:
        producer.produce(out_topic, value=m.value().upper(), key=m.value())
    if not restarted and copied_before >= n // 3:
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        # Every record of the open transaction acknowledged, its offsets sent, then the kill.
        if producer.flush(30) != 0:
            sys.exit("the open transaction's records were not delivered before the kill")
        print("KILL", flush=True)
        if sys.stdin.readline().strip() != "restarted":
            sys.exit("expected 'restarted' on stdin")
        restarted = True
        committed = commit_or_abort()
        open_txn_outcome = "committed" if committed else "aborted"
        if committed:
            copied_after += len(batch)
        continue
    try:
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 60
        )
    except KafkaException as e:
        if not e.args[0].txn_requires_abort():
            raise
        producer.abort_transaction(60)
        aborted += 1
        rewind()
        continue
    if commit_or_abort():
        if restarted:
            copied_after += len(batch)
        else:
            copied_before += len(batch)
consumer.close()
if not restarted:
    sys.exit("the copier finished before the restart")

reader = Consumer(
    {
        "bootstrap.servers": bootstrap,
        "group.id": f"{out_topic}-reader-{time.time()}",
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
)
reader.subscribe([out_topic])
got = []
eof = set()
deadline = time.time() + 60
while time.time() < deadline:
    m = reader.poll(0.5)
    if m is None:
        continue
    if m.error():
        if m.error().code() == KafkaError._PARTITION_EOF:
            eof.add(m.partition())
            if len(got) >= n and len(eof) == len(reader.assignment()):
                break
            continue
        sys.exit(f"reader error: {m.error()}")
    eof.discard(m.partition())
    got.append(m.value().decode())
reader.close()
want = sorted(v.upper() for v in values)
if sorted(got) != want:
    dupes = sorted({v for v in got if got.count(v) > 1})
    missing = sorted(set(want) - set(got))
    sys.exit(
        f"output: {len(got)} records, want {n}; duplicates {dupes[:5]}, missing {missing[:5]}"
    )
print(
    json.dumps(
        {
            "copied_before": copied_before,
            "copied_after": copied_after,
            "open_transaction": open_txn_outcome,
            "aborted": aborted,
        }
    ),
    flush=True,
)
