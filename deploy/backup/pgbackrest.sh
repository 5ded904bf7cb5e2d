#!/usr/bin/env bash
# Payments must survive losing the disk, not only the server: a PostgreSQL
# cluster that archives every WAL segment into a pgBackRest repository, with
# base backups, and a restore that replays WAL up to a named restore point
# (`SELECT pg_create_restore_point('NAME')`, e.g. taken before a migration).
#
#   deploy/backup/pgbackrest.sh up DIR [PORT]          (16432) cluster, stanza, first full backup
#   deploy/backup/pgbackrest.sh backup DIR [full|diff|incr]   (incr) another backup
#   deploy/backup/pgbackrest.sh archived DIR           switches WAL, waits until it is archived
#   deploy/backup/pgbackrest.sh restore DIR NAME NEWDIR [PORT]   (16433) latest backup + WAL
#                                                      up to NAME, promoted, read-write
#   deploy/backup/pgbackrest.sh down DIR [NEWDIR...]   stops the clusters, removes the dirs
#
# Everything lives in DIR: the cluster (DIR/pg, log DIR/pg.log, socket in
# DIR), the repository (DIR/repo), pgbackrest.conf and pgBackRest's log,
# lock and spool dirs; every pgbackrest call names --config, so /etc and
# /var are never read or written. pgBackRest writes log files (DIR/log) only
# for commands that take a lock (stanza-create, backup, expire, restore):
# archive-push, archive-get and check report to stderr, that is to the
# server's log for archive_command and restore_command. The cluster listens
# on 127.0.0.1 only, with trust auth: a scratch setup, not a production one.
#
# PostgreSQL refuses to run as root: run as root, the clusters and every
# pgbackrest command run as the postgres user (archive_command runs as the
# server's user, so the repository, lock and log files must all belong to
# postgres; a pgbackrest run as root would leave root-owned files there).
set -euo pipefail

usage="usage: pgbackrest.sh up DIR [PORT] | backup DIR [full|diff|incr] | archived DIR | restore DIR NAME NEWDIR [PORT] | down DIR [NEWDIR...]"
cmd=${1:?$usage}
dir=${2:?$usage}
shift 2
dir=$(realpath -m "$dir")
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
stanza=walletql
conf=$dir/pgbackrest.conf

as_pg() { # from /: postgres may not be allowed into the caller's directory
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pgbr() { # pgBackRest on DIR's stanza, as postgres
  as_pg pgbackrest --config="$conf" --stanza="$stanza" "$@"
}

sql() { # PORT SQL: always an explicit host and port, never the default 5432
  psql -X -h 127.0.0.1 -p "$1" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 -c "$2"
}

is_true() { # PORT SQL
  [ "$(sql "$1" "$2")" = t ]
}

port_of() { # the cluster's port, as written into pgbackrest.conf by `up`
  sed -n 's/^pg1-port=//p' "$conf"
}

wait_for() { # WHAT SECONDS COMMAND...
  local what=$1 deadline=$((SECONDS + $2)); shift 2
  while [ "$SECONDS" -lt "$deadline" ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $what" >&2
  return 1
}

mkdir_pg() { # DIR...: owned by postgres, private
  mkdir -p "$@"
  [ "$(id -u)" = 0 ] && chown postgres: "$@"
  chmod 700 "$@"
}

case "$cmd" in
  up)
    port=${1:-16432}
    [ -e "$dir/pg" ] && { echo "$dir/pg exists: down it first, or use another DIR" >&2; exit 1; }
    mkdir_pg "$dir" "$dir/repo" "$dir/log" "$dir/lock" "$dir/spool"
    # lz4: much faster than the default gz for a little less compression.
    # start-fast: a backup begins with an immediate checkpoint instead of
    # waiting for the next scheduled one (up to checkpoint_timeout).
    # pg1-socket-path and pg1-port: without them pgBackRest would connect
    # to the machine's own cluster through /var/run/postgresql.
    cat > "$conf" <<CONF
[global]
repo1-path=$dir/repo
repo1-retention-full=2
compress-type=lz4
start-fast=y
lock-path=$dir/lock
log-path=$dir/log
spool-path=$dir/spool
log-level-console=warn
log-level-file=info

[$stanza]
pg1-path=$dir/pg
pg1-port=$port
pg1-socket-path=$dir
CONF
    [ "$(id -u)" = 0 ] && chown postgres: "$conf"
    chmod 600 "$conf"
    as_pg "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust >/dev/null
    # archive_timeout: a quiet server still archives (so is recoverable up
    # to) at least once a minute.
    cat >> "$dir/pg/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
wal_level = replica
archive_mode = on
archive_command = '$(command -v pgbackrest) --config=$conf --stanza=$stanza archive-push %p'
archive_timeout = 60
CONF
    as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w start >/dev/null
    pgbr stanza-create
    pgbr check # archive_command works: a switched WAL segment reaches the repo
    pgbr backup --type=full
    echo "cluster $dir/pg on 127.0.0.1:$port (log $dir/pg.log), archiving to stanza $stanza"
    echo "repository $dir/repo, config $conf, pgBackRest logs $dir/log"
    pgbr info
    ;;
  backup)
    type=${1:-incr}
    pgbr backup --type="$type"
    pgbr info
    ;;
  archived)
    port=$(port_of)
    # pg_walfile_name of what pg_switch_wal returns is the segment just
    # closed (or, with no WAL written since the last switch, the one before,
    # already closed): everything written so far is in it or before it.
    wal=$(sql "$port" "SELECT pg_walfile_name(pg_switch_wal())")
    # COLLATE "C": WAL file names compare as plain bytes.
    wait_for "$wal to be archived (archive-push errors are in $dir/pg.log)" 120 \
      is_true "$port" "SELECT coalesce(last_archived_wal, '') COLLATE \"C\" >= '$wal' FROM pg_stat_archiver"
    echo "WAL up to $wal is archived"
    ;;
  restore)
    name=${1:?$usage}
    newdir=$(realpath -m "${2:?$usage}")
    port=${3:-16433}
    [ -n "$(ls -A "$newdir" 2>/dev/null)" ] && { echo "$newdir is not empty" >&2; exit 1; }
    mkdir_pg "$newdir"
    # The latest backup, then WAL from the repository up to the restore
    # point, then promotion. It must be a backup taken before NAME was
    # created: use `--set=LABEL` with an older backup otherwise (an explicit
    # `--set=latest` is refused: "backup set latest is not valid"). Recovery
    # stops at the first restore point called NAME; `check` and `backup`
    # create ones called "pgBackRest Archive Check". The copy's
    # restore_command reads DIR's pgbackrest.conf and repository, so DIR
    # must stay until it is promoted.
    # --archive-mode=off: the restored cluster is a copy on a new timeline
    # of the same system; archiving its WAL into the same stanza would mix
    # it into the primary's archive (and a later restore to "latest" would
    # follow the copy's timeline). It writes archive_mode = off into its
    # postgresql.auto.conf.
    pgbr restore --pg1-path="$newdir" --type=name --target="$name" \
      --target-action=promote --archive-mode=off
    # The copied postgresql.conf still says the primary's port and socket.
    cat >> "$newdir/postgresql.auto.conf" <<CONF
port = $port
unix_socket_directories = '$newdir'
CONF
    # pg_ctl returns once it accepts (read-only) connections; a restore
    # point that is not in the archive makes recovery fail here.
    as_pg "$bin/pg_ctl" -D "$newdir" -l "$newdir/postgresql.log" -w -t 300 start >/dev/null ||
      { echo "$newdir did not start: see $newdir/postgresql.log" >&2; exit 1; }
    wait_for "$newdir to leave recovery (see $newdir/postgresql.log)" 300 \
      is_true "$port" "SELECT NOT pg_is_in_recovery()"
    # Assigning a transaction id fails during recovery: it accepts writes.
    sql "$port" "SELECT txid_current()" >/dev/null
    echo "restored to restore point '$name': cluster $newdir on 127.0.0.1:$port (log $newdir/postgresql.log), read-write, not archiving"
    ;;
  down)
    newdirs=()
    for d in "$@"; do newdirs+=("$(realpath -m "$d")"); done
    for data in "$dir/pg" "${newdirs[@]}"; do
      [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$dir" "${newdirs[@]}"
    ;;
  *)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
