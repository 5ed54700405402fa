#!/usr/bin/env bash
# Makes the Docker image the Dockerfile builds on, `debian:bookworm-slim`,
# when the engine does not have it: no image can be pulled on the machines
# Kedge is built and tested on, so it is bootstrapped from Debian's archive
# (`debootstrap --variant=minbase`) and imported with `docker import`. An
# existing tag is kept as it is (the cache: a second run costs one
# `docker image inspect`). As root. `KEDGE_BASE_IMAGE` names another tag.
set -euo pipefail

TAG=${KEDGE_BASE_IMAGE:-debian:bookworm-slim}
MIRROR=${KEDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'base-image: %s\n' "$*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  log "debootstrap is missing (scripts/provision.sh installs it)"
  exit 1
}

# Two runs at once (two test binaries, two checkouts on one engine) must not
# bootstrap into one folder: each has its own, and the import is atomic.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
log "bootstrapping $TAG (debootstrap --variant=minbase bookworm)"
debootstrap --variant=minbase bookworm "$root/rootfs" "$MIRROR" >"$root/debootstrap.log" 2>&1 || {
  tail -n 30 "$root/debootstrap.log" >&2
  exit 1
}

# What Debian's own slim images leave out: documentation, man pages and
# translations, also for packages installed later; no package cache.
cat >"$root/rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
cat >"$root/rootfs/etc/apt/apt.conf.d/slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
CFG
chroot "$root/rootfs" apt-get clean
rm -rf "$root/rootfs"/var/lib/apt/lists/* "$root/rootfs"/usr/share/doc/* \
  "$root/rootfs"/usr/share/man/* "$root/rootfs"/usr/share/info/* \
  "$root/rootfs"/var/log/*.log "$root/rootfs"/var/cache/debconf/*-old
SECURITY=${KEDGE_DEBIAN_SECURITY_MIRROR:-${MIRROR%/debian}/debian-security}
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
  "$MIRROR" "$MIRROR" "$SECURITY" >"$root/rootfs/etc/apt/sources.list"

tar -C "$root/rootfs" --numeric-owner -cf - . |
  docker import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$TAG" >/dev/null
log "imported $TAG ($(docker image inspect --format '{{.Size}}' "$TAG") bytes)"
