#!/usr/bin/env bash
# Many partitions and producers: RECORDS records of SIZE bytes written by PRODUCERS
# producers over PARTITIONS partitions, then read by CONSUMERS consumers, by two Kafka
# clients from benches/load: the lean client (what iggy-bench does, over Kafka: batches of
# 1,000 records built once, one request in flight per producer, each batch to the next
# partition; consumers read the partitions dealt to them), and the librdkafka load client
# (a consumer group of CONSUMERS members). Per round:
#   - the gateway on the embedded store and, when TANSU is set (a tansu binary built with
#     its dynostore feature; see benches/e2e.sh), Tansu in memory, with the same load;
#   - when IGGY_SERVER is set: the gateway on the Iggy backend, then iggy-bench's balanced
#     producers (PRODUCERS of them over PARTITIONS partitions, 1,000 messages per batch)
#     and its balanced consumer group (CONSUMERS), straight into the same server.
# Both Iggy sides write to topics Iggy writes out before acknowledging (WRITE_THROUGH=true,
# the gateway's default): iggy-bench's topic is made by a gateway in iggy-bench's stream,
# as benches/iggy.sh does, and iggy-bench reuses it. Sides alternate within each round.
# Prints every run (records/s; the CPU time of the broker, the gateway or Tansu, and of the
# Iggy server; the hypervisor's steal share) and, at the end, the median of each figure over
# the rounds.
#
#   benches/partitions.sh                      # the gateway on the embedded store only
#   TANSU=/path/to/tansu IGGY_SERVER=127.0.0.1:8090 IGGY_BENCH=/path/to/iggy-bench \
#     ROUNDS=5 benches/partitions.sh
#
# The Iggy server must run already with the root user iggy/iggy.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS="${RECORDS:-2000000}"
SIZE="${SIZE:-100}"
PARTITIONS="${PARTITIONS:-16}"
PRODUCERS="${PRODUCERS:-4}"
CONSUMERS="${CONSUMERS:-4}"
ROUNDS="${ROUNDS:-3}"
WRITE_THROUGH="${WRITE_THROUGH:-true}"
PORT=19492

cargo build --release -q
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load
LEAN=benches/load/target/release/iggy-kafka-lean
WORK=$(mktemp -d)
RESULTS="$WORK/results"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
steal_mark() { awk '/^cpu /{print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
steal_share() { # before after
  echo "$1 $2" | awk '{ d = $4 - $2; printf "%.1f%%", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}
record() { # side phase records/s broker_cpu_s iggy_cpu_s steal
  printf '%-20s %-8s %10s records/s  broker CPU %6s s  iggy-server CPU %6s s  steal %s\n' "$@"
  echo "$1 $2 $3 $4 $5" >> "$RESULTS"
}
cpu() { echo "$1 $2" | awk -v hz="$HZ" '{printf "%.2f", ($2 - $1) / hz}'; }
# The Iggy server's CPU ticks, or nothing without one.
server_ticks() { if [ -n "${SERVER_PID:-}" ]; then ticks "$SERVER_PID"; else echo 0; fi; }

start() { # side
  case "$1" in
    embedded)
      target/release/iggy-kafka-gateway --admin-listen off --log warn --listen "127.0.0.1:$PORT" &
      PID=$!; sleep 1 ;;
    gateway-iggy)
      target/release/iggy-kafka-gateway --admin-listen off --log warn --listen "127.0.0.1:$PORT" \
        --iggy "iggy://iggy:iggy@$IGGY_SERVER" --stream "partitions-$$-$round" \
        --iggy-write-through "$WRITE_THROUGH" &
      PID=$!; sleep 2 ;;
    tansu)
      "$TANSU" broker --storage-engine "memory://tansu/" \
        --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
        >"$WORK/tansu.log" 2>&1 &
      PID=$!; sleep 2 ;;
  esac
}

# Both clients through a broker: each phase alone, with the CPU time spent on it.
kafka_run() { # side
  local side=$1 client topic phase out t0 t1 i0 i1 s0 s1 rate
  start "$side"
  for client in lean rdkafka; do
    topic="p-$side-$client-$round"
    PARTITIONS=$PARTITIONS LOAD_PHASE=create "$LOAD" "127.0.0.1:$PORT" "$topic" 0 "$SIZE" >/dev/null
    for phase in produce consume; do
      t0=$(ticks "$PID"); i0=$(server_ticks); s0=$(steal_mark)
      if [ "$client" = lean ]; then
        out=$(PARTITIONS=$PARTITIONS PRODUCERS=$PRODUCERS CONSUMERS=$CONSUMERS LOAD_PHASE=$phase \
          "$LEAN" "127.0.0.1:$PORT" "$topic" "$RECORDS" "$SIZE" 1000)
      else
        out=$(PARTITIONS=$PARTITIONS CONSUMERS=$CONSUMERS LOAD_PHASE=$phase \
          "$LOAD" "127.0.0.1:$PORT" "$topic" "$RECORDS" "$SIZE" "$PRODUCERS")
      fi
      t1=$(ticks "$PID"); i1=$(server_ticks); s1=$(steal_mark)
      rate=$(echo "$out" | grep -oE '[0-9.]+ M records/s' | awk '{printf "%d", $1 * 1e6}')
      if [ "$side" != gateway-iggy ]; then i1=$i0; fi
      record "$side/$client" "$phase" "${rate:-?}" "$(cpu "$t0" "$t1")" "$(cpu "$i0" "$i1")" \
        "$(steal_share "$s0" "$s1")"
    done
  done
  stop
}

# iggy-bench's balanced producers and consumer group straight into the server.
iggy_bench_run() {
  local reuse=() batches=$((RECORDS / PRODUCERS / 1000)) out s0 s1 t0 t1
  # iggy-bench makes its stream afresh; a gateway then makes its topic again, written through.
  "$IGGY_BENCH" -m "$SIZE" -P 1000 -b 1 balanced-producer -p "$PRODUCERS" -a "$PARTITIONS" \
    tcp --server-address "$IGGY_SERVER" >/dev/null 2>&1 || true
  if [ "$WRITE_THROUGH" = true ]; then
    target/release/iggy-kafka-gateway --admin-listen off --log warn --listen "127.0.0.1:$PORT" \
      --iggy "iggy://iggy:iggy@$IGGY_SERVER" --stream bench-stream-1 &
    PID=$!; sleep 2
    PARTITIONS=$PARTITIONS LOAD_PHASE=recreate "$LOAD" "127.0.0.1:$PORT" topic-1 0 "$SIZE" >/dev/null
    stop
    reuse=(--reuse-streams)
  fi
  t0=$(server_ticks); s0=$(steal_mark)
  out=$("$IGGY_BENCH" "${reuse[@]}" -m "$SIZE" -P 1000 -b "$batches" balanced-producer \
    -p "$PRODUCERS" -a "$PARTITIONS" tcp --server-address "$IGGY_SERVER" 2>&1 | sed 's/\x1b\[[0-9;]*m//g')
  t1=$(server_ticks); s1=$(steal_mark)
  record iggy-bench produce "$(echo "$out" | grep -oE 'Producers Results: Total throughput: [0-9.]+ MB/s, [0-9]+ messages/s' | grep -oE '[0-9]+ messages/s' | awk '{print $1}')" \
    - "$(cpu "$t0" "$t1")" "$(steal_share "$s0" "$s1")"
  t0=$(server_ticks); s0=$(steal_mark)
  out=$("$IGGY_BENCH" --reuse-streams -m "$SIZE" -P 1000 -b "$((RECORDS / CONSUMERS / 1000))" \
    balanced-consumer-group -c "$CONSUMERS" tcp --server-address "$IGGY_SERVER" 2>&1 | sed 's/\x1b\[[0-9;]*m//g')
  t1=$(server_ticks); s1=$(steal_mark)
  record iggy-bench consume "$(echo "$out" | grep -oE 'Consumers Results: Total throughput: [0-9.]+ MB/s, [0-9]+ messages/s' | grep -oE '[0-9]+ messages/s' | awk '{print $1}')" \
    - "$(cpu "$t0" "$t1")" "$(steal_share "$s0" "$s1")"
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round: $RECORDS × $SIZE B, $PARTITIONS partitions, $PRODUCERS producers, $CONSUMERS consumers"
  kafka_run embedded
  if [ -n "${TANSU:-}" ]; then kafka_run tansu; fi
  if [ -n "${IGGY_SERVER:-}" ]; then
    : "${IGGY_BENCH:?set IGGY_BENCH to an iggy-bench binary}"
    # The server that listens on IGGY_SERVER's port.
    SERVER_PID=$(ss -ltnpH "sport = :${IGGY_SERVER##*:}" | grep -oE 'pid=[0-9]+' | head -1 | cut -d= -f2)
    kafka_run gateway-iggy
    iggy_bench_run
  fi
done

echo "== medians over $ROUNDS rounds"
sort -k1,2 "$RESULTS" | awk '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function flush() { if (n) printf "%-30s %10d records/s  broker CPU %.2f s  iggy-server CPU %.2f s\n", key, median(a, n), median(b, n), median(c, n); n = 0 }
  { k = $1 " " $2; if (k != key) { flush(); key = k } n++; a[n] = $3 + 0; b[n] = $4 + 0; c[n] = $5 + 0 }
  END { flush() }'
