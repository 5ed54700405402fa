#!/usr/bin/env bash
# The whole test suite, real-Docker tests included: provisions the machine
# (idempotent), then formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/provision.sh

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
