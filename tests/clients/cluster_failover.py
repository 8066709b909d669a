"""An idempotent acks=all producer and a consumer-group member, side by side, for a while.

The test that runs this kills and restarts Iggy nodes meanwhile. Prints one JSON line: the
values acknowledged (with when), the produce errors, the values the member consumed (in
order), the offset the group committed last, and the commits made again after a retriable
error.

    python cluster_failover.py BOOTSTRAP TOPIC GROUP SECONDS
"""

import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

acked = []
errors = []


def delivered(err, msg):
    if err is not None:
        errors.append(str(err))
        # When, beside the gateway's log, to see what it was doing then.
        print(f"{time.time():.3f} produce failed: {err}", file=sys.stderr, flush=True)
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
    try:
        while not stop.is_set():
            p.produce(topic, value=str(i).encode(), callback=delivered)
            i += 1
            p.poll(0)
            time.sleep(0.002)
    except KafkaException as e:
        # A fatal error (librdkafka's idempotent producer out of step with the broker) ends
        # producing: a failure, not a quiet end with fewer records.
        errors.append(f"producing stopped: {e}")
        print(f"{time.time():.3f} producing stopped: {e}", file=sys.stderr, flush=True)
    left = p.flush(120)
    if left:
        errors.append(f"{left} messages neither delivered nor failed after the flush")


consumed = []
committed = [None]
# Commits that failed with an error Kafka's clients retry and were made again, as an
# application does while its group's coordinator rides out a failover.
commit_retries = []
RETRIABLE = {
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
}


def commit(c):
    deadline = time.time() + 120
    while True:
        began = time.time()
        try:
            c.commit(asynchronous=False)
            if time.time() - began > 2:
                print(f"{began:.3f} a commit took {time.time() - began:.1f} s", file=sys.stderr, flush=True)
            return
        except KafkaException as e:
            err = e.args[0]
            print(f"{time.time():.3f} commit failed: {err}", file=sys.stderr, flush=True)
            if err.code() not in RETRIABLE or time.time() > deadline:
                raise
            commit_retries.append(str(err))
            time.sleep(0.5)


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
            commit(c)
            since_commit = 0
    commit(c)
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
            "commit_retries": commit_retries,
        }
    )
)
