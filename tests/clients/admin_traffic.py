#!/usr/bin/env python3
"""Traffic for the admin tests, with confluent-kafka (librdkafka), one step at a time.

usage: admin_traffic.py produce BOOTSTRAP TOPIC COUNT
       admin_traffic.py commit BOOTSTRAP TOPIC GROUP OFFSET
       admin_traffic.py consume BOOTSTRAP TOPIC GROUP COUNT
       admin_traffic.py member BOOTSTRAP TOPIC GROUP SECONDS

produce: COUNT records of 100 bytes into partition 0 of TOPIC (created with one partition),
acks=all; prints the number acknowledged.
commit: GROUP commits OFFSET on TOPIC's partition 0, without consuming.
consume: GROUP reads COUNT records from its committed offset (or the start) and commits
after each, synchronously; prints the number read.
member: GROUP keeps one member subscribed to TOPIC for SECONDS, reading and committing.
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def produce(bootstrap, topic, count):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, 1, 1)]).items():
        try:
            f.result(30)
        except Exception as e:  # already there
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    acked = []
    for i in range(count):
        p.produce(topic, value=b"%099d" % i, partition=0,
                  on_delivery=lambda err, _m: acked.append(err is None))
    p.flush(30)
    print(sum(acked))


def consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })


def commit(bootstrap, topic, group, offset):
    c = consumer(bootstrap, group)
    c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    c.close()


def consume(bootstrap, topic, group, count, seconds=60):
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    read = 0
    deadline = time.time() + seconds
    while read < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        read += 1
        c.commit(message=m, asynchronous=False)
    c.close()
    print(read)


def member(bootstrap, topic, group, seconds):
    c = consumer(bootstrap, group)
    c.subscribe([topic])
    deadline = time.time() + seconds
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            c.commit(message=m, asynchronous=False)
    c.close()


def main():
    step, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    if step == "produce":
        produce(bootstrap, topic, int(sys.argv[4]))
    elif step == "commit":
        commit(bootstrap, topic, sys.argv[4], int(sys.argv[5]))
    elif step == "consume":
        consume(bootstrap, topic, sys.argv[4], int(sys.argv[5]))
    elif step == "member":
        member(bootstrap, topic, sys.argv[4], float(sys.argv[5]))
    else:
        sys.exit(f"unknown step {step}")


if __name__ == "__main__":
    main()
