#!/usr/bin/env bash
# Transactional produce and read_committed consume against their plain counterparts, on the
# embedded store, same runs: per round the gateway starts afresh and confluent-kafka
# (benches/transactions.py) produces N × 100 B records idempotently, then in transactions
# of 100 and of 10,000 records, and consumes the last topic read_uncommitted and
# read_committed. Prints each round's records per second and, per phase, the median.
#
#   benches/transactions.sh                 # N=200000, ROUNDS=3
#   N=500000 ROUNDS=5 benches/transactions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200000}"
ROUNDS="${ROUNDS:-3}"
PORT="${PORT:-29392}"
PYTHON=target/test-deps/venv/bin/python
cargo build --release -q
RESULTS=$(mktemp)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap stop EXIT
for round in $(seq 1 "$ROUNDS"); do
  target/release/iggy-kafka-gateway --listen "127.0.0.1:$PORT" --admin-listen off --log warn &
  PID=$!
  sleep 1
  "$PYTHON" benches/transactions.py "127.0.0.1:$PORT" "$N" "r$round" | tee -a "$RESULTS"
  stop
done
echo "medians (records/s):"
for phase in "produce idempotent" "produce txn-100" "produce txn-10000" "consume read_uncommitted" "consume read_committed"; do
  grep "^$phase " "$RESULTS" | awk '{print $NF}' | sort -n | awk -v p="$phase" '{a[NR]=$1} END {print p": "a[int((NR+1)/2)]}'
done
