#!/usr/bin/env bash
# What the gateway's counters and a scraper cost, on the embedded store. Per round, in
# alternation, the gateway runs with the admin listener off (the counters are kept, nobody
# reads them), and on with a scrape of /metrics every second (Prometheus scrapes every 15 s
# by default); with BASELINE set to a gateway binary built without them (an earlier commit),
# that too. The lean client of benches/load drives each: 300,000 requests of one 100 B record
# with five in flight (where a per-request cost would show), then 800,000 records of 1 KiB
# in batches of 1,000 produced and consumed back. Prints each run and the medians.
#
#   benches/metrics-cost.sh
#   BASELINE=/path/to/old/iggy-kafka-gateway ROUNDS=5 benches/metrics-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-5}"
cargo build --release -q
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load
LEAN=benches/load/target/release/iggy-kafka-lean
RESULTS=$(mktemp)
PID=
SCRAPER=
stop() {
  if [ -n "$SCRAPER" ]; then kill "$SCRAPER" 2>/dev/null || true; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=; fi
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi
}
trap stop EXIT
rate() { grep -oE '[0-9.]+ M records/s' | head -1 | cut -d' ' -f1; }

SIDES="off scraped"
if [ -n "${BASELINE:-}" ]; then SIDES="baseline $SIDES"; fi
for round in $(seq 1 "$ROUNDS"); do
  for side in $SIDES; do
    case "$side" in
      baseline) "$BASELINE" --listen 127.0.0.1:19192 --log warn & PID=$! ;;
      off) target/release/iggy-kafka-gateway --listen 127.0.0.1:19192 --log warn --admin-listen off & PID=$! ;;
      scraped)
        target/release/iggy-kafka-gateway --listen 127.0.0.1:19192 --log warn \
          --admin-listen 127.0.0.1:19464 & PID=$!
        (while true; do curl -s -o /dev/null http://127.0.0.1:19464/metrics || true; sleep 1; done) &
        SCRAPER=$! ;;
    esac
    sleep 1
    LOAD_PHASE=create "$LOAD" 127.0.0.1:19192 "small-$round" 0 100 >/dev/null
    small=$(LOAD_PHASE=produce "$LEAN" 127.0.0.1:19192 "small-$round" 300000 100 1 5 2>&1 | rate)
    LOAD_PHASE=create "$LOAD" 127.0.0.1:19192 "big-$round" 0 1024 >/dev/null
    produce=$(LOAD_PHASE=produce "$LEAN" 127.0.0.1:19192 "big-$round" 800000 1024 1000 2>&1 | rate)
    consume=$(LOAD_PHASE=consume "$LEAN" 127.0.0.1:19192 "big-$round" 800000 1024 1000 2>&1 | rate)
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
