#!/usr/bin/env bash
# Produce latency at a fixed rate through the gateway, acks=1, RATE messages/s of SIZE
# bytes, one message per request, one partition, with two clients: librdkafka's
# rdkafka_performance in latency mode (-l, each message's time from produce() to its
# delivery report, written per message with -A; linger 0), and the lean client
# (benches/load, RATE set: one request in flight on a fixed schedule, each request's time
# from its send to its answer, as iggy-bench measures). On the embedded store, and into
# Iggy when IGGY_SERVER is set, beside iggy-bench's pinned producer (one message per batch,
# the same rate and size) straight into that server. The lean client's figures are the
# ones to set beside iggy-bench's: librdkafka's own threads and queues add a tail of their
# own (docs/BENCHMARKS.md).
# Per round each side runs in turn (a fresh gateway each time); prints every run's p50, p99,
# p99.9 and maximum in milliseconds and the hypervisor's steal share of the machine's CPU
# time during the run, and at the end the median of each over the rounds.
#
#   benches/latency.sh                                    # embedded store only
#   IGGY_SERVER=127.0.0.1:8090 IGGY_BENCH=/path/to/iggy-bench ROUNDS=5 benches/latency.sh
#   WRITE_THROUGH=false ...                               # Iggy's default topics on both sides
#   RUNTIME=smol ...                                      # the gateway on smol (default tokio)
#
# The Iggy server must run already with the root user iggy/iggy. With WRITE_THROUGH=true
# (the default) the gateway's topics are written through (messages_required_to_save = 1,
# docs/IGGY.md), and so is iggy-bench's: iggy-bench cannot create such a topic, so, as in
# benches/iggy.sh, a gateway makes iggy-bench's topic (bench-stream-1/topic-1) again and
# iggy-bench appends to it with --reuse-streams. iggy-bench's --enforce-fsync is not the
# same durability: Iggy still holds 1,024 messages in memory before it writes and fsyncs
# them.
# Each line also shows the rate the client reached: a client that fell behind RATE (its
# rate limiter sleeps, and a busy machine wakes it late) measured a lighter load.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${RATE:-2000}"
SIZE="${SIZE:-100}"
MESSAGES="${MESSAGES:-20000}"
ROUNDS="${ROUNDS:-3}"
WRITE_THROUGH="${WRITE_THROUGH:-true}"
RUNTIME="${RUNTIME:-tokio}"
PORT=19392

case "$RUNTIME" in
  tokio) cargo build --release -q ;;
  smol) cargo build --release -q --no-default-features --features smol ;;
  *) echo "RUNTIME must be tokio or smol, not $RUNTIME" >&2; exit 2 ;;
esac
PERF=$(benches/rdkafka-performance.sh)
cargo build --release -q --manifest-path benches/load/Cargo.toml
LEAN=benches/load/target/release/iggy-kafka-lean
WORK=$(mktemp -d)
RESULTS="$WORK/results"
# The build of the runtime asked for, kept apart from target/ (another build replaces it).
GATEWAY="$WORK/iggy-kafka-gateway"
cp target/release/iggy-kafka-gateway "$GATEWAY"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

steal_mark() { awk '/^cpu /{print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
steal_share() { # before after
  echo "$1 $2" | awk '{ d = $4 - $2; printf "%.1f%%", (d > 0 ? 100 * ($3 - $1) / d : 0) }'
}

# p50 p99 p99.9 max, in ms, of the microseconds in file $1.
percentiles() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "? ? ? ?"; exit }
    split("0.5 0.99 0.999", q, " ")
    for (i = 1; i <= 3; i++) { k = int(q[i] * NR + 0.999999); if (k < 1) k = 1; printf "%.2f ", v[k] / 1000 }
    printf "%.2f\n", v[NR] / 1000 }'
}

record() { # side p50 p99 p999 max steal rate
  printf '%-18s p50 %6s  p99 %6s  p99.9 %6s  max %7s ms  steal %s  %s msg/s\n' "$@"
  echo "$1 $2 $3 $4 $5" >> "$RESULTS"
}

gateway_run() { # side client gateway-args...
  local side=$1 client=$2; shift 2
  "$GATEWAY" --admin-listen off --log warn --listen "127.0.0.1:$PORT" "$@" &
  PID=$!
  sleep 1
  local topic="lat-$side-$$-$round" s0 s1
  # A first message creates the topic (auto-creation) and warms the connection.
  "$PERF" -P -t "$topic" -p 0 -s "$SIZE" -c 1 -a 1 -b "127.0.0.1:$PORT" -q >/dev/null 2>&1
  s0=$(steal_mark)
  if [ "$client" = lean ]; then
    local out
    out=$(RATE="$RATE" "$LEAN" "127.0.0.1:$PORT" "$topic" "$MESSAGES" "$SIZE" 1)
    s1=$(steal_mark)
    rate=$(echo "$out" | awk '/^produce:/ { printf "%d", $2 / $8 }')
    # shellcheck disable=SC2046
    record "$side" $(echo "$out" | awk '/^latency ms:/ { print $4, $6, $8, $10 }') \
      "$(steal_share "$s0" "$s1")" "${rate:-?}"
  else
    rate=$("$PERF" -P -t "$topic" -p 0 -s "$SIZE" -c "$MESSAGES" -r "$RATE" -a 1 \
      -X linger.ms=0 -l -A "$WORK/lat" -b "127.0.0.1:$PORT" -q 2>&1 |
      grep -oE '[0-9]+ msgs/s' | awk '{print $1}')
    s1=$(steal_mark)
    # shellcheck disable=SC2046
    record "$side" $(percentiles "$WORK/lat") "$(steal_share "$s0" "$s1")" "${rate:-?}"
  fi
  stop
}

# A fresh written-through topic for iggy-bench: a short iggy-bench run makes its stream
# afresh, then a gateway deletes its topic-1 and creates it again (the load client's
# "recreate" phase).
write_through_topic() {
  "$IGGY_BENCH" -m "$SIZE" -P 1 -b 10 pinned-producer --producers 1 tcp \
    --server-address "$IGGY_SERVER" >/dev/null 2>&1 || true
  "$GATEWAY" --admin-listen off --log warn --listen "127.0.0.1:$PORT" \
    --iggy "iggy://iggy:iggy@$IGGY_SERVER" --stream bench-stream-1 &
  PID=$!
  sleep 1
  LOAD_PHASE=recreate benches/load/target/release/iggy-kafka-load "127.0.0.1:$PORT" topic-1 0 \
    "$SIZE" >/dev/null
  stop
}

iggy_bench_run() {
  local reuse=() s0 s1 out
  if [ "$WRITE_THROUGH" = true ]; then
    write_through_topic
    reuse=(--reuse-streams)
  fi
  s0=$(steal_mark)
  out=$("$IGGY_BENCH" -m "$SIZE" -P 1 -b "$MESSAGES" -r "$((RATE * SIZE))B" "${reuse[@]}" \
    pinned-producer --producers 1 tcp --server-address "$IGGY_SERVER" 2>&1 |
    sed 's/\x1b\[[0-9;]*m//g' | grep 'Producers Results')
  s1=$(steal_mark)
  # iggy-bench's summary: "... p50 latency: X ms, ..., p99 latency: X ms, p999 latency: X ms,
  # ..., max: X ms".
  local p50 p99 p999 max
  p50=$(echo "$out" | grep -oE 'p50 latency: [0-9.]+' | awk '{print $3}')
  p99=$(echo "$out" | grep -oE 'p99 latency: [0-9.]+' | awk '{print $3}')
  p999=$(echo "$out" | grep -oE 'p999 latency: [0-9.]+' | awk '{print $3}')
  max=$(echo "$out" | grep -oE 'max: [0-9.]+' | tail -1 | awk '{print $2}')
  local rate
  rate=$(echo "$out" | grep -oE '[0-9]+ messages/s' | head -1 | awk '{print $1}')
  record iggy-bench "${p50:-?}" "${p99:-?}" "${p999:-?}" "${max:-?}" "$(steal_share "$s0" "$s1")" \
    "${rate:-?}"
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round ($MESSAGES messages of $SIZE B at $RATE/s)"
  gateway_run embedded rdkafka
  gateway_run embedded-lean lean
  if [ -n "${IGGY_SERVER:-}" ]; then
    : "${IGGY_BENCH:?set IGGY_BENCH to an iggy-bench binary}"
    for client in rdkafka lean; do
      side=gateway-iggy; [ "$client" = lean ] && side=gateway-iggy-lean
      gateway_run "$side" "$client" --iggy "iggy://iggy:iggy@$IGGY_SERVER" \
        --stream "latency-$$" --iggy-write-through "$WRITE_THROUGH"
    done
    iggy_bench_run
  fi
done

echo "== medians over $ROUNDS rounds (ms)"
sort -k1,1 "$RESULTS" | awk '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function flush() { if (n) printf "%-18s p50 %6.2f  p99 %6.2f  p99.9 %6.2f  max %7.2f\n", key, median(a, n), median(b, n), median(c, n), median(d, n); n = 0 }
  { if ($1 != key) { flush(); key = $1 } n++; a[n] = $2 + 0; b[n] = $3 + 0; c[n] = $4 + 0; d[n] = $5 + 0 }
  END { flush() }'
