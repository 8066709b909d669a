#!/usr/bin/env bash
# Builds librdkafka's own load tool, rdkafka_performance, from the librdkafka sources that
# the load client's rdkafka-sys build vendors (the same librdkafka version), and prints its
# path. It is on neither crates.io nor Debian; this needs only a C compiler.
set -euo pipefail
cd "$(dirname "$0")/load"
cargo build --release -q
out=$(ls -d target/release/build/rdkafka-sys-*/out | head -1)
bin="$PWD/target/release/rdkafka_performance"
if [ ! -x "$bin" ] || [ "$out/examples/rdkafka_performance.c" -nt "$bin" ]; then
  # shellcheck disable=SC2046
  cc -O2 -I "$out/src" "$out/examples/rdkafka_performance.c" "$out/src/librdkafka.a" \
    $(sed -n 's/^LIBS+=//p' "$out/Makefile.config") -o "$bin"
fi
echo "$bin"
