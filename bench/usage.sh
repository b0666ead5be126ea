#!/usr/bin/env bash
# The usage report over a month of one million transactions: generates them in PostgreSQL
# (10,000 users, five services, January 2025, debits, refunds and grants) with
# INSERT … SELECT generate_series, so the trigger of migration 0011 builds the rollups the real
# way; then times GET /api/admin/usage on the core service for the month with each group_by
# (and a 30-day window that is not a calendar month), sequential requests on one connection, and
# prints p50/p95. Last, what the trigger adds to a debit: pgbench running the core's own debit
# statement with the trigger and with it disabled, alternately, on the same database.
#
#   bench/usage.sh [requests per figure, default 200]
#
# Needs: a PostgreSQL server (BENCH_PG_SERVER, default postgres://postgres@127.0.0.1:5432),
# pgbench, psql and python3. Creates and drops the database hub_usage_bench there.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS="${1:-200}"
TRANSACTIONS="${BENCH_TRANSACTIONS:-1000000}"
USERS="${BENCH_USERS:-10000}"
CONCURRENCY="${BENCH_CONCURRENCY:-16}"
PGBENCH_SECONDS="${BENCH_PGBENCH_SECONDS:-10}"
SERVER="${BENCH_PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
DB=hub_usage_bench
PORT=39103
WORK="$(mktemp -d)"
CORE_PID=

cleanup() {
  [ -n "$CORE_PID" ] && kill "$CORE_PID" 2>/dev/null && wait "$CORE_PID" 2>/dev/null
  psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release -q -p hub-bench -p hub-core
BENCH=target/release/hub-bench
CORE=target/release/core
TOKEN="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export HUB_INTERNAL_TOKEN="$TOKEN" CORE_ADDR="127.0.0.1:$PORT" RUST_LOG=warn
export DATABASE_URL="$SERVER/$DB"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $(psql "$SERVER/postgres" -Atc 'select version()' | cut -d, -f1)"
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
"$BENCH" setup --users "$USERS" >/dev/null

# 90% debits of 1-50 credits, 7% refunds of 1-10, 3% grants of 100; each on a random account at a
# random moment of January 2025 (UTC). Balances are not kept true to these rows: the accounts
# start with 10^12 and only the rollups are measured here.
echo "generating $TRANSACTIONS transactions over $USERS users through the trigger..."
started=$(date +%s.%N)
# In batches of BENCH_BATCH, each its own database transaction as debits are: one statement of a
# million rows would update each rollup row thousands of times inside one transaction, whose old
# row versions nothing can prune until it ends.
generate() { # first last
  cat <<SQL
INSERT INTO credit_transactions
    (id, user_id, kind, service, amount, balance_before, balance_after, refundable, created_at)
SELECT 'txn_usage_' || i, user_id, kind, CASE WHEN kind = 'grant' THEN NULL ELSE service END,
       amount, 1000000000000, 1000000000000 + amount, 0, at
FROM (
    SELECT i,
           ('00000000-0000-7000-8000-' || lpad(to_hex(1 + (random() * ($USERS - 1))::int), 12, '0'))::uuid AS user_id,
           CASE WHEN i % 100 < 90 THEN 'debit' WHEN i % 100 < 97 THEN 'refund' ELSE 'grant' END AS kind,
           'service-' || (i % 5) AS service,
           CASE WHEN i % 100 < 90 THEN -(1 + i % 50) WHEN i % 100 < 97 THEN 1 + i % 10 ELSE 100 END AS amount,
           timestamptz '2025-01-01 00:00:00+00' + random() * interval '31 days' AS at
    FROM generate_series($1, $2) i
) generated;
SQL
}
BATCH="${BENCH_BATCH:-50000}"
for ((first = 1; first <= TRANSACTIONS; first += BATCH)); do
  generate "$first" "$((first + BATCH - 1 < TRANSACTIONS ? first + BATCH - 1 : TRANSACTIONS))"
done | psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -q
psql "$DATABASE_URL" -qc "VACUUM ANALYZE"
elapsed=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$started" "$(date +%s.%N)")
echo "generated in ${elapsed}s; rollup rows: $(psql "$DATABASE_URL" -Atc "SELECT (SELECT count(*) FROM usage_daily) || ' by day and service, ' || (SELECT count(*) FROM usage_daily_users) || ' by day, user and service, ' || (SELECT count(*) FROM usage_monthly_users) || ' by month and user'")"

"$CORE" >"$WORK/core.log" 2>&1 &
CORE_PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/ready" >/dev/null || { cat "$WORK/core.log"; exit 1; }

# Sequential GETs on one keep-alive connection as the system caller; p50/p95/max in ms.
measure() { # label query
  python3 - "$PORT" "$TOKEN" "$REQUESTS" "$1" "$2" <<'PY'
import http.client, json, sys, time
port, token, requests, label, query = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
headers = {"x-hub-internal": token, "x-hub-caller": "system"}
times = []
for n in range(requests + 5):
    started = time.perf_counter()
    conn.request("GET", "/api/admin/usage?" + query, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        sys.exit(f"{label}: {response.status} {body[:300]!r}")
    if n >= 5:  # the first few warm the pool and the caches
        times.append(elapsed)
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
report = json.loads(body)
print(f"{label:<44} {pick(0.5):8.1f} {pick(0.95):8.1f} {times[-1]:8.1f}   rows {len(report['rows'])}, "
      f"spent {report['totals']['spent']}, calls {report['totals']['calls']}")
PY
}

MONTH="from=2025-01-01&to=2025-01-31"
WINDOW="from=2025-01-10&to=2025-02-08"
printf '\n%-44s %8s %8s %8s   (%s requests each)\n' "GET /api/admin/usage" "p50 ms" "p95 ms" "max ms" "$REQUESTS"
measure "January, group_by=day" "$MONTH&group_by=day"
measure "January, group_by=service" "$MONTH&group_by=service"
measure "January, group_by=user (top 100)" "$MONTH&group_by=user"
measure "January, group_by=user, limit=1000" "$MONTH&group_by=user&limit=1000"
measure "Jan 10 - Feb 8, group_by=day" "$WINDOW&group_by=day"
measure "Jan 10 - Feb 8, group_by=user (top 100)" "$WINDOW&group_by=user"
kill "$CORE_PID"; wait "$CORE_PID" 2>/dev/null || true; CORE_PID=

# What the trigger adds to a debit: the core's debit statement under pgbench, with the trigger
# and without, twice each in turn.
"$BENCH" pgbench-script --users "$USERS" >"$WORK/debit.sql"
pgbench_tps() {
  pgbench -n -M prepared -c "$CONCURRENCY" -j 2 -T "$PGBENCH_SECONDS" -f "$WORK/debit.sql" "$DATABASE_URL" \
    >"$WORK/pgbench.txt" 2>&1 || { cat "$WORK/pgbench.txt"; exit 1; }
  grep -E '^tps' "$WORK/pgbench.txt" | head -n 1 | sed -E 's/^tps = ([0-9.]+).*/\1/'
}
trigger() { psql "$DATABASE_URL" -qc "ALTER TABLE credit_transactions $1 TRIGGER credit_transactions_usage"; }
printf '\n%-44s %10s %10s\n' "pgbench, debit statement, c=$CONCURRENCY, ${PGBENCH_SECONDS}s" "with" "without"
for round in 1 2; do
  trigger ENABLE; with=$(pgbench_tps)
  trigger DISABLE; without=$(pgbench_tps)
  trigger ENABLE
  printf '%-44s %10.0f %10.0f   (%s%% of the rate without)\n' "round $round, transactions/s" "$with" "$without" \
    "$(python3 -c "import sys; print(round(100 * float(sys.argv[1]) / float(sys.argv[2])))" "$with" "$without")"
done
