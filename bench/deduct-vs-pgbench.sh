#!/usr/bin/env bash
# Deducts per second through the core service, against pgbench running the core's own debit
# statement on the same PostgreSQL, at the same concurrency, in the same run; then the embedded
# SQLite mode. Prints each figure and the ratios; BENCHMARKS.md records them.
#
#   bench/deduct-vs-pgbench.sh [seconds per run, default 10]
#
# Needs: a PostgreSQL server (BENCH_PG_SERVER, default postgres://postgres@127.0.0.1:5432),
# pgbench and psql. Creates and drops the database hub_bench there.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS="${1:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-16}"
USERS="${BENCH_USERS:-10000}"
SERVER="${BENCH_PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
DB=hub_bench
PORT=39102
WORK="$(mktemp -d)"
CORE_PID=

cleanup() {
  [ -n "$CORE_PID" ] && kill "$CORE_PID" 2>/dev/null && wait "$CORE_PID" 2>/dev/null
  psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p hub -p hub-bench -p hub-core
HUB=target/release/hub
BENCH=target/release/hub-bench
CORE=target/release/core
TOKEN="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HUB_INTERNAL_TOKEN="$TOKEN" CORE_ADDR="127.0.0.1:$PORT" DATABASE_MAX_CONNECTIONS="$CONCURRENCY" RUST_LOG=warn

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

start_core() {
  "$CORE" >"$WORK/core.log" 2>&1 &
  CORE_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$WORK/core.log"; exit 1
}
stop_core() { kill "$CORE_PID"; wait "$CORE_PID" 2>/dev/null || true; CORE_PID=; }

hub_rate() { # label users -> requests/s (and keeps the JSON)
  "$BENCH" deduct --url "http://127.0.0.1:$PORT" --users "$2" --concurrency "$CONCURRENCY" \
    --seconds "$RUN_SECONDS" >"$WORK/hub-$1.json"
  field "$WORK/hub-$1.json" requests_per_second
}

pgbench_rate() { # users -> transactions/s
  "$BENCH" pgbench-script --users "$1" >"$WORK/pgbench-$1.sql"
  pgbench -n -M prepared -c "$CONCURRENCY" -j 2 -T "$RUN_SECONDS" -f "$WORK/pgbench-$1.sql" "$SERVER/$DB" \
    >"$WORK/pgbench-$1.txt" 2>&1 || { cat "$WORK/pgbench-$1.txt"; exit 1; }
  grep -E '^tps' "$WORK/pgbench-$1.txt" | head -n 1 | sed -E 's/^tps = ([0-9.]+).*/\1/'
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $(psql "$SERVER/postgres" -Atc 'select version()' | cut -d, -f1)"
echo "each run: ${RUN_SECONDS}s at concurrency $CONCURRENCY, cost 30 per debit"

# --- PostgreSQL ---
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$SERVER/$DB"
"$BENCH" setup --users "$USERS" >/dev/null
start_core
hub_spread=$(hub_rate postgres-spread "$USERS")
pg_spread=$(pgbench_rate "$USERS")
hub_hot=$(hub_rate postgres-hot 1)
pg_hot=$(pgbench_rate 1)
stop_core

# --- embedded SQLite ---
unset DATABASE_URL
export HUB_DATA_DIR="$WORK/data"
"$BENCH" setup --users "$USERS" >/dev/null
start_core
sqlite_spread=$(hub_rate sqlite-spread "$USERS")
sqlite_hot=$(hub_rate sqlite-hot 1)
stop_core

printf '\n%-44s %12s %12s %8s\n' "workload" "hub req/s" "baseline/s" "ratio"
printf '%-44s %12.0f %12.0f %8s\n' "postgres, $USERS users (vs pgbench)" "$hub_spread" "$pg_spread" "$(ratio "$hub_spread" "$pg_spread")"
printf '%-44s %12.0f %12.0f %8s\n' "postgres, one hot user (vs pgbench)" "$hub_hot" "$pg_hot" "$(ratio "$hub_hot" "$pg_hot")"
printf '%-44s %12.0f %12s %8s\n' "sqlite, $USERS users (target 3000/s)" "$sqlite_spread" "3000" "$(ratio "$sqlite_spread" 3000)"
printf '%-44s %12.0f %12s %8s\n' "sqlite, one hot user (target 3000/s)" "$sqlite_hot" "3000" "$(ratio "$sqlite_hot" 3000)"
echo
for f in "$WORK"/hub-*.json; do echo "$(basename "$f"): $(cat "$f")"; done
