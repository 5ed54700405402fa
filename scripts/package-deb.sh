#!/usr/bin/env bash
# Builds the Debian package with `cargo deb`: the binary, the systemd unit,
# the bash/zsh/fish completions and the man pages (generated from the
# binary's own command line), the example config and the README. Prints the
# path of the .deb. `--profile dev` packages the debug build (stripped), as
# the test suite does to spare a release build; KEDGE_DEB_FAST=1 compresses
# less.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
if [ "${1:-}" = --profile ]; then
  profile=${2:?--profile needs a name}
fi
dir=$profile
[ "$profile" = dev ] && dir=debug

command -v cargo-deb >/dev/null 2>&1 || {
  echo "package-deb: cargo-deb is missing (scripts/provision.sh installs it)" >&2
  exit 1
}
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

cargo build --locked --profile "$profile" --bin kedge >&2
kedge=$target/$dir/kedge

assets=$target/assets
rm -rf "$assets"
mkdir -p "$assets/completions" "$assets/man"
"$kedge" completions bash >"$assets/completions/kedge.bash"
"$kedge" completions zsh >"$assets/completions/_kedge"
"$kedge" completions fish >"$assets/completions/kedge.fish"
"$kedge" man --dir "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1

fast=()
[ -n "${KEDGE_DEB_FAST:-}" ] && fast=(--fast)
cargo deb --no-build --locked --profile "$profile" --no-dbgsym "${fast[@]}" -q -o "$target/debian/" >&2
ls -t "$target"/debian/kedge_*.deb | head -n 1
