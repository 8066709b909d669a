"""SCRAM credentials kept in Iggy: an admin sets one with confluent-kafka's admin client.

Usage: scram_store.py BOOTSTRAP set|check|delete|deleted [ADMIN PASSWORD]
set: ADMIN (admin/admin-secret by default; PLAIN, checked by Iggy; a super user) gives erin a
SCRAM-SHA-512 credential for erin-secret; erin then authenticates with it.
check: erin authenticates with SCRAM-SHA-512 (after a gateway restart), and a wrong
password fails.
delete: erin authenticates with SCRAM-SHA-512, then ADMIN deletes that credential, and
erin's login with it fails.
deleted: erin's SCRAM-SHA-512 login fails (after a gateway restart).
churn: ADMIN sets erin's SCRAM-SHA-512 credential for erin-secret 300 times, each with
another salt, one request each (more changes than the credentials topic keeps before it is
compacted); erin then authenticates with it.
"""
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

bootstrap, step = sys.argv[1:3]
admin_user, admin_password = (sys.argv[3:5] + ["admin", "admin-secret"][len(sys.argv[3:5]):])


def admin(mechanism, user, password):
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        }
    )


def erin_logs_in():
    admin("SCRAM-SHA-512", "erin", "erin-secret").list_topics(timeout=10)


def scram_refused(password, what):
    """erin's SCRAM-SHA-512 login with `password` fails as an authentication failure
    (librdkafka's error callback gets _AUTHENTICATION with the gateway's message), not a
    timeout or any other error."""
    errors = []
    a = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": "erin",
            "sasl.password": password,
            "error_cb": errors.append,
        }
    )
    try:
        a.list_topics(timeout=5)
        raise AssertionError(f"{what} logged in")
    except KafkaException:
        pass
    # Error callbacks are served by poll.
    a.poll(1)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    assert auth, f"{what}: {errors}"
    assert "Authentication failed" in auth[0].str(), auth[0].str()
    print(f"{what}: refused ({auth[0].str()[:90]})")


if step == "set":
    a = admin("PLAIN", admin_user, admin_password)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upsert = UserScramCredentialUpsertion("erin", info, b"erin-secret", b"erin-salt")
    for f in a.alter_user_scram_credentials([upsert]).values():
        f.result(30)
    erin_logs_in()
    print("set, and erin logs in")
elif step == "churn":
    a = admin("PLAIN", admin_user, admin_password)
    for i in range(300):
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        salt = b"erin-salt-%d" % i
        upsert = UserScramCredentialUpsertion("erin", info, b"erin-secret", salt)
        for f in a.alter_user_scram_credentials([upsert]).values():
            f.result(30)
    erin_logs_in()
    print("set 300 times, and erin logs in")
elif step in ("delete", "deleted"):
    if step == "delete":
        erin_logs_in()
        a = admin("PLAIN", admin_user, admin_password)
        deletion = UserScramCredentialDeletion("erin", ScramMechanism.SCRAM_SHA_512)
        for f in a.alter_user_scram_credentials([deletion]).values():
            f.result(30)
    scram_refused("erin-secret", "the deleted credential")
    print("erin's credential is gone")
else:
    erin_logs_in()
    scram_refused("not-erins", "a wrong password")
    print("erin logs in after the restart")
