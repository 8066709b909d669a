#!/usr/bin/env python3
"""Nothing acknowledged is lost across a gateway restart (run against the Iggy backend).

usage: restart.py before|after BOOTSTRAP TOPIC GROUP

before: creates TOPIC (3 partitions), produces records.TOTAL records with acks=all and
every codec, consumes the first third through GROUP and commits them (with metadata),
then tries to delete the gateway's own offsets log (told it does not exist), and prints the
committed offsets as one line of JSON.
after (a new gateway on the same Iggy stream): reads the committed offsets and metadata
back, checks the end offsets, consumes every record from the beginning and compares them
exactly, and consumes through GROUP from its commits: exactly the records not committed.
"""
import json
import sys

from records import CODECS, PER_CODEC, TOTAL, check, record

PARTITIONS = 3


def produce(bootstrap, topic):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).items():
        f.result(30)
    for n, codec in enumerate(CODECS):
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                      "linger.ms": 20, "acks": "all", "enable.idempotence": True})
        failures = []
        for i in range(n * PER_CODEC, (n + 1) * PER_CODEC):
            key, value, headers = record(i)
            p.produce(topic, key=key, value=value, headers=headers,
                      on_delivery=lambda err, _m: err and failures.append(err))
            p.poll(0)
        if p.flush(60) != 0 or failures:
            raise SystemExit(f"{codec}: produce failed: {failures[:3]}")


def before(bootstrap, topic, group):
    from confluent_kafka import Consumer, TopicPartition

    produce(bootstrap, topic)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    read = 0
    positions = {}
    while read < TOTAL // 3:
        m = c.poll(10)
        if m is None:
            raise SystemExit(f"stalled after {read} records")
        if m.error():
            raise SystemExit(str(m.error()))
        read += 1
        positions[m.partition()] = m.offset() + 1
    offsets = [TopicPartition(topic, p, positions.get(p, 0), f"meta-{p}") for p in range(PARTITIONS)]
    for tp in c.commit(offsets=offsets, asynchronous=False):
        if tp.error:
            raise SystemExit(f"commit failed: {tp.error}")
    c.close()
    forbid_own_topics(bootstrap)
    print(json.dumps({str(p): positions.get(p, 0) for p in range(PARTITIONS)}))


def forbid_own_topics(bootstrap):
    """The gateway's offsets log (one Iggy topic per generation) is no Kafka topic: deleting
    it would lose every group's commits, which `after` checks are still there."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [f"__kafka_gateway_offsets.{g}" for g in range(8)]
    for name, f in admin.delete_topics(names, operation_timeout=10).items():
        try:
            f.result(30)
        except Exception as e:  # noqa: BLE001 - the error is the point
            if e.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise SystemExit(f"deleting {name}: {e}")
        else:
            raise SystemExit(f"{name}, the gateway's own, was deleted")


def after(bootstrap, topic, group, expected):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    for tp in committed:
        want = expected[str(tp.partition)]
        if tp.offset != want or tp.metadata != f"meta-{tp.partition}":
            raise SystemExit(f"partition {tp.partition}: committed {tp.offset} {tp.metadata!r}, expected {want}")
    total = sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS))
    if total != TOTAL:
        raise SystemExit(f"end offsets add up to {total}, expected {TOTAL}")
    # Everything, from the beginning, exactly.
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = []
    while len(got) < TOTAL:
        m = c.poll(10)
        if m is None:
            raise SystemExit(f"stalled after {len(got)} records")
        if m.error():
            raise SystemExit(str(m.error()))
        got.append((m.key(), m.value(), m.headers() or []))
    check(got)
    # Through the group: resumes at the commits.
    c.assign([TopicPartition(topic, p, tp.offset) for p, tp in enumerate(committed)])
    rest = 0
    while rest < TOTAL - sum(expected.values()):
        m = c.poll(10)
        if m is None:
            raise SystemExit(f"stalled after {rest} records past the commits")
        if m.offset() < expected[str(m.partition())]:
            raise SystemExit(f"read a committed record again: {m.partition()}@{m.offset()}")
        rest += 1
    c.close()
    print(f"after restart: {TOTAL} records intact, commits kept, {rest} records past them")


if __name__ == "__main__":
    mode, bootstrap, topic, group = sys.argv[1:5]
    if mode == "before":
        before(bootstrap, topic, group)
    else:
        after(bootstrap, topic, group, json.loads(sys.argv[5]))
