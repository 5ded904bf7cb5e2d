#!/usr/bin/env bash
# Reads A/B on the ab_A database: me=100 at 64 conns, alternating, plus raw SELECT pgbench.
set -euo pipefail
cd /work/main; export PGHOST=127.0.0.1 PGUSER=postgres
OP=bench-operator-token-0123456789abcdef; OUT=${OUT:-/tmp/ab/reads}; mkdir -p $OUT; D=${D:-12}
run() { local v=$1 bin=$2 c=$3 r=$4
  env DATABASE_URL=postgres://postgres@127.0.0.1/ab_A OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:18095 RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 RUST_LOG=warn $bin > $OUT/server-$v.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18095/healthz >/dev/null && break; sleep 0.1; done
  target/release/loadgen --url http://127.0.0.1:18095 --clients 10000 --operator-token $OP -c $c -d $D --mix ${MIX:-me=100} 2>&1 | grep -E "^all" | sed "s/^/$v c$c r$r: /" | tee -a $OUT/summary.txt
  kill $pid; wait $pid 2>/dev/null || true
}
for r in $(seq 1 ${ROUNDS:-2}); do for c in ${LEVELS:-64}; do
  if [ $((r % 2)) = 1 ]; then run A $A $c $r; run B $B $c $r; else run B $B $c $r; run A $A $c $r; fi
  pgbench -n -M prepared -c $c -j 2 -T $D -f bench/pgbench/read-balance.sql -D clients=10000 ab_A 2>&1 | grep -E "^tps" | sed "s/^/raw c$c r$r: /" | tee -a $OUT/summary.txt
done; done
