#!/usr/bin/env bash
# What group commit changes into Iggy: librdkafka's rdkafka_performance produces MESSAGES
# messages of SIZE bytes at RATE/s, acks=1, linger 0 (so each message is a produce request
# and a plain append of its own), one partition, through a gateway on the Iggy backend with
# group commit on (--iggy-merge-appends 128, the default) and off (1), in turn, ROUNDS times.
# Per run it prints the Iggy appends the gateway sent (its /metrics: iggy_calls_total for
# message.send) and how many appends rode in another's request, per 10,000 messages; the
# rate the client reached; the client's p50, p99 and p99.9 latency (per message, -l); the
# CPU seconds the gateway and the Iggy server used during the run; and the load average.
# Request counts and CPU seconds are steadier than rates on a shared machine.
#
#   IGGY_SERVER=127.0.0.1:8290 IGGY_PID=<the server's pid> benches/group-commit.sh
#
# The server must run already with the root user iggy/iggy. WRITE_THROUGH=false gives the
# gateway's topics Iggy's default instead of writing each append through (docs/IGGY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${IGGY_SERVER:?set IGGY_SERVER to the Iggy server as HOST:PORT}"
RATE="${RATE:-2000}"
SIZE="${SIZE:-100}"
MESSAGES="${MESSAGES:-10000}"
ROUNDS="${ROUNDS:-3}"
WRITE_THROUGH="${WRITE_THROUGH:-true}"
PORT=19492
ADMIN=19493

cargo build --release -q
PERF=$(benches/rdkafka-performance.sh)
WORK=$(mktemp -d)
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

ticks() { if [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
seconds() { echo "$1 $2" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($2 - $1) / hz }'; }
metric() { # name-and-labels-regex
  curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E "^[a-z_]*$1 " | awk '{ s += $2 } END { print s + 0 }'
}

# p50 p99 p99.9, in ms, of the microseconds in file $1.
percentiles() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "? ? ?"; exit }
    split("0.5 0.99 0.999", q, " ")
    for (i = 1; i <= 3; i++) { k = int(q[i] * NR + 0.999999); if (k < 1) k = 1; printf "%.2f ", v[k] / 1000 }
    print "" }'
}

run() { # merge-appends
  target/release/iggy-kafka-gateway --log warn --listen "127.0.0.1:$PORT" \
    --admin-listen "127.0.0.1:$ADMIN" --iggy "iggy://iggy:iggy@$IGGY_SERVER" \
    --stream "group-commit-$$" --iggy-write-through "$WRITE_THROUGH" \
    --iggy-merge-appends "$1" &
  PID=$!
  sleep 1
  local topic="gc-$1-$round" g0 g1 s0 s1 sends0 sends merged0 merged rate
  # A first message creates the topic (auto-creation) and warms the connection.
  "$PERF" -P -t "$topic" -p 0 -s "$SIZE" -c 1 -a 1 -b "127.0.0.1:$PORT" -q >/dev/null 2>&1
  sends0=$(metric 'iggy_calls_total\{command="message.send"\}')
  merged0=$(metric 'iggy_merged_appends_total')
  g0=$(ticks "$PID")
  s0=$(ticks "${IGGY_PID:-}")
  rate=$("$PERF" -P -t "$topic" -p 0 -s "$SIZE" -c "$MESSAGES" -r "$RATE" -a 1 -X linger.ms=0 \
    -l -A "$WORK/lat" -b "127.0.0.1:$PORT" -q 2>&1 | grep -oE '[0-9]+ msgs/s' | awk '{print $1}')
  g1=$(ticks "$PID")
  s1=$(ticks "${IGGY_PID:-}")
  sends=$(metric 'iggy_calls_total\{command="message.send"\}')
  sends=$((sends - sends0))
  merged=$(metric 'iggy_merged_appends_total')
  merged=$((merged - merged0))
  printf 'merge-appends %-3s Iggy appends %6s (per 10,000: %6s)  merged in %6s  %6s msg/s  p50/p99/p99.9 %s ms  CPU s gateway %s server %s  load %s\n' \
    "$1" "$sends" "$((sends * 10000 / MESSAGES))" "$merged" "${rate:-?}" \
    "$(percentiles "$WORK/lat" | tr ' ' '/' | sed 's:/$::')" "$(seconds "$g0" "$g1")" \
    "$(seconds "$s0" "$s1")" "$(cut -d' ' -f1 /proc/loadavg)"
  stop
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round: $MESSAGES × $SIZE B at $RATE/s, linger 0, write-through $WRITE_THROUGH"
  run 1
  run 128
done
