"""Drives kafka-python with old protocol versions against `cargo run --example capture`, to
record legacy message sets: api_version (0, 9) sends Produce v1 with magic-0 messages,
(0, 10, 0) sends Produce v2 with magic-1 messages.

    cargo run --example capture -- 127.0.0.1:19096 /tmp/legacy
    python3 examples/capture_kafka_python_legacy.py 127.0.0.1:19096
"""
import sys

from kafka import KafkaProducer

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19096"
for api_version in [(0, 9), (0, 10, 0)]:
    for codec in [None, "gzip", "snappy", "lz4"]:
        producer = KafkaProducer(bootstrap_servers=bootstrap, api_version=api_version, compression_type=codec, linger_ms=1)
        producer.send("golden", key=b"key1", value=("compressible-" * 20 + f"legacy-{codec}").encode())
        producer.send("golden", key=b"key2", value=None)
        producer.flush()
        producer.close()
