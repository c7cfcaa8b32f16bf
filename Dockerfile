# syntax=docker/dockerfile:1
# Sluice server image: build with cargo in the official Rust image, run on Debian slim as a
# non-root user. See docs/deploy.md.
#
#   docker build -t sluice:0.1.0 .
#   docker run -p 8080:8080 -p 18765:18765 -v sluice-data:/data \
#     -e SLUICE_BEARER_TOKENS_JSON='{"ops":"<a long random token>"}' sluice:0.1.0
#
# The server listens on 0.0.0.0 in the container, which it refuses to do with authentication
# off: configure tokens (SLUICE_BEARER_TOKENS_JSON, SLUICE_AUTH_BEARER_TOKENS_FILE, JWT keys;
# docs/security.md) or set SLUICE_UNAUTHENTICATED=true to accept an open server.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The image has the C and C++ compilers the native dependencies need (usearch, zstd, ring).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice \
    && install -D -m 0755 target/release/sluice /out/sluice

FROM ${RUNTIME_IMAGE}
# curl: the HEALTHCHECK below and the replica registration Job of the Helm chart.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin sluice \
    && mkdir -p /data \
    && chown sluice:sluice /data
COPY --from=build /out/sluice /usr/local/bin/sluice

# Configuration is read from SLUICE_* variables (docs/configuration.md); the first three make
# the server reachable from outside the container and keep its data on the volume. Every 10 s
# the server writes its own metrics into its database `_monitoring` (self-monitoring,
# docs/monitoring.md; 0 turns it off), so Grafana can chart it with no Prometheus at
# http://HOST:8080/v1/databases/_monitoring.
ENV SLUICE_HTTP_ADDR=0.0.0.0:8080 \
    SLUICE_WIRE_ADDR=0.0.0.0:18765 \
    SLUICE_DATA_DIR=/data \
    SLUICE_LOG_FORMAT=json \
    SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS=10000

USER 10001:10001
VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080 18765

# Ready once every database's WAL is recovered; the port follows SLUICE_HTTP_ADDR. (With TLS
# on, change the URL to https and add -k, or rely on the orchestrator's probes.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${SLUICE_HTTP_ADDR##*:}/readyz\" || exit 1"]

# SIGTERM stops gracefully: open requests finish (http.shutdown_grace_ms), buffers are flushed,
# vector indexes snapshotted.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["serve"]
