#!/usr/bin/env python3
"""DescribeTopicPartitions (KIP-966) from kafka-python's admin client, page by page.

usage: topic_partitions.py BOOTSTRAP PREFIX   (PREFIX-a exists with 3 partitions, PREFIX-b
with 2)
Reads PREFIX-a, PREFIX-b and a missing PREFIX-c two partitions at a time, following the
cursor, and exits non-zero unless the pages together hold every partition once, in order,
led by the one broker, and the missing topic is UNKNOWN_TOPIC_OR_PARTITION.
"""
import sys

from kafka.admin import KafkaAdminClient

bootstrap, prefix = sys.argv[1], sys.argv[2]
names = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-c"]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
seen, missing, cursor, pages = [], [], None, 0
while True:
    page = admin.describe_topic_partitions(names, response_partition_limit=2, cursor=cursor)
    pages += 1
    for t in page["topics"]:
        if t["error_code"] != 0:
            missing.append((t["name"], t["error_code"]))
            continue
        for p in t["partitions"]:
            if p["leader_id"] != 0 or p["replica_nodes"] != [0]:
                sys.exit(f"partition {t['name']}/{p['partition_index']}: {p}")
            seen.append((t["name"], p["partition_index"]))
    cursor = page["next_cursor"]
    if cursor is None or pages > 10:
        break
want = [(names[0], 0), (names[0], 1), (names[0], 2), (names[1], 0), (names[1], 1)]
if seen != want or missing != [(names[2], 3)]:
    sys.exit(f"pages {pages}: seen {seen}, missing {missing}")
print(f"kafka-python describe_topic_partitions: {len(seen)} partitions in {pages} pages")
admin.close()
