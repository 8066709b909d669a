#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine (Debian with the Rust toolchain).
# Safe to run again: it skips what is already there.
set -euo pipefail

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
