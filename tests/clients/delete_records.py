#!/usr/bin/env python3
"""DeleteRecords from confluent-kafka's and kafka-python's admin clients: records before
the offset are gone for consumers, the low watermark moves, and only forward.

usage: delete_records.py BOOTSTRAP TOPIC   (TOPIC does not exist yet)
"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition as KafkaTopicPartition

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(10)

producer = Producer({"bootstrap.servers": bootstrap})
for i in range(20):
    producer.produce(topic, value=f"v{i}".encode())
if producer.flush(15) != 0:
    sys.exit("records left unsent")


def watermarks():
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "delete-records-watermarks"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    return low, high


def consume_all():
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"delete-records-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, 0, -2)])  # OFFSET_BEGINNING
    seen = []
    while True:
        m = c.poll(10)
        if m is None:
            sys.exit(f"no record after {seen}")
        if m.error():
            sys.exit(f"consumer error: {m.error()}")
        seen.append(m.value().decode())
        if m.offset() == 19:
            break
    c.close()
    return seen


# confluent-kafka: delete before offset 5.
done = admin.delete_records([TopicPartition(topic, 0, 5)])
result = list(done.values())[0].result(10)
low = getattr(result, "low_watermark", None)
if low != 5:
    sys.exit(f"confluent-kafka delete_records: low watermark {low}")
if watermarks() != (5, 20):
    sys.exit(f"watermarks after deleting before 5: {watermarks()}")
seen = consume_all()
if seen != [f"v{i}" for i in range(5, 20)]:
    sys.exit(f"a consumer from the beginning read {seen}")
print("confluent-kafka delete_records: low watermark 5, a consumer reads v5..v19")

# kafka-python: before 12, then before 3 (changes nothing).
kadmin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
for before, want in ((12, 12), (3, 12)):
    answer = kadmin.delete_records({KafkaTopicPartition(topic, 0): before})
    text = repr(answer)
    if watermarks() != (want, 20):
        sys.exit(f"kafka-python delete_records before {before}: watermarks {watermarks()} ({text})")
kadmin.close()
seen = consume_all()
if seen != [f"v{i}" for i in range(12, 20)]:
    sys.exit(f"a consumer from the beginning read {seen}")
print("kafka-python delete_records: low watermark 12, and not back to 3")
