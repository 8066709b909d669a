#!/usr/bin/env bash
# What the topic mapping costs on the Iggy backend's data path, where every append and poll
# now looks its topic up. Per round, in alternation: with BASELINE set to a gateway binary
# built without the mapping (an earlier commit), that; this build with no mapping
# (`default`); and this build with the topic in a stream of its own, reached by the naming
# rule (`mapped`: --map-streams, Kafka topic STREAM.TOPIC). Each side gets fresh streams in
# the server. The lean client of benches/load drives each: 100,000 requests of one 100 B
# record with five in flight (where a per-request cost would show most), then 300,000
# records of 1 KiB in batches of 1,000 produced and consumed back. Prints each run and the
# medians.
#
#   IGGY_SERVER=127.0.0.1:8090 BASELINE=/path/to/old/iggy-kafka-gateway ROUNDS=5 benches/mapping-cost.sh
#
# The server must run already, with the root user iggy/iggy; give it a data directory in RAM
# (IGGY_SYSTEM_PATH=/dev/shm/...) so that the disk's writeback does not decide the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
SERVER="${IGGY_SERVER:-127.0.0.1:8090}"
cargo build --release -q
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load
LEAN=benches/load/target/release/iggy-kafka-lean
RESULTS=$(mktemp)
PID=
stop() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi
}
trap stop EXIT
# Millions of records per second, from the record count and the seconds the client
# prints (its own M records/s has three decimals, too few for the one-record phase).
rate() { awk '/ records of / { for (i = 1; i <= NF; i++) if ($i == "in") { printf "%.5f\n", $2 / $(i + 1) / 1e6; exit } }'; }

SIDES="default mapped"
if [ -n "${BASELINE:-}" ]; then SIDES="baseline $SIDES"; fi
for round in $(seq 1 "$ROUNDS"); do
  for side in $SIDES; do
    stream="bench-map-$$-$round-$side"
    common=(--listen 127.0.0.1:19192 --log warn --iggy "iggy://iggy:iggy@$SERVER" --stream "$stream")
    prefix=
    case "$side" in
      baseline) "$BASELINE" "${common[@]}" & PID=$! ;;
      default) target/release/iggy-kafka-gateway "${common[@]}" --admin-listen off & PID=$! ;;
      mapped)
        target/release/iggy-kafka-gateway "${common[@]}" --admin-listen off \
          --map-streams "$stream-data" & PID=$!
        prefix="$stream-data." ;;
    esac
    sleep 2
    LOAD_PHASE=create "$LOAD" 127.0.0.1:19192 "${prefix}small" 0 100 >/dev/null
    small=$(LOAD_PHASE=produce "$LEAN" 127.0.0.1:19192 "${prefix}small" 100000 100 1 5 2>&1 | rate)
    LOAD_PHASE=create "$LOAD" 127.0.0.1:19192 "${prefix}big" 0 1024 >/dev/null
    produce=$(LOAD_PHASE=produce "$LEAN" 127.0.0.1:19192 "${prefix}big" 300000 1024 1000 2>&1 | rate)
    consume=$(LOAD_PHASE=consume "$LEAN" 127.0.0.1:19192 "${prefix}big" 300000 1024 1000 2>&1 | rate)
    stop
    echo "round $round $side: one-record requests $small M/s, 1 KiB produce $produce M/s, consume $consume M/s"
    echo "$side small $small" >>"$RESULTS"
    echo "$side produce $produce" >>"$RESULTS"
    echo "$side consume $consume" >>"$RESULTS"
  done
done
echo "== medians over $ROUNDS rounds (M records/s)"
for side in $SIDES; do
  line="$side:"
  for phase in small produce consume; do
    m=$(awk -v s="$side" -v p="$phase" '$1==s && $2==p {print $3}' "$RESULTS" | sort -n \
      | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}')
    line="$line $phase $m"
  done
  echo "$line"
done
rm -f "$RESULTS"
