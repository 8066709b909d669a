#!/usr/bin/env bash
# Runs every fuzz target for the given number of seconds (default 30), starting from the
# committed seeds. Fails on any crash, leak or timeout. New inputs go to a scratch corpus, so
# the committed seeds stay as they are.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-30}"
# cargo-fuzz needs nightly features; this lets the stable toolchain provide them.
export RUSTC_BOOTSTRAP=1
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cargo fuzz build --release
for target in $(cargo fuzz list); do
  echo "--> $target"
  mkdir -p "$scratch/$target" "corpus/$target"
  cargo fuzz run --release "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12
  test "${PIPESTATUS[0]}" -eq 0
done
