#!/usr/bin/env bash
# Kedge's main job on a new machine: provision Docker and compose, build,
# then `kedge serve` with any extra arguments (e.g. --poll-interval 10s).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/provision.sh

cargo build --release --locked
exec target/release/kedge serve "$@"
