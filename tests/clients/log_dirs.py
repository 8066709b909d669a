#!/usr/bin/env python3
"""DescribeLogDirs from kafka-python's admin client: one log dir, holding the topic's
partitions with the bytes the backend reports.

usage: log_dirs.py BOOTSTRAP TOPIC   (TOPIC exists with two partitions; partition 0 holds
records, partition 1 none)
"""
import json
import sys

from kafka.admin import KafkaAdminClient

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
for asked in ({topic: [0, 1, 9]}, None):
    dirs = admin.describe_log_dirs(topic_partitions=asked)
    text = json.dumps(dirs, default=str)
    # One broker, one log dir; the partitions of TOPIC and their sizes.
    sizes = {}
    for broker in dirs:
        results = broker.get("results") or broker.get("log_dirs") or []
        for result in results:
            if result["error_code"] != 0:
                sys.exit(f"log dir error: {text}")
            for t in result["topics"]:
                if t["name"] == topic:
                    for p in t["partitions"]:
                        sizes[p["partition_index"]] = p["partition_size"]
    if sorted(sizes) != [0, 1] or not sizes[0] > 0 or sizes[1] != 0:
        sys.exit(f"describe_log_dirs({asked}): sizes {sizes} from {text}")
    print(f"kafka-python describe_log_dirs({asked}): {sizes}")
admin.close()
