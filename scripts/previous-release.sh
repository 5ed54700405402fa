#!/usr/bin/env bash
# The release before many stacks per repository (the commit that preceded
# migration 17), built once per machine into /opt/kedge-test/previous: the
# upgrade test lets it make a data dir, then opens that with this build.
# It needs the clone's history (a shallow clone cannot build it).
set -euo pipefail
cd "$(dirname "$0")/.."

COMMIT=2d6fd08e5c4ce4f35586dace9c09cdb4719e59b4
DIR=/opt/kedge-test/previous
OUT="$DIR/kedge-${COMMIT:0:12}"

log() { echo "previous-release: $*"; }

if [ -x "$OUT" ]; then
  ln -sfn "$OUT" "$DIR/kedge"
  exit 0
fi
if ! git cat-file -e "$COMMIT^{commit}" 2>/dev/null; then
  log "commit ${COMMIT:0:12} is not in this clone (shallow?): the upgrade test will fail" >&2
  exit 1
fi
log "building kedge ${COMMIT:0:12}"
mkdir -p "$DIR"
src=$(mktemp -d)
target="$DIR/target"
trap 'rm -rf "$src" "$target"' EXIT
git archive "$COMMIT" | tar -x -C "$src"
KEDGE_GIT_COMMIT="$COMMIT" CARGO_TARGET_DIR="$target" \
  cargo build --locked --quiet --bin kedge --manifest-path "$src/Cargo.toml"
install -m 0755 "$target/debug/kedge" "$OUT"
ln -sfn "$OUT" "$DIR/kedge"
log "ready: $("$OUT" --version)"
