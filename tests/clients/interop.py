#!/usr/bin/env python3
"""The Kafka side of the Iggy interoperability tests (tests/iggy.rs).

usage: interop.py produce BOOTSTRAP TOPIC   creates TOPIC (2 partitions) and produces 100
                                            records of known shapes, record i to partition i % 2
       interop.py consume BOOTSTRAP TOPIC N  reads N records from partition 0 and prints each
                                            as one JSON line (value, key, headers)
"""
import json
import sys


def shape(i):
    key = b"k%d" % i
    value = None if i % 10 == 0 else b"v%d" % i
    headers = [("h", b"x%d" % i)]
    if i % 7 == 0:
        headers.append(("h", b"again"))  # a repeated key: only the envelope holds it
    return key, value, headers


def produce(bootstrap, topic):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, 2, 1)]).items():
        f.result(30)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(100):
        key, value, headers = shape(i)
        p.produce(topic, key=key, value=value, headers=headers, partition=i % 2,
                  timestamp=1_700_000_000_000 + i)
    if p.flush(30) != 0:
        raise SystemExit("produce failed")


def consume(bootstrap, topic, n):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "interop", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    for _ in range(n):
        m = c.poll(10)
        if m is None or m.error():
            raise SystemExit(f"consume failed: {m and m.error()}")
        print(json.dumps({
            "value": m.value().decode() if m.value() is not None else None,
            "key": m.key().decode() if m.key() is not None else None,
            "headers": [[k, v.decode()] for k, v in (m.headers() or [])],
        }))
    c.close()


if __name__ == "__main__":
    mode, bootstrap, topic = sys.argv[1:4]
    if mode == "produce":
        produce(bootstrap, topic)
    else:
        consume(bootstrap, topic, int(sys.argv[4]))
