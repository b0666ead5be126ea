# syntax=docker/dockerfile:1.7
#
# Smart AI Hub: one image with the five binaries the workspace builds:
#   gateway (port 3000), auth (3001), core (3002), mcp (3003), and hub (the command line;
#   `hub up` runs all four services in one process).
#
#   docker build -t smart-ai-hub .
#   docker run --rm -p 3000:3000 -v hub-data:/data smart-ai-hub        # hub up, embedded SQLite
#   docker compose up -d                                                # see docker-compose.yml

ARG RUST_VERSION=1.95

# --- build ------------------------------------------------------------------------------------
# The full Debian image: it has the C compiler that the bundled SQLite (libsqlite3-sys) needs.
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src

# Only what the build reads (BuildKit then sends only these paths, so a local target/ is not
# uploaded): the workspace manifests, the crates (askama compiles crates/auth/templates in),
# the migrations that `sqlx::migrate!` embeds at compile time, and `tests/`, which the
# workspace lists as a member.
# No database is needed at build time: the code uses `sqlx::query(…)`, not the `query!` macros.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY migrations ./migrations
COPY tests ./tests

# target/ is a cache mount, so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p hub-gateway -p hub-auth -p hub-core -p hub-mcp -p hub \
    && mkdir -p /out \
    && cp target/release/gateway target/release/auth target/release/core target/release/mcp \
       target/release/hub /out/

# --- run --------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# The binaries need only the C library. Their TLS client (Google sign-in) carries its own root
# certificates (webpki-roots); ca-certificates is here for anything else that looks in /etc/ssl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A non-root user, and the data directory it owns. A named volume mounted on /data starts with
# this ownership. What lives there: hub.db (embedded mode), internal-token (`hub up` without
# HUB_INTERNAL_TOKEN), jwt-ed25519.pem (the auth service's signing key, made once if missing).
RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin hub \
    && mkdir -p /data \
    && chown hub:hub /data \
    && chmod 0700 /data

COPY --from=builder /out/ /usr/local/bin/

# The health check needs no curl: bash's /dev/tcp sends one plain-HTTP GET and reads the status
# line. Arguments: port (default 3000) and path (default /health). It speaks plain HTTP only.
COPY --chmod=0755 <<'EOF' /usr/local/bin/hub-healthcheck
#!/bin/bash
# hub-healthcheck [PORT] [PATH]: exit 0 when http://127.0.0.1:PORT/PATH answers 200.
port="${1:-3000}"
path="${2:-/health}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$path" "$port" >&3
IFS=' ' read -r -t 5 _version status _rest <&3 || exit 1
[ "${status%$'\r'}" = "200" ]
EOF

# HUB_DATA_DIR: where the files above live. GATEWAY_ADDR: the gateway (alone, or in `hub up`)
# listens on every interface, so the published port reaches it; auth and core keep their
# loopback defaults under `hub up`, and docker-compose.yml sets their addresses.
ENV HUB_DATA_DIR=/data \
    GATEWAY_ADDR=0.0.0.0:3000

USER 10001:10001
WORKDIR /
VOLUME ["/data"]
EXPOSE 3000

# The gateway's (and `hub up`'s) liveness; docker-compose.yml gives auth and core their own.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["hub-healthcheck", "3000", "/health"]

# SIGTERM (docker stop) makes every service finish the requests in flight, then exit.
CMD ["hub", "up"]
