#!/usr/bin/env python3
"""Consumer groups through the gateway with real clients.

usage: groups.py confluent BOOTSTRAP TOPIC GROUP
       groups.py worker BOOTSTRAP TOPIC GROUP OUTFILE STOPFILE   (one confluent-kafka member)

The `confluent` scenario runs confluent-kafka consumers as separate processes in one group
over a 6-partition topic while records keep arriving:

  A. members join and leave gracefully (each commits on revocation): every record is read,
     and none twice;
  B. a member is killed with SIGKILL: after its session timeout its partitions go to the
     others, and no record is lost (only what the killed member read may be read again);
  C. the whole group stops and a new member starts: it resumes from the committed offsets
     and reads exactly the records produced meanwhile;
  D. kafka-python's admin client lists, describes and deletes the group, and reads its
     committed offsets.

Exits non-zero on any failure.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

PARTITIONS = 6
SESSION_MS = 6000


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def worker(bootstrap, topic, group, out, stop_file):
    from confluent_kafka import Consumer, KafkaError, KafkaException

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": os.path.basename(out),
        "auto.offset.reset": "earliest",
        # Offsets are stored once a record is written down, and committed every 500 ms,
        # on revocation (below) and on close.
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 500,
        "enable.auto.offset.store": False,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 30000,
        "partition.assignment.strategy": "range",
    })
    f = open(out, "a", buffering=1)

    def on_assign(consumer, parts):
        f.write(f"# assigned {sorted(p.partition for p in parts)}\n")

    def on_revoke(consumer, parts):
        f.write(f"# revoked {sorted(p.partition for p in parts)}\n")
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            if e.args[0].code() != KafkaError._NO_OFFSET:
                raise

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not os.path.exists(stop_file):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            f.write(f"# error {m.error()}\n")
            continue
        f.write(f"{m.partition()} {m.offset()} {m.value().decode()}\n")
        c.store_offsets(m)
    c.close()
    f.write("# closed\n")


class Member:
    def __init__(self, dir, name, bootstrap, topic, group):
        self.out = os.path.join(dir, name + ".out")
        self.stop_file = os.path.join(dir, name + ".stop")
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "worker", bootstrap, topic, group, self.out, self.stop_file])

    def records(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [tuple(int(x) for x in line.split()[:2]) for line in f if not line.startswith("#")]

    def assigned(self):
        if not os.path.exists(self.out):
            return None
        last = None
        with open(self.out) as f:
            for line in f:
                if line.startswith("# assigned"):
                    last = line
                elif line.startswith("# revoked"):
                    last = None
        return last

    def stop(self):
        open(self.stop_file, "w").close()
        if self.proc.wait(60) != 0:
            raise SystemExit(f"{self.name} exited with {self.proc.returncode}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def produce(bootstrap, topic, start, count):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(start, start + count):
        p.produce(topic, key=f"k{i}".encode(), value=f"{i}".encode())
        p.poll(0)
        if i % 200 == 0:
            time.sleep(0.05)
    if p.flush(30) != 0:
        raise SystemExit("produce failed")


def wait_for(what, cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def end_offsets(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    c.close()
    return ends


def confluent_scenario(bootstrap, topic, group):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).items():
        f.result(30)
    dir = tempfile.mkdtemp(prefix="groups-")
    members = []

    def start(name):
        m = Member(dir, name, bootstrap, topic, group)
        members.append(m)
        return m

    def union():
        seen = {}
        for m in members:
            for r in m.records():
                seen.setdefault(r, []).append(m.name)
        return seen

    def all_read(total):
        ends = end_offsets(bootstrap, topic)
        want = sum(ends.values())
        if want != total:
            raise SystemExit(f"end offsets add up to {want}, expected {total}")
        def check():
            seen = union()
            return all((p, o) in seen for p in range(PARTITIONS) for o in range(ends[p]))
        return check

    # A: join and leave gracefully while records arrive.
    log("A: three members join, one leaves")
    w1 = start("w1")
    produce(bootstrap, topic, 0, 2000)
    wait_for("w1 reading", lambda: len(w1.records()) > 0)
    w2, w3 = start("w2"), start("w3")
    wait_for("w2 and w3 assigned", lambda: w2.assigned() and w3.assigned())
    producer = threading.Thread(target=produce, args=(bootstrap, topic, 2000, 2000))
    producer.start()
    w1.stop()
    producer.join()
    produce(bootstrap, topic, 4000, 2000)
    wait_for("every record read", all_read(6000))
    dups = {r: who for r, who in union().items() if len(who) > 1}
    if dups:
        raise SystemExit(f"A: {len(dups)} records read twice, e.g. {list(dups.items())[:5]}")
    log("A: 6000 records, each read once")

    # D (while the group is stable): describe it with kafka-python's admin client.
    from kafka import KafkaAdminClient, TopicPartition

    kadmin = KafkaAdminClient(bootstrap_servers=bootstrap)

    def describe():
        d = kadmin.describe_groups([group])[group]
        if d["error"]:
            raise SystemExit(f"describe: {d}")
        return d

    wait_for("a stable group", lambda: describe()["group_state"] == "Stable")
    described = describe()
    if len(described["members"]) != 2 or described["protocol_data"] != "range":
        raise SystemExit(f"described {described}")
    for m in described["members"]:
        if not m["member_assignment"] or not m["member_metadata"]:
            raise SystemExit(f"no assignment or subscription in {m}")
    log("D: described", described["group_state"], sorted(m["client_id"] for m in described["members"]))

    # B: a member killed with SIGKILL; its partitions move after its session timeout.
    log("B: a fourth member joins, then w2 is killed")
    w4 = start("w4")
    wait_for("w4 assigned", lambda: w4.assigned() and w2.assigned() and w3.assigned())
    time.sleep(1)
    w2.kill()
    killed_at = time.time()
    produce(bootstrap, topic, 6000, 2000)
    wait_for("every record read after the kill", all_read(8000), timeout=90)
    log(f"B: all read {time.time() - killed_at:.1f}s after the kill")
    w2_read = set(w2.records())
    dups = {r: who for r, who in union().items() if len(who) > 1 and r not in w2_read}
    if dups:
        raise SystemExit(f"B: {len(dups)} records read twice outside w2's, e.g. {list(dups.items())[:5]}")

    # C: the group stops; records arrive; a new member resumes from the committed offsets.
    log("C: the group stops and restarts")
    w3.stop()
    w4.stop()
    produce(bootstrap, topic, 8000, 1000)
    w5 = start("w5")
    wait_for("the new records read", lambda: len(w5.records()) >= 1000)
    time.sleep(2)
    w5.stop()
    got = w5.records()
    ends = end_offsets(bootstrap, topic)
    if len(got) != 1000 or len(set(got)) != 1000:
        raise SystemExit(f"C: the restarted group read {len(got)} records, expected the 1000 new ones")
    log("C: resumed from the committed offsets: read exactly the 1000 new records")

    # D: list, offsets, delete.
    listed = {g["group_id"]: g for g in kadmin.list_groups()}
    if listed.get(group, {}).get("group_state") != "Empty":
        raise SystemExit(f"{group} not listed as Empty: {listed}")
    described = describe()
    if described["group_state"] != "Empty" or described["members"]:
        raise SystemExit(f"after the group stopped: {described}")
    committed = kadmin.list_group_offsets(group)[group]
    by_partition = {tp.partition: om.offset for tp, om in committed.items() if tp.topic == topic}
    if by_partition != ends:
        raise SystemExit(f"committed {by_partition}, end offsets {ends}")
    deleted = kadmin.delete_group_offsets(group, [TopicPartition(topic, 0)])
    if any(e.__name__ != "NoError" for e in deleted.values()):
        raise SystemExit(f"OffsetDelete: {deleted}")
    committed = kadmin.list_group_offsets(group)[group]
    if sorted(tp.partition for tp in committed) != list(range(1, PARTITIONS)):
        raise SystemExit(f"after OffsetDelete of partition 0: {committed}")
    result = kadmin.delete_groups([group])
    if result != {group: "OK"}:
        raise SystemExit(f"DeleteGroups: {result}")
    if group in {g["group_id"] for g in kadmin.list_groups()}:
        raise SystemExit(f"{group} still listed after deletion")
    result = kadmin.delete_groups([group])
    if result != {group: "GroupIdNotFoundError"}:
        raise SystemExit(f"deleting a deleted group: {result}")
    if kadmin.list_group_offsets(group)[group]:
        raise SystemExit("offsets survived the group's deletion")
    log("D: listed, committed offsets equal the end offsets, offsets deleted, group deleted")
    admin.delete_topics([topic])[topic].result(30)


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(*sys.argv[2:7])
    elif sys.argv[1] == "confluent":
        confluent_scenario(*sys.argv[2:5])
    else:
        raise SystemExit(__doc__)
