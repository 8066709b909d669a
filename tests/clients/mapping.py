#!/usr/bin/env python3
"""A Kafka client's view of the topic mapping, with confluent-kafka (librdkafka).

usage: mapping.py BOOTSTRAP

Lists the topics, creates `payments` (two partitions), produces ten records to
`shop.orders` (idempotently, across both its partitions) and five to `payments`, consumes
`shop.orders` in group `g-map` and commits, then prints one JSON object: the topics listed
before and after the creation, the records acknowledged and read, and the group's
committed offsets.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap = sys.argv[1]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    before = sorted(admin.list_topics(timeout=30).topics)
    for _, f in admin.create_topics([NewTopic("payments", 2, 1)]).items():
        f.result(30)
    after = sorted(admin.list_topics(timeout=30).topics)

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    acked = []
    for i in range(10):
        p.produce("shop.orders", value=b"order-%d" % i, partition=i % 2,
                  on_delivery=lambda err, _m: acked.append(err is None))
    for i in range(5):
        p.produce("payments", value=b"payment-%d" % i, partition=0,
                  on_delivery=lambda err, _m: acked.append(err is None))
    p.flush(30)

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "g-map",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })
    c.subscribe(["shop.orders"])
    values = []
    deadline = time.time() + 60
    while len(values) < 10 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        values.append(m.value().decode())
        c.commit(message=m, asynchronous=False)
    committed = c.committed([TopicPartition("shop.orders", 0), TopicPartition("shop.orders", 1)],
                            timeout=30)
    c.close()
    print(json.dumps({
        "before": before,
        "after": after,
        "acked": sum(acked),
        "read": sorted(values),
        "committed": [tp.offset for tp in committed],
    }))


if __name__ == "__main__":
    main()
