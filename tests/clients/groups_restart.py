#!/usr/bin/env python3
"""A confluent-kafka consumer group consumes through a restart of the gateway.

usage: groups_restart.py BOOTSTRAP TOPIC GROUP classic|consumer [--expect-kept]

Creates TOPIC (4 partitions) and produces RECORDS records. Two consumers of GROUP (the
classic protocol, or KIP-848's with `consumer`), each in a thread, consume them at a
steady pace and commit every COMMIT_EVERY records. Once both have partitions and a fifth
of the records are read, both stop reading (their clients go on heartbeating), so that what
they read and did not commit is counted exactly; then the script prints KILL and waits for a
line on stdin: meanwhile the gateway is killed (SIGKILL) and started again on the same
address and Iggy stream. The consumers then go on until every record is read, and a few
seconds more to see anything delivered again.

Prints one line of JSON: the records read more than once (`redelivered`; after the kill,
of records read before it: `redelivered_after_restart`), what was read and not committed
when the gateway was killed (`uncommitted_at_kill`), the rebalance
callbacks after the kill (`rebalances_after_restart`), and whether each consumer kept its
member id. With --expect-kept it fails unless nothing rebalanced after the restart and
nothing beyond what was uncommitted at the kill was delivered again.
"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
RECORDS = 8000
COMMIT_EVERY = 20
# Per record, so that the group is still consuming when the gateway goes down and comes back.
PACE_S = 0.0015

bootstrap, topic, group, protocol = sys.argv[1:5]
expect_kept = "--expect-kept" in sys.argv[5:]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


admin = AdminClient({"bootstrap.servers": bootstrap})
for _, f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).items():
    f.result(30)
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
for i in range(RECORDS):
    p.produce(topic, key=str(i).encode(), value=str(i).encode(), partition=i % PARTITIONS)
    p.poll(0)
if p.flush(60) != 0:
    raise SystemExit("produce did not finish")

lock = threading.Lock()
seen = {}  # value -> times read
again_after_kill = [0]  # reads after the kill of records read before it
killed = threading.Event()
stop = threading.Event()
# Set: the consumers stop reading and committing until it is cleared.
hold = threading.Event()


class Member:
    def __init__(self, name):
        self.name = name
        self.read = 0
        self.committed = 0
        self.events = []  # (after the kill?, what, partitions)
        self.assigned = []
        self.member_ids = []
        self.errors = []
        # Set while this consumer holds: nothing it reads or commits changes then.
        self.holding = threading.Event()
        config = {"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "client.id": name}
        if protocol == "consumer":
            config["group.protocol"] = "consumer"
        else:
            config.update({"session.timeout.ms": 30000, "heartbeat.interval.ms": 1000,
                           "partition.assignment.strategy": "range"})
        self.c = Consumer(config)

    def event(self, what, parts):
        # Closing at the end revokes everything: that is no rebalance.
        if not stop.is_set():
            self.events.append((killed.is_set(), what, sorted(tp.partition for tp in parts)))

    def on_assign(self, _c, parts):
        self.event("assign", parts)
        self.assigned = sorted(set(self.assigned) | {tp.partition for tp in parts})

    def on_revoke(self, _c, parts):
        self.event("revoke", parts)
        self.assigned = sorted(set(self.assigned) - {tp.partition for tp in parts})

    def on_lost(self, _c, parts):
        self.event("lost", parts)
        self.assigned = []

    def run(self):
        self.c.subscribe([topic], on_assign=self.on_assign, on_revoke=self.on_revoke,
                         on_lost=self.on_lost)
        pending = 0
        while not stop.is_set():
            if hold.is_set():
                self.holding.set()
                time.sleep(0.02)
                continue
            self.holding.clear()
            m = self.c.poll(0.2)
            if m is None:
                continue
            if m.error():
                self.errors.append(str(m.error()))
                continue
            with lock:
                v = int(m.value())
                if killed.is_set() and v in seen:
                    again_after_kill[0] += 1
                seen[v] = seen.get(v, 0) + 1
                self.read += 1
            pending += 1
            if pending >= COMMIT_EVERY:
                try:
                    self.c.commit(asynchronous=False)
                    with lock:
                        self.committed += pending
                    pending = 0
                except KafkaException as e:
                    # The gateway is down, or the group moved on: committed later, or
                    # delivered again.
                    self.errors.append(f"commit: {e}")
            mid = self.c.memberid()
            if mid and (not self.member_ids or self.member_ids[-1] != mid):
                self.member_ids.append(mid)
            time.sleep(PACE_S)
        self.c.close()


members = [Member("a"), Member("b")]
threads = [threading.Thread(target=m.run, daemon=True) for m in members]
for t in threads:
    t.start()

deadline = time.time() + 120
while time.time() < deadline:
    with lock:
        total = sum(m.read for m in members)
    if total >= RECORDS // 5 and all(m.assigned for m in members):
        break
    time.sleep(0.05)
else:
    raise SystemExit(f"the group did not start consuming: {[vars(m) for m in members]}")

# Hold both consumers: from here to the kill nothing is read or committed, so that what
# was read and not committed is what the kill leaves uncommitted.
hold.set()
for m in members:
    if not m.holding.wait(30):
        raise SystemExit(f"consumer {m.name} did not hold")
with lock:
    killed.set()
    uncommitted = sum(m.read - m.committed for m in members)
    read_at_kill = sum(m.read for m in members)
    ids_at_kill = [m.member_ids[-1] if m.member_ids else None for m in members]
log(f"killing the gateway after {read_at_kill} records, {uncommitted} not committed")
print("KILL", flush=True)
if not sys.stdin.readline():
    raise SystemExit("no word that the gateway restarted")
log("the gateway restarted")
hold.clear()

deadline = time.time() + 120
while time.time() < deadline and len(seen) < RECORDS:
    time.sleep(0.1)
# Anything delivered again comes after a rejoin, within a few heartbeats.
time.sleep(8)
stop.set()
for t in threads:
    t.join(30)

reads = sum(seen.values())
after = [e for m in members for e in m.events if e[0]]
result = {
    "protocol": protocol,
    "records": RECORDS,
    "unique": len(seen),
    "reads": reads,
    "redelivered": reads - len(seen),
    "redelivered_after_restart": again_after_kill[0],
    "uncommitted_at_kill": uncommitted,
    "rebalances_after_restart": len(after),
    "events_after_restart": [(e[1], e[2]) for e in after],
    "member_ids_kept": [bool(k) and m.member_ids[-1] == k for m, k in zip(members, ids_at_kill)],
    "errors": sorted({e.split(":")[0] for m in members for e in m.errors}),
}
print(json.dumps(result), flush=True)
for m in members:
    log(m.name, "events", m.events, "ids", m.member_ids, "errors", m.errors[:5])
if len(seen) != RECORDS:
    raise SystemExit(f"read {len(seen)} of {RECORDS} records")
if expect_kept:
    if after:
        raise SystemExit(f"the group rebalanced after the restart: {after}")
    if not all(result["member_ids_kept"]):
        raise SystemExit("a member lost its member id")
    if again_after_kill[0] > uncommitted:
        raise SystemExit(f"{again_after_kill[0]} delivered again, {uncommitted} uncommitted")
