#!/usr/bin/env bash
# Kedge's main job on a new machine: provision Docker and compose, build,
# then `kedge serve` with any extra arguments (e.g. --poll-interval 10s).
#
# It first checks that the HTTP address is free: a taken port is said at
# once, before anything is provisioned, built or registered.
#
# On a data directory with no repository registered, it then registers the
# bundled example (examples/hello), as a git repository it creates from that
# folder on the first run. Whenever the example is the only repository
# registered, it prints how to watch it and how to change it.
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

export KEDGE_DATA_DIR=${KEDGE_DATA_DIR:-$checkout/.kedge}
export KEDGE_POLL_INTERVAL=${KEDGE_POLL_INTERVAL:-10s}

# What serve will use, for the check and the instructions: a flag on the
# command line wins.
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

# Whether something listens on ADDR (HOST:PORT, [V6]:PORT) already: then
# serve could not bind it. A wildcard address is tried on loopback; port 0
# (any free port) is never taken.
port_taken() {
  local port=${1##*:} host=${1%:*}
  host=${host#[}
  host=${host%]}
  case $host in
    0.0.0.0) host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  [ "$port" != 0 ] || return 1
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

if [ "$listen" != none ] && port_taken "$listen"; then
  other=${listen%:*}:$((${listen##*:} % 65535 + 1))
  say "kedge: cannot listen on $listen: port ${listen##*:} is taken (another kedge serve, or another server)."
  say "Choose another address with --listen or KEDGE_LISTEN, for example:"
  say "  scripts/serve.sh --listen $other"
  say "  KEDGE_LISTEN=$other scripts/serve.sh"
  say "(--listen none serves no HTTP.) Nothing was registered or started."
  exit 1
fi

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

example_name=${KEDGE_EXAMPLE_NAME:-hello}
example_dir=${KEDGE_EXAMPLE_DIR:-$KEDGE_DATA_DIR/example/hello}

register_example() {
  local name=$example_name dir=$example_dir
  if [ ! -d "$dir/.git" ]; then
    mkdir -p "$dir"
    cp -R examples/hello/. "$dir/"
    git -C "$dir" init -q -b main
    git -C "$dir" add -A
    git -C "$dir" -c user.name=Kedge -c user.email=kedge@localhost \
      commit -q -m "hello: the example stack"
  fi
  "$kedge" repo add "$dir" --name "$name" >/dev/null
}

# Whether the example is the one repository registered: its name, and its
# URL the example's directory.
only_the_example() {
  local json names url
  json=$("$kedge" repo list -o json)
  names=$(sed -n 's/^    "name": "\(.*\)",$/\1/p' <<<"$json")
  url=$(sed -n 's/^    "url": "\(.*\)",$/\1/p' <<<"$json")
  [ "$names" = "$example_name" ] && [ -d "$url" ] && [ -d "$example_dir" ] &&
    [ "$(cd "$url" && pwd -P)" = "$(cd "$example_dir" && pwd -P)" ]
}

# How to watch the example and change it; $1 is set when it was registered just now.
walkthrough() {
  local name=$example_name dir=$example_dir
  local flag=""
  if [ "$KEDGE_DATA_DIR" != "$checkout/.kedge" ]; then
    flag=" --data-dir $KEDGE_DATA_DIR"
  fi
  local port=${HELLO_PORT:-8080}
  say ""
  if [ -n "$1" ]; then
    say "kedge: no repository was registered, so the example stack '$name' is:"
  else
    say "kedge: the example stack '$name' is the only repository registered:"
  fi
  say "  a git repository made from examples/hello, at $dir"
  say ""
  say "Watch it (in another shell, in $checkout):"
  say "  $shown$flag status"
  say "  $shown$flag events --follow"
  # A command and what it shows, the comments lined up.
  shows() { say "$(printf '  %-34s  # %s' "$1" "$2")"; }
  shows "curl http://127.0.0.1:$port/" "the example's web page"
  if [ "$listen" != none ]; then
    shows "http://$listen/" "the dashboard (sign in with: $shown$flag token create me --role deploy)"
    shows "curl http://$listen/healthz" "Kedge's own health"
  fi
  say ""
  say "Change it:"
  say "  cd $dir && sed -i 's/Hello from Kedge/Hello again/' compose.yaml && git commit -qam 'web: a new greeting'"
  say "Kedge checks the repository every $poll and deploys the commit (only web is recreated)."
  say ""
}

registered=
if [ -z "${KEDGE_NO_EXAMPLE:-}" ] && [ "$("$kedge" repo list -o json)" = "[]" ]; then
  register_example
  registered=1
fi
# Not only on the first run: a rerun (after a stop, or a failed start)
# still shows how to use the example while nothing else is registered.
if only_the_example; then
  walkthrough "$registered"
fi

exec "$kedge" serve "$@"
