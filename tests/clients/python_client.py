#!/usr/bin/env python3
"""One real Python Kafka client against a running gateway, end to end.

usage: python_client.py confluent|kafka-python BOOTSTRAP TOPIC

Creates TOPIC with 3 partitions, produces records.TOTAL records (keys, headers, null
values) with every compression codec, consumes them all back and compares them exactly,
checks the listed offsets, and deletes the topic. With confluent-kafka, also checks
record timestamps on a topic of its own (MAX_TIMESTAMP, a batch spanning days). Exits non-zero on any difference.
"""
import sys
import time

from records import CODECS, PER_CODEC, TOTAL, check, record

PARTITIONS = 3


def confluent(bootstrap, topic):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).items():
        f.result(30)
    for n, codec in enumerate(CODECS):
        p = Producer({
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 20,
            "acks": "all",
            "enable.idempotence": n % 2 == 1,
        })
        failures = []

        def report(err, _msg):
            if err is not None:
                failures.append(err)

        for i in range(n * PER_CODEC, (n + 1) * PER_CODEC):
            key, value, headers = record(i)
            p.produce(topic, key=key, value=value, headers=headers, on_delivery=report)
            p.poll(0)
        if p.flush(60) != 0 or failures:
            raise SystemExit(f"{codec}: produce failed: {failures[:3]}")

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "unused-assign-only",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    high_total = 0
    for part in range(PARTITIONS):
        low, high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        if low != 0:
            raise SystemExit(f"partition {part}: log start {low}")
        high_total += high
    if high_total != TOTAL:
        raise SystemExit(f"end offsets add up to {high_total}, expected {TOTAL}")
    # By timestamp: every record is older than now.
    ahead = c.offsets_for_times(
        [TopicPartition(topic, p, int(time.time() * 1000) + 60_000) for p in range(PARTITIONS)],
        timeout=10,
    )
    if any(tp.offset != -1 for tp in ahead):
        raise SystemExit(f"offsets for a future time: {ahead}")
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = []
    deadline = time.time() + 120
    while len(got) < TOTAL and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                raise SystemExit(f"consume error: {m.error()}")
            got.append((m.key(), m.value(), list(m.headers() or [])))
    c.close()
    check(got)
    timestamps(admin, bootstrap, topic + "-ts")
    for _, f in admin.delete_topics([topic]).items():
        f.result(30)
    left = admin.list_topics(timeout=10).topics
    if topic in left:
        raise SystemExit("topic still listed after deletion")


def timestamps(admin, bootstrap, topic):
    """Record timestamps: ListOffsets MAX_TIMESTAMP (the admin client's
    OffsetSpec.max_timestamp()) finds the first record with the largest, whatever the order
    they came in; one batch whose timestamps span days comes back exact; and a search by
    timestamp finds the first record timestamped at or after it."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic, OffsetSpec

    for _, f in admin.create_topics([NewTopic(topic, 1, 1)]).items():
        f.result(30)
    tp = TopicPartition(topic, 0)

    def largest():
        (info,) = admin.list_offsets({tp: OffsetSpec.max_timestamp()}).values()
        got = info.result(30)
        return got.offset, got.timestamp

    if largest() != (-1, -1):
        raise SystemExit(f"MAX_TIMESTAMP of an empty partition: {largest()}")
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for ts in (1_000_000, 5_000_000, 2_000_000, 5_000_000, 3_000_000):
        p.produce(topic, value=b"v", partition=0, timestamp=ts)
        p.flush(30)
    if largest() != (1, 5_000_000):
        raise SystemExit(f"MAX_TIMESTAMP: {largest()}, expected offset 1 at 5000000")
    # One batch (linger) from three days ago, now, 1970 and yesterday: more time than one
    # Iggy append spans.
    now = int(time.time() * 1000)
    spread = [now - 3 * 86_400_000, now, 1, now - 86_400_000, now - 1]
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 500})
    for ts in spread:
        p.produce(topic, value=b"w", partition=0, timestamp=ts)
    if p.flush(30) != 0:
        raise SystemExit("the batch spanning days was not acknowledged")
    if largest() != (6, now):
        raise SystemExit(f"MAX_TIMESTAMP after the batch: {largest()}, expected offset 6")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 5)])
    got = []
    deadline = time.time() + 30
    while len(got) < len(spread) and time.time() < deadline:
        for m in c.consume(10, 1.0):
            if m.error():
                raise SystemExit(f"consume error: {m.error()}")
            got.append(m.timestamp()[1])
    c.close()
    if got != spread:
        raise SystemExit(f"timestamps of the batch spanning days: {got}, expected {spread}")
    # By timestamp: the first record timestamped at or after it, wherever it was appended.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only"})
    for ts, want in ((4_000_000, (1, 5_000_000)), (now - 2 * 86_400_000, (6, now))):
        (found,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
        if found.offset != want[0]:
            raise SystemExit(f"offsets_for_times({ts}): {found.offset}, expected {want[0]}")
    c.close()
    for _, f in admin.delete_topics([topic]).items():
        f.result(30)
    print("confluent: MAX_TIMESTAMP, a batch spanning days and searches by timestamp checked")


def consume_all(bootstrap, topic):
    """Every record of TOPIC, read with confluent-kafka from offset 0 of each partition."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-assign-only",
                  "enable.auto.commit": False})
    md = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    got = []
    idle_since = time.time()
    while time.time() - idle_since < 5:
        msgs = c.consume(1000, 0.5)
        if msgs:
            idle_since = time.time()
        for m in msgs:
            if m.error():
                raise SystemExit(f"consume error: {m.error()}")
            got.append((m.key(), m.value(), list(m.headers() or [])))
    c.close()
    return got


def kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    for n, codec in enumerate(CODECS):
        p = KafkaProducer(
            bootstrap_servers=bootstrap,
            compression_type=None if codec == "none" else codec,
            linger_ms=20,
            acks="all",
        )
        futures = []
        for i in range(n * PER_CODEC, (n + 1) * PER_CODEC):
            key, value, headers = record(i)
            futures.append(p.send(topic, key=key, value=value, headers=headers))
        p.flush(60)
        for f in futures:
            f.get(30)
        p.close()

    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    begin = c.beginning_offsets(parts)
    end = c.end_offsets(parts)
    if any(v != 0 for v in begin.values()):
        raise SystemExit(f"beginning offsets {begin}")
    if sum(end.values()) != TOTAL:
        raise SystemExit(f"end offsets {end} do not add up to {TOTAL}")
    by_time = c.offsets_for_times({tp: 0 for tp in parts})
    for tp, found in by_time.items():
        if end[tp] > 0 and (found is None or found.offset != 0):
            raise SystemExit(f"offset for time 0 in {tp}: {found}")
    c.assign(parts)
    c.seek_to_beginning(*parts)
    got = []
    deadline = time.time() + 120
    while len(got) < TOTAL and time.time() < deadline:
        for _, msgs in c.poll(timeout_ms=1000, max_records=5000).items():
            for m in msgs:
                got.append((m.key, m.value, [(k, v) for k, v in m.headers]))
    c.close()
    check(got)
    admin.delete_topics([topic])
    if topic in admin.list_topics():
        raise SystemExit("topic still listed after deletion")
    admin.close()


if __name__ == "__main__":
    which, bootstrap, topic = sys.argv[1:4]
    {"confluent": confluent, "kafka-python": kafka_python}[which](bootstrap, topic)
    print(f"{which}: {TOTAL} records with every codec compared exactly")
