"""An idempotent acks=all producer and a consumer-group member, side by side, for a while.

The test that runs this kills and restarts Iggy nodes meanwhile. Prints one JSON line: the
values acknowledged (with when), the produce errors, the values the member consumed (in
order), and the offset the group committed last.

    python cluster_failover.py BOOTSTRAP TOPIC GROUP SECONDS
"""

import json
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

acked = []
errors = []


def delivered(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        acked.append((int(msg.value()), time.time()))


def produce(stop):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Long enough to ride out an election; librdkafka retries meanwhile.
            "message.timeout.ms": 120000,
        }
    )
    i = 0
    while not stop.is_set():
        p.produce(topic, value=str(i).encode(), callback=delivered)
        i += 1
        p.poll(0)
        time.sleep(0.002)
    p.flush(120)


consumed = []
committed = [None]


def consume(done):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 30000,
        }
    )
    c.subscribe([topic])
    since_commit = 0
    quiet_since = None
    while True:
        m = c.poll(0.5)
        if m is None or m.error():
            if done.is_set():
                quiet_since = quiet_since or time.time()
                if len(consumed) >= len(acked) or time.time() - quiet_since > 20:
                    break
            continue
        quiet_since = None
        consumed.append(int(m.value()))
        since_commit += 1
        if since_commit >= 200:
            c.commit(asynchronous=False)
            since_commit = 0
    c.commit(asynchronous=False)
    got = c.committed([TopicPartition(topic, 0)], timeout=30)
    committed[0] = got[0].offset
    c.close()


stop = threading.Event()
done = threading.Event()
producer = threading.Thread(target=produce, args=(stop,))
consumer = threading.Thread(target=consume, args=(done,))
producer.start()
consumer.start()
time.sleep(seconds)
stop.set()
producer.join()
done.set()
consumer.join()
print(
    json.dumps(
        {
            "acked": acked,
            "errors": errors,
            "consumed": consumed,
            "committed": committed[0],
        }
    )
)
