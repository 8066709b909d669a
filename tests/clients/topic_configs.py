"""Topic configuration through confluent-kafka's admin client: create with configs, describe,
alter incrementally (set and delete), and the refusals, on the backend named by argv[3]
("embedded" or "iggy"), whose storage settings differ."""

import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)

bootstrap, prefix, backend = sys.argv[1], sys.argv[2], sys.argv[3]
admin = AdminClient({"bootstrap.servers": bootstrap})
created = []


def code(future):
    try:
        future.result(timeout=30)
        return None
    except KafkaException as e:
        return e.args[0].code()


def create(name, config, partitions=1):
    name = f"{prefix}-{name}"
    result = code(admin.create_topics([NewTopic(name, partitions, 1, config=config)])[name])
    if result is None:
        created.append(name)
    return result


def describe(name):
    r = ConfigResource("topic", f"{prefix}-{name}")
    return admin.describe_configs([r])[r].result(timeout=30)


def value(name, key):
    entry = describe(name)[key]
    return entry.value, entry.source


def alter(name, **entries):
    ops = [
        ConfigEntry(
            key.replace("_", "."),
            v,
            incremental_operation=AlterConfigOpType.DELETE if v is None else AlterConfigOpType.SET,
        )
        for key, v in entries.items()
    ]
    r = ConfigResource("topic", f"{prefix}-{name}", incremental_configs=ops)
    return code(admin.incremental_alter_configs([r])[r])


def expect(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")
    print(f"ok: {what} = {got!r}")


DYNAMIC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
DEFAULT = ConfigSource.DEFAULT_CONFIG.value
INVALID_CONFIG = KafkaError.INVALID_CONFIG


def source(pair):
    return pair[0], getattr(pair[1], "value", pair[1])


# Both backends keep records until a topic sets a limit, and say so.
expect("create plain", create("plain", {}), None)
expect("default retention.ms", source(value("plain", "retention.ms")), ("-1", DEFAULT))

# retention.ms: set at creation, changed, and deleted back to "no limit".
expect("create timed", create("timed", {"retention.ms": "60000"}), None)
expect("retention.ms", source(value("timed", "retention.ms")), ("60000", DYNAMIC))
expect("set retention.ms", alter("timed", retention_ms="120000"), None)
expect("retention.ms set", value("timed", "retention.ms")[0], "120000")
expect("delete retention.ms", alter("timed", retention_ms=None), None)
expect("retention.ms deleted", source(value("timed", "retention.ms")), ("-1", DEFAULT))
expect("set retention.ms -1", alter("timed", retention_ms="-1"), None)
expect("retention.ms -1", value("timed", "retention.ms")[0], "-1")

# retention.bytes per partition, kept through an alter of something else.
expect("create sized", create("sized", {"retention.bytes": "10485760"}, partitions=2), None)
expect("retention.bytes", value("sized", "retention.bytes")[0], "10485760")
expect("alter beside it", alter("sized", retention_ms="3600000"), None)
expect("retention.bytes kept", value("sized", "retention.bytes")[0], "10485760")

# Refused everywhere.
expect("unknown config", create("unknown", {"no.such.config": "1"}), INVALID_CONFIG)
expect("compaction", create("compact", {"cleanup.policy": "compact"}), INVALID_CONFIG)
expect("flush.messages 0", create("flush0", {"flush.messages": "0"}), INVALID_CONFIG)

if backend == "embedded":
    # In memory: no segments, nothing to flush; the defaults alone are accepted.
    expect("segment.bytes", create("segments", {"segment.bytes": "8388608"}), INVALID_CONFIG)
    expect("flush.messages", create("fsync", {"flush.messages": "1"}), INVALID_CONFIG)
    expect(
        "defaults spelled out",
        create("spelled", {"segment.bytes": "1073741824", "flush.messages": "9223372036854775807"}),
        None,
    )
elif backend == "iggy":
    # Segments no larger than a partition's retention, so that retention can act.
    expect("derived segment.bytes", value("sized", "segment.bytes"), ("10485760", DYNAMIC))
    expect("retention below a segment", alter("sized", retention_bytes="1048576"), INVALID_CONFIG)
    expect("segment.bytes", create("segments", {"segment.bytes": "8388608"}), None)
    expect("segment.bytes read back", value("segments", "segment.bytes")[0], "8388608")
    expect("segment.bytes is set at creation", alter("segments", segment_bytes="16777216"), INVALID_CONFIG)
    expect("odd segment.bytes", create("odd", {"segment.bytes": "8388609"}), INVALID_CONFIG)
    expect("flush.messages 1", create("fsync", {"flush.messages": "1"}), None)
    expect("flush.messages read back", value("fsync", "flush.messages")[0], "1")
    expect("flush.messages 5", create("fsync5", {"flush.messages": "5"}), INVALID_CONFIG)
    expect("flush.messages is set at creation", alter("fsync", flush_messages=None), INVALID_CONFIG)
    expect("plain segment.bytes", source(value("plain", "segment.bytes")), ("1073741824", DEFAULT))
else:
    raise SystemExit(f"unknown backend {backend}")

for name, future in admin.delete_topics(created).items():
    expect(f"delete {name}", code(future), None)
print("topic configs ok")
