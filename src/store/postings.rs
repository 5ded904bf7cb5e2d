//! The SQL of the posting engine: one batch of ledger entries per
//! transaction.
//!
//! A batch claims its idempotency keys, locks its wallets in ascending id
//! order, then (once the ledger has settled the entries in memory) writes
//! everything in one statement: released claims, wallet balances, transfer
//! and ledger rows, and the NOTIFY. On PostgreSQL the rows travel as JSON
//! documents expanded by `json_to_recordset`, so a statement's text does not
//! depend on the batch's size (a few variants, each prepared once per
//! connection); SQLite, in process, runs plain statements.

use chrono::{DateTime, Utc};
use entity::operation::{self, OperationKind};
use entity::transfer::TransferStatus;
use entity::{idempotency_key, transfer, wallet};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, Statement, TryInsertResult,
};
use serde::Serialize;
use uuid::Uuid;

/// An idempotency key to claim, and what it will stand for.
#[derive(Debug, Serialize)]
pub struct KeyClaim<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub fingerprint: &'a str,
    pub transfer_id: Option<Uuid>,
    pub operation_id: Option<Uuid>,
}

/// A wallet's new state, written only if its `last_seq` is still
/// `previous_seq` (it is: the row is locked; this proves it).
#[derive(Clone, Debug, Serialize)]
pub struct WalletUpdate {
    pub id: Uuid,
    pub balance: i64,
    pub held: i64,
    pub open_holds: i32,
    pub incoming_held: i64,
    pub last_seq: i64,
    pub updated_at: DateTime<Utc>,
    pub previous_seq: i64,
}

/// A stored transfer ended or refunded. Written only if it is still what
/// the batch locked (`previous_status`), a pending one is still (or, for
/// an expiry, no longer) before its deadline on the database's clock, and
/// its refunds stay within what was captured.
#[derive(Clone, Debug, Serialize)]
pub struct TransferUpdate {
    pub id: Uuid,
    pub status: TransferStatus,
    pub captured_amount: Option<i64>,
    pub settled_at: Option<DateTime<Utc>>,
    /// Cents added to `refunded_amount`.
    pub refunded: i64,
    pub previous_status: TransferStatus,
}

/// Everything one batch writes.
pub struct BatchWrite<'a> {
    /// Claims of refused entries, undone.
    pub released: &'a [(&'a str, &'a str)],
    pub wallets: &'a [WalletUpdate],
    pub transfers: &'a [transfer::Model],
    pub changes: &'a [TransferUpdate],
    /// The database's clock as the batch read it (SQLite: this process's).
    pub now: DateTime<Utc>,
    pub operations: &'a [operation::Model],
    /// NOTIFY payloads on `channel`, delivered at commit (PostgreSQL only).
    pub channel: &'a str,
    pub notices: &'a [String],
    /// The batch's own id (PostgreSQL), kept in `ledger_batch` with its
    /// transaction id, to settle a COMMIT whose outcome was lost.
    pub id: Uuid,
}

/// Where a batch ran (PostgreSQL): enough to learn later whether it
/// committed, if the connection breaks during COMMIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMark {
    pub id: Uuid,
    /// The transaction's id (`pg_current_xact_id()`).
    pub xid: i64,
    /// The server's timeline: one primary per timeline.
    pub timeline: u32,
}

/// What claiming a key found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claimed {
    /// The key is this batch's now.
    Ours,
    /// Used before, by the same request: answer with the first result.
    Used,
    /// Used before, by another request (verb, target or parameters).
    Reused,
}

/// Claims `claims`, in (scope, key) order so that two batches claiming the
/// same keys queue instead of deadlocking. A key held by an uncommitted
/// transaction is waited for (its holder commits: taken; rolls back: ours).
/// For a key used before, its stored fingerprint says whether this is the
/// same request, inside the batch's transaction (so that an atomic batch
/// can refuse a reused key before anything commits).
pub async fn claim_keys<C: ConnectionTrait>(
    conn: &C,
    claims: &[KeyClaim<'_>],
) -> Result<Vec<Claimed>, DbErr> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let won = if conn.get_database_backend() == DbBackend::Postgres {
        let sql = "INSERT INTO idempotency_key (scope, key, fingerprint, transfer_id, operation_id, created_at) \
            SELECT k.scope, k.key, k.fingerprint, k.transfer_id, k.operation_id, now() \
            FROM json_to_recordset(CAST($1 AS json)) AS k(scope text, key text, fingerprint text, transfer_id uuid, operation_id uuid) \
            ORDER BY k.scope, k.key \
            ON CONFLICT DO NOTHING RETURNING scope, key";
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                [json(claims)?.into()],
            ))
            .await?;
        let mut won = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            won.insert((
                row.try_get_by_index::<String>(0)?,
                row.try_get_by_index::<String>(1)?,
            ));
        }
        claims
            .iter()
            .map(|c| won.contains(&(c.scope.to_owned(), c.key.to_owned())))
            .collect::<Vec<bool>>()
    } else {
        let now = Utc::now();
        let mut won = Vec::with_capacity(claims.len());
        for c in claims {
            let row = idempotency_key::ActiveModel {
                scope: Set(c.scope.to_owned()),
                key: Set(c.key.to_owned()),
                fingerprint: Set(c.fingerprint.to_owned()),
                transfer_id: Set(c.transfer_id),
                operation_id: Set(c.operation_id),
                created_at: Set(now),
            };
            let result = idempotency_key::Entity::insert(row)
                .on_conflict_do_nothing()
                .exec_without_returning(conn)
                .await?;
            won.push(matches!(result, TryInsertResult::Inserted(n) if n > 0));
        }
        won
    };
    let taken: Vec<&KeyClaim<'_>> = claims
        .iter()
        .zip(&won)
        .filter(|(_, won)| !**won)
        .map(|(c, _)| c)
        .collect();
    let stored = stored_fingerprints(conn, &taken).await?;
    Ok(claims
        .iter()
        .zip(won)
        .map(|(c, won)| match won {
            true => Claimed::Ours,
            false if stored.get(&(c.scope, c.key)) == Some(&c.fingerprint.to_owned()) => {
                Claimed::Used
            }
            false => Claimed::Reused,
        })
        .collect())
}

/// The fingerprints stored for these (used) keys.
async fn stored_fingerprints<'a, C: ConnectionTrait>(
    conn: &C,
    claims: &[&KeyClaim<'a>],
) -> Result<std::collections::HashMap<(&'a str, &'a str), String>, DbErr> {
    let mut found = std::collections::HashMap::with_capacity(claims.len());
    if claims.is_empty() {
        return Ok(found);
    }
    // Few (a retry's keys): one primary-key lookup each, in one statement
    // on PostgreSQL.
    let rows = if conn.get_database_backend() == DbBackend::Postgres {
        let keys: Vec<Released> = claims
            .iter()
            .map(|c| Released {
                scope: c.scope,
                key: c.key,
            })
            .collect();
        idempotency_key::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT i.* FROM json_to_recordset(CAST($1 AS json)) AS r(scope text, key text) \
                 JOIN idempotency_key i ON i.scope = r.scope AND i.key = r.key",
                [json(&keys)?.into()],
            ))
            .all(conn)
            .await?
    } else {
        let mut rows = Vec::with_capacity(claims.len());
        for c in claims {
            rows.extend(key_record(conn, c.scope, c.key).await?);
        }
        rows
    };
    for row in rows {
        if let Some(c) = claims
            .iter()
            .find(|c| c.scope == row.scope && c.key == row.key)
        {
            found.insert((c.scope, c.key), row.fingerprint);
        }
    }
    Ok(found)
}

/// Locks and reads the wallets with these ids, in ascending id order (the
/// order every batch locks in, so overlapping batches never deadlock).
/// Missing ids are simply absent. On SQLite the single writer already
/// excludes every other write.
pub async fn lock_wallets<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<wallet::Model>, DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return crate::store::reads::wallets_by_ids(conn, ids).await;
    }
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let list = uuid_array(&sorted);
    wallet::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, client_id, currency, balance, held, open_holds, incoming_held, last_seq, \
                 created_at, updated_at FROM wallet \
             WHERE id = ANY(CAST($1 AS uuid[])) ORDER BY id FOR UPDATE",
            [list.into()],
        ))
        .all(conn)
        .await
}

/// Locks and reads the transfers with these ids, in ascending id order
/// (before any wallet, in every batch), with the database's clock: a
/// hold's deadline is judged by it.
pub async fn lock_transfers<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<(Vec<transfer::Model>, DateTime<Utc>), DbErr> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if conn.get_database_backend() != DbBackend::Postgres {
        let rows = transfer::Entity::find()
            .filter(transfer::Column::Id.is_in(sorted))
            .all(conn)
            .await?;
        return Ok((rows, Utc::now()));
    }
    // The clock rides on a row of its own (a NULL id), so that it comes
    // back in the same round trip even when no transfer is found.
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT t.*, c.now AS db_now FROM (SELECT now()) AS c(now) \
             LEFT JOIN LATERAL (SELECT * FROM transfer WHERE id = ANY(CAST($1 AS uuid[])) \
                 ORDER BY id FOR UPDATE) t ON true",
            [uuid_array(&sorted).into()],
        ))
        .await?;
    let mut now = Utc::now();
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        now = row.try_get("", "db_now")?;
        if row.try_get::<Option<Uuid>>("", "id")?.is_some() {
            found.push(transfer::Model::from_query_result(&row, "")?);
        }
    }
    Ok((found, now))
}

/// Writes a settled batch. Fails (and the caller rolls back) if a wallet
/// or a transfer changed since it was locked, which would be a bug.
pub async fn write_batch<C: ConnectionTrait>(
    conn: &C,
    batch: &BatchWrite<'_>,
) -> Result<Option<BatchMark>, DbErr> {
    let (updated, ended, mark) = if conn.get_database_backend() == DbBackend::Postgres {
        let (updated, ended, mark) = write_postgres(conn, batch).await?;
        (updated, ended, Some(mark))
    } else {
        let (updated, ended) = write_plain(conn, batch).await?;
        (updated, ended, None)
    };
    if updated != batch.wallets.len() || ended != batch.changes.len() {
        return Err(DbErr::Custom(format!(
            "{updated} of {} wallets and {ended} of {} transfers were as locked",
            batch.wallets.len(),
            batch.changes.len()
        )));
    }
    Ok(mark)
}

/// One statement of data-modifying CTEs, with only the parts this batch
/// needs (most batches release no key; deposits write no transfer), so
/// PostgreSQL starts no executor node for nothing; each variant is prepared
/// once per connection.
///
/// The joins name their index (`id = ANY(...)`, a LATERAL lookup by
/// primary key): the planner cannot see how few rows a JSON document holds
/// (it guesses 100), and would otherwise hash-join against a full scan of
/// `wallet` or `idempotency_key`.
async fn write_postgres<C: ConnectionTrait>(
    conn: &C,
    batch: &BatchWrite<'_>,
) -> Result<(usize, usize, BatchMark), DbErr> {
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(9);
    let mut param = |value: sea_orm::Value| {
        values.push(value);
        format!("${}", values.len())
    };
    let mut parts: Vec<String> = Vec::with_capacity(5);
    if !batch.released.is_empty() {
        let released: Vec<Released> = batch
            .released
            .iter()
            .map(|&(scope, key)| Released { scope, key })
            .collect();
        parts.push(format!(
            "released AS (DELETE FROM idempotency_key WHERE ctid = ANY(ARRAY( \
             SELECT k.ctid FROM json_to_recordset(CAST({} AS json)) AS r(scope text, key text) \
             JOIN LATERAL (SELECT ctid FROM idempotency_key i \
                 WHERE i.scope = r.scope AND i.key = r.key LIMIT 1) k ON true)))",
            param(json(&released)?.into())
        ));
    }
    let wallet_ids: Vec<Uuid> = batch.wallets.iter().map(|w| w.id).collect();
    parts.push(format!(
        "w AS (UPDATE wallet SET balance = v.balance, held = v.held, open_holds = v.open_holds, \
             incoming_held = v.incoming_held, last_seq = v.last_seq, updated_at = v.updated_at \
         FROM json_to_recordset(CAST({} AS json)) \
             AS v(id uuid, balance bigint, held bigint, open_holds integer, incoming_held bigint, \
                 last_seq bigint, updated_at timestamptz, previous_seq bigint) \
         WHERE wallet.id = ANY(CAST({} AS uuid[])) AND wallet.id = v.id \
             AND wallet.last_seq = v.previous_seq RETURNING 1)",
        param(json(batch.wallets)?.into()),
        param(uuid_array(&wallet_ids).into())
    ));
    if !batch.transfers.is_empty() {
        parts.push(format!(
            "t AS (INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, \
                 created_at, kind, status, captured_amount, refunded_amount, refund_of, expires_at, settled_at) \
             SELECT x.id, x.from_wallet_id, x.to_wallet_id, x.amount, x.description, x.created_at, \
                 x.kind, x.status, x.captured_amount, x.refunded_amount, x.refund_of, x.expires_at, x.settled_at \
             FROM json_to_recordset(CAST({} AS json)) AS x(id uuid, from_wallet_id uuid, \
                 to_wallet_id uuid, amount bigint, description text, created_at timestamptz, \
                 kind text, status text, captured_amount bigint, refunded_amount bigint, \
                 refund_of uuid, expires_at timestamptz, settled_at timestamptz))",
            param(json(batch.transfers)?.into())
        ));
    }
    let ended = if batch.changes.is_empty() {
        "CAST(0 AS BIGINT)".to_owned()
    } else {
        let ids: Vec<Uuid> = batch.changes.iter().map(|c| c.id).collect();
        // The conditions the settlement checked, checked again by the
        // statement that changes the row: still as locked, a pending one
        // still before its deadline (an expiry: past it) on this clock,
        // refunds within what was captured.
        parts.push(format!(
            "u AS (UPDATE transfer SET status = v.status, captured_amount = v.captured_amount, \
                 settled_at = v.settled_at, refunded_amount = transfer.refunded_amount + v.refunded \
             FROM json_to_recordset(CAST({} AS json)) AS v(id uuid, status text, \
                 captured_amount bigint, settled_at timestamptz, refunded bigint, previous_status text) \
             WHERE transfer.id = ANY(CAST({} AS uuid[])) AND transfer.id = v.id \
                 AND transfer.status = v.previous_status \
                 AND (v.previous_status <> 'PENDING' OR (CASE WHEN v.status = 'EXPIRED' \
                     THEN transfer.expires_at <= now() ELSE transfer.expires_at > now() END)) \
                 AND transfer.refunded_amount + v.refunded \
                     <= COALESCE(v.captured_amount, transfer.captured_amount, transfer.amount) \
             RETURNING 1)",
            param(json(batch.changes)?.into()),
            param(uuid_array(&ids).into())
        ));
        "(SELECT count(*) FROM u)".to_owned()
    };
    if !batch.operations.is_empty() {
        parts.push(format!(
            "o AS (INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, available_after, \
                 incoming_held_after, transfer_id, counterparty_wallet_id, description, created_at) \
             SELECT x.id, x.wallet_id, x.seq, x.kind, x.amount, x.balance_after, x.available_after, \
                 x.incoming_held_after, x.transfer_id, x.counterparty_wallet_id, x.description, x.created_at \
             FROM json_to_recordset(CAST({} AS json)) AS x(id uuid, wallet_id uuid, seq bigint, \
                 kind text, amount bigint, balance_after bigint, available_after bigint, \
                 incoming_held_after bigint, transfer_id uuid, counterparty_wallet_id uuid, \
                 description text, created_at timestamptz))",
            param(json(batch.operations)?.into())
        ));
    }
    // One notice per NOTIFY; usually one. Referenced below, so it runs.
    let notify = match batch.notices {
        [] => String::new(),
        [one] => format!(
            ", pg_notify({}, {})",
            param(batch.channel.into()),
            param(one.clone().into())
        ),
        many => format!(
            ", (SELECT count(pg_notify({}, p)) FROM json_array_elements_text(CAST({} AS json)) AS p)",
            param(batch.channel.into()),
            param(json(many)?.into())
        ),
    };
    parts.push(format!(
        "b AS (INSERT INTO ledger_batch (id, xid) VALUES ({}, pg_current_xact_id()) RETURNING xid)",
        param(batch.id.into())
    ));
    // With the batch: its transaction id and the server's timeline; and no
    // statement timeout for the COMMIT that follows, which may wait for a
    // synchronous standby: a timeout there ends the wait with a success
    // and a WARNING, acknowledging a commit the standby may not have.
    let sql = format!(
        "WITH {} SELECT (SELECT count(*) FROM w), {ended}, \
         (SELECT CAST(CAST(xid AS text) AS bigint) FROM b), \
         substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8), \
         set_config('statement_timeout', '0', true){notify}",
        parts.join(", ")
    );
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the batch statement returned no row".into()))?;
    let updated: i64 = row.try_get_by_index(0)?;
    let ended: i64 = row.try_get_by_index(1)?;
    let xid: i64 = row.try_get_by_index(2)?;
    let timeline: String = row.try_get_by_index(3)?;
    let timeline = u32::from_str_radix(&timeline, 16)
        .map_err(|e| DbErr::Custom(format!("timeline {timeline}: {e}")))?;
    Ok((
        usize::try_from(updated).unwrap_or(0),
        usize::try_from(ended).unwrap_or(0),
        BatchMark {
            id: batch.id,
            xid,
            timeline,
        },
    ))
}

/// What a server says of a batch whose COMMIT's outcome was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchFate {
    Committed,
    /// Never committed, and never will: it may run again.
    NotCommitted,
    /// Not yet known (still in progress, or this server cannot tell).
    Unknown,
}

/// Asks the server behind `conn` (the primary now) what became of `mark`.
pub async fn batch_fate<C: ConnectionTrait>(conn: &C, mark: BatchMark) -> Result<BatchFate, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM ledger_batch WHERE id = $1), \
                 substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
            [mark.id.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    let stored: bool = row.try_get_by_index(0)?;
    let timeline: String = row.try_get_by_index(1)?;
    if stored {
        return Ok(BatchFate::Committed);
    }
    let timeline = u32::from_str_radix(&timeline, 16).unwrap_or(0);
    if timeline > mark.timeline {
        // A newer timeline forked before the batch committed, if it ever
        // did on the old one: that history is gone.
        return Ok(BatchFate::NotCommitted);
    }
    if timeline < mark.timeline {
        return Ok(BatchFate::Unknown);
    }
    // The same server (one primary per timeline): its transaction log
    // knows. Only here: elsewhere the xid may not exist yet.
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT CAST(pg_xact_status(CAST(CAST($1 AS text) AS xid8)) AS text)",
            [mark.xid.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row".into()))?;
    let status: Option<String> = row.try_get_by_index(0).ok();
    Ok(match status.as_deref() {
        Some("committed") => BatchFate::Committed,
        Some("aborted") => BatchFate::NotCommitted,
        _ => BatchFate::Unknown,
    })
}

/// `ledger_batch` rows from before `before` (their ids are UUIDv7, in time
/// order), at most `limit`: the batches no committer can still be settling.
pub async fn prune_batches<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(0);
    }
    let millis = u64::try_from(before.timestamp_millis()).unwrap_or(0);
    let bound = Uuid::new_v7(uuid::Timestamp::from_unix_time(
        millis / 1000,
        u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000,
        0,
        0,
    ));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let result = conn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "DELETE FROM ledger_batch WHERE id = ANY(ARRAY( \
             SELECT id FROM ledger_batch WHERE id < $1 ORDER BY id LIMIT $2))",
            [bound.into(), limit.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// SQLite: the same writes as plain statements (in process, each costs
/// microseconds; the commit's fsync is what a batch shares).
async fn write_plain<C: ConnectionTrait>(
    conn: &C,
    batch: &BatchWrite<'_>,
) -> Result<(usize, usize), DbErr> {
    for &(scope, key) in batch.released {
        idempotency_key::Entity::delete_by_id((scope.to_owned(), key.to_owned()))
            .exec(conn)
            .await?;
    }
    let mut updated = 0;
    for w in batch.wallets {
        let result = wallet::Entity::update_many()
            .col_expr(wallet::Column::Balance, Expr::value(w.balance))
            .col_expr(wallet::Column::Held, Expr::value(w.held))
            .col_expr(wallet::Column::OpenHolds, Expr::value(w.open_holds))
            .col_expr(wallet::Column::IncomingHeld, Expr::value(w.incoming_held))
            .col_expr(wallet::Column::LastSeq, Expr::value(w.last_seq))
            .col_expr(wallet::Column::UpdatedAt, Expr::value(w.updated_at))
            .filter(wallet::Column::Id.eq(w.id))
            .filter(Expr::col(wallet::Column::LastSeq).eq(w.previous_seq))
            .exec(conn)
            .await?;
        updated += usize::try_from(result.rows_affected).unwrap_or(0);
    }
    // SQLite allows 32,766 parameters per statement: 13 columns x 1,000 rows.
    for chunk in batch.transfers.chunks(1_000) {
        transfer::Entity::insert_many(chunk.iter().cloned().map(transfer::ActiveModel::from))
            .exec_without_returning(conn)
            .await?;
    }
    let mut ended = 0;
    for c in batch.changes {
        let result = conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE transfer SET status = $1, captured_amount = $2, settled_at = $3, \
                     refunded_amount = refunded_amount + $4 \
                 WHERE id = $5 AND status = $6 \
                     AND ($6 <> 'PENDING' OR (CASE WHEN $1 = 'EXPIRED' \
                         THEN expires_at <= $7 ELSE expires_at > $7 END)) \
                     AND refunded_amount + $4 <= COALESCE($2, captured_amount, amount)",
                [
                    c.status.as_str().into(),
                    c.captured_amount.into(),
                    c.settled_at.into(),
                    c.refunded.into(),
                    c.id.into(),
                    c.previous_status.as_str().into(),
                    batch.now.into(),
                ],
            ))
            .await?;
        ended += usize::try_from(result.rows_affected()).unwrap_or(0);
    }
    // 11 columns x 1,000 rows stays within SQLite's 32,766 parameters.
    for chunk in batch.operations.chunks(1_000) {
        operation::Entity::insert_many(chunk.iter().cloned().map(operation::ActiveModel::from))
            .exec_without_returning(conn)
            .await?;
    }
    Ok((updated, ended))
}

/// Deletes up to `limit` idempotency keys created before `before`, oldest
/// first, in one short statement; returns how many went. Called in a loop
/// by the ledger's pruner, so that no single transaction holds many rows.
pub async fn prune_keys<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<u64, DbErr> {
    let sql = if conn.get_database_backend() == DbBackend::Postgres {
        "DELETE FROM idempotency_key WHERE ctid = ANY(ARRAY( \
         SELECT ctid FROM idempotency_key WHERE created_at < $1 ORDER BY created_at LIMIT $2))"
    } else {
        "DELETE FROM idempotency_key WHERE rowid IN ( \
         SELECT rowid FROM idempotency_key WHERE created_at < $1 ORDER BY created_at LIMIT $2)"
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let result = conn
        .execute_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [before.into(), limit.into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Pending transfers past their deadline (on the database's clock),
/// soonest first, at most `limit`: what the hold sweeper expires.
pub async fn overdue_holds<C: ConnectionTrait>(conn: &C, limit: u64) -> Result<Vec<Uuid>, DbErr> {
    let backend = conn.get_database_backend();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let (sql, values): (&str, Vec<sea_orm::Value>) = if backend == DbBackend::Postgres {
        (
            "SELECT id FROM transfer WHERE status = 'PENDING' AND expires_at <= now() \
             ORDER BY expires_at LIMIT $1",
            vec![limit.into()],
        )
    } else {
        (
            "SELECT id FROM transfer WHERE status = 'PENDING' AND expires_at <= $1 \
             ORDER BY expires_at LIMIT $2",
            vec![Utc::now().into(), limit.into()],
        )
    };
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    rows.iter()
        .map(|row| row.try_get_by_index::<Uuid>(0))
        .collect()
}

/// A used idempotency key's record.
pub async fn key_record<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
) -> Result<Option<idempotency_key::Model>, DbErr> {
    idempotency_key::Entity::find_by_id((scope.to_owned(), key.to_owned()))
        .one(conn)
        .await
}

/// What an entry posted, read back for a replay: its transfer (if any) and
/// its ledger rows (debit first), found by transfer or by the first row.
pub async fn posted_rows<C: ConnectionTrait>(
    conn: &C,
    transfer_id: Option<Uuid>,
    operation_id: Option<Uuid>,
) -> Result<(Option<transfer::Model>, Vec<operation::Model>), DbErr> {
    let (transfer, mut operations) = match (transfer_id, operation_id) {
        (Some(id), _) => (
            transfer::Entity::find_by_id(id).one(conn).await?,
            operation::Entity::find()
                .filter(operation::Column::TransferId.eq(id))
                .all(conn)
                .await?,
        ),
        (None, Some(id)) => (None, operation::Entity::find_by_id(id).all(conn).await?),
        (None, None) => (None, Vec::new()),
    };
    operations.sort_by_key(|op| (op.kind != OperationKind::TransferOut, op.created_at));
    Ok((transfer, operations))
}

#[derive(Serialize)]
struct Released<'a> {
    scope: &'a str,
    key: &'a str,
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, DbErr> {
    serde_json::to_string(value).map_err(|e| DbErr::Custom(format!("encoding a batch: {e}")))
}

/// A PostgreSQL array literal of UUIDs (`{a,b}`): UUIDs need no quoting.
fn uuid_array(ids: &[Uuid]) -> String {
    let mut list = String::with_capacity(2 + ids.len() * 37);
    list.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(&id.to_string());
    }
    list.push('}');
    list
}
