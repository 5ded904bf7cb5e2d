#!/usr/bin/env bash
# What trusted documents save per request: the same query (the web app's
# History page) sent as text and by its document id (parsed once, at
# start-up), back to back against one walletql on its defaults with
# TRUSTED_DOCUMENTS set, on the embedded SQLite backend (the request path,
# not the database, is what differs). wrk, 8 connections.
#
#   bench/persisted-documents.sh             # 15 s per run
#   DURATION=5 bench/persisted-documents.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-15}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-18095}
OUT=${OUT:-bench/results/persisted-documents}
OP=bench-operator-token-0123456789abcdef
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -p walletql
work=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$work"' EXIT

# The History operation of documents/wallet.graphql, as the manifest's only entry.
python3 - "$work" <<'PY'
import json, re, sys
text = open("documents/wallet.graphql").read()
history = re.search(r"query History\(.*?\n}\n", text, re.S).group(0)
json.dump({"history-1": history}, open(f"{sys.argv[1]}/manifest.json", "w"))
json.dump({"query": history}, open(f"{sys.argv[1]}/as-text.json", "w"))
PY
(cd "$work" && exec env OPERATOR_TOKEN=$OP LISTEN_ADDR=127.0.0.1:$PORT RATE_LIMIT_PER_TOKEN=0 \
  TRUSTED_DOCUMENTS="$work/manifest.json" RUST_LOG=warn "$OLDPWD/target/release/walletql" > "$OUT/server.log" 2>&1) &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
gql() { curl -sf "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' -H "authorization: Bearer $OP" -d "$1"; }
created=$(gql '{"query":"mutation { createClient(input: {name: \"Bench\"}) { token wallet { id } } }"}')
TOKEN=$(echo "$created" | python3 -c 'import sys, json; print(json.load(sys.stdin)["data"]["createClient"]["token"])')
WALLET=$(echo "$created" | python3 -c 'import sys, json; print(json.load(sys.stdin)["data"]["createClient"]["wallet"]["id"])')
for i in $(seq 1 20); do gql "{\"query\":\"mutation { deposit(input: {walletId: \\\"$WALLET\\\", amount: \\\"1.00\\\"}) { wallet { id } } }\"}" >/dev/null; done
python3 - "$work" "$WALLET" <<'PY'
import json, sys
work, wallet = sys.argv[1:]
variables = {"walletId": wallet, "first": 10}
text = json.load(open(f"{work}/as-text.json"))
json.dump({**text, "variables": variables}, open(f"{work}/as-text.json", "w"))
json.dump({"documentId": "history-1", "variables": variables}, open(f"{work}/by-id.json", "w"))
PY
export TOKEN
for body in as-text by-id; do
  # Both must answer data, not an error.
  curl -sf "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' -H "authorization: Bearer $TOKEN" \
    -d @"$work/$body.json" | grep -q '"edges"' || { echo "$body: no page"; exit 1; }
done
for round in 1 2; do
  for body in as-text by-id; do
    echo "== $body (round $round)"
    BODY_FILE="$work/$body.json" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/wrk/post.lua \
      "http://127.0.0.1:$PORT/graphql" | tee "$OUT/$body-$round.txt"
  done
done
