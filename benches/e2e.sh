#!/usr/bin/env bash
# End-to-end load run: the gateway (embedded store) and, when TANSU is set to a tansu binary
# built with its dynostore feature, Tansu with in-memory storage, each loaded by the same
# clients. Per round, each broker is started afresh and gets, on new one-partition topics:
#   - the librdkafka load client (benches/load): RECORDS_100 records of 100 B and RECORDS_1K
#     of 1 KiB produced with acks=1, then consumed back from offset 0;
#   - librdkafka's own rdkafka_performance (benches/rdkafka-performance.sh): RECORDS_100
#     records of 100 B produced with acks=1, its default settings otherwise;
#   - the lean client (benches/load, the gateway's own codec, no client-side queues):
#     RECORDS_100 records of 100 B and RECORDS_1K of 1 KiB produced in batches of 1,000,
#     five requests in flight, acks=1. librdkafka's clients run near their own ceiling at
#     100 B; this one leaves the broker as the limit.
# Brokers alternate within each round, so drift on the machine hits both alike. Prints every
# run (records/s and the broker's CPU time for that phase) and, at the end, the median of
# each figure over the rounds.
#
#   benches/e2e.sh                               # the gateway only
#   TANSU=/path/to/tansu ROUNDS=5 benches/e2e.sh # side by side, five rounds
#   PRODUCERS=2 benches/e2e.sh                   # two load-client producers (threads and
#                                                # connections) share the records
#
# Build Tansu with: cargo install tansu --version 0.6.0 --no-default-features \
#   --features dynostore --root /tmp/tansu-bin --locked
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS_100="${RECORDS_100:-2000000}"
RECORDS_1K="${RECORDS_1K:-500000}"
PRODUCERS="${PRODUCERS:-1}"
ROUNDS="${ROUNDS:-3}"

cargo build --release -q
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load
LEAN=benches/load/target/release/iggy-kafka-lean
PERF=$(benches/rdkafka-performance.sh)
RESULTS=$(mktemp)
PID=

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap stop EXIT

start() { # broker
  case "$1" in
    gateway)
      target/release/iggy-kafka-gateway --listen 127.0.0.1:19192 --log warn &
      PID=$!; BOOT=127.0.0.1:19192; sleep 1 ;;
    tansu)
      "$TANSU" broker --storage-engine "memory://tansu/" \
        --listener-url tcp://127.0.0.1:19292 --advertised-listener-url tcp://127.0.0.1:19292 \
        >/tmp/tansu-bench.log 2>&1 &
      PID=$!; BOOT=127.0.0.1:19292; sleep 2 ;;
  esac
}

# Runs a command, then records "broker what rate cpu_ms" from its output's rate.
measure() { # broker what command...
  local broker=$1 what=$2; shift 2
  local t0 out rate t1
  t0=$(ticks "$PID")
  out=$("$@" 2>&1)
  t1=$(ticks "$PID")
  rate=$(echo "$out" | grep -oE '[0-9.]+ M records/s|[0-9]+ msgs/s' | head -1 \
    | awk '/msgs/ {printf "%.3f", $1 / 1e6; next} {print $1}')
  local cpu=$(( (t1 - t0) * 1000 / HZ ))
  printf '%-8s %-24s %7s M/s  broker CPU %5d ms\n' "$broker" "$what" "${rate:-?}" "$cpu"
  echo "$broker $what ${rate:-0} $cpu" >> "$RESULTS"
}

brokers=(gateway)
if [ -n "${TANSU:-}" ]; then brokers+=(tansu); fi

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for b in "${brokers[@]}"; do
    start "$b"
    t="b$$-$round"
    measure "$b" "produce-100B" env LOAD_PHASE=produce "$LOAD" "$BOOT" "$t-100" "$RECORDS_100" 100 "$PRODUCERS"
    measure "$b" "consume-100B" env LOAD_PHASE=consume "$LOAD" "$BOOT" "$t-100" "$RECORDS_100" 100
    measure "$b" "produce-1KiB" env LOAD_PHASE=produce "$LOAD" "$BOOT" "$t-1k" "$RECORDS_1K" 1024 "$PRODUCERS"
    measure "$b" "consume-1KiB" env LOAD_PHASE=consume "$LOAD" "$BOOT" "$t-1k" "$RECORDS_1K" 1024
    LOAD_PHASE=create "$LOAD" "$BOOT" "$t-perf" 0 100 >/dev/null
    measure "$b" "rdkafka_perf-produce-100B" "$PERF" -P -t "$t-perf" -p 0 -s 100 -c "$RECORDS_100" -a 1 -b "$BOOT" -q
    for size in 100 1024; do
      if [ "$size" = 100 ]; then n=$RECORDS_100; what=lean-produce-100B; else n=$RECORDS_1K; what=lean-produce-1KiB; fi
      LOAD_PHASE=create "$LOAD" "$BOOT" "$t-lean-$size" 0 "$size" >/dev/null
      measure "$b" "$what" env LOAD_PHASE=produce "$LEAN" "$BOOT" "$t-lean-$size" "$n" "$size" 1000 5
    done
    stop
  done
done

echo "== medians over $ROUNDS rounds (records/s, broker CPU for the phase)"
sort -k1,1 -k2,2 "$RESULTS" | awk '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function flush() { if (n) printf "%-8s %-24s %7.3f M/s  broker CPU %5d ms\n", key1, key2, median(r, n), median(c, n); n = 0 }
  { if ($1 != key1 || $2 != key2) { flush(); key1 = $1; key2 = $2 } n++; r[n] = $3 + 0; c[n] = $4 + 0 }
  END { flush() }'
rm -f "$RESULTS"
