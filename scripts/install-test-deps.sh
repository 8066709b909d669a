#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Debian with the Rust toolchain,
# Python 3 and Node.js): cargo-fuzz; kcat, prometheus, chromium, openssl and
# librdkafka-dev (Debian packages);
# librdkafka's transactions example (tests/clients.rs), built from the librdkafka sources
# that the benchmark load client's rdkafka-sys crate carries (crates.io), against Debian's
# librdkafka;
# confluent-kafka and kafka-python with their codec packages (PyPI, into
# target/test-deps/venv); and kafkajs with its snappy, lz4 and zstd codecs (npm, into
# tests/clients/node_modules).
# Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Debian packages: kcat, a real Prometheus server (it scrapes the gateway in
# tests/admin.rs), Chromium (it renders the status page, headless), the openssl
# command (it makes tests/tls.rs's certificates) and librdkafka's headers and library (to
# build librdkafka's transactions example, below).
missing=()
[ -f /usr/include/librdkafka/rdkafka.h ] || missing+=(librdkafka-dev)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

VENV=target/test-deps/venv
PY_PACKAGES=(confluent-kafka==2.16.1 kafka-python==3.0.12 lz4 zstandard python-snappy cramjam)
if ! "$VENV/bin/python" -c "import confluent_kafka, kafka, lz4, zstandard, snappy" >/dev/null 2>&1; then
  echo "==> installing the Python clients into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
fi

if [ ! -d tests/clients/node_modules/kafkajs ] || [ ! -d tests/clients/node_modules/zstd-napi ]; then
  echo "==> installing kafkajs and its codecs"
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
fi

EXAMPLE=target/test-deps/rdkafka-transactions-example
if [ ! -x "$EXAMPLE" ]; then
  echo "==> building librdkafka's transactions example"
  src=$(cargo metadata --manifest-path benches/load/Cargo.toml --locked --format-version 1 |
    python3 -c 'import json, sys, os
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "rdkafka-sys":
        print(os.path.join(os.path.dirname(p["manifest_path"]), "librdkafka/examples/transactions.c"))')
  mkdir -p target/test-deps
  cc -O1 -I/usr/include/librdkafka "$src" -lrdkafka -o "$EXAMPLE"
fi
