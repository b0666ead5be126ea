#!/usr/bin/env bash
# The gateway's three benchmarks in one go, each beside its baseline, printing ratios:
#   1. plain proxying of a fixed small body, against nginx proxying the same upstream with
#      keep-alive (target: at least 1.0 of nginx's requests/s), and beside both a bare hyper proxy
#      (`hub-bench bare-proxy`: what hyper alone allows on the machine);
#   2. verify-session through the gateway, sessions and rate limits in Redis
#      (target: at least 15,000 requests/s, p99 under 10 ms);
#   3. deduct through the gateway with a service key, PostgreSQL, spread over 10,000 users,
#      against pgbench running the core's debit statement (target: at least 0.6 of pgbench).
# The load generator is wrk (Debian's, installed if missing; `wrk -t2`, Lua scripts in
# bench/wrk/), a program nobody on the team wrote; hub-bench only makes the accounts, the
# session codes, the pgbench script and the fixed upstream. BENCHMARKS.md records the figures.
#
#   bench/gateway.sh [seconds per run, default 10]
#   BENCH_ONLY=proxy,verify,deduct   (a comma-separated subset of the three; all by default)
#
# Needs: nginx (installed with apt-get if missing), Redis at 127.0.0.1:6379 (uses database 9 and
# flushes it), PostgreSQL (BENCH_PG_SERVER, default postgres://postgres@127.0.0.1:5432; creates and
# drops the database hub_bench_gw), pgbench and psql.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS="${1:-10}"
PROXY_CONCURRENCY="${BENCH_PROXY_CONCURRENCY:-64}"
VERIFY_CONCURRENCY="${BENCH_VERIFY_CONCURRENCY:-64}"
DEDUCT_CONCURRENCY="${BENCH_DEDUCT_CONCURRENCY:-16}"
USERS="${BENCH_USERS:-10000}"
SERVER="${BENCH_PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
DB=hub_bench_gw
UPSTREAM=127.0.0.1:39200
NGINX_PORT=39210
GATEWAY_PORT=39211
AUTH_PORT=39212
CORE_PORT=39213
BARE_PORT=39214
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli -n 9 flushdb >/dev/null 2>&1 || true
  psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx-light"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

cargo build --release -q -p hub -p hub-bench -p hub-gateway -p hub-auth -p hub-core
HUB=target/release/hub
BENCH=target/release/hub-bench
# wrk's last line is bench/wrk/report.lua's JSON.
load() { # output-file wrk-arguments...
  local out=$1; shift
  wrk -t2 -d "${RUN_SECONDS}s" "$@" >"$out.txt" 2>&1 || { cat "$out.txt"; exit 1; }
  tail -n 1 "$out.txt" >"$out"
}
export RUST_LOG=warn LOG_FORMAT=text
export HUB_INTERNAL_TOKEN="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# The limiters stay in the path, with limits no benchmark reaches.
export RATE_LIMIT_DEFAULT_PER_MINUTE=60000000 RATE_LIMIT_VERIFY_PER_MINUTE=60000000 \
  RATE_LIMIT_CREDITS_PER_MINUTE=60000000

want() { [ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]; }
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
start() { # name url-to-wait-for command...
  local name=$1 url=$2; shift 2
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 150); do
    curl -fs "$url" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$name did not start:"; cat "$WORK/$name.log"; exit 1
}
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

echo "machine: $(nproc) cores; $("$NGINX" -v 2>&1 | cut -d' ' -f3); $(redis-server --version | cut -d' ' -f3); $(psql "$SERVER/postgres" -Atc 'select version()' | cut -d, -f1)"
echo "each run: ${RUN_SECONDS}s; load generator: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), -t2"

# --- 1. plain proxying: nginx and the gateway in front of the same upstream ---
if want proxy; then
mkdir -p "$WORK/nginx"
bench/nginx-conf.sh "$WORK/nginx" "$NGINX_PORT" "$UPSTREAM" >"$WORK/nginx/nginx.conf"
start upstream "http://$UPSTREAM/" "$BENCH" upstream --addr "$UPSTREAM"
start nginx "http://127.0.0.1:$NGINX_PORT/" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g "daemon off;"
start gateway "http://127.0.0.1:$GATEWAY_PORT/health" env HUB_DATA_DIR="$WORK/proxy-data" \
  GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT" AUTH_URL="http://$UPSTREAM" CORE_URL="http://$UPSTREAM" \
  target/release/gateway
start bare "http://127.0.0.1:$BARE_PORT/" "$BENCH" bare-proxy --addr "127.0.0.1:$BARE_PORT" --upstream "$UPSTREAM"
PROXIED=/.well-known/jwks.json
NGINX_PIDS="$(pgrep -P "${PIDS[1]}" | tr '\n' ' ')"
GATEWAY_PID="${PIDS[2]}"
BARE_PID="${PIDS[3]}"
# CPU per request (user + system, from /proc) of the proxy alone: steadier across runs than the
# rates, which move with everything else the two cores do.
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
before=$(cpu_ticks $NGINX_PIDS)
load "$WORK/proxy-nginx.json" -c "$PROXY_CONCURRENCY" -s bench/wrk/report.lua \
  "http://127.0.0.1:$NGINX_PORT$PROXIED"
nginx_ticks=$(( $(cpu_ticks $NGINX_PIDS) - before ))
before=$(cpu_ticks "$GATEWAY_PID")
load "$WORK/proxy-gateway.json" -c "$PROXY_CONCURRENCY" -s bench/wrk/report.lua \
  "http://127.0.0.1:$GATEWAY_PORT$PROXIED"
gateway_ticks=$(( $(cpu_ticks "$GATEWAY_PID") - before ))
before=$(cpu_ticks "$BARE_PID")
load "$WORK/proxy-bare.json" -c "$PROXY_CONCURRENCY" -s bench/wrk/report.lua \
  "http://127.0.0.1:$BARE_PORT$PROXIED"
bare_ticks=$(( $(cpu_ticks "$BARE_PID") - before ))
stop_all
fi

# --- 2. verify-session through the gateway, Redis ---
export REDIS_URL=redis://127.0.0.1:6379/9
if want verify; then
redis-cli -n 9 flushdb >/dev/null
export HUB_DATA_DIR="$WORK/verify-data"
"$BENCH" setup --users 1000 >/dev/null
"$BENCH" sessions --users 1000 >"$WORK/codes.txt"
start auth "http://127.0.0.1:$AUTH_PORT/ready" env AUTH_ADDR="127.0.0.1:$AUTH_PORT" target/release/auth
start gateway "http://127.0.0.1:$GATEWAY_PORT/health" env GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT" \
  AUTH_URL="http://127.0.0.1:$AUTH_PORT" target/release/gateway
WRK_CODES="$WORK/codes.txt" load "$WORK/verify-gateway.json" -c "$VERIFY_CONCURRENCY" \
  -s bench/wrk/verify.lua "http://127.0.0.1:$GATEWAY_PORT"
stop_all
unset HUB_DATA_DIR
fi

# --- 3. deduct through the gateway with a service key, PostgreSQL, against pgbench ---
if want deduct; then
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$SERVER/$DB" DATABASE_MAX_CONNECTIONS="$DEDUCT_CONCURRENCY"
"$BENCH" setup --users "$USERS" >/dev/null
KEY=$("$HUB" service-key create --name bench --scopes credits:deduct \
  | python3 -c "import json,sys; print(json.load(sys.stdin)['key'])")
start core "http://127.0.0.1:$CORE_PORT/ready" env CORE_ADDR="127.0.0.1:$CORE_PORT" target/release/core
start gateway "http://127.0.0.1:$GATEWAY_PORT/health" env GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT" \
  CORE_URL="http://127.0.0.1:$CORE_PORT" target/release/gateway
bench/cpu.py snapshot "$WORK/cpu-before"
WRK_KEY="$KEY" WRK_USERS="$USERS" load "$WORK/deduct-gateway.json" -c "$DEDUCT_CONCURRENCY" \
  -s bench/wrk/deduct.lua "http://127.0.0.1:$GATEWAY_PORT"
deduct_cpu=$(bench/cpu.py per-request "$WORK/cpu-before" "$(field "$WORK/deduct-gateway.json" requests)" \
  machine postgres gateway core redis-server)
stop_all
"$BENCH" pgbench-script --users "$USERS" >"$WORK/pgbench.sql"
bench/cpu.py snapshot "$WORK/cpu-before"
pgbench -n -M prepared -c "$DEDUCT_CONCURRENCY" -j 2 -T "$RUN_SECONDS" -f "$WORK/pgbench.sql" "$SERVER/$DB" \
  >"$WORK/pgbench.txt" 2>&1 || { cat "$WORK/pgbench.txt"; exit 1; }
pg_rate=$(grep -E '^tps' "$WORK/pgbench.txt" | head -n 1 | sed -E 's/^tps = ([0-9.]+).*/\1/')
pg_transactions=$(grep -E '^number of transactions actually processed' "$WORK/pgbench.txt" | sed -E 's/.*: ([0-9]+).*/\1/')
pgbench_cpu=$(bench/cpu.py per-request "$WORK/cpu-before" "$pg_transactions" machine)
fi

printf '\n%-52s %10s %11s %7s %s\n' "workload" "req/s" "baseline/s" "ratio" "target"
if want proxy; then
  nginx_rate=$(field "$WORK/proxy-nginx.json" requests_per_second)
  gateway_rate=$(field "$WORK/proxy-gateway.json" requests_per_second)
  printf '%-52s %10.0f %11.0f %7s %s\n' "proxy fixed body, c=$PROXY_CONCURRENCY (vs nginx keep-alive)" \
    "$gateway_rate" "$nginx_rate" "$(ratio "$gateway_rate" "$nginx_rate")" ">= 1.0"
  per_request() { python3 -c "import sys; print(f'{int(sys.argv[1]) * 1e6 / $(getconf CLK_TCK) / float(sys.argv[2]):.1f}')" "$1" "$2"; }
  printf '%-52s gateway %s us, nginx %s us\n' "  CPU per proxied request (the proxy process only)" \
    "$(per_request "$gateway_ticks" "$(field "$WORK/proxy-gateway.json" requests)")" \
    "$(per_request "$nginx_ticks" "$(field "$WORK/proxy-nginx.json" requests)")"
  bare_rate=$(field "$WORK/proxy-bare.json" requests_per_second)
  printf '%-52s %10.0f %11.0f %7s %s\n' "  a bare hyper proxy, same run (vs nginx)" \
    "$bare_rate" "$nginx_rate" "$(ratio "$bare_rate" "$nginx_rate")" \
    "gateway/bare $(ratio "$gateway_rate" "$bare_rate"); $(per_request "$bare_ticks" "$(field "$WORK/proxy-bare.json" requests)") us CPU per request"
fi
if want verify; then
  verify_rate=$(field "$WORK/verify-gateway.json" requests_per_second)
  verify_p99=$(field "$WORK/verify-gateway.json" p99_ms)
  printf '%-52s %10.0f %11s %7s %s\n' "verify-session via gateway (Redis), c=$VERIFY_CONCURRENCY" \
    "$verify_rate" "15000" "$(ratio "$verify_rate" 15000)" ">= 1.0, p99 ${verify_p99} ms < 10"
fi
if want deduct; then
  deduct_rate=$(field "$WORK/deduct-gateway.json" requests_per_second)
  printf '%-52s %10.0f %11.0f %7s %s\n' "deduct via gateway, key, PG $USERS users (vs pgbench)" \
    "$deduct_rate" "$pg_rate" "$(ratio "$deduct_rate" "$pg_rate")" ">= 0.6"
  printf '%-52s %s\n' "  CPU per deduct (machine = all cores, wrk too)" "$deduct_cpu"
  printf '%-52s %s\n' "  CPU per pgbench transaction (all cores)" "$pgbench_cpu"
fi
echo
for f in "$WORK"/*.json; do echo "$(basename "$f"): $(cat "$f")"; done
