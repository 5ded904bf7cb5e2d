#!/usr/bin/env bash
# The simplest topology that survives losing its primary: a PostgreSQL
# primary and a synchronous streaming standby on this machine. A person
# promotes the standby with `pg_ctl promote` when the primary dies; walletql,
# given both hosts, finds the new primary by itself.
#
#   deploy/ha/pair.sh up DIR [PRIMARY_PORT [STANDBY_PORT]]   (15432, 15433)
#   deploy/ha/pair.sh kill-primary DIR     an immediate stop: a crash
#   deploy/ha/pair.sh stop-standby DIR / start-standby DIR
#   deploy/ha/pair.sh promote DIR          the standby becomes the primary (alone)
#   deploy/ha/pair.sh down DIR             stops both and removes DIR
#
# Then: DATABASE_URL='postgres://postgres@127.0.0.1:15432,127.0.0.1:15433/postgres?target_session_attrs=read-write'
#
# PostgreSQL refuses to run as root: run as root, the clusters run as the
# postgres user. `synchronous_commit = on` with the standby named in
# `synchronous_standby_names`: a COMMIT returns once the standby has the
# WAL on disk, so a promoted standby has every acknowledged payment.
set -euo pipefail

usage="usage: pair.sh up|kill-primary|promote|stop-standby|start-standby|down DIR [PRIMARY_PORT [STANDBY_PORT]]"
cmd=${1:?$usage}
dir=${2:?$usage}
primary_port=${3:-15432}
standby_port=${4:-15433}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

settings() { # DIR PORT
  cat >> "$1/postgresql.conf" <<CONF
port = $2
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 5
hot_standby = on
synchronous_commit = on
synchronous_standby_names = 'standby'
wal_keep_size = '256MB'
CONF
}

wait_for() { # WHAT COMMAND...
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2
  return 1
}

case "$cmd" in
  up)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir/primary" -U postgres --auth=trust >/dev/null
    settings "$dir/primary" "$primary_port"
    as_pg "$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/standby" -R -X stream
    sed -i "s/^port = .*/port = $standby_port/" "$dir/standby/postgresql.conf"
    # The standby's name is what synchronous_standby_names waits for.
    echo "primary_conninfo = 'host=127.0.0.1 port=$primary_port user=postgres application_name=standby'" \
      >> "$dir/standby/postgresql.auto.conf"
    as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
    wait_for "the standby to be synchronous" bash -c \
      "[ \"\$(psql -h 127.0.0.1 -p $primary_port -U postgres -qAt -c \"SELECT sync_state FROM pg_stat_replication\")\" = sync ]"
    echo "primary on 127.0.0.1:$primary_port, synchronous standby on 127.0.0.1:$standby_port"
    ;;
  stop-standby)
    as_pg "$bin/pg_ctl" -D "$dir/standby" -m fast -w stop >/dev/null
    ;;
  start-standby)
    as_pg "$bin/pg_ctl" -D "$dir/standby" -l "$dir/standby.log" -w start >/dev/null
    ;;
  kill-primary)
    as_pg "$bin/pg_ctl" -D "$dir/primary" -m immediate stop >/dev/null
    ;;
  promote)
    as_pg "$bin/pg_ctl" -D "$dir/standby" -w promote >/dev/null
    # The new primary has no standby yet: with one still named, every
    # COMMIT would wait for it forever. It runs alone (an acknowledged
    # payment is then on one server only) until a new standby is attached.
    psql -h 127.0.0.1 -p "$standby_port" -U postgres -qAt \
      -c "ALTER SYSTEM SET synchronous_standby_names = ''" -c "SELECT pg_reload_conf()" >/dev/null
    ;;
  down)
    for node in primary standby; do
      [ -f "$dir/$node/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/$node" -m immediate stop >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
