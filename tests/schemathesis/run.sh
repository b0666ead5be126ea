#!/usr/bin/env bash
# Schemathesis against a real hub: `hub up` on embedded storage in a temporary data directory,
# a user with credits and a service key made with the `hub` command line, then
# `schemathesis run --checks all` over the gateway's /openapi.json. Builds nothing: pass the hub
# binary (default target/debug/hub). Exits non-zero on any failure or server error.
#
#   tests/schemathesis/run.sh [path/to/hub]
#
# SCHEMATHESIS_MAX_EXAMPLES (default 25) bounds the examples per operation and phase;
# SCHEMATHESIS_SEED fixes the seed to replay a run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
hub=${1:-$root/target/debug/hub}
[ -x "$hub" ] || { echo "no hub binary at $hub (cargo build -p hub first)" >&2; exit 2; }
hub=$(cd "$(dirname "$hub")" && pwd)/$(basename "$hub")
command -v schemathesis >/dev/null || {
  echo "schemathesis is missing: python3 -m pip install 'schemathesis==4.*'" >&2
  exit 2
}

data=$(mktemp -d)
hub_pid=
stop() {
  if [ -n "$hub_pid" ] && kill -0 "$hub_pid" 2>/dev/null; then
    kill "$hub_pid" 2>/dev/null || true
    wait "$hub_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap stop EXIT

# Four free ports, asked of the kernel (never the fixed 3000-3003, which a developer's hub uses).
read -r gateway_port auth_port core_port mcp_port < <(python3 - <<'PY'
import socket
sockets = [socket.socket() for _ in range(4)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
PY
)

export HUB_DATA_DIR="$data"
unset DATABASE_URL REDIS_URL GOOGLE_CLIENT_ID OPENAI_API_KEY
export GATEWAY_ADDR="127.0.0.1:$gateway_port" AUTH_ADDR="127.0.0.1:$auth_port"
export CORE_ADDR="127.0.0.1:$core_port" MCP_ADDR="127.0.0.1:$mcp_port"
export AUTH_URL="http://$AUTH_ADDR" CORE_URL="http://$CORE_ADDR" MCP_URL="http://$MCP_ADDR"
export PUBLIC_BASE_URL="http://$GATEWAY_ADDR"
# The limits are tested elsewhere (rate_limits.rs); here they would only turn generated
# requests into 429s before they reach the code under test.
export RATE_LIMIT_DEFAULT_PER_MINUTE=100000 RATE_LIMIT_CREDITS_PER_MINUTE=100000
export RATE_LIMIT_VERIFY_PER_MINUTE=100000 RATE_LIMIT_VERIFY_FAILURES_PER_MINUTE=100000
export RATE_LIMIT_GOOGLE_PER_MINUTE=100000
export LOG_FORMAT=json RUST_LOG=warn

json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

# The most a user can start with (10^12, also the largest cost): costs drawn at random often
# exceed what is left after a few debits, so 402 is an answer to valid data here.
HUB_USER_ID=$("$hub" user create --email schemathesis@example.com --name Schemathesis \
  --credits 1000000000000 | json_field id)
HUB_SERVICE_KEY=$("$hub" service-key create --name schemathesis \
  --scopes credits:check,credits:deduct,credits:refund,credits:grant,usage:read | json_field key)
export HUB_USER_ID HUB_SERVICE_KEY
export SCHEMATHESIS_HOOKS="$here/hooks.py"

"$hub" up >"$data/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$PUBLIC_BASE_URL/ready" >/dev/null 2>&1 && break
  kill -0 "$hub_pid" 2>/dev/null || { cat "$data/hub.log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$PUBLIC_BASE_URL/ready" >/dev/null

status=0
# In the data directory: schemathesis keeps a cache (.schemathesis/) where it runs.
cd "$data"
set -x
schemathesis --config-file "$here/schemathesis.toml" run "$PUBLIC_BASE_URL/openapi.json" \
  --checks all \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
  ${SCHEMATHESIS_SEED:+--seed "$SCHEMATHESIS_SEED"} \
  --workers 2 \
  --request-timeout 10 || status=$?
set +x
if grep -q '"level":"ERROR"' "$data/hub.log"; then
  echo "the hub logged errors:" >&2
  grep '"level":"ERROR"' "$data/hub.log" | head -n 20 >&2
  status=1
fi
exit "$status"
