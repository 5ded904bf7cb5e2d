#!/usr/bin/env bash
# The whole benchmark in one go: seed a database, start walletql, then for
# each concurrency run loadgen against walletql and pgbench with the same
# transfer statements (the raw-SQL ceiling), back to back on this machine.
# Results land in bench/results/ (JSON, logs, summary.json, the SVG chart).
#
#   bench/run-benchmarks.sh                  # 10M operations, 20 s per run
#   OPS=1000000 DURATION=5 bench/run-benchmarks.sh
#   RESEED=0 bench/run-benchmarks.sh         # reuse the seeded database
set -euo pipefail
cd "$(dirname "$0")/.."

OPS=${OPS:-10000000}
CLIENTS=${CLIENTS:-10000}
DURATION=${DURATION:-20}
LEVELS=${LEVELS:-"1 8 32 64"}
DB=${DB:-walletql_bench}
POOL=${POOL:-8}
PGBASE=${PGBASE:-postgres://postgres@127.0.0.1:5432}
URL="$PGBASE/$DB"
PORT=${PORT:-18090}
OP=bench-operator-token-0123456789abcdef  # at least 32 characters
OUT=${OUT:-bench/results}
export PGHOST=127.0.0.1 PGUSER=postgres

mkdir -p "$OUT"
rm -f "$OUT"/pgbench-c*.log* "$OUT"/*.json "$OUT"/*.txt
cargo build --release -p walletql -p walletql-bench
BIN=target/release

if [ "${RESEED:-1}" = 1 ]; then
  dropdb --if-exists --force "$DB"
  createdb "$DB"
  /usr/bin/time -f "seed: %e s, max RSS %M KB" "$BIN/seed" --database-url "$URL" \
    --clients "$CLIENTS" --operations "$OPS" 2>&1 | tee "$OUT/seed.txt"
fi

# Rate limits off: the hot-wallet run sends ~180 transfers/s per payer token,
# past the default per-token limit (100/s), and measures the ledger, not it.
DATABASE_URL="$URL" OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:$PORT DB_MAX_CONNECTIONS=$POOL \
  RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 \
  RUST_LOG=warn "$BIN/walletql" > "$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

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

loadgen() { "$BIN/loadgen" --url "http://127.0.0.1:$PORT" --clients "$CLIENTS" --operator-token $OP "$@"; }
pgbench_run() { # connections, hot wallets, hot share %, label
  pgbench -n -M prepared -c "$1" -j 2 -T "$DURATION" -f bench/pgbench/transfer.sql \
    -D clients="$CLIENTS" -D hot="$2" -D hot_share_pct="$3" \
    -l --log-prefix="$OUT/pgbench-$4" "$DB" > "$OUT/pgbench-$4.txt" 2>&1
}

for c in $LEVELS; do
  echo "== $c connections"
  peak_rss "$OUT/rss-c$c.txt" loadgen -c "$c" -d "$DURATION" --mix transfer=100 --json "$OUT/walletql-c$c.json" | tee "$OUT/walletql-c$c.txt"
  pgbench_run "$c" 2 0 "c$c"
  grep -E "^tps|latency average" "$OUT/pgbench-c$c.txt"
done

echo "== hot wallets: 90% of transfers among 10 wallets, 64 connections"
loadgen -c 64 -d "$DURATION" --mix transfer=100 --hot-wallets 10 --hot-share 0.9 --json "$OUT/walletql-hot.json" | tee "$OUT/walletql-hot.txt"
pgbench_run 64 10 90 hot

echo "== the default mix (transfers, deposits, wallet reads, history pages), 64 connections"
loadgen -c 64 -d "$DURATION" --json "$OUT/walletql-mix.json" | tee "$OUT/walletql-mix.txt"

echo "== history paging on the whale wallet (wallet 0)"
loadgen --probe-history 0 --depth 100000 --samples 200 | tee "$OUT/history.txt"

echo "== ledger audit"
loadgen -c 1 -d 1 --mix wallet=1 --database-url "$URL" | tee "$OUT/audit.txt"

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
def walletql(label):
    r = json.load(open(f"{out}/walletql-{label}.json"))
    t = r["by_kind"]["transfer"]
    return {"tps": t["per_second"], "p50_ms": t["p50_us"] / 1000, "p99_ms": t["p99_us"] / 1000,
            "errors": r["errors"], "transactions": t["count"]}
runs = []
for f in sorted(glob.glob(f"{out}/walletql-c*.json")):
    c = int(os.path.basename(f).split("-c")[1].split(".")[0])
    runs.append({"system": "walletql", "connections": c, **walletql(f"c{c}")})
    runs.append({"system": "raw SQL (pgbench)", "connections": c, **pgbench(f"c{c}")})
    try:
        runs[-2]["peak_rss_mb"] = int(open(f"{out}/rss-c{c}.txt").read()) / 1024
    except (OSError, ValueError):
        pass
summary = {"runs": runs, "hot": {"walletql": walletql("hot"), "raw SQL (pgbench)": pgbench("hot")}}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
PY
rm -f "$OUT"/pgbench-*.log*  "$OUT"/pgbench-c*.[0-9]* "$OUT"/pgbench-hot.[0-9]*
python3 bench/plot.py "$OUT" | tee "$OUT/table.md"
python3 - "$OUT" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/summary.json"))
for r in s["runs"]:
    if "peak_rss_mb" in r:
        print(f"peak RSS at {r['connections']} connections: {r['peak_rss_mb']:.1f} MB")
h = s["hot"]
print(f"hot wallets: walletql {h['walletql']['tps']:.0f} tps p99 {h['walletql']['p99_ms']:.1f} ms; "
      f"raw SQL {h['raw SQL (pgbench)']['tps']:.0f} tps p99 {h['raw SQL (pgbench)']['p99_ms']:.1f} ms")
PY
