"""Transactional ids authorized, with confluent-kafka over SASL (PLAIN).

Usage: txn_authz.py BOOTSTRAP TOPIC
The gateway's users (see tests/sasl.rs): sender/sender-secret may only write to TOPIC;
reader/reader-secret may only read it; admin/admin-secret, a super user, creates it.

sender runs a transaction to its end (WRITE on a transactional id is sending to some
topic); reader's init_transactions fails with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a
fatal error, as against a Kafka broker whose ACLs deny the id.
"""
import sys

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic = sys.argv[1:3]


def config(user):
    return {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": user,
        "sasl.password": f"{user}-secret",
    }


def producer(user, transactional_id):
    return Producer({**config(user), "transactional.id": transactional_id})


admin = AdminClient(config("admin"))
for f in admin.create_topics([NewTopic(topic, 1)]).values():
    f.result(30)


p = producer("sender", "txn-authz")
p.init_transactions(15)
p.begin_transaction()
p.produce(topic, value=b"in a transaction")
p.commit_transaction(15)
print("sender: a transaction committed")

p = producer("reader", "txn-authz")
try:
    p.init_transactions(15)
except KafkaException as e:
    error = e.args[0]
    assert error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, error
    print(f"reader: init_transactions refused: {error}")
else:
    sys.exit("reader's init_transactions succeeded")
