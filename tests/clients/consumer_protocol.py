#!/usr/bin/env python3
"""Consumer groups of the consumer protocol (KIP-848, `group.protocol=consumer`) with
confluent-kafka (librdkafka).

usage: consumer_protocol.py BOOTSTRAP TOPIC GROUP
       consumer_protocol.py worker BOOTSTRAP TOPIC GROUP   (one member, until killed)

Three consumers share a 6-partition topic: each gets partitions of its own, none shared;
every record is read once (each is committed before the next is read); one consumer leaves
and the other two take its partitions and read what is produced after; a consumer
subscribed by regular expression reads a topic created after it joined; a static member
(`group.instance.id`) restarts and gets its partitions back while the other member keeps its
own, unrevoked; a member killed outright (SIGKILL) loses its partitions to the other after
the session timeout (the gateway runs with 6 s), and no record is lost. The admin client lists the group as a `consumer` group and describes it.
Exits non-zero on any failure.
"""
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
DEADLINE_S = 90


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def fail(msg):
    log("FAIL:", msg)
    sys.exit(1)


def produce(bootstrap, topic, start, n, partitions=PARTITIONS):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    for i in range(start, start + n):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(),
                  partition=i % partitions, on_delivery=delivered)
    if p.flush(30) != 0 or failed:
        fail(f"records not delivered: {failed[:3]}")


class Member(threading.Thread):
    def __init__(self, name, bootstrap, group, subscription, seen, lock, debug=None,
                 instance=None):
        super().__init__(daemon=True)
        self.name_ = name
        self.seen = seen
        self.lock = lock
        self.stop = threading.Event()
        self.error = None
        self.subscription = subscription
        self.owned = set()
        self.revocations = 0
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **({"debug": debug} if debug else {}),
            **({"group.instance.id": instance} if instance else {}),
        })

    def assignment(self):
        # Kept from the rebalance callbacks (incremental with this protocol), in this
        # thread: the consumer is not called from two threads.
        with self.lock:
            return sorted(self.owned)

    def on_assign(self, _consumer, parts):
        with self.lock:
            self.owned |= {(tp.topic, tp.partition) for tp in parts}

    def on_revoke(self, _consumer, parts):
        with self.lock:
            self.revocations += len(parts)
            self.owned -= {(tp.topic, tp.partition) for tp in parts}

    def run(self):
        try:
            self.c.subscribe(self.subscription, on_assign=self.on_assign,
                             on_revoke=self.on_revoke, on_lost=self.on_revoke)
            while not self.stop.is_set():
                m = self.c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    # Transient errors are logged; the test fails on what is read.
                    log(self.name_, "error:", m.error())
                    continue
                with self.lock:
                    self.seen.append((m.topic(), m.key().decode(), self.name_))
                # Committed before the next record is read: a partition handed over is read
                # from here by its next owner.
                self.c.commit(message=m, asynchronous=False)
            self.c.close()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e


def wait_for(what, cond):
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.2)
    fail(f"timed out waiting for {what}")


def main():
    import faulthandler
    # A hang shows where it is stuck instead of waiting for the harness.
    faulthandler.dump_traceback_later(150, exit=True)
    bootstrap, topic, group = sys.argv[1:4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result()
    produce(bootstrap, topic, 0, 300)

    seen = []
    lock = threading.Lock()
    members = [Member(f"m{i}", bootstrap, group, [topic], seen, lock) for i in range(3)]
    for m in members:
        m.start()

    def assignments():
        return [m.assignment() for m in members]

    wait_for("every member to own partitions",
             lambda: all(len(a) > 0 for a in assignments())
             and sum(len(a) for a in assignments()) == PARTITIONS)
    owned = [p for a in assignments() for p in a]
    if len(set(owned)) != len(owned):
        fail(f"a partition has two owners: {assignments()}")
    log("assignments:", assignments())
    wait_for("the first 300 records", lambda: len(seen) >= 300)

    # One member leaves: the others take its partitions.
    leaving = members.pop()
    leaving.stop.set()
    leaving.join(30)
    if leaving.error:
        fail(f"{leaving.name_}: {leaving.error}")
    wait_for("the two members to own every partition",
             lambda: sum(len(a) for a in assignments()) == PARTITIONS
             and all(len(a) > 0 for a in assignments()))
    log("after one left:", assignments())
    produce(bootstrap, topic, 300, 300)
    wait_for("all 600 records", lambda: len(seen) >= 600)
    time.sleep(1)
    keys = [k for (t, k, _) in seen if t == topic]
    dupes = len(keys) - len(set(keys))
    if dupes or set(keys) != {str(i) for i in range(600)}:
        fail(f"{len(keys)} records read, {len(set(keys))} distinct, {dupes} twice")
    log("600 records, each read once")

    # The admin client sees a consumer group.
    listed = admin.list_consumer_groups().result(30)
    kinds = {g.group_id: getattr(g, "type", None) for g in listed.valid}
    if group not in kinds:
        fail(f"ListGroups does not show {group}: {kinds}")
    log("listed:", kinds[group])
    if kinds[group] is not None and "CONSUMER" not in str(kinds[group]).upper():
        fail(f"{group} listed as {kinds[group]}")
    described = admin.describe_consumer_groups([group])[group].result(30)
    log("described:", described.state, [m.client_id for m in described.members])
    if sorted(m.client_id for m in described.members) != ["m0", "m1"]:
        fail(f"described members: {[m.client_id for m in described.members]}")

    for m in members:
        m.stop.set()
    for m in members:
        m.join(30)
        if m.error:
            fail(f"{m.name_}: {m.error}")

    # A subscription by regular expression takes a topic created after it joined.
    prefix = topic + "-re"
    regex_seen = []
    r = Member("r0", bootstrap, group + "-re", [f"^{prefix}.*"], regex_seen, lock,
               debug=os.environ.get("RDKAFKA_DEBUG"))
    for f in admin.create_topics([NewTopic(prefix + "1", 2, 1)]).values():
        f.result()
    produce(bootstrap, prefix + "1", 0, 10, 2)
    r.start()
    wait_for("the regex member to read the first topic", lambda: len(regex_seen) >= 10)
    for f in admin.create_topics([NewTopic(prefix + "2", 2, 1)]).values():
        f.result()
    produce(bootstrap, prefix + "2", 0, 10, 2)
    wait_for("the regex member to read the new topic", lambda: len(regex_seen) >= 20)
    r.stop.set()
    r.join(30)
    topics = sorted({t for (t, _, _) in regex_seen})
    if topics != [prefix + "1", prefix + "2"]:
        fail(f"regex member read {topics}")
    log("regex subscription followed the new topic")

    # A static member restarts: it gets its partitions back and the other member keeps its
    # own throughout (no rebalance).
    sgroup = group + "-static"
    sseen = []
    s1 = Member("s1", bootstrap, sgroup, [topic], sseen, lock, instance="instance-1")
    d1 = Member("d1", bootstrap, sgroup, [topic], sseen, lock)
    s1.start()
    d1.start()
    wait_for("both static-group members to own partitions",
             lambda: len(s1.assignment()) > 0 and len(d1.assignment()) > 0
             and len(s1.assignment()) + len(d1.assignment()) == PARTITIONS)
    before_s, before_d = s1.assignment(), d1.assignment()
    revoked_before = d1.revocations
    s1.stop.set()
    s1.join(30)
    s2 = Member("s2", bootstrap, sgroup, [topic], sseen, lock, instance="instance-1")
    s2.start()
    wait_for("the restarted static member to own its partitions again",
             lambda: s2.assignment() == before_s)
    time.sleep(2)
    if d1.assignment() != before_d or d1.revocations != revoked_before:
        fail(f"the other member was rebalanced: {before_d} -> {d1.assignment()}")
    log("static member restarted with", s2.assignment(), "; the other kept", d1.assignment())
    for m in (s2, d1):
        m.stop.set()
        m.join(30)

    # A member killed outright: after its session timeout the other takes its partitions and
    # reads on from the last commit; nothing is lost (what the killed one read and did not
    # commit may be read again).
    kgroup = group + "-killed"
    killed = subprocess.Popen([sys.executable, __file__, "worker", bootstrap, topic, kgroup])
    kseen = []
    survivor = Member("k1", bootstrap, kgroup, [topic], kseen, lock)
    survivor.start()
    wait_for("both members of the killed-member group to own partitions",
             lambda: 0 < len(survivor.assignment()) < PARTITIONS)
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    started = time.time()
    wait_for("the survivor to own every partition",
             lambda: len(survivor.assignment()) == PARTITIONS)
    took = time.time() - started
    log(f"after the kill the survivor owned every partition in {took:.1f} s")
    if took < 3:
        fail("the partitions moved before the killed member's session could lapse")
    produce(bootstrap, topic, 600, 60)
    wait_for("the records produced after the kill",
             lambda: {str(i) for i in range(600, 660)} <= {k for (_, k, _) in kseen})
    survivor.stop.set()
    survivor.join(30)
    log("OK")


def worker(bootstrap, topic, group):
    seen = []
    m = Member("killed", bootstrap, group, [topic], seen, threading.Lock())
    m.run()


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(*sys.argv[2:5])
    else:
        main()
