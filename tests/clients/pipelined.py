#!/usr/bin/env python3
"""Plain appends pipelined into one partition (run against the Iggy backend).

usage: pipelined.py BOOTSTRAP TOPIC COUNT

Creates TOPIC (one partition) and produces COUNT records with linger.ms=0 and one record
per batch, so that each is a produce request of its own and up to five are in flight (the
gateway merges those queued behind the one in flight into one Iggy append). Every record
must be acknowledged, at distinct offsets 0..COUNT-1, and read back at the offset its
acknowledgement gave.
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, 1, 1)]).items():
        f.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": 1,
                         "batch.num.messages": 1})
    errors, placed = [], {}

    def delivered(err, msg):
        if err:
            errors.append(str(err))
        else:
            placed[int(msg.value())] = msg.offset()

    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=str(i).encode(), partition=0,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0, "records left unacknowledged"
    assert not errors, errors[:5]
    assert sorted(placed.values()) == list(range(count)), "offsets not distinct and contiguous"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    read, deadline = {}, time.time() + 60
    while len(read) < count and time.time() < deadline:
        for m in consumer.consume(1000, 1.0):
            if not m.error():
                read[m.offset()] = int(m.value())
    consumer.close()
    assert len(read) == count, f"read {len(read)} of {count}"
    assert all(placed[v] == o for o, v in read.items()), "a record is not where it was acknowledged"
    print(f"{count} records acknowledged and read back in place")


if __name__ == "__main__":
    main()
