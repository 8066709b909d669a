"""The records every Python-driven client test produces, and how to compare what came back.

Each record has a key, most have headers (one repeated key, one null value), and every
seventh value is null, so that the gateway's mapping is exercised on every edge a client
can reach. The index travels in the key, so records can be matched whatever partition and
order they come back in.
"""

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 2000
TOTAL = PER_CODEC * len(CODECS)


def record(i):
    key = b"key-%d" % i
    value = None if i % 7 == 0 else (b"value-%d-" % i) + b"x" * (i % 97)
    headers = []
    if i % 3:
        headers = [("idx", b"%d" % i), ("dup", b"a"), ("dup", b"b")]
    if i % 11 == 0:
        headers.append(("empty", b""))
    return key, value, headers


def check(got, expected_total=TOTAL, record=record):
    """got: list of (key, value, headers) as consumed. Fails loudly on any difference."""
    if len(got) != expected_total:
        raise SystemExit(f"consumed {len(got)} records, expected {expected_total}")
    by_key = {}
    for key, value, headers in got:
        if key in by_key:
            raise SystemExit(f"record {key!r} consumed twice")
        by_key[key] = (value, [(k, v if v is not None else None) for k, v in headers])
    for i in range(expected_total):
        key, value, headers = record(i)
        if key not in by_key:
            raise SystemExit(f"record {key!r} missing")
        gv, gh = by_key[key]
        if gv != value:
            raise SystemExit(f"record {key!r}: value {gv!r}, expected {value!r}")
        if gh != headers:
            raise SystemExit(f"record {key!r}: headers {gh!r}, expected {headers!r}")
