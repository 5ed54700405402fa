#!/usr/bin/env bash
# The whole test suite, real-Docker tests included: provisions the machine
# (idempotent), then formatting, lints, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/provision.sh

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# The end-to-end tests mostly wait (on the engine, git, their own
# servers): three at a time keep a two-core machine busy without
# crowding it, and the suite within fifteen minutes.
RUST_TEST_THREADS="${RUST_TEST_THREADS:-3}" cargo test --locked
