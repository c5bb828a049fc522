# syntax=docker/dockerfile:1.7
# stepcache image: the webhook server (`serve`), the recorder, `migrate`, and the `noop`
# command that cache-hit pods run, in one static-glibc binary at /stepcache.
#
#   docker build -t ghcr.io/stepcache/stepcache:0.1.0 .
#
# Cache mounts (BuildKit, the default builder) keep the registry and target dir between builds.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin stepcache \
 && install -D -m 0755 target/release/stepcache /out/stepcache

# distroless/cc: glibc + libgcc, no shell, no package manager; the nonroot tag runs as 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="stepcache" \
      org.opencontainers.image.description="Step-level execution caching for Argo Workflows" \
      org.opencontainers.image.source="https://github.com/stepcache/stepcache" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/stepcache /stepcache
USER 65532:65532
# 8443: HTTPS webhook (/mutate, /healthz, /readyz); 9090: plain-HTTP /metrics.
EXPOSE 8443 9090
ENTRYPOINT ["/stepcache"]
CMD ["serve"]
