# syntax=docker/dockerfile:1
#
# Palisade container image.
#
#   docker build -t palisade .                          # distroless runtime (the default target)
#   docker build -t palisade:debian --target debian .   # Debian slim + curl, with a HEALTHCHECK
#
# Stages:
#   skeleton  the workspace's manifests and lockfile, with every crate's sources replaced by empty
#             stubs; its output changes only when a Cargo.toml or Cargo.lock changes
#   builder   compiles the dependencies against the skeleton (a cached layer), then the real sources
#   debian    debian:bookworm-slim with curl, so Docker and Compose can run a HEALTHCHECK
#   runtime   distroless cc-debian12 (glibc, libgcc, CA certificates, no shell): the default
#
# Health: the distroless image has no shell and no HTTP client, so it carries no HEALTHCHECK.
# Kubernetes does not use HEALTHCHECK anyway: its probes are HTTP GETs against /health/live and
# /health/ready made by the kubelet (see deploy/helm). Where the container runtime itself must
# judge health (plain Docker, Compose's `depends_on: condition: service_healthy`), build the
# `debian` target, which adds curl and a HEALTHCHECK on /health/ready.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS skeleton
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY xtask xtask
COPY deploy/docker/skeleton.sh /usr/local/bin/skeleton.sh
RUN sh /usr/local/bin/skeleton.sh /skeleton

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# Dependencies: this layer is rebuilt only when the manifests or the lockfile change.
COPY --from=skeleton /skeleton/ ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release -p palisade --locked
# Our code. The copied sources may be older than the stub build's outputs; touching them makes
# cargo rebuild the workspace crates instead of keeping the stubs.
COPY crates crates
COPY xtask xtask
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    find crates xtask -name '*.rs' -exec touch {} + \
    && cargo build --release -p palisade --locked \
    && install -D -m 0755 target/release/palisade /out/palisade \
    && /out/palisade --version

FROM debian:${DEBIAN_RELEASE}-slim AS debian
# Unpinned on purpose: bookworm's security updates replace package versions, so a pin breaks
# the build; the release is fixed by the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 palisade \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin palisade
COPY --from=builder /out/palisade /usr/local/bin/palisade
USER 65532:65532
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
# /health/ready on the main listener; 8080 is the port of the default command and of
# deploy/palisade.yaml.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/health/ready"]
ENTRYPOINT ["/usr/local/bin/palisade"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--log-json"]

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/palisade /usr/local/bin/palisade
# 65532 is distroless's `nonroot` user; the Helm chart runs as the same id.
USER 65532:65532
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/palisade"]
# Without --config: the built-in configuration (generic proxy, default policy). Mount a file
# and pass `serve --config /etc/palisade/palisade.yaml --log-json` to use your own.
CMD ["serve", "--listen", "0.0.0.0:8080", "--log-json"]
