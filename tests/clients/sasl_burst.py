"""A burst of PLAIN logins past the gateway's password-check budget all succeed.

Usage: sasl_burst.py BOOTSTRAP USER:PASSWORD...
Each user logs in at the same time (confluent-kafka's admin client, over SASL_PLAINTEXT)
and lists the topics; the gateway runs with a budget of one check a second, so all but
one wait their turn rather than fail.
"""
import sys
import threading

from confluent_kafka.admin import AdminClient

bootstrap = sys.argv[1]
users = [u.split(":", 1) for u in sys.argv[2:]]
results = {}


def login(user, password):
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN",
            "sasl.username": user,
            "sasl.password": password,
        }
    )
    try:
        admin.list_topics(timeout=30)
        results[user] = "ok"
    except Exception as e:  # noqa: BLE001 - reported below
        results[user] = repr(e)


threads = [threading.Thread(target=login, args=u) for u in users]
for t in threads:
    t.start()
for t in threads:
    t.join()
failed = {u: r for u, r in results.items() if r != "ok"}
assert len(results) == len(users) and not failed, results
print(f"{len(users)} logins in one burst: all ok")
