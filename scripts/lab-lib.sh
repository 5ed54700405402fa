# Shared by scripts/swarm-lab.sh and scripts/hosts-lab.sh (sourced): a lab
# bridge with NODES network namespaces on it, the FORWARD rule that lets
# them talk (the host engine sets FORWARD's policy to DROP), and stopping a
# daemon by its pid file, and copying images into every node's engine. The
# caller sets LAB, NODES, SUBNET and BRIDGE and defines `ns N`, `addr N`,
# `veth_host N`, `veth_ns N`, `dk N ARGS…` (docker on node N's engine) and
# `log MESSAGE`.

forward_rule() { iptables "$1" FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT; }

lab_net_up() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  forward_rule -C 2>/dev/null || forward_rule -I
  local n name
  for n in $(seq 1 "$NODES"); do
    name=$(ns "$n")
    [ -e "/run/netns/$name" ] && continue
    ip netns add "$name"
    ip link add "$(veth_host "$n")" type veth peer name "$(veth_ns "$n")"
    ip link set "$(veth_host "$n")" master "$BRIDGE" up
    ip link set "$(veth_ns "$n")" netns "$name"
    ip -n "$name" link set lo up
    ip -n "$name" link set "$(veth_ns "$n")" name eth0
    ip -n "$name" addr add "$(addr "$n")/24" dev eth0
    ip -n "$name" link set eth0 up
    # No default route: a pull from a registry the node cannot reach fails
    # at once (and it uses its local image) instead of hanging.
  done
}

# Node N's namespace and veth go; mounts left under DIR are unmounted.
lab_node_down() {
  local n=$1 dir=$2
  grep -o " $dir[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  ip netns del "$(ns "$n")" 2>/dev/null || true
  ip link del "$(veth_host "$n")" 2>/dev/null || true
}

lab_net_down() {
  forward_rule -D 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
}

# Stops the daemon whose pid PIDFILE holds: TERM, then KILL after 30 s.
stop_pidfile() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && { kill -9 "$pid" 2>/dev/null; break; }
    sleep 0.2
  done
}

# Copies local images into every node's engine.
lab_load() {
  local image n
  for image in "$@"; do
    for n in $(seq 1 "$NODES"); do
      docker save "$image" | dk "$n" load -q >/dev/null
    done
  done
}

# Waits (a minute at most) until node N's engine answers; else says so
# with the end of its log: lab_wait_engine N WHAT LOG.
lab_wait_engine() {
  local deadline=$((SECONDS + 60))
  until dk "$1" version >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "$2 did not start:"; tail -20 "$3" >&2; return 1
    fi
    sleep 0.2
  done
}
