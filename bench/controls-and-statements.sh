#!/usr/bin/env bash
# Issue 20's measurements on the seeded 10M-operation database (seed it
# first with bench/run-benchmarks.sh, or RESEED=1 here):
#   1. metadata filters on the whale (wallet 0, ~514k rows): a pair on 1 in
#      1,000 of its rows, one on 1 in 10, one on none, against the
#      unfiltered first page, first and deep pages, through the API;
#   2. the CSV statement of the whale's whole history: size, time, and the
#      server's peak resident memory;
#   3. what limit checks cost a transfer: loadgen transfers with no wallet
#      limited, then every wallet limited (limits too high to refuse), A B A B.
# The server runs on its defaults (rate limits off, as in run-benchmarks.sh).
#
#   OUT=bench/results/controls-2026-12-07 bench/controls-and-statements.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DB=${DB:-walletql_bench}
CLIENTS=${CLIENTS:-10000}
OPS=${OPS:-10000000}
DURATION=${DURATION:-15}
PORT=${PORT:-18091}
OP=bench-operator-token-0123456789abcdef
OUT=${OUT:-bench/results/controls}
URL="postgres://postgres@127.0.0.1:5432/$DB"
export PGHOST=127.0.0.1 PGUSER=postgres
mkdir -p "$OUT"
cargo build --release -p walletql -p walletql-bench
BIN=target/release

if [ "${RESEED:-0}" = 1 ]; then
  dropdb --if-exists --force "$DB"
  createdb "$DB"
  "$BIN/seed" --database-url "$URL" --clients "$CLIENTS" --operations "$OPS" | tee "$OUT/seed.txt"
fi

start_server() {
  env DATABASE_URL="$URL" OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:$PORT \
    RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 RUST_LOG=warn \
    "$BIN/walletql" > "$OUT/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
}
start_server
trap 'kill $SERVER 2>/dev/null || true' EXIT

WHALE=$(psql -qAt -d "$DB" -c "SELECT id FROM wallet ORDER BY last_seq DESC LIMIT 1")
echo "whale $WHALE: $(psql -qAt -d "$DB" -c "SELECT last_seq FROM wallet WHERE id = '$WHALE'") operations" | tee "$OUT/whale.txt"

echo "== 1. metadata filters (index rows written by hand for the whale's rows)"
psql -q -d "$DB" <<SQL
DELETE FROM operation_tag WHERE wallet_id = '$WHALE';
DELETE FROM transfer_tag WHERE wallet_id = '$WHALE';
INSERT INTO operation_tag (wallet_id, key, value, seq)
  SELECT wallet_id, 'order', 'rare', seq FROM operation WHERE wallet_id = '$WHALE' AND seq % 1000 = 7;
INSERT INTO operation_tag (wallet_id, key, value, seq)
  SELECT wallet_id, 'channel', 'web', seq FROM operation WHERE wallet_id = '$WHALE' AND seq % 10 = 3;
INSERT INTO transfer_tag (wallet_id, key, value, created_at, transfer_id)
  SELECT o.wallet_id, 'order', 'rare', t.created_at, t.id FROM operation o JOIN transfer t ON t.id = o.transfer_id
  WHERE o.wallet_id = '$WHALE' AND o.seq % 1000 = 7;
VACUUM ANALYZE operation_tag;
VACUUM ANALYZE transfer_tag;
SQL
python3 - "$PORT" "$OP" "$WHALE" <<'PY' | tee "$OUT/metadata-filters.txt"
import json, statistics, sys, time, urllib.request
port, token, whale = sys.argv[1], sys.argv[2], sys.argv[3]
def post(query, variables):
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", body,
        {"content-type": "application/json", "authorization": f"Bearer {token}"})
    started = time.perf_counter()
    answer = json.load(urllib.request.urlopen(request))
    elapsed = (time.perf_counter() - started) * 1000
    assert "errors" not in answer, answer
    return answer["data"], elapsed
OPS = """query($w: UUID!, $after: String, $f: OperationFilterInput) {
  operations(walletId: $w, first: 20, after: $after, filter: $f) {
    nodes { sequence kind amount } pageInfo { endCursor } } }"""
TRANSFERS = """query($w: UUID!, $f: TransferFilterInput) {
  transfers(walletId: $w, first: 20, filter: $f) { nodes { id amount } } }"""
def median_ms(query, variables, n=60):
    times = [post(query, variables)[1] for _ in range(n)]
    return statistics.median(times), len(post(query, variables)[0])
def deep_cursor(f, pages):
    after = None
    for _ in range(pages):
        data, _ = post(OPS, {"w": whale, "after": after, "f": f})
        after = data["operations"]["pageInfo"]["endCursor"]
    return after
cases = [
    ("no filter, first page", OPS, {"w": whale}),
    ("metadata on 1 in 10 rows, first page", OPS, {"w": whale, "f": {"metadata": {"key": "channel", "value": "web"}}}),
    ("metadata on 1 in 10 rows, page 500", OPS, {"w": whale, "after": deep_cursor({"metadata": {"key": "channel", "value": "web"}}, 500), "f": {"metadata": {"key": "channel", "value": "web"}}}),
    ("metadata on 1 in 1,000 rows, first page", OPS, {"w": whale, "f": {"metadata": {"key": "order", "value": "rare"}}}),
    ("metadata on 1 in 1,000 rows, page 20", OPS, {"w": whale, "after": deep_cursor({"metadata": {"key": "order", "value": "rare"}}, 20), "f": {"metadata": {"key": "order", "value": "rare"}}}),
    ("metadata on no row", OPS, {"w": whale, "f": {"metadata": {"key": "order", "value": "none"}}}),
    ("metadata 1 in 1,000 + kinds [TRANSFER_IN]", OPS, {"w": whale, "f": {"metadata": {"key": "order", "value": "rare"}, "kinds": ["TRANSFER_IN"]}}),
    ("transfers, metadata on 1 in 1,000, first page", TRANSFERS, {"w": whale, "f": {"metadata": {"key": "order", "value": "rare"}}}),
]
print(f"{'probe':<48} {'median ms':>10}")
for name, query, variables in cases:
    ms, _ = median_ms(query, variables)
    print(f"{name:<48} {ms:>10.2f}")
PY

echo "== 2. the CSV statement of the whale's whole history"
hwm() { awk '/VmHWM/ {print $2}' /proc/$SERVER/status; }
before=$(hwm)
start=$(date +%s.%N)
curl -sf -H "Authorization: Bearer $OP" -o "$OUT/whale.csv" \
  "http://127.0.0.1:$PORT/wallets/$WHALE/statement.csv?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
end=$(date +%s.%N)
after=$(hwm)
lines=$(($(wc -l < "$OUT/whale.csv") - 1))
bytes=$(stat -c %s "$OUT/whale.csv")
python3 -c "print(f'lines {$lines}, {$bytes / 1e6:.1f} MB in {$end - $start:.1f} s; server peak RSS {$before / 1024:.0f} MB before, {$after / 1024:.0f} MB after')" | tee "$OUT/statement-csv.txt"
rm -f "$OUT/whale.csv"

echo "== 3. limit checks: transfers at 8 connections, none limited (A) vs all limited (B)"
loadgen() { "$BIN/loadgen" --url "http://127.0.0.1:$PORT" --clients "$CLIENTS" --operator-token $OP "$@"; }
limits() {
  psql -q -d "$DB" -c "UPDATE wallet SET max_transfer_amount = $1, daily_outgoing_amount = $1, daily_outgoing_count = $2"
  psql -q -d "$DB" -c "VACUUM ANALYZE wallet"
}
for round in 1 2; do
  limits NULL NULL
  loadgen -c 8 -d "$DURATION" --mix transfer=100 --json "$OUT/limits-none-$round.json" | tee "$OUT/limits-none-$round.txt"
  limits 100000000000 1000000000
  loadgen -c 8 -d "$DURATION" --mix transfer=100 --json "$OUT/limits-all-$round.json" | tee "$OUT/limits-all-$round.txt"
done
limits NULL NULL
