#!/usr/bin/env bash
# A get_balance MCP tool call over open WebSocket connections through the gateway, beside the
# same read as plain HTTP (GET /api/mcp/v1/credits/balance) through the gateway, at the same
# concurrency, in one go. Target: the MCP path at least 0.7 of the plain HTTP rate.
# BENCHMARKS.md records the figures.
#
#   bench/mcp-vs-http.sh [seconds, default 10]
#
# Runs `hub up` on the embedded SQLite file in a temporary directory, on ports 39300-39303.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECONDS="${1:-10}"
CONCURRENCY="${BENCH_CONCURRENCY:-64}"
WORK="$(mktemp -d)"
HUB_PID=

cleanup() {
  [ -n "$HUB_PID" ] && kill "$HUB_PID" 2>/dev/null && wait "$HUB_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p hub -p hub-bench
HUB=target/release/hub
BENCH=target/release/hub-bench
export HUB_DATA_DIR="$WORK/data" RUST_LOG=warn LOG_FORMAT=text
export GATEWAY_ADDR=127.0.0.1:39300 AUTH_ADDR=127.0.0.1:39301 CORE_ADDR=127.0.0.1:39302 MCP_ADDR=127.0.0.1:39303
export AUTH_URL=http://127.0.0.1:39301 CORE_URL=http://127.0.0.1:39302 MCP_URL=http://127.0.0.1:39303
# The gateway's limits stay in the path, out of reach.
export RATE_LIMIT_CREDITS_PER_MINUTE=60000000 RATE_LIMIT_DEFAULT_PER_MINUTE=60000000
unset DATABASE_URL REDIS_URL

"$HUB" up >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:39300/ready >/dev/null 2>&1 && break
  sleep 0.1
done
USER_ID=$("$HUB" user create --email bench@example.com --name Bench --credits 1000 \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
KEY=$("$HUB" service-key create --name bench --scopes credits:check \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

echo "machine: $(nproc) cores; hub up on SQLite; $CONCURRENCY connections, ${RUN_SECONDS}s each"
"$BENCH" mcp --url ws://127.0.0.1:39300/api/mcp/ws --header "X-API-Key: $KEY" \
  --header "X-User-ID: $USER_ID" --concurrency "$CONCURRENCY" --seconds "$RUN_SECONDS" >"$WORK/mcp.json"
"$BENCH" get --url http://127.0.0.1:39300/api/mcp/v1/credits/balance --header "X-API-Key: $KEY" \
  --header "X-User-ID: $USER_ID" --concurrency "$CONCURRENCY" --seconds "$RUN_SECONDS" >"$WORK/http.json"

field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
mcp_rate=$(field "$WORK/mcp.json" requests_per_second)
http_rate=$(field "$WORK/http.json" requests_per_second)
printf '\n%-56s %10s %8s\n' "workload" "req/s" "p99"
printf '%-56s %10.0f %6s ms\n' "get_balance tool call, MCP over WebSocket via gateway" "$mcp_rate" "$(field "$WORK/mcp.json" p99_ms)"
printf '%-56s %10.0f %6s ms\n' "GET /api/mcp/v1/credits/balance via gateway" "$http_rate" "$(field "$WORK/http.json" p99_ms)"
printf 'ratio MCP/HTTP: %s (target >= 0.7)\n' "$(python3 -c "print(f'{$mcp_rate / $http_rate:.2f}')")"
echo "mcp.json: $(cat "$WORK/mcp.json")"
echo "http.json: $(cat "$WORK/http.json")"
