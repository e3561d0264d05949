# syntax=docker/dockerfile:1
#
# The `vigil` binary in a small Debian image.
#
#   docker build -t vigil .
#   docker run --rm vigil --help
#   docker run --rm -v vigil-data:/data vigil demo --data-dir /data
#
# The configuration file is /etc/vigil/vigil.toml (vigil.example.toml: every key at its default);
# pass it with `--config /etc/vigil/vigil.toml` and override keys with VIGIL_SECTION__KEY variables
# (VIGIL_KAFKA__BROKERS=kafka:9092). VIGIL_LOG sets the log filter (default: warn).

# ---- build ----------------------------------------------------------------------------------------
# rust:1-bookworm has the C toolchain (make, cc, perl, bash) that the rdkafka crate needs to build
# librdkafka from source (its default ./configure build; no SSL, SASL or zlib).
FROM rust:1-bookworm AS builder
WORKDIR /app
COPY . .
# The registry cache mounts only speed up rebuilds; the binary stays in this stage's filesystem.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release -p vigil-pipeline --bin vigil

# ---- runtime --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /app/target/release/vigil /usr/local/bin/vigil
COPY vigil.example.toml /etc/vigil/vigil.toml
# The history (Parquet files, manifest, checkpoints) goes here.
WORKDIR /data
VOLUME /data
ENTRYPOINT ["vigil"]
CMD ["--help"]
