#!/usr/bin/env python3
"""Nothing acknowledged is lost when the Iggy server crashes (run against the Iggy backend).

usage: crash.py BOOTSTRAP TOPIC GROUP SECONDS, with IGGY_KAFKA_TEST_IGGY_CRASH set to a shell
command that kills the Iggy server abruptly and starts it again on the same data.

Creates TOPIC (2 partitions), commits an offset for GROUP, then produces with acks=all for
SECONDS seconds, running the command after a third of them. Every record the producer saw
acknowledged must then be in the topic, at the offset it was acknowledged at, none twice,
and the committed offset must be there with its metadata. A group member consuming all the
while must ride through the crash without an error reaching it and read every acknowledged
record.
"""
import os
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
crash = os.environ["IGGY_KAFKA_TEST_IGGY_CRASH"]
PARTITIONS = 2

admin = AdminClient({"bootstrap.servers": bootstrap})
for _, f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).items():
    f.result(30)

committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False})
committer.commit(offsets=[TopicPartition(topic, 0, 7, metadata="before the crash")],
                 asynchronous=False)
committer.close()

acked, failed = {}, []


def report(err, msg):
    if err:
        failed.append(str(err))
    else:
        acked[msg.value().decode()] = (msg.partition(), msg.offset(), time.monotonic())


live_seen, live_errors, stop_live = set(), [], threading.Event()


def live():
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group + "-live",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    while not stop_live.is_set():
        for m in consumer.consume(500, 0.5):
            if m.error():
                live_errors.append(str(m.error()))
            else:
                live_seen.add(m.value().decode())
    consumer.close()


live_thread = threading.Thread(target=live)
live_thread.start()

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                     "enable.idempotence": True, "message.timeout.ms": 120000})
start = time.monotonic()
crashed_at = None
i = 0
while time.monotonic() - start < seconds:
    if crashed_at is None and time.monotonic() - start > seconds / 3:
        print(f"crashing the Iggy server after {len(acked)} acknowledged records", flush=True)
        # To a file, not this script's pipes: a server the command starts in the background
        # would hold them open, and whoever waits for this script's output would wait for it.
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(crash, shell=True, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT)
            out.seek(0)
            sys.stdout.write(out.read().decode(errors="replace"))
            assert done.returncode == 0, f"the crash command failed: {done.returncode}"
        crashed_at = time.monotonic()
    try:
        producer.produce(topic, value=str(i).encode(), partition=i % PARTITIONS, on_delivery=report)
        i += 1
    except BufferError:
        producer.poll(0.05)
        continue
    if i % 100 == 0:
        producer.poll(0)
        time.sleep(0.002)
left = producer.flush(150)
assert left == 0, f"{left} records never acknowledged"
assert not failed, f"{len(failed)} records failed: {sorted(set(failed))}"
after = sum(1 for (_, _, t) in acked.values() if t > crashed_at)
print(f"produced {i}, acknowledged {len(acked)}, {after} of them after the crash", flush=True)
assert after > 0, "nothing was acknowledged after the crash: the gateway did not reconnect"

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group + "-check",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})
stored = {}
for p in range(PARTITIONS):
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
    consumer.assign([TopicPartition(topic, p, low)])
    next_offset = low
    while next_offset < high:
        m = consumer.poll(10)
        assert m is not None, f"partition {p}: nothing at {next_offset} of {high}"
        assert not m.error(), m.error()
        stored[(p, m.offset())] = m.value().decode()
        next_offset = m.offset() + 1
lost = [v for v, (p, o, _) in acked.items() if stored.get((p, o)) != v]
assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:5]}"
duplicates = len(stored) - len(set(stored.values()))
print(f"all {len(acked)} acknowledged records are where they were acknowledged; "
      f"{duplicates} duplicates", flush=True)
# The producer is idempotent: a batch Iggy applied while its reply was lost in the crash must
# not be appended again when the producer retries it.
assert duplicates == 0, f"{duplicates} records appended twice"

deadline = time.monotonic() + 60
while time.monotonic() < deadline and not live_seen.issuperset(acked):
    time.sleep(0.2)
stop_live.set()
live_thread.join()
unread = len(set(acked) - live_seen)
print(f"the live consumer read {len(live_seen)} records, {unread} acknowledged ones not; "
      f"{len(live_errors)} errors reached it", flush=True)
assert not live_errors, f"errors reached the live consumer: {sorted(set(live_errors))[:3]}"
assert unread == 0, f"the live consumer never read {unread} acknowledged records"

committed = consumer.committed([TopicPartition(topic, 0)], timeout=30)
consumer.close()
checker = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                    "enable.auto.commit": False})
committed = checker.committed([TopicPartition(topic, 0)], timeout=30)[0]
checker.close()
assert (committed.offset, committed.metadata) == (7, "before the crash"), committed
print("committed offset kept")
