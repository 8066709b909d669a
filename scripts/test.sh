#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs the core, codec and integration
# tests on both runtimes and every fuzz target for FUZZ_SECONDS (default 30) each.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

scripts/install-test-deps.sh

echo "==> tests (tokio runtime, and every workspace crate)"
cargo test --workspace --locked

echo "==> tests (smol runtime)"
cargo test --locked -p iggy-kafka-gateway --no-default-features --features smol

echo "==> fuzzing each target for ${FUZZ_SECONDS}s"
scripts/fuzz.sh "$FUZZ_SECONDS"

echo "all tests passed"
