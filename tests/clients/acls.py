#!/usr/bin/env python3
"""The ACL admin calls of confluent-kafka and kafka-python against a broker without an
authorizer: each must fail at once with SECURITY_DISABLED, never time out or report an
old broker.

usage: acls.py BOOTSTRAP
Exits non-zero, saying which call and why, unless every call fails that way.
"""
import sys
import time


def confluent(bootstrap):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                       AclPermissionType, AdminClient, ResourcePatternType,
                                       ResourceType)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    binding = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:alice",
                         "*", AclOperation.READ, AclPermissionType.ALLOW)
    match_all = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                 AclOperation.ANY, AclPermissionType.ANY)
    calls = {
        "describe_acls": lambda: admin.describe_acls(match_all, request_timeout=10).result(15),
        "create_acls": lambda: [f.result(15) for f in
                                admin.create_acls([binding], request_timeout=10).values()],
        "delete_acls": lambda: [f.result(15) for f in
                                admin.delete_acls([match_all], request_timeout=10).values()],
    }
    for name, call in calls.items():
        started = time.time()
        try:
            result = call()
        except KafkaException as e:
            if "SECURITY_DISABLED" not in e.args[0].name():
                sys.exit(f"confluent-kafka {name}: {e}")
        else:
            # librdkafka drops DescribeAcls' top-level error code (rdkafka_admin.c reads it
            # and returns no error), as it does against Kafka: an empty listing, at once.
            if name != "describe_acls" or result != []:
                sys.exit(f"confluent-kafka {name} succeeded: {result}")
            print(f"confluent-kafka {name}: empty (librdkafka drops the error code)")
            continue
        if time.time() - started > 5:
            sys.exit(f"confluent-kafka {name} took {time.time() - started:.1f} s")
        print(f"confluent-kafka {name}: SECURITY_DISABLED")


def kafka_python(bootstrap):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                             ResourcePatternFilter, ResourceType)
    from kafka.errors import SecurityDisabledError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    acl = ACL("User:alice", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
              ResourcePattern(ResourceType.TOPIC, "t"))
    match_all = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                          ResourcePatternFilter(ResourceType.ANY, None,
                                                ACLResourcePatternType.ANY))
    for name, call in {
        "describe_acls": lambda: admin.describe_acls(match_all),
        "create_acls": lambda: admin.create_acls([acl]),
        "delete_acls": lambda: admin.delete_acls([match_all]),
    }.items():
        try:
            result = call()
        except SecurityDisabledError:
            print(f"kafka-python {name}: SECURITY_DISABLED")
            continue
        # create_acls and delete_acls report per entry.
        text = repr(result)
        if "SecurityDisabledError" not in text:
            sys.exit(f"kafka-python {name}: {text}")
        print(f"kafka-python {name}: SECURITY_DISABLED")
    admin.close()


if __name__ == "__main__":
    confluent(sys.argv[1])
    kafka_python(sys.argv[1])
