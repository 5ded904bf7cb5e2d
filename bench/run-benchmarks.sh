#!/usr/bin/env bash
# The whole benchmark in one go, from nothing: seed a database, start
# walletql, then for each concurrency run loadgen against walletql and, back
# to back, pgbench with the minimal raw-SQL transfer (the headline reference)
# and with walletql's former per-transfer statements (the old ceiling); then
# hot wallets, transferBatch, every verb at once, reads against a raw
# primary-key SELECT, the default mix,
# history paging, the audit, and the embedded SQLite backend.
# Results land in bench/results/ (JSON, logs, summary.json, the SVG chart).
#
#   bench/run-benchmarks.sh                  # 10M operations, 20 s per run
#   OPS=1000000 DURATION=5 bench/run-benchmarks.sh
#   RESEED=0 bench/run-benchmarks.sh         # reuse the seeded database
#   PROFILE=1 bench/run-benchmarks.sh        # also perf-record the server at 8 connections
set -euo pipefail
cd "$(dirname "$0")/.."

OPS=${OPS:-10000000}
CLIENTS=${CLIENTS:-10000}
DURATION=${DURATION:-20}
LEVELS=${LEVELS:-"1 8 64"}
DB=${DB:-walletql_bench}
# The server runs on its defaults; POOL=n sets DB_MAX_CONNECTIONS to try another pool size.
POOL=${POOL:-}
PGBASE=${PGBASE:-postgres://postgres@127.0.0.1:5432}
URL="$PGBASE/$DB"
PORT=${PORT:-18090}
OP=bench-operator-token-0123456789abcdef  # at least 32 characters
OUT=${OUT:-bench/results}
SQLITE_DB=${SQLITE_DB:-/tmp/walletql-bench.db}
export PGHOST=127.0.0.1 PGUSER=postgres

mkdir -p "$OUT"
rm -f "$OUT"/pgbench-*.log* "$OUT"/*.json "$OUT"/*.txt
cargo build --release -p walletql -p walletql-bench
BIN=target/release

if [ "${RESEED:-1}" = 1 ]; then
  dropdb --if-exists --force "$DB"
  createdb "$DB"
  /usr/bin/time -f "seed: %e s, max RSS %M KB" "$BIN/seed" --database-url "$URL" \
    --clients "$CLIENTS" --operations "$OPS" 2>&1 | tee "$OUT/seed.txt"
fi
psql -q -d "$DB" -f bench/pgbench/minimal-setup.sql

# Starts walletql on $1 with the defaults (rate limits off: one hot payer
# sends more than the per-token limit, and the run measures the ledger).
start_server() {
  env DATABASE_URL="$1" OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:$PORT ${POOL:+DB_MAX_CONNECTIONS=$POOL} \
    RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 \
    RUST_LOG=warn "$BIN/walletql" > "$OUT/server-$2.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "walletql did not start:"; cat "$OUT/server-$2.log"; exit 1; }
}
start_server "$URL" postgres
trap 'kill $SERVER 2>/dev/null || true' EXIT

# The highest resident memory of the server while a command runs.
peak_rss() {
  local file=$1; shift
  ( peak=0; while kill -0 $SERVER 2>/dev/null; do
      rss=$(awk '/VmRSS/ {print $2}' /proc/$SERVER/status); [ "${rss:-0}" -gt $peak ] && peak=$rss
      echo $peak > "$file"; sleep 0.2; done ) &
  local sampler=$!
  "$@"
  kill $sampler 2>/dev/null || true
}

# cpu_seconds: CPU used so far by walletql and by all of PostgreSQL.
. bench/cpu.sh

loadgen() { "$BIN/loadgen" --url "http://127.0.0.1:$PORT" --clients "$CLIENTS" --operator-token $OP "$@"; }
pgbench_run() { # script, connections, label, extra -D settings...
  local script=$1 c=$2 label=$3; shift 3
  pgbench -n -M prepared -c "$c" -j 2 -T "$DURATION" -f "bench/pgbench/$script" "$@" \
    -l --log-prefix="$OUT/pgbench-$label" "$DB" > "$OUT/pgbench-$label.txt" 2>&1
  grep -E "^tps" "$OUT/pgbench-$label.txt" | sed "s/^/$label: /"
}
minimal() { pgbench_run minimal-transfer.sql "$1" "minimal-$2" -D wallets=10000 -D hot="${3:-2}" -D hot_share_pct="${4:-0}"; }
ceiling() { pgbench_run transfer.sql "$1" "ceiling-$2" -D clients="$CLIENTS" -D hot="${3:-2}" -D hot_share_pct="${4:-0}"; }

for c in $LEVELS; do
  echo "== transfers, $c connections"
  before=$(cpu_seconds)
  PERF=
  if [ "${PROFILE:-0}" = 1 ] && [ "$c" = 8 ]; then
    perf record -F 999 -g -o "$OUT/perf-c8.data" -p $SERVER -- sleep "$DURATION" >/dev/null 2>&1 &
    PERF=$!
  fi
  peak_rss "$OUT/rss-c$c.txt" loadgen -c "$c" -d "$DURATION" --mix transfer=100 --json "$OUT/walletql-c$c.json" | tee "$OUT/walletql-c$c.txt"
  echo "$before $(cpu_seconds)" > "$OUT/cpu-walletql-c$c.txt"
  [ -z "$PERF" ] || wait "$PERF"
  before=$(cpu_seconds); minimal "$c" "c$c"; echo "$before $(cpu_seconds)" > "$OUT/cpu-minimal-c$c.txt"
  ceiling "$c" "c$c"
done

echo "== hot wallets: 90% of transfers among 10 wallets, 64 connections"
loadgen -c 64 -d "$DURATION" --mix transfer=100 --hot-wallets 10 --hot-share 0.9 --json "$OUT/walletql-hot.json" | tee "$OUT/walletql-hot.txt"
minimal 64 hot 10 90
ceiling 64 hot 10 90

echo "== transferBatch: 1,000 transfers per request from one payer to random payees"
for c in 1 2 4; do
  before=$(cpu_seconds)
  loadgen -c "$c" -d "$DURATION" --mix batch=1 --batch-size 1000 --json "$OUT/walletql-batch-c$c.json" | tee "$OUT/walletql-batch-c$c.txt"
  echo "$before $(cpu_seconds)" > "$OUT/cpu-walletql-batch-c$c.txt"
done

echo "== every verb: transfers, holds then captures, payments then refunds, withdrawals, 64 connections"
loadgen -c 64 -d "$DURATION" --mix transfer=40,hold=25,refund=25,withdraw=10 --json "$OUT/walletql-verbs.json" | tee "$OUT/walletql-verbs.txt"

echo "== reads: me { id wallet { balance } } against a raw primary-key SELECT"
for c in 1 8 64; do
  loadgen -c "$c" -d "$DURATION" --mix me=100 --json "$OUT/walletql-reads-c$c.json" | tee "$OUT/walletql-reads-c$c.txt"
  pgbench_run read-balance.sql "$c" "reads-c$c" -D clients="$CLIENTS"
done

echo "== the default mix (transfers, deposits, wallet reads, history pages), 64 connections"
loadgen -c 64 -d "$DURATION" --json "$OUT/walletql-mix.json" | tee "$OUT/walletql-mix.txt"

echo "== history paging on the whale wallet (wallet 0)"
loadgen --probe-history 0 --depth 100000 --samples 200 | tee "$OUT/history.txt"

echo "== batch sizes and NOTIFY queue (/metrics)"
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E "^ledger_batch_size|^db_notification_queue_usage" | tee "$OUT/metrics.txt"

echo "== bytes per ledger row: the heap and each index of operation"
psql -d "$DB" -c "CHECKPOINT" >/dev/null
psql -d "$DB" -F ' ' -At -c "
  SELECT 'rows', (SELECT count(*) FROM operation)
  UNION ALL SELECT 'heap', pg_relation_size('operation')
  UNION ALL SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)
  FROM pg_index WHERE indrelid = 'operation'::regclass" | tee "$OUT/bytes.txt"

echo "== ledger audit"
loadgen -c 1 -d 1 --mix wallet=1 --database-url "$URL" | tee "$OUT/audit.txt" || echo "AUDIT FAILED" | tee -a "$OUT/audit.txt"
kill $SERVER; wait $SERVER 2>/dev/null || true

echo "== embedded SQLite"
rm -f "$SQLITE_DB" "$SQLITE_DB"-*
"$BIN/seed" --database-url "sqlite://$SQLITE_DB?mode=rwc" --clients "$CLIENTS" --operations "$CLIENTS" >/dev/null
start_server "sqlite://$SQLITE_DB?mode=rwc" sqlite
for c in 8 64; do
  loadgen -c "$c" -d "$DURATION" --mix transfer=100 --json "$OUT/walletql-sqlite-c$c.json" | tee "$OUT/walletql-sqlite-c$c.txt"
done
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E "^ledger_batch_size" > "$OUT/metrics-sqlite.txt"
kill $SERVER; wait $SERVER 2>/dev/null || true

python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0
def pgbench(label):
    lat = []
    for f in glob.glob(f"{out}/pgbench-{label}.*"):
        if f.endswith(".txt"):
            continue
        for line in open(f):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    text = open(f"{out}/pgbench-{label}.txt").read()
    tps = next(float(l.split()[2]) for l in text.splitlines() if l.startswith("tps"))
    return {"tps": tps, "p50_ms": pct(lat, .5) / 1000, "p99_ms": pct(lat, .99) / 1000, "transactions": len(lat)}
def walletql(label, kind="transfer"):
    r = json.load(open(f"{out}/walletql-{label}.json"))
    t = r["by_kind"][kind]
    return {"tps": t["per_second"], "p50_ms": t["p50_us"] / 1000, "p99_ms": t["p99_us"] / 1000,
            "errors": r["errors"], "transactions": t["count"]}
def cpu(label):
    try:
        a, b, c, d = map(float, open(f"{out}/cpu-{label}.txt").read().split())
        return {"walletql_cpu_s": c - a, "postgres_cpu_s": d - b}
    except (OSError, ValueError):
        return {}
runs = []
for f in sorted(glob.glob(f"{out}/walletql-c*.json")):
    c = int(os.path.basename(f).split("-c")[1].split(".")[0])
    runs.append({"system": "walletql", "connections": c, **walletql(f"c{c}"), **cpu(f"walletql-c{c}")})
    runs.append({"system": "minimal raw transfer", "connections": c, **pgbench(f"minimal-c{c}"), **cpu(f"minimal-c{c}")})
    runs.append({"system": "old per-transfer statements", "connections": c, **pgbench(f"ceiling-c{c}")})
    try:
        runs[-3]["peak_rss_mb"] = int(open(f"{out}/rss-c{c}.txt").read()) / 1024
    except (OSError, ValueError):
        pass
reads = []
for c in (1, 8, 64):
    try:
        reads.append({"connections": c, "walletql": walletql(f"reads-c{c}", "me"), "raw SELECT": pgbench(f"reads-c{c}")})
    except (OSError, KeyError, StopIteration):
        pass
sqlite = {}
for c in (8, 64):
    try:
        sqlite[c] = walletql(f"sqlite-c{c}")
    except (OSError, KeyError):
        pass
batch = {}
for c in (1, 2, 4):
    try:
        r = json.load(open(f"{out}/walletql-batch-c{c}.json"))
        t = r["by_kind"]["batch"]
        batch[c] = {"transfers_per_second": r["transfers_per_second"], "requests": t["count"],
                    "p50_ms": t["p50_us"] / 1000, "p99_ms": t["p99_us"] / 1000, "errors": r["errors"],
                    **cpu(f"walletql-batch-c{c}")}
    except (OSError, KeyError):
        pass
verbs = {}
try:
    r = json.load(open(f"{out}/walletql-verbs.json"))
    verbs = {k: {"per_second": v["per_second"], "p50_ms": v["p50_us"] / 1000, "p99_ms": v["p99_us"] / 1000}
             for k, v in r["by_kind"].items()}
    verbs["errors"] = r["errors"]
except (OSError, KeyError):
    pass
summary = {"runs": runs, "reads": reads, "sqlite": sqlite, "batch": batch, "verbs": verbs,
           "hot": {"walletql": walletql("hot"), "minimal raw transfer": pgbench("minimal-hot"),
                   "old per-transfer statements": pgbench("ceiling-hot")}}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
rm -f "$OUT"/pgbench-*.[0-9]* "$OUT"/pgbench-*.log*
python3 bench/plot.py "$OUT" | tee "$OUT/table.md"
