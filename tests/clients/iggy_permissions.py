"""A Kafka client held to its Iggy user's permissions (the gateway's --authorization iggy).

Usage:
  iggy_permissions.py reads BOOTSTRAP TOPIC OTHER COUNT USER
      USER (password USER-secret, over SASL_PLAINTEXT with PLAIN) sees TOPIC and not OTHER,
      reads COUNT records of TOPIC, and is refused writing to it.
  iggy_permissions.py sees-nothing BOOTSTRAP TOPIC USER
      USER no longer sees TOPIC.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def config(bootstrap, user):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": f"{user}-secret",
    }


def topics(bootstrap, user):
    return set(AdminClient(config(bootstrap, user)).list_topics(timeout=10).topics)


mode = sys.argv[1]
if mode == "reads":
    bootstrap, topic, other, count, user = sys.argv[2:7]
    seen = topics(bootstrap, user)
    assert topic in seen and other not in seen, sorted(seen)
    c = Consumer({**config(bootstrap, user), "group.id": f"{user}-group", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    deadline = time.time() + 30
    while got < int(count) and time.time() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got += 1
    c.close()
    assert got == int(count), f"read {got} of {count}"
    errors = []
    p = Producer(config(bootstrap, user))
    p.produce(topic, value=b"refused", on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert errors and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors[0]
    print("reads, sees only its topic, may not write: ok")
elif mode == "sees-nothing":
    bootstrap, topic, user = sys.argv[2:5]
    seen = topics(bootstrap, user)
    assert topic not in seen, sorted(seen)
    print("sees nothing: ok")
else:
    raise SystemExit(f"unknown mode {mode}")
