#!/usr/bin/env python3
"""Leader elections and partition reassignments from admin clients, against the gateway as
a one-broker cluster: confluent-kafka and kafka-python elect leaders, kafka-python lists
and alters reassignments (kafkajs does too, in replicas.js).

usage: replicas.py BOOTSTRAP TOPIC   (TOPIC exists with two partitions)
Exits non-zero, saying which call and what it got, unless each answers as Kafka's
controller does for one broker that leads every partition.
"""
import sys


def confluent(bootstrap, topic):
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(topic, 7)]
    result = admin.elect_leaders(ElectionType.PREFERRED, asked).result(15)
    got = {tp.partition: error_name(e) for tp, e in result.items()}
    want = {0: "ELECTION_NOT_NEEDED", 1: "ELECTION_NOT_NEEDED", 7: "UNKNOWN_TOPIC_OR_PART"}
    if got != want:
        sys.exit(f"confluent-kafka elect_leaders: {got}")
    # Every partition: none needs an election, so none is listed.
    everything = admin.elect_leaders(ElectionType.PREFERRED, None).result(15)
    if everything:
        sys.exit(f"confluent-kafka elect_leaders(all): {everything}")
    print("confluent-kafka elect_leaders: ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PART; all: none")


def error_name(e):
    """The Kafka error name a confluent-kafka result holds (None for success)."""
    if e is None:
        return None
    inner = e.args[0] if getattr(e, "args", None) else e
    return inner.name() if hasattr(inner, "name") else str(e)


def kafka_python(bootstrap, topic):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    response = admin.elect_leaders(0, {topic: [0, 1, 7]}, raise_errors=False)
    codes = {(r[0], p[0]): p[1] for r in response.replica_election_results for p in r[1]}
    if codes != {(topic, 0): 84, (topic, 1): 84, (topic, 7): 3}:
        sys.exit(f"kafka-python elect_leaders: {codes}")
    print("kafka-python elect_leaders: 84, 84, 3")

    if admin.list_partition_reassignments():
        sys.exit("kafka-python list_partition_reassignments: not empty")
    if admin.list_partition_reassignments({topic: [0, 1]}):
        sys.exit("kafka-python list_partition_reassignments(topic): not empty")
    print("kafka-python list_partition_reassignments: none in progress")

    result = admin.alter_partition_reassignments({
        TopicPartition(topic, 0): [0],        # where it is already: nothing to do
        TopicPartition(topic, 1): [0, 1],     # broker 1 does not exist
        TopicPartition(topic, 7): [0],        # no such partition
    })
    names = {tp.partition: (e.__name__ if e else None) for tp, e in result.items()}
    want = {0: None, 1: "InvalidReplicationAssignmentError", 7: "UnknownTopicOrPartitionError"}
    if names != want:
        sys.exit(f"kafka-python alter_partition_reassignments: {names}")
    cancelled = admin.alter_partition_reassignments({TopicPartition(topic, 0): None})
    names = {tp.partition: (e.__name__ if e else None) for tp, e in cancelled.items()}
    if names != {0: "NoReassignmentInProgressError"}:
        sys.exit(f"kafka-python alter_partition_reassignments(cancel): {names}")
    print("kafka-python alter_partition_reassignments: none, invalid, unknown; cancel: none")
    admin.close()


if __name__ == "__main__":
    confluent(sys.argv[1], sys.argv[2])
    kafka_python(sys.argv[1], sys.argv[2])
