#!/usr/bin/env bash
# Reads per second with 0 and 1 read replicas, and the replica's lag under
# the transfer load. A primary and an asynchronous streaming replica of
# their own (deploy/ha/pair.sh, then synchronous_standby_names cleared),
# seeded, then walletql on its defaults with and without
# DATABASE_REPLICA_URLS, driven by loadgen. Results in bench/results/replicas-<date>/.
#
#   bench/replicas.sh [CLIENTS [OPERATIONS [SECONDS]]]   (10000 1000000 15)
#   ORDER="1 0" runs with the replica first.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${1:-10000}
OPS=${2:-1000000}
DURATION=${3:-15}
PRIMARY=25480
REPLICA=25481
PORT=18480
OP=operator-token-for-the-replica-benchmark-0123
DIR=$(mktemp -d /tmp/walletql-replica-bench.XXXXXX)
OUT=bench/results/replicas-$(date +%Y-%m-%d)
BIN=target/release
mkdir -p "$OUT"

cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true
  deploy/ha/pair.sh down "$DIR" "$PRIMARY" "$REPLICA" || true
}
trap cleanup EXIT

cargo build --release -p walletql -p walletql-bench
deploy/ha/pair.sh up "$DIR" "$PRIMARY" "$REPLICA"
# A read replica is asynchronous: commits do not wait for it.
psql -h 127.0.0.1 -p "$PRIMARY" -U postgres -qAt \
  -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
URL="postgres://postgres@127.0.0.1:$PRIMARY/postgres"
REPLICA_URL="postgres://postgres@127.0.0.1:$REPLICA/postgres"
"$BIN/seed" --database-url "$URL" --clients "$CLIENTS" --operations "$OPS" | tee "$OUT/seed.txt"

start() { # extra environment for walletql
  env DATABASE_URL="$URL" OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:$PORT \
    RATE_LIMIT_PER_TOKEN=0 RATE_LIMIT_ANONYMOUS=0 "$@" "$BIN/walletql" >/dev/null 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "walletql did not start" >&2
  return 1
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }
loadgen() { "$BIN/loadgen" --url "http://127.0.0.1:$PORT" --clients "$CLIENTS" --operator-token $OP "$@"; }

{
  echo "date: $(date -u +%FT%TZ); commit $(git rev-parse --short HEAD)"
  echo "PostgreSQL: $(psql -h 127.0.0.1 -p "$PRIMARY" -U postgres -qAt -c 'SHOW server_version'), autovacuum $(psql -h 127.0.0.1 -p "$PRIMARY" -U postgres -qAt -c 'SHOW autovacuum')"
  echo "machine: $(nproc) cores; primary, replica, walletql and loadgen all on it"
} | tee "$OUT/setup.txt"

# Reads: own balance and history pages, 64 connections.
for replicas in ${ORDER:-0 1}; do
  case $replicas in
    0) start ;;
    1) start DATABASE_REPLICA_URLS="$REPLICA_URL" ;;
  esac
  for c in 8 64; do
    loadgen -c "$c" -d "$DURATION" --mix wallet=50,history=50 \
      --json "$OUT/reads-r$replicas-c$c.json" | tee "$OUT/reads-r$replicas-c$c.txt"
  done
  curl -s "http://127.0.0.1:$PORT/metrics" | grep '^db_reads_total' | tee "$OUT/reads-r$replicas-metrics.txt" || true
  stop
done

# The replica's lag under transfers: sampled twice a second from walletql's
# gauge (how old the newest primary position it has replayed is).
start DATABASE_REPLICA_URLS="$REPLICA_URL"
(
  end=$((SECONDS + DURATION))
  while [ $SECONDS -lt $end ]; do
    curl -s "http://127.0.0.1:$PORT/metrics" | sed -n 's/^db_replica_lag_seconds{[^}]*} //p'
    sleep 0.5
  done
) > "$OUT/lag-samples.txt" &
SAMPLER=$!
loadgen -c 64 -d "$DURATION" --mix transfer=100 --json "$OUT/transfers-lag.json" | tee "$OUT/transfers-lag.txt"
wait $SAMPLER
sort -g "$OUT/lag-samples.txt" | awk '{ v[NR] = $1 } END { printf "lag samples: %d, median %.3f s, p90 %.3f s, max %.3f s\n", NR, v[int(NR/2)+1], v[int(NR*0.9)+1], v[NR] }' | tee "$OUT/lag.txt"
stop
