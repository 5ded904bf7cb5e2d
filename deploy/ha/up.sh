#!/usr/bin/env bash
# PostgreSQL as payment services run it: two nodes managed by Patroni, with
# etcd as its consensus store and synchronous replication, on this machine.
# When the primary dies, Patroni promotes the synchronous standby once the
# leader key expires (ttl), so no acknowledged payment is lost.
#
#   deploy/ha/up.sh DIR          start etcd and two Patroni nodes under DIR
#   deploy/ha/up.sh down DIR     stop everything and remove DIR
#
# Then: DATABASE_URL='postgres://postgres@127.0.0.1:25532,127.0.0.1:25533/postgres?target_session_attrs=read-write'
# Patroni's REST API: http://127.0.0.1:28008/cluster (node1), :28009 (node2).
# Debian's packages: patroni (3.0) and etcd-server (3.4: Patroni's etcd3
# section). PostgreSQL runs as the postgres user (root runs Patroni as it).
set -euo pipefail

if [ "${1:-}" = down ]; then
  dir=${2:?usage: up.sh down DIR}
  # Patroni, etcd and the postmasters all name DIR on their command line.
  pkill -9 -f -- "$dir/" 2>/dev/null || true
  for node in node1 node2; do
    [ -f "$dir/$node/postmaster.pid" ] && kill -9 "$(head -1 "$dir/$node/postmaster.pid")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf "$dir"
  exit 0
fi

dir=${1:?usage: up.sh DIR | up.sh down DIR}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
as_pg mkdir -p "$dir/etcd"

as_pg etcd --name walletql-ha --data-dir "$dir/etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster walletql-ha=http://127.0.0.1:23800 >"$dir/etcd.log" 2>&1 &

for n in 1 2; do
  cat >"$dir/node$n.yml" <<YAML
scope: walletql
namespace: /walletql/
name: node$n
restapi:
  listen: 127.0.0.1:2800$((7 + n))
  connect_address: 127.0.0.1:2800$((7 + n))
etcd3:
  hosts: 127.0.0.1:23790
bootstrap:
  dcs:
    # Patroni requires loop_wait + 2 * retry_timeout <= ttl.
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 5
        max_replication_slots: 5
  initdb:
    - encoding: UTF8
    - auth: trust
  pg_hba:
    - local all all trust
    - host replication postgres 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:2553$((1 + n))
  connect_address: 127.0.0.1:2553$((1 + n))
  data_dir: $dir/node$n
  bin_dir: $bin
  pgpass: $dir/pgpass$n
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
  parameters:
    unix_socket_directories: $dir
YAML
  chown postgres: "$dir/node$n.yml" 2>/dev/null || true
  as_pg patroni "$dir/node$n.yml" >"$dir/patroni$n.log" 2>&1 &
  # The first node bootstraps the cluster; the second then clones it.
  if [ "$n" = 1 ]; then
    for _ in $(seq 1 300); do
      curl -sf http://127.0.0.1:28008/primary >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
done

for _ in $(seq 1 300); do
  if curl -sf http://127.0.0.1:28008/cluster 2>/dev/null | grep -q '"sync_standby"'; then
    echo "Patroni cluster up: $(curl -s http://127.0.0.1:28008/cluster)"
    exit 0
  fi
  sleep 0.2
done
echo "the cluster did not come up with a synchronous standby; logs in $dir" >&2
tail -20 "$dir"/patroni*.log >&2
exit 1
