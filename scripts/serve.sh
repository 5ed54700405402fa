#!/usr/bin/env bash
# Kedge's main job on a new machine: provision Docker and compose, build,
# then `kedge serve` with any extra arguments (e.g. --poll-interval 10s).
#
# On a data directory with no repository registered, it first registers the
# bundled example (examples/hello), as a git repository it creates from that
# folder on the first run, and prints how to watch it and how to change it.
#
# Environment: KEDGE_DATA_DIR (default .kedge in the checkout),
# KEDGE_POLL_INTERVAL (default here 10s), KEDGE_EXAMPLE_DIR (where the
# example's repository is made; default <data dir>/example/hello),
# KEDGE_EXAMPLE_NAME (default hello), KEDGE_NO_EXAMPLE=1 (register nothing),
# KEDGE_BIN (a kedge binary to run instead of building one),
# KEDGE_SKIP_PROVISION=1 (the machine is provisioned already).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD

if [ -z "${KEDGE_SKIP_PROVISION:-}" ]; then
  bash scripts/provision.sh
fi

if [ -n "${KEDGE_BIN:-}" ]; then
  kedge=$KEDGE_BIN
  shown=$KEDGE_BIN
else
  cargo build --release --locked
  kedge=$checkout/target/release/kedge
  shown=target/release/kedge
fi

export KEDGE_DATA_DIR=${KEDGE_DATA_DIR:-$checkout/.kedge}
export KEDGE_POLL_INTERVAL=${KEDGE_POLL_INTERVAL:-10s}

# What serve will use, for the instructions: a flag on the command line wins.
poll=$KEDGE_POLL_INTERVAL
listen=${KEDGE_LISTEN:-127.0.0.1:9470}
prev=
for arg in "$@"; do
  case $prev in
    --poll-interval) poll=$arg ;;
    --listen) listen=$arg ;;
  esac
  case $arg in
    --poll-interval=*) poll=${arg#*=} ;;
    --listen=*) listen=${arg#*=} ;;
  esac
  prev=$arg
done

say() { printf '%s\n' "$*" >&2; }

register_example() {
  local name=${KEDGE_EXAMPLE_NAME:-hello}
  local dir=${KEDGE_EXAMPLE_DIR:-$KEDGE_DATA_DIR/example/hello}
  if [ ! -d "$dir/.git" ]; then
    mkdir -p "$dir"
    cp -R examples/hello/. "$dir/"
    git -C "$dir" init -q -b main
    git -C "$dir" add -A
    git -C "$dir" -c user.name=Kedge -c user.email=kedge@localhost \
      commit -q -m "hello: the example stack"
  fi
  "$kedge" repo add "$dir" --name "$name" >/dev/null

  local flag=""
  if [ "$KEDGE_DATA_DIR" != "$checkout/.kedge" ]; then
    flag=" --data-dir $KEDGE_DATA_DIR"
  fi
  local port=${HELLO_PORT:-8080}
  say ""
  say "kedge: no repository was registered, so the example stack '$name' is:"
  say "  a git repository made from examples/hello, at $dir"
  say ""
  say "Watch it (in another shell, in $checkout):"
  say "  $shown$flag status"
  say "  $shown$flag events --follow"
  say "  curl http://127.0.0.1:$port/          # the example's web page"
  if [ "$listen" != none ]; then
    say "  http://$listen/                # the dashboard (sign in with: $shown$flag token create me --role deploy)"
    say "  curl http://$listen/healthz    # Kedge's own health"
  fi
  say ""
  say "Change it:"
  say "  cd $dir && sed -i 's/Hello from Kedge/Hello again/' compose.yaml && git commit -qam 'web: a new greeting'"
  say "Kedge checks the repository every $poll and deploys the commit (only web is recreated)."
  say ""
}

if [ -z "${KEDGE_NO_EXAMPLE:-}" ] && [ "$("$kedge" repo list -o json)" = "[]" ]; then
  register_example
fi

exec "$kedge" serve "$@"
