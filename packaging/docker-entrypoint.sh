#!/bin/sh
# The Kedge image's entrypoint. Started as root (the default), it hands the
# data directory to the `kedge` user and runs the command as that user with
# the Docker socket's group, so Kedge never runs as root when the socket's
# group allows it. A socket owned by group 0 (root) leaves no such group:
# then the command runs as root, and says so. `healthcheck` asks the
# listener's /healthz, with no curl or wget in the image.
set -eu

socket=${DOCKER_HOST:-unix:///var/run/docker.sock}
socket=${socket#unix://}
data=${KEDGE_DATA_DIR:-/var/lib/kedge}

if [ "${1:-}" = healthcheck ]; then
  port=${KEDGE_LISTEN:-127.0.0.1:9470}
  port=${port##*:}
  exec bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
    grep -q "\"status\":\"ok\"" <&3' healthcheck "$port"
fi

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$data"
  # Only what is not the user's yet: a large data volume is not walked on
  # every start.
  find "$data" -xdev ! -user kedge -exec chown kedge:kedge {} +
  gid=$(stat -c %g "$socket" 2>/dev/null || true)
  if [ -n "$gid" ] && [ "$gid" != 0 ]; then
    exec setpriv --reuid=kedge --regid=kedge --groups="$gid" --inh-caps=-all -- "$@"
  fi
  echo "docker-entrypoint: the Docker socket ${socket} belongs to group ${gid:-?}: running as root" >&2
fi
exec "$@"
