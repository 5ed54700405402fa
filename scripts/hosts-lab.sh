#!/usr/bin/env bash
# Remote Docker hosts on one machine, for Kedge's host tests and for trying
# `hosts:` locally: NODES docker engines (default 2), each in its own network
# namespace on a lab bridge (as the Swarm lab's nodes), each with an sshd
# beside it. Engine and sshd share a private mount namespace with their own
# tmpfs /run, /tmp and /var/lib/kedge-remote; the engine listens on
# /var/run/docker.sock there: `DOCKER_HOST=ssh://root@ADDR` reaches that
# engine and not this machine's, nor its temporary files. An engine stopped
# and started again comes back into the same namespace, as on a real host:
# SSH connections made before it see it return. The lab makes its own client key and
# host keys. The host's engine, networks and iptables are left as they were:
# `down` removes everything `up` made.
#
#   scripts/hosts-lab.sh up [LAB]        start it (idempotent); prints one line per host: ADDR
#   scripts/hosts-lab.sh down [LAB]      stop everything, remove namespaces, bridge, rule and files
#   scripts/hosts-lab.sh key LAB         the client's private key file (root@ADDR accepts it)
#   scripts/hosts-lab.sh tls LAB         a directory with ca.pem, cert.pem, key.pem: the client's
#                                        TLS files for tcp://ADDR:2376 (every engine listens there)
#   scripts/hosts-lab.sh addr LAB N      host N's address
#   scripts/hosts-lab.sh rekey LAB N     give host N's sshd a new host key (a changed host)
#   scripts/hosts-lab.sh stop-engine LAB N / start-engine LAB N
#   scripts/hosts-lab.sh load LAB IMAGE...   copy local images into every engine
#   scripts/hosts-lab.sh docker LAB N ARGS... the docker CLI on host N's engine
#   scripts/hosts-lab.sh socket LAB N        host N's engine socket, as this machine reaches it
#
# LAB is a short name (at most 8 characters); SUBNET (default derived from
# it) its /24 prefix. Needs root, iproute2, iptables, util-linux (nsenter,
# unshare), dockerd and openssh-server.
set -euo pipefail

LAB=${2:-kedgehst}
NODES=${NODES:-2}
SUBNET=${SUBNET:-10.232.$(( $(printf '%s' "$LAB" | cksum | cut -d' ' -f1) % 200 + 20 ))}
DATA=/var/lib/kedge-hosts-lab/$LAB
# Not under /run: each host has a /run of its own.
STATE=$DATA/state
BRIDGE=bh-$LAB

log() { printf 'hosts-lab %s: %s\n' "$LAB" "$*" >&2; }

[ "${#LAB}" -le 8 ] || { log "lab name longer than 8 characters"; exit 2; }
[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }

ns() { printf '%s-h%s' "$LAB" "$1"; }
sock() { printf '%s/engine%s.sock' "$STATE" "$1"; }
addr() { printf '%s.%s' "$SUBNET" "$((10 + $1))"; }
dk() { local n=$1; shift; docker -H "unix://$(sock "$n")" "$@"; }
engine_pid() { cat "$STATE/engine$1.pid" 2>/dev/null; }
sshd_pid() { cat "$STATE/sshd$1.pid" 2>/dev/null; }

veth_host() { printf '%s-v%s' "$LAB" "$1"; }
veth_ns() { printf '%s-p%s' "$LAB" "$1"; }
# shellcheck source=scripts/lab-lib.sh
. "$(dirname "$0")/lab-lib.sh"

keys() {
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  [ -f "$STATE/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C "kedge-hosts-lab" -f "$STATE/client_key"
  cp "$STATE/client_key.pub" "$STATE/authorized_keys"
  for n in $(seq 1 "$NODES"); do
    [ -f "$STATE/host_key$n" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_key$n"
    cat >"$STATE/sshd$n.conf" <<EOF
ListenAddress $(addr "$n"):22
HostKey $STATE/host_key$n
AuthorizedKeysFile $STATE/authorized_keys
PidFile $STATE/sshd$n.pid
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
AllowUsers root
AllowStreamLocalForwarding yes
MaxStartups 100
EOF
  done
}

# A CA of the lab's own; each engine's certificate names its address; one
# client certificate for all.
certs() {
  local d="$STATE/tls"
  [ -f "$d/ca.pem" ] && return 0
  mkdir -p "$d/client"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=kedge hosts lab $LAB" -keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
  for n in $(seq 1 "$NODES"); do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=$(addr "$n")" -keyout "$d/server$n-key.pem" -out "$d/server$n.csr" 2>/dev/null
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$(addr "$n")" >"$d/server$n.ext"
    openssl x509 -req -in "$d/server$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
      -days 2 -extfile "$d/server$n.ext" -out "$d/server$n.pem" 2>/dev/null
  done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=kedge" -keyout "$d/client/key.pem" -out "$d/client.csr" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
  openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
    -days 2 -extfile "$d/client.ext" -out "$d/client/cert.pem" 2>/dev/null
  cp "$d/ca.pem" "$d/client/ca.pem"
  chmod 600 "$d/client/key.pem"
}

# The engine's own config: the host's daemon.json is not read (a key set
# in both would stop it).
engine_start() {
  local n=$1
  if dk "$n" version >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$DATA/engine$n"
  echo '{}' >"$STATE/daemon$n.json"
  local run="exec dockerd \
      --config-file '$STATE/daemon$n.json' \
      --data-root '$DATA/engine$n' \
      --exec-root '$STATE/exec$n' \
      --pidfile '$STATE/engine$n.pid' \
      -H unix:///run/docker.sock \
      -H 'unix://$(sock "$n")' \
      -H 'tcp://$(addr "$n"):2376' \
      --tlsverify \
      --tlscacert '$STATE/tls/ca.pem' \
      --tlscert '$STATE/tls/server$n.pem' \
      --tlskey '$STATE/tls/server$n-key.pem' \
      --bip 172.$((60 + n)).0.1/24 \
      --default-address-pool base=172.$((70 + n)).0.0/16,size=24 \
      --storage-driver overlay2"
  local pid; pid=$(sshd_pid "$n") || true
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # The host's namespaces, which its sshd kept.
    nsenter -t "$pid" -m -n -u sh -c "$run" >>"$STATE/engine$n.log" 2>&1 &
  else
    nsenter --net="/run/netns/$(ns "$n")" unshare -m -u --propagation private sh -c "
      hostname $LAB-host$n
      mount -t tmpfs -o mode=0755 tmpfs /run
      mkdir -p /run/sshd
      mount -t tmpfs -o mode=1777 tmpfs /tmp
      mkdir -p /var/lib/kedge-remote
      mount -t tmpfs -o mode=0755 tmpfs /var/lib/kedge-remote
      $run
    " >"$STATE/engine$n.log" 2>&1 &
  fi
  lab_wait_engine "$n" "engine $n" "$STATE/engine$n.log"
}

engine_stop() { stop_pidfile "$STATE/engine$1.pid"; }

sshd_start() {
  local n=$1
  sshd_stop "$n"
  # Beside the engine: its network, its mounts (its /run, /tmp).
  nsenter -t "$(engine_pid "$n")" -m -n -u /usr/sbin/sshd -f "$STATE/sshd$n.conf" -E "$STATE/sshd$n.log"
  local deadline=$((SECONDS + 10))
  until [ -s "$STATE/sshd$n.pid" ]; do
    [ $SECONDS -ge $deadline ] && { log "sshd $n did not start"; cat "$STATE/sshd$n.log" >&2; return 1; }
    sleep 0.1
  done
}

sshd_stop() {
  local pid
  pid=$(cat "$STATE/sshd$1.pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  rm -f "$STATE/sshd$1.pid"
}

up() {
  lab_net_up
  keys
  certs
  for n in $(seq 1 "$NODES"); do
    engine_start "$n"
    [ -s "$STATE/sshd$n.pid" ] && kill -0 "$(cat "$STATE/sshd$n.pid")" 2>/dev/null || sshd_start "$n"
  done
  log "ready: $NODES hosts"
  for n in $(seq 1 "$NODES"); do addr "$n"; echo; done
}

down() {
  for n in $(seq 1 "$NODES"); do
    sshd_stop "$n"
    engine_stop "$n"
    lab_node_down "$n" "$DATA/"
  done
  lab_net_down
  rm -rf "$DATA"
  rmdir "$(dirname "$DATA")" 2>/dev/null || true
  log "down"
}

rekey() {
  local n=$1
  rm -f "$STATE/host_key$n" "$STATE/host_key$n.pub"
  ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_key$n"
  sshd_start "$n"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  key) echo "$STATE/client_key" ;;
  tls) echo "$STATE/tls/client" ;;
  addr) addr "$3" ;;
  rekey) rekey "$3" ;;
  stop-engine) engine_stop "$3" ;;
  start-engine)
    engine_start "$3"
    pid=$(sshd_pid "$3") || true
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || sshd_start "$3"
    ;;
  load) shift 2 || true; lab_load "$@" ;;
  docker) n=$3; shift 3; dk "$n" "$@" ;;
  socket) sock "$3"; echo ;;
  *) sed -n '2,23p' "$0" >&2; exit 2 ;;
esac
