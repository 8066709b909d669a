#!/usr/bin/env bash
# Instructions per decode of a ~1 MiB batch of 100 B records (10,485 records), ours (records
# borrowed from the input, and owned records) against kafka-protocol's, counted by valgrind's callgrind: the difference between runs of 10 and
# 30 iterations, over 20, so that building the batch does not count. Instruction counts do
# not drift with the machine's load, as timings do; they do not weigh cache misses or the
# cost of atomic operations, so docs/BENCHMARKS.md gives both them and criterion's timings.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p iggy-kafka-core --example decode_batches
bin=target/release/examples/decode_batches
count() { # decoder iterations
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    awk '/Collected :/ {print $NF}'
}
for decoder in ours ours-owned kafka-protocol; do
  a=$(count "$decoder" 10)
  b=$(count "$decoder" 30)
  echo "$decoder: $(( (b - a) / 20 )) instructions per batch, $(( (b - a) / 20 / 10485 )) per record"
done
