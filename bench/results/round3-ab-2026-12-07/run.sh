#!/usr/bin/env bash
# A/B: walletql binaries $A and $B on fresh seeded DBs, transfers at 8 and 64 conns, alternating, plus minimal pgbench.
# usage: A=/tmp/walletql-base B=/work/main/target/release/walletql OUT=/tmp/ab/x ROUNDS=2 MIX=transfer=100 /tmp/ab/run.sh
set -euo pipefail
cd /work/main
export PGHOST=127.0.0.1 PGUSER=postgres
OUT=${OUT:-/tmp/ab/out}; mkdir -p "$OUT"
ROUNDS=${ROUNDS:-2}; D=${D:-15}; MIX=${MIX:-transfer=100}; LEVELS=${LEVELS:-"8 64"}
OP=bench-operator-token-0123456789abcdef
for v in A B; do
  db=ab_$v; dropdb --if-exists --force $db; createdb $db
  target/release/seed --database-url postgres://postgres@127.0.0.1/$db --clients 10000 --operations 100000 > /dev/null
  psql -q -d $db -f bench/pgbench/minimal-setup.sql
done
run() { # v bin c round
  local v=$1 bin=$2 c=$3 r=$4
  env DATABASE_URL=postgres://postgres@127.0.0.1/ab_$v OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:18095 RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 RUST_LOG=warn $bin > $OUT/server-$v.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18095/healthz >/dev/null && break; sleep 0.1; done
  psql -q -d ab_$v -c CHECKPOINT
  local t0=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  target/release/loadgen --url http://127.0.0.1:18095 --clients 10000 --operator-token $OP -c $c -d $D --mix $MIX $EXTRA 2>&1 | grep -E "^all"  | sed "s/^/$v c$c r$r: /" | tee -a $OUT/summary.txt
  local t1=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  echo "$v c$c r$r cpu_ticks=$((t1-t0))" | tee -a $OUT/summary.txt
  kill $pid; wait $pid 2>/dev/null || true
}
EXTRA=${EXTRA:-}
for r in $(seq 1 $ROUNDS); do
  for c in $LEVELS; do
    if [ $((r % 2)) = 1 ]; then run A $A $c $r; run B $B $c $r; else run B $B $c $r; run A $A $c $r; fi
    if [ "${MINIMAL:-1}" = 1 ]; then
      pgbench -n -M prepared -c $c -j 2 -T $D -f bench/pgbench/minimal-transfer.sql -D wallets=10000 -D hot=2 -D hot_share_pct=0 ab_A 2>&1 | grep -E "^tps" | sed "s/^/minimal c$c r$r: /" | tee -a $OUT/summary.txt
    fi
  done
done
