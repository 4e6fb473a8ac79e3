# syntax=docker/dockerfile:1
# Airlock's image: the binary built as CI builds it (`cargo build --release --locked`), run
# as a non-root user on a minimal Debian runtime. Configuration at /etc/airlock/airlock.toml
# (AIRLOCK_CONFIG), state in /var/lib/airlock (data_dir: journal, TLS, SQLite when no
# [store] url is set). See deploy/ for Compose and Kubernetes.

FROM rust:1-bookworm AS build
# pg_query (the PostgreSQL parser) builds its C library with bindgen: libclang.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin airlock \
 && strip target/release/airlock

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 airlock \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/airlock --create-home airlock \
 && mkdir -p /etc/airlock && chown airlock:airlock /var/lib/airlock
COPY --from=build /src/target/release/airlock /usr/local/bin/airlock
USER 10001:10001
WORKDIR /var/lib/airlock
ENV AIRLOCK_CONFIG=/etc/airlock/airlock.toml
# PostgreSQL listener, HTTPS listener (HTTP, Kubernetes, MCP targets), admin API + console.
EXPOSE 16432 8443 18080
ENTRYPOINT ["/usr/local/bin/airlock"]
CMD ["serve"]
