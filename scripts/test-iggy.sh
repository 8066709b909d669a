#!/usr/bin/env bash
# The tests that need a real Iggy server, on both runtimes:
#
#   IGGY_KAFKA_TEST_IGGY=iggy://iggy:iggy@127.0.0.1:8090 scripts/test-iggy.sh
#
# Runs every integration test with the gateway on the Iggy backend (each gateway in a
# stream of its own), the restart test and the interoperability tests with Iggy's own Rust
# SDK (tests/iggy.rs, ignored without a server). The server is not started here: Iggy
# publishes no package this project can install, so bring one (README, "Testing against a
# real Iggy server").
#
# With IGGY_KAFKA_TEST_IGGY_CRASH set to a command that kills the server abruptly and starts
# it again on the same data, the crash test runs too, alone, after the others (it would
# break the tests running beside it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${IGGY_KAFKA_TEST_IGGY:-}" ]; then
  echo "set IGGY_KAFKA_TEST_IGGY to the Iggy server, e.g. iggy://iggy:iggy@127.0.0.1:8090" >&2
  exit 2
fi
export IGGY_KAFKA_TEST_IGGY

scripts/install-test-deps.sh

echo "==> Iggy's Rust SDK, for the interoperability tests"
cargo build --locked --manifest-path tests/iggy-sdk/Cargo.toml --target-dir target/iggy-sdk
export IGGY_KAFKA_TEST_SDK_BIN="$PWD/target/iggy-sdk/debug/iggy-sdk-interop"

if [ -n "${IGGY_KAFKA_TEST_IGGY_CRASH:-}" ]; then
  echo "==> the crash test will run: IGGY_KAFKA_TEST_IGGY_CRASH kills and restarts the server"
else
  echo "==> the crash test will NOT run: set IGGY_KAFKA_TEST_IGGY_CRASH to run it"
fi

for features in "" "--no-default-features --features smol"; do
  echo "==> integration tests against Iggy (${features:-tokio})"
  # shellcheck disable=SC2086
  cargo test --locked -p iggy-kafka-gateway $features -- --include-ignored \
    --skip an_iggy_crash_loses_nothing_acknowledged
  echo "==> an Iggy crash loses nothing acknowledged (${features:-tokio})"
  # shellcheck disable=SC2086
  cargo test --locked -p iggy-kafka-gateway $features --test iggy -- --include-ignored \
    --exact an_iggy_crash_loses_nothing_acknowledged --nocapture
done
echo "all Iggy tests passed"
