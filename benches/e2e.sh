#!/usr/bin/env bash
# End-to-end load run: the gateway (embedded store) and, when TANSU is set to a tansu binary
# built with its dynostore feature, Tansu with in-memory storage, each loaded by the same
# librdkafka client (benches/load): produce RECORDS records of 100 B and of 1 KiB to one
# partition with acks=1, then consume them all back. Prints records/s and MB/s.
#
#   benches/e2e.sh                      # the gateway only
#   TANSU=/path/to/tansu benches/e2e.sh # side by side
#   PRODUCERS=2 benches/e2e.sh          # two producer clients (threads, connections) share
#                                       # the records, so one client thread is not the cap
#
# Build Tansu with: cargo install tansu --version 0.6.0 --no-default-features \
#   --features dynostore --root /tmp/tansu-bin --locked
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS_100="${RECORDS_100:-2000000}"
RECORDS_1K="${RECORDS_1K:-500000}"
PRODUCERS="${PRODUCERS:-1}"

cargo build --release -q
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load

run() { # name bootstrap
  echo "== $1"
  "$LOAD" "$2" "bench-100-$$" "$RECORDS_100" 100 "$PRODUCERS"
  "$LOAD" "$2" "bench-1k-$$" "$RECORDS_1K" 1024 "$PRODUCERS"
}

target/release/iggy-kafka-gateway --listen 127.0.0.1:19192 --log warn &
GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT
sleep 1
run "iggy-kafka-gateway (embedded store)" 127.0.0.1:19192
kill $GW; wait $GW 2>/dev/null || true

if [ -n "${TANSU:-}" ]; then
  "$TANSU" broker --storage-engine "memory://tansu/" \
    --listener-url tcp://127.0.0.1:19292 --advertised-listener-url tcp://127.0.0.1:19292 \
    >/tmp/tansu-bench.log 2>&1 &
  TS=$!
  trap 'kill $TS 2>/dev/null || true' EXIT
  sleep 2
  run "tansu (dynostore, in memory)" 127.0.0.1:19292
  kill $TS
fi
