#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind, for nginx, a bare hyper proxy
# (`hub-bench bare-proxy`) and the gateway, each proxying `GET /.well-known/jwks.json` to the same
# fixed upstream under the same `wrk -t1 -c8` load. Callgrind counts the instructions a process
# runs in user space, not seconds: the count is the same from run to run whatever else the
# machine does, so it shows what a change to the gateway's per-request work is worth where the
# requests-per-second figures of bench/gateway.sh move by a tenth between runs. (It does not
# count the kernel's share: the system calls, which the three make alike.)
#
#   bench/proxy-instructions.sh [seconds of load under callgrind, default 20]
#   BENCH_ONLY=gateway,bare,nginx   (a subset; all by default)
#
# Needs valgrind, wrk and nginx (installed with apt-get if missing). One serving thread each
# (GATEWAY_THREADS=1, --threads 1, one nginx worker without its master): callgrind runs one
# thread at a time anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_UNDER_LOAD="${1:-20}"
UPSTREAM=127.0.0.1:39300
PORT=39301
PATH_PROXIED=/.well-known/jwks.json
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in valgrind wrk nginx; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    package=$tool
    [ "$tool" = nginx ] && package=nginx-light
    echo "installing $package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  fi
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
want() { [ -z "${BENCH_ONLY:-}" ] || [[ ",$BENCH_ONLY," == *",$1,"* ]]; }

cargo build --release -q -p hub-bench -p hub-gateway
target/release/hub-bench upstream --addr "$UPSTREAM" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

export RUST_LOG=warn LOG_FORMAT=text
export HUB_INTERNAL_TOKEN="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export RATE_LIMIT_DEFAULT_PER_MINUTE=60000000 RATE_LIMIT_VERIFY_PER_MINUTE=60000000 \
  RATE_LIMIT_CREDITS_PER_MINUTE=60000000

# count name command...: runs the proxy under callgrind on $PORT, warms it up, counts a load.
count() {
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.out" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 120); do
    curl -fs "http://127.0.0.1:$PORT$PATH_PROXIED" >/dev/null 2>&1 && break
    sleep 0.5
  done
  wrk -t1 -c8 -d5s "http://127.0.0.1:$PORT$PATH_PROXIED" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1 || { echo "$name: callgrind did not answer"; cat "$WORK/$name.log"; exit 1; }
  local requests
  requests=$(wrk -t1 -c8 -d"${SECONDS_UNDER_LOAD}s" "http://127.0.0.1:$PORT$PATH_PROXIED" \
    | awk '/requests in/ {print $1}') || true
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  local total
  total=$(callgrind_annotate "$WORK/$name.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -z "${requests:-}" ] || [ "${requests:-0}" -eq 0 ] || [ -z "${total:-}" ]; then
    echo "$name: no count (requests '${requests:-}', instructions '${total:-}'):"
    cat "$WORK/$name.log"
    exit 1
  fi
  printf '%-30s %8d requests %14d instructions %8d per request\n' "$name" "$requests" "$total" \
    $((total / requests))
}

echo "instructions per proxied request (callgrind; wrk -t1 -c8, ${SECONDS_UNDER_LOAD}s under load)"
if want nginx; then
  mkdir -p "$WORK/nginx"
  bench/nginx-conf.sh "$WORK/nginx" "$PORT" "$UPSTREAM" 1 >"$WORK/nginx/nginx.conf"
  count "nginx ($("$NGINX" -v 2>&1 | cut -d/ -f2))" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    -g "daemon off; master_process off;"
fi
if want bare; then
  count "bare hyper proxy" target/release/hub-bench bare-proxy --addr "127.0.0.1:$PORT" \
    --upstream "$UPSTREAM" --threads 1
fi
if want gateway; then
  # (Assignments before a function call are in the environment of what it runs: valgrind's.)
  HUB_DATA_DIR="$WORK/data" GATEWAY_THREADS=1 GATEWAY_ADDR="127.0.0.1:$PORT" \
    AUTH_URL="http://$UPSTREAM" CORE_URL="http://$UPSTREAM" count "gateway" target/release/gateway
fi
