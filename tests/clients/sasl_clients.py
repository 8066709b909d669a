"""SASL and authorization with real clients: confluent-kafka, kafka-python and kcat.

Usage: sasl_clients.py BOOTSTRAP PROTOCOL CA TOPIC SECRET_TOPIC
PROTOCOL is SASL_PLAINTEXT or SASL_SSL; CA is the CA certificate file for SASL_SSL, or -.
The gateway's users (see tests/sasl.rs): alice/alice-secret may do everything on topics;
reader/reader-secret may read TOPIC only; sender/sender-secret may only write to TOPIC;
admin/admin-secret is a super user.

Each client authenticates with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, produces and reads
back records as alice; a wrong password and an unknown user fail as authentication
failures; reader consumes TOPIC, is refused producing to it, and does not see SECRET_TOPIC;
sender, which may read no topic, is refused joining a consumer group; DescribeAcls shows
reader's permissions as bindings.
"""
import subprocess
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
import kafka
import kafka.errors

bootstrap, protocol, ca, topic, secret_topic = sys.argv[1:6]
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def confluent_config(mechanism, user, password):
    c = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        "sasl.mechanisms": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }
    if ca != "-":
        c["ssl.ca.location"] = ca
    return c


def python_config(mechanism, user, password):
    c = {
        "bootstrap_servers": bootstrap,
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }
    if ca != "-":
        c["ssl_cafile"] = ca
        c["ssl_check_hostname"] = True
    return c


def confluent_round_trip(mechanism):
    values = [f"confluent-{mechanism}-{i}".encode() for i in range(20)]
    p = Producer(confluent_config(mechanism, "alice", "alice-secret"))
    errors = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors
    c = Consumer(
        {
            **confluent_config(mechanism, "alice", "alice-secret"),
            "group.id": f"sasl-{mechanism}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    seen = set()
    deadline = time.time() + 30
    while not set(values) <= seen and time.time() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            seen.add(m.value())
    c.close()
    assert set(values) <= seen, f"confluent-kafka {mechanism}: read {len(seen)}"
    print(f"confluent-kafka {mechanism}: ok")


def confluent_refused(mechanism, user, password):
    """An authentication failure, reported by librdkafka as such (its error callback gets
    _AUTHENTICATION with the gateway's message), not a timeout."""
    errors = []
    admin = AdminClient(
        {**confluent_config(mechanism, user, password), "error_cb": errors.append}
    )
    try:
        admin.list_topics(timeout=2)
        raise AssertionError(f"{user} with a wrong password listed topics")
    except KafkaException:
        pass
    # Error callbacks are served by poll.
    admin.poll(1)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, errors
    assert "Authentication failed" in auth[0].str(), auth[0].str()
    print(f"confluent-kafka {mechanism} {user}: refused ({auth[0].str()[:90]})")


def python_round_trip(mechanism):
    values = [f"python-{mechanism}-{i}".encode() for i in range(20)]
    p = kafka.KafkaProducer(**python_config(mechanism, "alice", "alice-secret"))
    for v in values:
        p.send(topic, value=v)
    p.flush(30)
    p.close()
    c = kafka.KafkaConsumer(
        topic,
        **python_config(mechanism, "alice", "alice-secret"),
        auto_offset_reset="earliest",
    )
    seen = set()
    deadline = time.time() + 30
    while not set(values) <= seen and time.time() < deadline:
        for records in c.poll(timeout_ms=1000).values():
            seen.update(r.value for r in records)
    c.close()
    assert set(values) <= seen, f"kafka-python {mechanism}: read {len(seen)}"
    print(f"kafka-python {mechanism}: ok")


def python_refused(mechanism):
    """kafka-python keeps retrying a bootstrap whose login fails, and logs each failure as
    Kafka's error 58: that log line is what its user sees."""
    import io
    import logging
    import threading

    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("kafka").addHandler(handler)
    logging.getLogger("kafka").setLevel(logging.WARNING)

    def connect():
        try:
            kafka.KafkaProducer(**python_config(mechanism, "alice", "wrong"))
        except kafka.errors.KafkaError:
            pass

    threading.Thread(target=connect, daemon=True).start()
    deadline = time.time() + 30
    while "SaslAuthenticationFailedError" not in log.getvalue() and time.time() < deadline:
        time.sleep(0.1)
    logging.getLogger("kafka").removeHandler(handler)
    assert "SaslAuthenticationFailedError" in log.getvalue(), log.getvalue()
    print(f"kafka-python {mechanism} wrong password: refused (error 58)")


def kcat(mechanism):
    args = [
        "kcat",
        "-b",
        bootstrap,
        "-X",
        f"security.protocol={protocol}",
        "-X",
        f"sasl.mechanisms={mechanism}",
        "-X",
        "sasl.username=alice",
        "-X",
        "sasl.password=alice-secret",
    ]
    if ca != "-":
        args += ["-X", f"ssl.ca.location={ca}"]
    value = f"kcat-{mechanism}"
    subprocess.run(args + ["-P", "-t", topic], input=value.encode(), check=True, timeout=60)
    out = subprocess.run(
        args + ["-C", "-t", topic, "-o", "beginning", "-e", "-q"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    assert value in out.split("\n"), out
    print(f"kcat {mechanism}: ok")


def reader_may_read_but_not_write():
    mechanism = "SCRAM-SHA-256"
    c = Consumer(
        {
            **confluent_config(mechanism, "reader", "reader-secret"),
            "group.id": "readers",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    got = None
    deadline = time.time() + 30
    while got is None and time.time() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got = m.value()
    c.close()
    assert got is not None, "reader read nothing"
    errors = []
    p = Producer(confluent_config(mechanism, "reader", "reader-secret"))
    p.produce(topic, value=b"not allowed", on_delivery=lambda e, m: errors.append(e))
    p.flush(30)
    assert errors and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors[0]
    topics = AdminClient(confluent_config(mechanism, "reader", "reader-secret")).list_topics(
        timeout=10
    ).topics
    assert topic in topics and secret_topic not in topics, sorted(topics)
    print("reader: reads, may not write, sees only its topic")


def sender_may_not_join_a_group():
    """READ on a group is polling some topic (docs/SECURITY.md): sender may only write, so
    its consumer is told GROUP_AUTHORIZATION_FAILED and gets no record."""
    c = Consumer(
        {
            **confluent_config("PLAIN", "sender", "sender-secret"),
            "group.id": "senders",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    error = None
    deadline = time.time() + 30
    while error is None and time.time() < deadline:
        m = c.poll(1)
        if m is None:
            continue
        assert m.error(), f"sender read {m.value()!r}"
        if m.error().code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
            error = m.error()
    c.close()
    assert error is not None, "sender was not refused the group"
    print("sender: refused joining a group")


def create_topics():
    from confluent_kafka.admin import NewTopic

    admin = AdminClient(confluent_config("SCRAM-SHA-512", "alice", "alice-secret"))
    for f in admin.create_topics([NewTopic(t, 1) for t in (topic, secret_topic)]).values():
        f.result(30)


def scram_credentials_managed_by_admin_clients():
    """admin (a super user) gives carol a SCRAM credential with kafka-python's admin client
    and describes it with confluent-kafka's; carol then authenticates with it."""
    from confluent_kafka.admin import (
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(confluent_config("PLAIN", "admin", "admin-secret"))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096)
    upsert = UserScramCredentialUpsertion("carol", info, b"carol-secret", b"carol-salt")
    for f in admin.alter_user_scram_credentials([upsert]).values():
        f.result(30)
    described = admin.describe_user_scram_credentials(["carol"])["carol"].result(30)
    infos = described.scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [
        (ScramMechanism.SCRAM_SHA_256, 4096)
    ], infos
    AdminClient(confluent_config("SCRAM-SHA-256", "carol", "carol-secret")).list_topics(
        timeout=10
    )
    # alice is not a super user and has no manage_users: refused.
    refused = AdminClient(confluent_config("PLAIN", "alice", "alice-secret"))
    try:
        for f in refused.alter_user_scram_credentials([upsert]).values():
            f.result(30)
        raise AssertionError("alice altered a credential")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e
    print("SCRAM credentials: managed by admin, used by carol, refused to alice")


def acls_show_the_users_permissions():
    """DescribeAcls renders reader's permissions as ALLOW bindings (a super user asks)."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient(confluent_config("PLAIN", "admin", "admin-secret"))
    wanted = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        "User:reader",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    bindings = admin.describe_acls(wanted, request_timeout=10).result(15)
    seen = {(b.restype, b.name, b.operation, b.permission_type) for b in bindings}
    allow = AclPermissionType.ALLOW
    assert (ResourceType.TOPIC, topic, AclOperation.READ, allow) in seen, bindings
    assert (ResourceType.TOPIC, topic, AclOperation.WRITE, allow) not in seen, bindings
    assert all(b.principal == "User:reader" for b in bindings), bindings
    print("DescribeAcls: reader's permissions as bindings")


create_topics()
acls_show_the_users_permissions()
for mechanism in MECHANISMS:
    confluent_round_trip(mechanism)
    python_round_trip(mechanism)
    kcat(mechanism)
    confluent_refused(mechanism, "alice", "wrong")
    confluent_refused(mechanism, "nobody", "whatever")
python_refused("SCRAM-SHA-512")
reader_may_read_but_not_write()
sender_may_not_join_a_group()
scram_credentials_managed_by_admin_clients()
print("all ok")
