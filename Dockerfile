# syntax=docker/dockerfile:1
#
# The mapscope sidecar image.
#
#   docker build -t ghcr.io/mapscope/mapscope:0.1.0 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 9847:9847 ghcr.io/mapscope/mapscope:0.1.0
#
# The ingest listener stays on 127.0.0.1:9848 (MAPSCOPE_INGEST_LISTEN): only
# containers sharing the sidecar's network namespace (a Kubernetes pod, or
# `docker run --network container:<app>`) can report to it.
#
# deploy/check-dockerfile-build.sh runs this file's release build outside
# Docker, so it cannot rot unnoticed where no Docker engine is available.

# ---------------------------------------------------------------- build
FROM rust:1.95-bookworm AS build
WORKDIR /build
# The stub step pipes awk into a loop: fail the step if awk fails.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Dependencies first, in their own layer: build them against stub sources
# so that changing src/ does not rebuild every crate. Cargo.toml declares
# bench and example targets, which must exist for cargo to load the
# manifest; stubs will do, they are not built here.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches examples \
    && printf '//! Dependency-caching stub.\n' > src/lib.rs \
    && printf 'fn main() {}\n' > src/main.rs \
    && awk -F'"' '/^\[\[bench\]\]/ { d = "benches" } /^\[\[example\]\]/ { d = "examples" } /^name = / && d { print d "/" $2 ".rs"; d = "" }' Cargo.toml \
       | while read -r stub; do printf 'fn main() {}\n' > "$stub"; done \
    && cargo build --release --locked --features sidecar --bin mapscope \
    && rm -rf src benches examples

COPY src ./src
# The revision shown in mapscope_build_info{revision} and `mapscope version`.
ARG REVISION=unknown
# COPY keeps the sources' timestamps, which may be older than the stub
# build's output: touch the crate roots so that cargo rebuilds the crate.
RUN touch src/lib.rs src/main.rs \
    && MAPSCOPE_REVISION="${REVISION}" cargo build --release --locked --features sidecar --bin mapscope \
    && ./target/release/mapscope version

# -------------------------------------------------------------- runtime
# glibc and libgcc, no shell, no package manager; runs as nonroot (65532).
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mapscope" \
      org.opencontainers.image.description="See what hash maps do to a service's latency and memory: a sidecar exposing hash-map internals as Prometheus metrics." \
      org.opencontainers.image.source="https://github.com/mapscope/mapscope" \
      org.opencontainers.image.url="https://github.com/mapscope/mapscope" \
      org.opencontainers.image.documentation="https://github.com/mapscope/mapscope/blob/main/docs/runbook.md" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY --from=build /build/target/release/mapscope /usr/local/bin/mapscope

ENV MAPSCOPE_LISTEN=0.0.0.0:9847 \
    MAPSCOPE_LOG_FORMAT=json

USER 65532:65532
EXPOSE 9847

HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/mapscope", "healthcheck", "--url", "http://127.0.0.1:9847/healthz"]

ENTRYPOINT ["/usr/local/bin/mapscope"]
CMD ["sidecar"]
