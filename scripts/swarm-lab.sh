#!/usr/bin/env bash
# A real multi-node Docker Swarm on one machine, for Kedge's Swarm tests and
# for trying Swarm mode locally: NODES docker engines (default 3), each in
# its own network namespace on a lab bridge, with its own data root, exec
# root, socket and hostname; node 1 is the manager, the others join it as
# workers with the real join token. The host's engine, its networks and
# iptables are left as they were: `down` removes everything `up` made.
#
#   scripts/swarm-lab.sh up [LAB]      start it (idempotent); prints the manager's DOCKER_HOST
#   scripts/swarm-lab.sh down [LAB]    stop the engines, remove namespaces, bridge, rule and files
#   scripts/swarm-lab.sh load LAB IMAGE...   copy local images into every node
#   scripts/swarm-lab.sh host LAB N    the DOCKER_HOST of node N
#   scripts/swarm-lab.sh stop-node LAB N / start-node LAB N
#
# LAB is a short name (default kedgelab, at most 8 characters) so that
# several labs can run side by side; SUBNET (default 10.231) its /24 prefix.
# Needs root, iproute2, iptables, util-linux (nsenter, unshare) and dockerd.
set -euo pipefail

LAB=${2:-kedgelab}
NODES=${NODES:-3}
SUBNET=${SUBNET:-10.231.$(( $(printf '%s' "$LAB" | cksum | cut -d' ' -f1) % 200 + 20 ))}
STATE=/run/kedge-swarm-lab/$LAB
DATA=/var/lib/kedge-swarm-lab/$LAB
BRIDGE=br-$LAB

log() { printf 'swarm-lab %s: %s\n' "$LAB" "$*" >&2; }

[ "${#LAB}" -le 8 ] || { log "lab name longer than 8 characters"; exit 2; }
[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }

ns() { printf '%s-n%s' "$LAB" "$1"; }
sock() { printf '%s/node%s.sock' "$STATE" "$1"; }
addr() { printf '%s.%s' "$SUBNET" "$((10 + $1))"; }
dk() { local n=$1; shift; docker -H "unix://$(sock "$n")" "$@"; }

veth_host() { printf '%s-h%s' "$LAB" "$1"; }
veth_ns() { printf '%s-c%s' "$LAB" "$1"; }
# shellcheck source=scripts/lab-lib.sh
. "$(dirname "$0")/lab-lib.sh"

node_start() {
  local n=$1
  if dk "$n" version >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$STATE" "$DATA/node$n"
  # `ip netns exec` remounts /sys and hides the cgroup v1 mounts dockerd
  # needs: enter the network namespace with nsenter, in a mount namespace of
  # its own (unshare -m) and with its own hostname (unshare -u).
  nsenter --net="/run/netns/$(ns "$n")" unshare -m -u sh -c "
    hostname $LAB-node$n
    exec dockerd \
      --data-root '$DATA/node$n' \
      --exec-root '$STATE/exec$n' \
      --pidfile '$STATE/node$n.pid' \
      -H 'unix://$(sock "$n")' \
      --bip 172.$((40 + n)).0.1/24 \
      --default-address-pool base=172.$((50 + n)).0.0/16,size=24 \
      --insecure-registry $SUBNET.0/24 \
      --storage-driver overlay2
  " >"$STATE/node$n.log" 2>&1 &
  lab_wait_engine "$n" "node $n" "$STATE/node$n.log"
}

node_stop() { stop_pidfile "$STATE/node$1.pid"; }

swarm_up() {
  if [ "$(dk 1 info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    dk 1 swarm init --advertise-addr "$(addr 1)" >/dev/null
  fi
  local token; token=$(dk 1 swarm join-token -q worker)
  for n in $(seq 2 "$NODES"); do
    if [ "$(dk "$n" info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
      dk "$n" swarm join --token "$token" --advertise-addr "$(addr "$n")" "$(addr 1):2377" >/dev/null
    fi
  done
  local deadline=$((SECONDS + 60))
  until [ "$(dk 1 node ls --format '{{.Status}}' | grep -c Ready)" -eq "$NODES" ]; do
    [ $SECONDS -ge $deadline ] && { log "nodes not ready"; dk 1 node ls >&2; return 1; }
    sleep 0.2
  done
}

up() {
  lab_net_up
  for n in $(seq 1 "$NODES"); do node_start "$n"; done
  swarm_up
  log "ready: $NODES nodes"
  echo "unix://$(sock 1)"
}

down() {
  for n in $(seq 1 "$NODES"); do
    node_stop "$n"
    # Mounts the engine made under its data root die with its namespace;
    # anything left is unmounted before the files go.
    lab_node_down "$n" "$DATA/node$n"
  done
  lab_net_down
  rm -rf "$STATE" "$DATA"
  rmdir "$(dirname "$STATE")" "$(dirname "$DATA")" 2>/dev/null || true
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) shift 2 || true; lab_load "$@" ;;
  host) echo "unix://$(sock "$3")" ;;
  stop-node) node_stop "$3" ;;
  start-node) node_start "$3" ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac
