#!/usr/bin/env bash
# Resident memory per idle connection on each runtime (embedded store), and whether a
# producer and a consumer keep their throughput beside those connections. Builds the
# gateway for tokio and for smol (release). Per round, for each runtime in turn:
#   - a fresh gateway, loaded by the librdkafka load client (benches/load): RECORDS records
#     of 100 B produced with acks=1, then consumed back, with no other connection;
#   - a fresh gateway, CONNECTIONS connections opened that each send one ApiVersions
#     request and then stay idle (benches/connections.py prints the gateway's resident
#     memory before and after, per connection), and the same load beside them.
# Prints every run and, at the end, the median of each figure over the rounds. The gateway
# and the client each hold one descriptor per connection: the script raises its open-file
# limit (`ulimit -n`, inherited by both) to fit CONNECTIONS, which above the hard limit
# needs the privilege to raise it (root, or CAP_SYS_RESOURCE).
#
#   benches/connections.sh                       # 3 rounds, 10,000 connections
#   ROUNDS=5 CONNECTIONS=50000 benches/connections.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-10000}"
RECORDS="${RECORDS:-1000000}"
ROUNDS="${ROUNDS:-3}"
PORT=19292

# Room for the connections and the descriptors each process holds besides them.
need=$((CONNECTIONS + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  if ! ulimit -n "$need" 2>/dev/null; then
    echo "CONNECTIONS=$CONNECTIONS needs an open-file limit of $need (ulimit -n is $(ulimit -n)," \
      "hard limit $(ulimit -Hn)): raise it, or run with fewer" >&2
    exit 1
  fi
fi

WORK=$(mktemp -d)
RESULTS="$WORK/results"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

cargo build --release -q
cp target/release/iggy-kafka-gateway "$WORK/tokio"
cargo build --release -q --no-default-features --features smol
cp target/release/iggy-kafka-gateway "$WORK/smol"
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load

start() { # runtime
  "$WORK/$1" --admin-listen off --log warn --listen "127.0.0.1:$PORT" &
  PID=$!
  sleep 1
}

# Produces and consumes RECORDS records; records "runtime what phase records/s".
load() { # runtime what
  local phase out rate
  for phase in produce consume; do
    out=$(LOAD_PHASE=$phase "$LOAD" "127.0.0.1:$PORT" "fp-$1-$2-$round" "$RECORDS" 100 2>&1)
    rate=$(echo "$out" | grep -oE '[0-9.]+ M records/s' | head -1 | awk '{print $1}')
    printf '%-6s %-22s %-8s %6s M records/s\n' "$1" "$2" "$phase" "${rate:-?}"
    echo "$1 $2-$phase ${rate:-0}" >> "$RESULTS"
  done
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round"
  for runtime in tokio smol; do
    start "$runtime"
    load "$runtime" alone
    stop
    start "$runtime"
    rm -f "$WORK/done" "$WORK/idle"
    python3 benches/connections.py "$PID" "127.0.0.1:$PORT" "$CONNECTIONS" "$WORK/done" > "$WORK/idle" &
    IDLE=$!
    while [ ! -s "$WORK/idle" ]; do
      if ! kill -0 "$IDLE" 2>/dev/null; then echo "benches/connections.py failed" >&2; exit 1; fi
      sleep 0.2
    done
    read -r n before after per < "$WORK/idle"
    printf '%-6s %s idle connections: %s KiB -> %s KiB resident, %s KiB each\n' "$runtime" "$n" "$before" "$after" "$per"
    echo "$runtime KiB-per-idle-connection $per" >> "$RESULTS"
    load "$runtime" "beside-$CONNECTIONS-idle"
    touch "$WORK/done"
    wait "$IDLE"
    stop
  done
done

echo "== medians over $ROUNDS rounds"
sort -k1,1 -k2,2 "$RESULTS" | awk '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function flush() { if (n) printf "%-6s %-36s %8.3f\n", key1, key2, median(r, n); n = 0 }
  { if ($1 != key1 || $2 != key2) { flush(); key1 = $1; key2 = $2 } n++; r[n] = $3 + 0 }
  END { flush() }'
