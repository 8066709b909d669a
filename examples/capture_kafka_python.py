"""Drives kafka-python against `cargo run --example capture` to record its requests.

    cargo run --example capture -- 127.0.0.1:19094 core/tests/fixtures/clients/kafka-python
    python3 examples/capture_kafka_python.py 127.0.0.1:19094
"""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19094"
for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=1)
    except Exception as e:  # the codec's package may be missing
        print(f"skipping {codec}: {e}")
        continue
    producer.send("golden", key=b"key1", value=("compressible-" * 20 + f"value-{codec}").encode(), headers=[("h1", b"v1"), ("h2", b"v2")])
    producer.send("golden", key=b"key2", value=None)
    producer.flush()
    producer.close()

consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=1000, fetch_max_wait_ms=100)
tp = TopicPartition("golden", 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
for _ in consumer:
    pass
consumer.close()
