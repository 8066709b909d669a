#!/usr/bin/env python3
"""DescribeProducers from kafka-python's admin client, after confluent-kafka's idempotent
producer wrote to partition 0: that partition names one producer with its epoch and last
sequence, partition 1 none.

usage: producers.py BOOTSTRAP TOPIC   (TOPIC exists with two partitions)
"""
import sys

from confluent_kafka import Producer
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

bootstrap, topic = sys.argv[1], sys.argv[2]
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
for i in range(7):
    p.produce(topic, value=b"v%d" % i, partition=0)
    p.flush(30)  # one batch per record: sequences 0..6

admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
states = admin.describe_producers([TopicPartition(topic, 0), TopicPartition(topic, 1)])
by_partition = {tp.partition: state for tp, state in states.items()}
text = repr(by_partition)
producers0 = getattr(by_partition[0], "active_producers", None)
producers1 = getattr(by_partition[1], "active_producers", None)
if producers0 is None or len(producers0) != 1 or producers1:
    sys.exit(f"describe_producers: {text}")
one = producers0[0]
fields = one._asdict() if hasattr(one, "_asdict") else vars(one)
if fields.get("last_sequence") != 6 or fields.get("producer_epoch") != 0 or fields.get("producer_id", -1) < 0:
    sys.exit(f"describe_producers partition 0: {fields}")
print(f"kafka-python describe_producers: {fields}")
admin.close()
