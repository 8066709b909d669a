"""A confluent-kafka producer over its byte-rate quota is throttled, and says so.

Usage: quotas.py BOOTSTRAP TOPIC CLIENT_ID EXPECT
EXPECT is "throttled" or "free": whether librdkafka's throttle callback must report a
throttle time above zero while 600 records of 1 KiB are produced.
"""
import sys

from confluent_kafka import Producer

bootstrap, topic, client_id, expect = sys.argv[1:5]
throttles = []


def on_throttle(event):
    throttles.append(event.throttle_time)


p = Producer(
    {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "throttle_cb": on_throttle,
        "linger.ms": 5,
    }
)
for i in range(600):
    p.produce(topic, value=b"x" * 1024)
    p.poll(0)
left = p.flush(60)
assert left == 0, f"{left} records not delivered"
# Throttle events come with the responses: serve what is queued.
p.poll(0.5)
print("throttle events:", throttles)
if expect == "throttled":
    assert any(t > 0 for t in throttles), "never throttled"
else:
    assert all(t == 0 for t in throttles), f"throttled: {throttles}"
print("ok")
