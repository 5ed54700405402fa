# Kedge in a container: git, the compose v2 plugin and the kedge binary on a
# slim Debian, run as an unprivileged user in the Docker socket's group.
#
#   docker build -t kedge .                          # compiles in a Rust image
#   cargo build --release && docker build --target prebuilt -t kedge .
#                                                    # takes target/release/kedge
#
# deploy/compose.yaml runs it with the socket and a data volume.

ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm

# The runtime every variant shares.
FROM ${BASE} AS runtime
# Compose v2 is not packaged for bookworm; trixie's docker-compose package
# is a static binary. Only that one file is taken from it, through an apt
# configuration of its own, so the image's sources never see trixie.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates git openssh-client; \
    tmp=$(mktemp -d); mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/archives/partial"; \
    mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true); \
    echo "deb ${mirror:-http://deb.debian.org/debian} trixie main" >"$tmp/parts/trixie.list"; \
    opts="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$tmp/parts -o Dir::State::Lists=$tmp/lists -o Dir::Cache=$tmp/cache -o Dir::Cache::Archives=$tmp/archives"; \
    apt-get $opts update; \
    (cd "$tmp" && apt-get $opts download docker-compose); \
    dpkg-deb -x "$tmp"/docker-compose_*.deb "$tmp/x"; \
    install -D -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" \
        /usr/libexec/docker/cli-plugins/docker-compose; \
    apt-get clean; rm -rf "$tmp" /var/lib/apt/lists/* /var/cache/debconf/*-old; \
    /usr/libexec/docker/cli-plugins/docker-compose version; \
    # Repositories mounted into the container belong to the host's users,
    # not to `kedge`: git would refuse them as of "dubious ownership". Kedge
    # is the only user here, and it only reads what the operator mounted.
    git config --system safe.directory '*'; \
    useradd --system --uid 10001 --user-group --home-dir /var/lib/kedge --shell /usr/sbin/nologin kedge; \
    install -d -o kedge -g kedge /var/lib/kedge
COPY packaging/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
ENV KEDGE_DATA_DIR=/var/lib/kedge \
    KEDGE_LISTEN=0.0.0.0:9470 \
    HOME=/var/lib/kedge
WORKDIR /var/lib/kedge
VOLUME /var/lib/kedge
EXPOSE 9470
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
    CMD ["docker-entrypoint", "healthcheck"]
ENTRYPOINT ["docker-entrypoint"]
CMD ["kedge", "serve"]

# A binary built outside the image (`--target prebuilt`; KEDGE_BINARY is its
# path inside the build context).
FROM runtime AS prebuilt
ARG KEDGE_BINARY=target/release/kedge
COPY ${KEDGE_BINARY} /usr/local/bin/kedge
RUN kedge --version

# Compiling: the Rust toolchain stays in this stage.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The commit `kedge --version` names (the build context has no .git).
ARG KEDGE_GIT_COMMIT=unknown
ENV KEDGE_GIT_COMMIT=${KEDGE_GIT_COMMIT}
RUN cargo build --release --locked && strip target/release/kedge

# The default target.
FROM runtime
COPY --from=build /src/target/release/kedge /usr/local/bin/kedge
RUN kedge --version
