# syntax=docker/dockerfile:1
# The drmesh operator image: a static (musl) binary on distroless/static, non-root
# (uid 65532), nothing else in the image.
#
# NOTE: this Dockerfile cannot be built on the project's own machines (no container
# runtime, no image registry reachable); CI there checks the chart, not the image. Build
# it where Docker or BuildKit runs:
#   docker build -t REGISTRY/drmesh:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) .
# and set image.repository/image.digest in the chart.

FROM rust:1-bookworm AS builder
# musl-gcc for ring's C and assembly; the result is a fully static binary.
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Cargo.toml names the benches and the e2e test target: their files must exist.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin drmesh \
 && cp target/x86_64-unknown-linux-musl/release/drmesh /drmesh

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /drmesh /drmesh
# distroless "nonroot" is uid/gid 65532; the chart sets the same and runAsNonRoot.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/drmesh"]
CMD ["run", "--http-addr=0.0.0.0:8080", "--log-json"]
