#!/usr/bin/env bash
# Kedge's main job on a new machine: provision Docker and compose, build,
# then `kedge serve` with any extra arguments (e.g. --poll-interval 10s).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/provision.sh
else
  sudo bash scripts/provision.sh
fi

cargo build --release --locked
exec target/release/kedge serve "$@"
