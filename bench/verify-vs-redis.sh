#!/usr/bin/env bash
# verify-session through the auth service (sessions in Redis), against redis-benchmark's GET on
# the same Redis, at concurrency 64, in one go. BENCHMARKS.md records the figures.
#
#   bench/verify-vs-redis.sh [seconds, default 10]
#
# Needs: Redis at 127.0.0.1:6379 (uses database 9 and flushes it), redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS="${1:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
USERS="${BENCH_USERS:-1000}"
REDIS_DB_URL="redis://127.0.0.1:6379/9"
PORT=39101
WORK="$(mktemp -d)"
AUTH_PID=

cleanup() {
  [ -n "$AUTH_PID" ] && kill "$AUTH_PID" 2>/dev/null && wait "$AUTH_PID" 2>/dev/null
  redis-cli -n 9 flushdb >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p hub -p hub-bench -p hub-auth
HUB=target/release/hub
BENCH=target/release/hub-bench
export HUB_DATA_DIR="$WORK/data" REDIS_URL="$REDIS_DB_URL" AUTH_ADDR="127.0.0.1:$PORT" RUST_LOG=warn
unset DATABASE_URL

redis-cli -n 9 flushdb >/dev/null
"$BENCH" setup --users "$USERS" >/dev/null
target/release/auth >"$WORK/auth.log" 2>&1 &
AUTH_PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "machine: $(nproc) cores; $(redis-server --version | cut -d' ' -f1-3)"
"$BENCH" verify --url "http://127.0.0.1:$PORT" --users "$USERS" --concurrency "$CONCURRENCY" \
  --seconds "$RUN_SECONDS" >"$WORK/verify.json"
hub_rate=$(python3 -c "import json; print(json.load(open('$WORK/verify.json'))['requests_per_second'])")
hub_p99=$(python3 -c "import json; print(json.load(open('$WORK/verify.json'))['p99_ms'])")
redis_rate=$(redis-benchmark -h 127.0.0.1 -p 6379 -t get -c "$CONCURRENCY" -n 400000 -q 2>/dev/null \
  | tr '\r' '\n' | grep -E '^GET' | tail -n 1 | sed -E 's/^GET: ([0-9.]+).*/\1/')

printf '\n%-48s %12s %10s\n' "workload" "req/s" "p99"
printf '%-48s %12.0f %8s ms\n' "verify-session via auth (Redis), c=$CONCURRENCY" "$hub_rate" "$hub_p99"
printf '%-48s %12.0f %10s\n' "redis-benchmark -t get, c=$CONCURRENCY" "$redis_rate" "-"
printf 'ratio hub/redis-benchmark: %s (target: >= 25000 req/s and p99 < 5 ms)\n' \
  "$(python3 -c "print(f'{$hub_rate / $redis_rate:.2f}')")"
echo "verify.json: $(cat "$WORK/verify.json")"
