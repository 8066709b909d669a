#!/usr/bin/env python3
"""The legacy AlterConfigs (key 33), which replaces a topic's whole set of configs, from
confluent-kafka (its deprecated alter_configs) and kafka-python (alter_configs with
incremental=False).

usage: legacy_configs.py BOOTSTRAP TOPIC
Exits non-zero, saying what it saw, unless the named configs take effect, the ones not
named return to their defaults (confluent-kafka sends only what it is given), and an
unknown config is refused with INVALID_CONFIG.
"""
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def values(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = list(admin.describe_configs([resource]).values())[0].result(30)
    return {name: entry.value for name, entry in entries.items()}


def main(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1, config={
            "retention.bytes": "2097152", "retention.ms": "7200000"})]).values():
        f.result(30)
    defaults_topic = topic + "-defaults"
    for f in admin.create_topics([NewTopic(defaults_topic, 1, 1)]).values():
        f.result(30)
    defaults = values(admin, defaults_topic)

    # confluent-kafka: only retention.ms is named, so retention.bytes goes back to default.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic,
                              set_config={"retention.ms": "3600000"})
    for f in admin.alter_configs([resource]).values():
        f.result(30)
    now = values(admin, topic)
    if now["retention.ms"] != "3600000" or now["retention.bytes"] != defaults["retention.bytes"]:
        sys.exit(f"confluent-kafka alter_configs: retention.ms {now['retention.ms']}, "
                 f"retention.bytes {now['retention.bytes']} (default {defaults['retention.bytes']})")
    print("confluent-kafka alter_configs: set, and the rest reset")

    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"no.such.config": "1"})
    try:
        for f in admin.alter_configs([bad]).values():
            f.result(30)
        sys.exit("confluent-kafka alter_configs(no.such.config) was taken")
    except KafkaException as e:
        if e.args[0].name() != "INVALID_CONFIG":
            sys.exit(f"confluent-kafka alter_configs(no.such.config): {e}")
    print("confluent-kafka alter_configs: an unknown config is INVALID_CONFIG")

    from kafka.admin import ConfigResource as KafkaResource, ConfigResourceType, KafkaAdminClient
    kp = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    result = kp.alter_configs([KafkaResource(ConfigResourceType.TOPIC, topic,
                                             configs={"retention.bytes": "4194304"})],
                              incremental=False)
    now = values(admin, topic)
    if now["retention.bytes"] != "4194304":
        sys.exit(f"kafka-python alter_configs(incremental=False): {result}, now {now}")
    print("kafka-python alter_configs (legacy): set")
    kp.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
