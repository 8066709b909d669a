#!/usr/bin/env bash
# Through the gateway into Iggy, next to Iggy's own client straight into the same server, in
# one run on one machine: 100 B and 1 KiB messages, one producer then one consumer, one
# partition. The direct side is iggy-bench (pinned producer, then pinned consumer, 1,000
# messages per batch); the gateway side is the librdkafka load client of benches/load
# (acks=1), then librdkafka's own rdkafka_performance producing the same messages through
# the gateway (benches/rdkafka-performance.sh); first of all, right after iggy-bench (the
# server's state as alike as can be), the lean client of benches/load (iggy-kafka-lean:
# what iggy-bench does, over Kafka — one prebuilt 1,000-record batch stamped per request,
# one request in flight; fetches of about one batch), then again with five produce requests
# in flight, as Kafka producers pipeline. Prints each side's messages/s and
# MB/s, and the CPU seconds the gateway, the server and the client used during the gateway
# runs.
#
#   IGGY_SERVER=127.0.0.1:8090 IGGY_BENCH=/path/to/iggy-bench benches/iggy.sh
#
# The server must run already, with the root user iggy/iggy (IGGY_ROOT_USERNAME,
# IGGY_ROOT_PASSWORD). iggy-bench and iggy-server come from apache/iggy (not built here).
# For figures that compare, give the server a fresh data directory in RAM (for instance
# IGGY_SYSTEM_PATH=/dev/shm/iggy-data): on a disk, each run pays the kernel's writeback of
# the runs before it, and the gateway's runs come after iggy-bench's (docs/BENCHMARKS.md).
#
# Both sides write to topics that Iggy writes out before acknowledging each append, as the
# gateway creates them (docs/MAPPING.md): iggy-bench's topic is made again by a gateway in
# iggy-bench's stream, and iggy-bench reuses it. WRITE_THROUGH=false gives both sides Iggy's
# default topics instead.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IGGY_BENCH:?set IGGY_BENCH to an iggy-bench binary}"
SERVER="${IGGY_SERVER:-127.0.0.1:8090}"
MESSAGES_100="${MESSAGES_100:-2000000}"
MESSAGES_1K="${MESSAGES_1K:-500000}"
WRITE_THROUGH="${WRITE_THROUGH:-true}"

cargo build --release -q
(cd benches/load && cargo build --release -q)
LOAD=benches/load/target/release/iggy-kafka-load
LEAN=benches/load/target/release/iggy-kafka-lean
PERF=$(benches/rdkafka-performance.sh)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The machine's CPU time taken by the hypervisor (steal) since a steal_mark: a run in which it
# took a large share measures the host, not the code (docs/BENCHMARKS.md).
steal_mark() { awk '/^cpu /{print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
steal_since() {
  local s0 t0 s1 t1
  read -r s0 t0 <<<"$1"
  read -r s1 t1 <<<"$(steal_mark)"
  echo "hypervisor steal: $(( (s1 - s0) * 100 / (t1 - t0 + 1) ))%"
}
# CPU ticks of each of the server's shard threads: a run where one shard did all the work had
# the gateway's connection on the partition's shard; where two did, Iggy forwarded each
# request between them.
shard_ticks() {
  for t in /proc/"$1"/task/*; do
    case "$(cat "$t/comm")" in shard-*) echo "$(cat "$t/comm")=$(awk '{print $14 + $15}' "$t/stat")" ;; esac
  done | sort | tr '\n' ' '
}
# Each shard's ticks between two shard_ticks readings, and what they say: a run that kept
# one shard busy (three quarters of the ticks or more; shard 0 also does the server's
# metadata work, such as iggy-bench creating its topic) ran on the partition's shard.
placement() {
  paste <(tr ' ' '\n' <<<"$1" | grep .) <(tr ' ' '\n' <<<"$2" | grep .) | awk -F'[=\t]' '
    { d[$1] = $4 - $2; total += $4 - $2; if ($4 - $2 > top) top = $4 - $2; names[NR] = $1 }
    END {
      for (i = 1; i <= NR; i++) printf "%s +%d ", names[i], d[names[i]]
      if (total == 0) print "(idle)"
      else if (top * 4 >= total * 3) print "(one shard busy: on the partition'"'"'s shard)"
      else print "(shards shared the work: forwarded)"
    }'
}
# iggy-bench's own topic, made by iggy-bench (it deletes and creates its stream) and, with
# WRITE_THROUGH, made again by a gateway in that stream; iggy-bench then reuses it.
direct_topic() {
  # A short run (iggy-bench's report fails on a run too short to chart).
  "$IGGY_BENCH" -m "$1" -P 1000 -b 10 pinned-producer -p 1 tcp --server-address "$SERVER" \
    --nodelay >/dev/null 2>&1 || true
  if [ "$WRITE_THROUGH" = true ]; then
    target/release/iggy-kafka-gateway --listen 127.0.0.1:19194 --log error \
      --iggy "iggy://iggy:iggy@$SERVER" --stream bench-stream-1 &
    local g=$!
    sleep 2
    LOAD_PHASE=recreate "$LOAD" 127.0.0.1:19194 topic-1 0 "$1" >/dev/null
    kill "$g"
    wait "$g" 2>/dev/null || true
  fi
}
hz=$(getconf CLK_TCK)
server_pid=${IGGY_PID:-$(pgrep -f iggy-server | head -1)}

for size in 100 1000; do
  if [ "$size" = 100 ]; then n=$MESSAGES_100; else n=$MESSAGES_1K; fi
  batches=$((n / 1000))
  echo "== $n messages of $size B"
  echo "-- iggy-bench, direct (write-through topic: $WRITE_THROUGH)"
  direct_topic "$size"
  before=$(shard_ticks "$server_pid"); st=$(steal_mark)
  "$IGGY_BENCH" --reuse-streams -m "$size" -P 1000 -b "$batches" pinned-producer -p 1 tcp \
    --server-address "$SERVER" --nodelay 2>&1 \
    | grep -o "Producers Results: Total throughput: [0-9.]* MB/s, [0-9]* messages/s"
  echo "server shard ticks: $(placement "$before" "$(shard_ticks "$server_pid")"); $(steal_since "$st")"
  st=$(steal_mark)
  "$IGGY_BENCH" --reuse-streams -m "$size" -P 1000 -b "$batches" pinned-consumer -c 1 tcp \
    --server-address "$SERVER" --nodelay 2>&1 \
    | grep -o "Consumers Results: Total throughput: [0-9.]* MB/s, [0-9]* messages/s"
  steal_since "$st"
  target/release/iggy-kafka-gateway --listen 127.0.0.1:19193 --log warn \
    --iggy "iggy://iggy:iggy@$SERVER" --stream "bench-$$-$size" \
    --iggy-write-through "$WRITE_THROUGH" &
  gw=$!
  sleep 2
  echo "-- lean client through the gateway (produce, then consume)"
  LOAD_PHASE=create "$LOAD" 127.0.0.1:19193 "lean-$size" 0 "$size" >/dev/null
  for phase in produce consume; do
    g0=$(ticks "$gw"); s0=$(ticks "$server_pid"); st=$(steal_mark)
    LOAD_PHASE=$phase /usr/bin/time -f "lean client: %U s user, %S s system" \
      "$LEAN" 127.0.0.1:19193 "lean-$size" "$n" "$size" 1000
    g1=$(ticks "$gw"); s1=$(ticks "$server_pid")
    echo "gateway: $(( (g1 - g0) * 100 / hz ))e-2 CPU s; iggy-server: $(( (s1 - s0) * 100 / hz ))e-2 CPU s; $(steal_since "$st")"
  done
  echo "-- lean client, five produce requests in flight (Kafka producers pipeline; Java's default)"
  LOAD_PHASE=create "$LOAD" 127.0.0.1:19193 "lean5-$size" 0 "$size" >/dev/null
  g0=$(ticks "$gw"); s0=$(ticks "$server_pid"); st=$(steal_mark); before=$(shard_ticks "$server_pid")
  LOAD_PHASE=produce /usr/bin/time -f "lean client: %U s user, %S s system" \
    "$LEAN" 127.0.0.1:19193 "lean5-$size" "$n" "$size" 1000 5
  g1=$(ticks "$gw"); s1=$(ticks "$server_pid")
  echo "gateway: $(( (g1 - g0) * 100 / hz ))e-2 CPU s; iggy-server: $(( (s1 - s0) * 100 / hz ))e-2 CPU s; $(steal_since "$st")"
  echo "server shard ticks: $(placement "$before" "$(shard_ticks "$server_pid")")"
  echo "-- load client (librdkafka) through the gateway"
  g0=$(ticks "$gw"); s0=$(ticks "$server_pid"); st=$(steal_mark)
  /usr/bin/time -f "load client: %U s user, %S s system" "$LOAD" 127.0.0.1:19193 "bench-$size" "$n" "$size" 1
  g1=$(ticks "$gw"); s1=$(ticks "$server_pid")
  echo "gateway: $(( (g1 - g0) * 100 / hz ))e-2 CPU s; iggy-server: $(( (s1 - s0) * 100 / hz ))e-2 CPU s; $(steal_since "$st")"
  echo "-- rdkafka_performance through the gateway (produce)"
  LOAD_PHASE=create "$LOAD" 127.0.0.1:19193 "perf-$size" 0 "$size" >/dev/null
  g0=$(ticks "$gw"); s0=$(ticks "$server_pid"); st=$(steal_mark)
  /usr/bin/time -f "rdkafka_performance: %U s user, %S s system" \
    "$PERF" -P -t "perf-$size" -p 0 -s "$size" -c "$n" -a 1 -b 127.0.0.1:19193 -q 2>&1 | tail -2
  g1=$(ticks "$gw"); s1=$(ticks "$server_pid")
  echo "gateway: $(( (g1 - g0) * 100 / hz ))e-2 CPU s; iggy-server: $(( (s1 - s0) * 100 / hz ))e-2 CPU s; $(steal_since "$st")"
  kill "$gw"; wait "$gw" 2>/dev/null || true
done
