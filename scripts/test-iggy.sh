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
#
# With IGGY_KAFKA_TEST_IGGY_SERVER set to an iggy-server binary (the 0.9 line), the cluster
# tests run too (tests/iggy_cluster.rs): each starts a three-node cluster itself on
# 127.0.0.1, 127.0.0.2 and 127.0.0.3 (client port 18090, replica port 19090; Linux routes
# all of 127.0.0.0/8 to the loopback interface), with the links between the nodes plain,
# authenticated, and authenticated under TLS, and kills and restarts its nodes under a
# producer and a consumer group; and checks that /ready follows the cluster down and up.
# Either variable alone runs its own tests.
#
# With IGGY_KAFKA_TEST_IGGY_TLS set to the URL of an Iggy server serving TCP over TLS
# (IGGY_TCP_TLS_ENABLED=true with IGGY_TCP_TLS_CERT_FILE and IGGY_TCP_TLS_KEY_FILE), with
# the options that trust it, e.g. iggy://iggy:iggy@127.0.0.1:8091?tls=true&tls_ca_file=ca.pem,
# the TLS test (tests/iggy_tls.rs) runs against it too.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${IGGY_KAFKA_TEST_IGGY:-}" ] && [ -z "${IGGY_KAFKA_TEST_IGGY_SERVER:-}" ]; then
  echo "set IGGY_KAFKA_TEST_IGGY to the Iggy server, e.g. iggy://iggy:iggy@127.0.0.1:8090," >&2
  echo "and/or IGGY_KAFKA_TEST_IGGY_SERVER to an iggy-server binary for the cluster tests" >&2
  exit 2
fi

scripts/install-test-deps.sh

if [ -n "${IGGY_KAFKA_TEST_IGGY:-}" ]; then
  export IGGY_KAFKA_TEST_IGGY
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
      --skip an_iggy_crash_loses_nothing_acknowledged --skip loses_nothing_when_nodes_die \
      --skip readiness_follows_a_real_cluster
    echo "==> an Iggy crash loses nothing acknowledged (${features:-tokio})"
    # shellcheck disable=SC2086
    cargo test --locked -p iggy-kafka-gateway $features --test iggy -- --include-ignored \
      --exact an_iggy_crash_loses_nothing_acknowledged --nocapture
  done
fi

if [ -n "${IGGY_KAFKA_TEST_IGGY_SERVER:-}" ]; then
  export IGGY_KAFKA_TEST_IGGY_SERVER
  for features in "" "--no-default-features --features smol"; do
    echo "==> a three-node Iggy cluster losing nodes (${features:-tokio})"
    # shellcheck disable=SC2086
    (unset IGGY_KAFKA_TEST_IGGY
      cargo test --locked -p iggy-kafka-gateway $features --test iggy_cluster -- \
      --include-ignored --nocapture)
  done
fi
echo "all Iggy tests passed"
