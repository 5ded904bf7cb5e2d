#!/usr/bin/env bash
# What issue 20 costs a transfer: the release build of the commit before it
# (OLD_REV, default 1ad1990) against this checkout's, each on a database of
# its own seeded by its own seed binary (same size), with the minimal
# raw-SQL transfer (bench/pgbench/minimal-transfer.sql) as the reference,
# all in one session, interleaved old / new / minimal, ROUNDS times at each
# concurrency. Both servers run on their defaults (rate limits off, as in
# run-benchmarks.sh); each run also records the CPU time the server and
# PostgreSQL spent per transfer posted. Issue 20 put into every transfer: two metadata arrays
# in the batch statement, seven more wallet columns in its UPDATE (status,
# limits and the day's use, the credit line), the status, limit and credit
# checks in the settlement.
#
#   OUT=bench/results/issue-20-cost bench/issue-20-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OLD_REV=${OLD_REV:-1ad1990}
CLIENTS=${CLIENTS:-10000}
OPS=${OPS:-1000000}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
LEVELS=${LEVELS:-"8 64"}
PORT=${PORT:-18093}
OP=bench-operator-token-0123456789abcdef
OUT=${OUT:-bench/results/issue-20-cost}
OLD_DIR=${OLD_DIR:-/tmp/walletql-$OLD_REV}
export PGHOST=127.0.0.1 PGUSER=postgres
mkdir -p "$OUT"
rm -f "$OUT"/*.txt "$OUT"/*.json

# The old tree and its own target directory, built once and kept.
if [ ! -d "$OLD_DIR" ]; then
  git worktree add --detach "$OLD_DIR" "$OLD_REV"
fi
(cd "$OLD_DIR" && cargo build --release -p walletql -p walletql-bench)
cargo build --release -p walletql -p walletql-bench
declare -A BIN=([old]="$OLD_DIR/target/release" [new]="target/release")

for v in old new; do
  db="walletql_cost_$v"
  if [ "${RESEED:-1}" = 1 ]; then
    dropdb --if-exists --force "$db"
    createdb "$db"
    /usr/bin/time -f "seed $v: %e s" "${BIN[$v]}/seed" --database-url "postgres://postgres@127.0.0.1:5432/$db" \
      --clients "$CLIENTS" --operations "$OPS" 2>&1 | tail -2 | tee -a "$OUT/seed.txt"
  fi
done
psql -q -d walletql_cost_new -f bench/pgbench/minimal-setup.sql

# cpu_seconds: CPU used so far by the server and by all of PostgreSQL.
. bench/cpu.sh
# CPU microseconds per transfer: server, PostgreSQL.
per_transfer() { # before after transfers
  python3 -c "import sys; b=list(map(float,sys.argv[1].split())); a=list(map(float,sys.argv[2].split())); n=int(sys.argv[3]); print('cpu/transfer: server %.0f us, postgres %.0f us' % ((a[0]-b[0])/n*1e6, (a[1]-b[1])/n*1e6))" "$1" "$2" "$3"
}

SERVER=
stop_server() { [ -z "$SERVER" ] || { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=; }; }
trap stop_server EXIT
start_server() { # version
  env DATABASE_URL="postgres://postgres@127.0.0.1:5432/walletql_cost_$1" OPERATOR_TOKEN=$OP \
    LISTEN_ADDR=127.0.0.1:$PORT RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 RUST_LOG=warn \
    "${BIN[$1]}/walletql" > "$OUT/server-$1.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.1; done
  echo "walletql $1 did not start:"; cat "$OUT/server-$1.log"; exit 1
}

for round in $(seq 1 "$ROUNDS"); do
  for c in $LEVELS; do
    for v in old new; do
      start_server "$v"
      before=$(cpu_seconds)
      "${BIN[$v]}/loadgen" --url "http://127.0.0.1:$PORT" --clients "$CLIENTS" --operator-token $OP \
        -c "$c" -d "$DURATION" --mix transfer=100 --json "$OUT/$v-c$c-r$round.json" > "$OUT/$v-c$c-r$round.txt"
      after=$(cpu_seconds)
      stop_server
      posted=$(sed -nE 's/^transfers posted: ([0-9]+).*/\1/p' "$OUT/$v-c$c-r$round.txt")
      per_transfer "$before" "$after" "$posted" >> "$OUT/$v-c$c-r$round.txt"
      echo "round $round c$c $v: $(grep -m1 '^transfer ' "$OUT/$v-c$c-r$round.txt") $(grep -m1 '^errors' "$OUT/$v-c$c-r$round.txt") $(tail -1 "$OUT/$v-c$c-r$round.txt")"
    done
    pgbench -n -M prepared -c "$c" -j 2 -T "$DURATION" -f bench/pgbench/minimal-transfer.sql \
      -D wallets=10000 -D hot=2 -D hot_share_pct=0 walletql_cost_new > "$OUT/minimal-c$c-r$round.txt" 2>&1
    echo "round $round c$c minimal: $(grep -E '^tps' "$OUT/minimal-c$c-r$round.txt")"
  done
done

# Both ledgers still add up after the load.
for v in old new; do
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/walletql_cost_$v" "${BIN[$v]}/walletql" verify \
    > "$OUT/verify-$v.txt" 2>&1 && echo "verify $v: clean" || echo "verify $v: FAILED"
done
