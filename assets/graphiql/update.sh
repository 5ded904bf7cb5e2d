#!/usr/bin/env bash
# Fetches the pinned npm builds listed in VERSIONS and stores them gzipped
# (the server sends them with Content-Encoding: gzip), with their checksums.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm init -y >/dev/null && npm install --no-audit --no-fund --ignore-scripts \
  $(grep -v '^#' "$OLDPWD/VERSIONS") graphql@16 >/dev/null)
m="$work/node_modules"
for f in "$m/graphiql/graphiql.min.js" "$m/graphiql/graphiql.min.css" \
         "$m/react/umd/react.production.min.js" "$m/react-dom/umd/react-dom.production.min.js" \
         "$m/graphql-ws/umd/graphql-ws.min.js"; do
  gzip -9 -n -c "$f" > "$(basename "$f").gz"
done
sha256sum ./*.gz > SHA256SUMS
