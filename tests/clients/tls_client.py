#!/usr/bin/env python3
"""A Python Kafka client over TLS against a running gateway.

usage: tls_client.py confluent|kafka-python BOOTSTRAP TOPIC CA [CERT KEY]
       tls_client.py metadata PROTOCOL BOOTSTRAP [CA]

The first form produces 200 records over SSL (trusting CA; presenting CERT and KEY when
given), consumes them back and compares them; it exits 0 and prints "ok", or exits 1
within about 20 s when the gateway cannot be reached over TLS (an untrusted server, a
missing client certificate). The second prints the brokers Metadata names, one HOST:PORT a
line, as confluent-kafka sees them through the listener at BOOTSTRAP.
"""
import sys
import time

COUNT = 200


def confluent_config(bootstrap, ca, cert, key):
    config = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": ca,
        "ssl.endpoint.identification.algorithm": "https",
        "socket.timeout.ms": 10000,
    }
    if cert:
        config["ssl.certificate.location"] = cert
        config["ssl.key.location"] = key
    return config


def confluent(bootstrap, topic, ca, cert, key):
    from confluent_kafka import Consumer, Producer, TopicPartition

    config = confluent_config(bootstrap, ca, cert, key)
    p = Producer({**config, "message.timeout.ms": 15000, "acks": "all"})
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(err)

    for i in range(COUNT):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, on_delivery=report)
        p.poll(0)
    if p.flush(30) != 0 or failures:
        raise SystemExit(f"produce failed: {failures[:3]}")
    c = Consumer({**config, "group.id": "tls-assign-only", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < COUNT and time.time() < deadline:
        for m in c.consume(100, 1.0):
            if m.error():
                raise SystemExit(f"consume error: {m.error()}")
            got.append((m.key(), m.value()))
    c.close()
    return got


def kafka_python(bootstrap, topic, ca, cert, key):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    config = {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SSL",
        "ssl_cafile": ca,
        "ssl_check_hostname": True,
    }
    if cert:
        config["ssl_certfile"] = cert
        config["ssl_keyfile"] = key
    p = KafkaProducer(**config, acks="all", max_block_ms=15000)
    for i in range(COUNT):
        p.send(topic, key=b"k%d" % i, value=b"v%d" % i)
    p.flush(30)
    p.close()
    c = KafkaConsumer(**config, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic, 0)])
    c.seek(TopicPartition(topic, 0), 0)
    got = []
    deadline = time.time() + 30
    while len(got) < COUNT and time.time() < deadline:
        for records in c.poll(timeout_ms=1000).values():
            got.extend((r.key, r.value) for r in records)
    c.close()
    return got


def metadata(protocol, bootstrap, ca):
    from confluent_kafka.admin import AdminClient

    config = {"bootstrap.servers": bootstrap, "security.protocol": protocol}
    if ca:
        config["ssl.ca.location"] = ca
    brokers = AdminClient(config).list_topics(timeout=10).brokers
    for b in brokers.values():
        print(f"{b.host}:{b.port}")


def main():
    if sys.argv[1] == "metadata":
        metadata(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
        return
    client, bootstrap, topic, ca = sys.argv[1:5]
    cert, key = (sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else (None, None)
    run = confluent if client == "confluent" else kafka_python
    try:
        got = run(bootstrap, topic, ca, cert, key)
    except SystemExit:
        raise
    except Exception as e:  # a failed handshake surfaces as the client's own error
        raise SystemExit(f"{client}: {type(e).__name__}: {e}")
    want = [(b"k%d" % i, b"v%d" % i) for i in range(COUNT)]
    if got != want:
        raise SystemExit(f"got {len(got)} records, first {got[:3]}")
    print("ok")


if __name__ == "__main__":
    main()
