//! The SQL of the posting engine: one batch of ledger entries per
//! transaction.
//!
//! A batch claims its idempotency keys, locks its wallets in ascending id
//! order (one statement for both, unless it acts on stored transfers, which
//! are locked in between), then (once the ledger has settled the entries in
//! memory) writes everything in one statement: released claims, wallet
//! balances, transfer and ledger rows, and the NOTIFY. On PostgreSQL the
//! rows travel as typed arrays, one per column, expanded by `unnest`, so a
//! statement's text does not depend on the batch's size (a few variants,
//! each prepared once per connection); SQLite, in process, runs plain
//! statements.

use chrono::{DateTime, Utc};
use entity::operation::{self, OperationKind};
use entity::transfer::TransferStatus;
use entity::{idempotency_key, transfer, wallet, wallet_status_change};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, Statement,
};
use uuid::Uuid;

use crate::domain::fingerprint::Fingerprint;

/// An idempotency key to claim, and what it will stand for.
#[derive(Debug)]
pub struct KeyClaim<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    /// What the key is stored with, and what a stored one must match.
    pub fingerprint: &'a Fingerprint,
    pub transfer_id: Option<Uuid>,
    pub operation_id: Option<Uuid>,
}

/// A wallet's new state (all but its id, owner, currency and creation),
/// written only if its `last_seq` is still `previous_seq` (it is: the row
/// is locked; this proves it).
#[derive(Clone, Debug)]
pub struct WalletUpdate<'a> {
    pub wallet: &'a wallet::Model,
    pub previous_seq: i64,
}

/// A stored transfer ended or refunded. Written only if it is still what
/// the batch locked (`previous_status`), a pending one is still (or, for
/// an expiry, no longer) before its deadline on the database's clock, and
/// its refunds stay within what was captured.
#[derive(Clone, Debug)]
pub struct TransferUpdate {
    pub id: Uuid,
    pub status: TransferStatus,
    pub captured_amount: Option<i64>,
    pub settled_at: Option<DateTime<Utc>>,
    /// Cents added to `refunded_amount`.
    pub refunded: i64,
    pub previous_status: TransferStatus,
}

/// A ledger row's metadata pair, indexed for `operations(filter:
/// {metadata})`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationTag<'a> {
    pub wallet_id: Uuid,
    pub key: &'a str,
    pub value: &'a str,
    pub seq: i64,
}

/// A transfer's metadata pair for one of its parties, indexed for
/// `transfers(filter: {metadata})`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferTag<'a> {
    pub wallet_id: Uuid,
    pub key: &'a str,
    pub value: &'a str,
    pub created_at: DateTime<Utc>,
    pub transfer_id: Uuid,
}

/// Everything one batch writes.
pub struct BatchWrite<'a> {
    /// Claims of refused entries, undone.
    pub released: &'a [(&'a str, &'a str)],
    pub wallets: &'a [WalletUpdate<'a>],
    pub transfers: &'a [transfer::Model],
    pub changes: &'a [TransferUpdate],
    /// The database's clock as the batch read it (SQLite: this process's).
    pub now: DateTime<Utc>,
    pub operations: &'a [operation::Model],
    pub operation_tags: &'a [OperationTag<'a>],
    pub transfer_tags: &'a [TransferTag<'a>],
    pub status_changes: &'a [wallet_status_change::Model],
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
        let rows = conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                CLAIM,
                claim_values(claims),
            ))
            .await?;
        won_keys(&rows)?
    } else {
        // One statement per 1,000 claims (6 parameters each).
        let now = Utc::now();
        let mut won = Won::with_capacity(claims.len());
        for chunk in claims.chunks(1_000) {
            let rows = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 6);
            for c in chunk {
                values.extend([
                    c.scope.into(),
                    c.key.into(),
                    c.fingerprint.stored().into(),
                    c.transfer_id.into(),
                    c.operation_id.into(),
                    now.into(),
                ]);
            }
            let rows = conn
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!(
                        "INSERT INTO idempotency_key (scope, key, fingerprint, transfer_id, operation_id, created_at) \
                         VALUES {rows} ON CONFLICT DO NOTHING RETURNING scope, key"
                    ),
                    values,
                ))
                .await?;
            won.extend(won_keys(&rows)?);
        }
        won
    };
    judge_claims(conn, claims, &won).await
}

/// The (scope, key) pairs a claim's INSERT took.
type Won = std::collections::HashSet<(String, String)>;

/// The pairs an `INSERT ... RETURNING scope, key` returned.
fn won_keys(rows: &[sea_orm::QueryResult]) -> Result<Won, DbErr> {
    rows.iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// What each claim found, from whether its INSERT won: a key it did not
/// win was used before, by this request (same fingerprint) or another.
async fn judge_claims<C: ConnectionTrait>(
    conn: &C,
    claims: &[KeyClaim<'_>],
    won: &Won,
) -> Result<Vec<Claimed>, DbErr> {
    let won: Vec<bool> = claims
        .iter()
        .map(|c| won.contains(&(c.scope.to_owned(), c.key.to_owned())))
        .collect();
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
            false
                if stored
                    .get(&(c.scope, c.key))
                    .is_some_and(|stored| c.fingerprint.matches(stored)) =>
            {
                Claimed::Used
            }
            false => Claimed::Reused,
        })
        .collect())
}

/// PostgreSQL, for a batch that acts on no stored transfer: claims its
/// keys and then locks and reads `wallet_ids` (as `lock_wallets`) in one
/// statement, one round trip fewer than `claim_keys` and `lock_wallets`.
/// The claims are aggregated before the first wallet is locked, so every
/// batch still takes keys before wallets. The wallets of entries whose key
/// turns out used are locked too, for nothing but no harm: that is a retry.
pub async fn claim_keys_and_lock_wallets<C: ConnectionTrait>(
    conn: &C,
    claims: &[KeyClaim<'_>],
    wallet_ids: &[Uuid],
) -> Result<(Vec<Claimed>, Vec<wallet::Model>), DbErr> {
    if claims.is_empty() || conn.get_database_backend() != DbBackend::Postgres {
        let claimed = claim_keys(conn, claims).await?;
        return Ok((claimed, lock_wallets(conn, wallet_ids).await?));
    }
    let mut sorted = wallet_ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut values = claim_values(claims).to_vec();
    values.push(sorted.into());
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "WITH c AS ({CLAIM}) \
                 SELECT k.scopes, k.keys, w.* \
                 FROM (SELECT array_agg(c.scope) AS scopes, array_agg(c.key) AS keys FROM c) k \
                 LEFT JOIN LATERAL (SELECT * FROM wallet WHERE id = ANY(CAST($6 AS uuid[])) \
                     ORDER BY id FOR UPDATE) w ON true"
            ),
            values,
        ))
        .await?;
    let mut won = Won::new();
    let mut wallets = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        if i == 0 {
            let scopes = row.try_get_by_index::<Option<Vec<String>>>(0)?;
            let keys = row.try_get_by_index::<Option<Vec<String>>>(1)?;
            won.extend(scopes.into_iter().flatten().zip(keys.into_iter().flatten()));
        }
        if row.try_get::<Option<Uuid>>("", "id")?.is_some() {
            wallets.push(wallet::Model::from_query_result(row, "")?);
        }
    }
    Ok((judge_claims(conn, claims, &won).await?, wallets))
}

/// The INSERT of a batch's claims (PostgreSQL), in (scope, key) order, from
/// the typed arrays `$1` to `$5` of `claim_values`.
const CLAIM: &str = "INSERT INTO idempotency_key (scope, key, fingerprint, transfer_id, operation_id, created_at) \
    SELECT k.scope, k.key, k.fingerprint, \
        NULLIF(k.transfer_id, CAST('00000000-0000-0000-0000-000000000000' AS uuid)), \
        NULLIF(k.operation_id, CAST('00000000-0000-0000-0000-000000000000' AS uuid)), now() \
    FROM unnest(CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS uuid[]), \
        CAST($5 AS uuid[])) AS k(scope, key, fingerprint, transfer_id, operation_id) \
    ORDER BY k.scope, k.key \
    ON CONFLICT DO NOTHING RETURNING scope, key";

fn claim_values(claims: &[KeyClaim<'_>]) -> [sea_orm::Value; 5] {
    [
        texts(claims.iter().map(|c| c.scope)),
        texts(claims.iter().map(|c| c.key)),
        texts(claims.iter().map(|c| c.fingerprint.stored())),
        array(claims.iter().map(|c| NULLS.of_uuid(c.transfer_id))),
        array(claims.iter().map(|c| NULLS.of_uuid(c.operation_id))),
    ]
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
        idempotency_key::Entity::find()
            .from_raw_sql(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT i.* FROM unnest(CAST($1 AS text[]), CAST($2 AS text[])) AS r(scope, key) \
                 JOIN idempotency_key i ON i.scope = r.scope AND i.key = r.key",
                [
                    texts(claims.iter().map(|c| c.scope)),
                    texts(claims.iter().map(|c| c.key)),
                ],
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
            "SELECT * FROM wallet WHERE id = ANY(CAST($1 AS uuid[])) ORDER BY id FOR UPDATE",
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
/// Rows travel as typed arrays, one per column, in binary and zipped by
/// `unnest`: nothing is parsed from text (JSON documents cost the database
/// about a tenth of a batch's time, most of it reading timestamps back from
/// text). The driver's arrays cannot hold NULL, so a nullable column is
/// sent with a stand-in that no real value takes (`NULLS`) and turned back
/// into NULL by `NULLIF`.
///
/// The joins name their index (`id = ANY(...)`, a LATERAL lookup by
/// primary key): the planner cannot see how few rows an array holds, and
/// would otherwise hash-join against a full scan of `wallet` or
/// `idempotency_key`.
async fn write_postgres<C: ConnectionTrait>(
    conn: &C,
    batch: &BatchWrite<'_>,
) -> Result<(usize, usize, BatchMark), DbErr> {
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(40);
    let mut param = |value: sea_orm::Value| {
        values.push(value);
        format!("${}", values.len())
    };
    let mut parts: Vec<String> = Vec::with_capacity(5);
    if !batch.released.is_empty() {
        let scopes = param(texts(batch.released.iter().map(|r| r.0)));
        let keys = param(texts(batch.released.iter().map(|r| r.1)));
        parts.push(format!(
            "released AS (DELETE FROM idempotency_key WHERE ctid = ANY(ARRAY( \
             SELECT k.ctid FROM unnest(CAST({scopes} AS text[]), CAST({keys} AS text[])) AS r(scope, key) \
             JOIN LATERAL (SELECT ctid FROM idempotency_key i \
                 WHERE i.scope = r.scope AND i.key = r.key LIMIT 1) k ON true)))"
        ));
    }
    let (w, previous): (Vec<&wallet::Model>, Vec<i64>) = batch
        .wallets
        .iter()
        .map(|u| (u.wallet, u.previous_seq))
        .unzip();
    let ids = param(array(w.iter().map(|w| w.id)));
    parts.push(format!(
        "w AS (UPDATE wallet SET balance = v.balance, held = v.held, open_holds = v.open_holds, \
             incoming_held = v.incoming_held, last_seq = v.last_seq, updated_at = v.updated_at, \
             status = v.status, max_transfer_amount = {}, daily_outgoing_amount = {}, \
             daily_outgoing_count = {}, outgoing_day = v.outgoing_day, \
             outgoing_today = v.outgoing_today, outgoing_count_today = v.outgoing_count_today, \
             credit_limit = v.credit_limit \
         FROM unnest(CAST({ids} AS uuid[]), CAST({} AS bigint[]), CAST({} AS bigint[]), \
                 CAST({} AS integer[]), CAST({} AS bigint[]), CAST({} AS bigint[]), \
                 CAST({} AS timestamptz[]), CAST({} AS bigint[]), CAST({} AS text[]), \
                 CAST({} AS bigint[]), CAST({} AS bigint[]), CAST({} AS bigint[]), \
                 CAST({} AS bigint[]), CAST({} AS bigint[]), CAST({} AS bigint[]), \
                 CAST({} AS bigint[])) \
             AS v(id, balance, held, open_holds, incoming_held, last_seq, updated_at, previous_seq, \
                 status, max_transfer_amount, daily_outgoing_amount, daily_outgoing_count, \
                 outgoing_day, outgoing_today, outgoing_count_today, credit_limit) \
         WHERE wallet.id = ANY(CAST({ids} AS uuid[])) AND wallet.id = v.id \
             AND wallet.last_seq = v.previous_seq RETURNING 1)",
        NULLS.bigint("v.max_transfer_amount"),
        NULLS.bigint("v.daily_outgoing_amount"),
        NULLS.bigint("v.daily_outgoing_count"),
        param(array(w.iter().map(|w| w.balance))),
        param(array(w.iter().map(|w| w.held))),
        param(array(w.iter().map(|w| w.open_holds))),
        param(array(w.iter().map(|w| w.incoming_held))),
        param(array(w.iter().map(|w| w.last_seq))),
        param(array(w.iter().map(|w| w.updated_at))),
        param(previous.into()),
        param(texts(w.iter().map(|w| w.status.as_str()))),
        param(array(w.iter().map(|w| NULLS.of_bigint(w.max_transfer_amount)))),
        param(array(w.iter().map(|w| NULLS.of_bigint(w.daily_outgoing_amount)))),
        param(array(w.iter().map(|w| NULLS.of_bigint(w.daily_outgoing_count)))),
        param(array(w.iter().map(|w| w.outgoing_day))),
        param(array(w.iter().map(|w| w.outgoing_today))),
        param(array(w.iter().map(|w| w.outgoing_count_today))),
        param(array(w.iter().map(|w| w.credit_limit))),
    ));
    if !batch.transfers.is_empty() {
        let t = batch.transfers;
        parts.push(format!(
            "t AS (INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, \
                 created_at, kind, status, captured_amount, refunded_amount, refund_of, expires_at, \
                 settled_at, metadata) \
             SELECT x.id, x.from_wallet_id, x.to_wallet_id, x.amount, {}, x.created_at, \
                 x.kind, x.status, {}, x.refunded_amount, {}, {}, {}, {} \
             FROM unnest(CAST({} AS uuid[]), CAST({} AS uuid[]), CAST({} AS uuid[]), \
                     CAST({} AS bigint[]), CAST({} AS text[]), CAST({} AS boolean[]), \
                     CAST({} AS timestamptz[]), CAST({} AS text[]), CAST({} AS text[]), \
                     CAST({} AS bigint[]), CAST({} AS bigint[]), CAST({} AS uuid[]), \
                     CAST({} AS timestamptz[]), CAST({} AS timestamptz[]), CAST({} AS text[]), \
                     CAST({} AS boolean[])) \
                 AS x(id, from_wallet_id, to_wallet_id, amount, description, described, created_at, \
                     kind, status, captured_amount, refunded_amount, refund_of, expires_at, settled_at, \
                     metadata, tagged))",
            NULLS.text("x.description", "x.described"),
            NULLS.bigint("x.captured_amount"),
            NULLS.uuid("x.refund_of"),
            NULLS.time("x.expires_at"),
            NULLS.time("x.settled_at"),
            NULLS.text("x.metadata", "x.tagged"),
            param(array(t.iter().map(|t| t.id))),
            param(array(t.iter().map(|t| t.from_wallet_id))),
            param(array(t.iter().map(|t| t.to_wallet_id))),
            param(array(t.iter().map(|t| t.amount))),
            param(texts(t.iter().map(|t| t.description.as_deref().unwrap_or_default()))),
            param(array(t.iter().map(|t| t.description.is_some()))),
            param(array(t.iter().map(|t| t.created_at))),
            param(texts(t.iter().map(|t| t.kind.as_str()))),
            param(texts(t.iter().map(|t| t.status.as_str()))),
            param(array(t.iter().map(|t| NULLS.of_bigint(t.captured_amount)))),
            param(array(t.iter().map(|t| t.refunded_amount))),
            param(array(t.iter().map(|t| NULLS.of_uuid(t.refund_of)))),
            param(array(t.iter().map(|t| NULLS.of_time(t.expires_at)))),
            param(array(t.iter().map(|t| NULLS.of_time(t.settled_at)))),
            param(texts(t.iter().map(|t| t.metadata.as_deref().unwrap_or_default()))),
            param(array(t.iter().map(|t| t.metadata.is_some()))),
        ));
    }
    let ended = if batch.changes.is_empty() {
        "CAST(0 AS BIGINT)".to_owned()
    } else {
        let c = batch.changes;
        let ids = param(array(c.iter().map(|c| c.id)));
        // The conditions the settlement checked, checked again by the
        // statement that changes the row: still as locked, a pending one
        // still before its deadline (an expiry: past it) on this clock,
        // refunds within what was captured.
        parts.push(format!(
            "u AS (UPDATE transfer SET status = v.status, captured_amount = {captured}, \
                 settled_at = {settled}, refunded_amount = transfer.refunded_amount + v.refunded \
             FROM unnest(CAST({ids} AS uuid[]), CAST({} AS text[]), CAST({} AS bigint[]), \
                     CAST({} AS timestamptz[]), CAST({} AS bigint[]), CAST({} AS text[])) \
                 AS v(id, status, captured_amount, settled_at, refunded, previous_status) \
             WHERE transfer.id = ANY(CAST({ids} AS uuid[])) AND transfer.id = v.id \
                 AND transfer.status = v.previous_status \
                 AND (v.previous_status <> 'PENDING' OR (CASE WHEN v.status = 'EXPIRED' \
                     THEN transfer.expires_at <= now() ELSE transfer.expires_at > now() END)) \
                 AND transfer.refunded_amount + v.refunded \
                     <= COALESCE({captured}, transfer.captured_amount, transfer.amount) \
             RETURNING 1)",
            param(texts(c.iter().map(|c| c.status.as_str()))),
            param(array(c.iter().map(|c| NULLS.of_bigint(c.captured_amount)))),
            param(array(c.iter().map(|c| NULLS.of_time(c.settled_at)))),
            param(array(c.iter().map(|c| c.refunded))),
            param(texts(c.iter().map(|c| c.previous_status.as_str()))),
            captured = NULLS.bigint("v.captured_amount"),
            settled = NULLS.time("v.settled_at"),
        ));
        "(SELECT count(*) FROM u)".to_owned()
    };
    if !batch.operations.is_empty() {
        let o = batch.operations;
        parts.push(format!(
            "o AS (INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, available_after, \
                 incoming_held_after, transfer_id, counterparty_wallet_id, description, created_at, metadata) \
             SELECT x.id, x.wallet_id, x.seq, x.kind, x.amount, x.balance_after, {}, {}, {}, {}, {}, \
                 x.created_at, {} \
             FROM unnest(CAST({} AS uuid[]), CAST({} AS uuid[]), CAST({} AS bigint[]), \
                     CAST({} AS text[]), CAST({} AS bigint[]), CAST({} AS bigint[]), \
                     CAST({} AS bigint[]), CAST({} AS bigint[]), CAST({} AS uuid[]), \
                     CAST({} AS uuid[]), CAST({} AS text[]), CAST({} AS boolean[]), \
                     CAST({} AS timestamptz[]), CAST({} AS text[]), CAST({} AS boolean[])) \
                 AS x(id, wallet_id, seq, kind, amount, balance_after, available_after, \
                     incoming_held_after, transfer_id, counterparty_wallet_id, description, \
                     described, created_at, metadata, tagged))",
            NULLS.bigint("x.available_after"),
            NULLS.bigint("x.incoming_held_after"),
            NULLS.uuid("x.transfer_id"),
            NULLS.uuid("x.counterparty_wallet_id"),
            NULLS.text("x.description", "x.described"),
            NULLS.text("x.metadata", "x.tagged"),
            param(array(o.iter().map(|o| o.id))),
            param(array(o.iter().map(|o| o.wallet_id))),
            param(array(o.iter().map(|o| o.seq))),
            param(o.iter().map(|o| o.kind.to_value()).collect::<Vec<String>>().into()),
            param(array(o.iter().map(|o| o.amount))),
            param(array(o.iter().map(|o| o.balance_after))),
            param(array(o.iter().map(|o| NULLS.of_bigint(o.available_after)))),
            param(array(o.iter().map(|o| NULLS.of_bigint(o.incoming_held_after)))),
            param(array(o.iter().map(|o| NULLS.of_uuid(o.transfer_id)))),
            param(array(o.iter().map(|o| NULLS.of_uuid(o.counterparty_wallet_id)))),
            param(texts(o.iter().map(|o| o.description.as_deref().unwrap_or_default()))),
            param(array(o.iter().map(|o| o.description.is_some()))),
            param(array(o.iter().map(|o| o.created_at))),
            param(texts(o.iter().map(|o| o.metadata.as_deref().unwrap_or_default()))),
            param(array(o.iter().map(|o| o.metadata.is_some()))),
        ));
    }
    if !batch.operation_tags.is_empty() {
        let g = batch.operation_tags;
        parts.push(format!(
            "og AS (INSERT INTO operation_tag (wallet_id, key, value, seq) \
             SELECT * FROM unnest(CAST({} AS uuid[]), CAST({} AS text[]), CAST({} AS text[]), \
                 CAST({} AS bigint[])))",
            param(array(g.iter().map(|g| g.wallet_id))),
            param(texts(g.iter().map(|g| g.key))),
            param(texts(g.iter().map(|g| g.value))),
            param(array(g.iter().map(|g| g.seq))),
        ));
    }
    if !batch.status_changes.is_empty() {
        let c = batch.status_changes;
        parts.push(format!(
            "sc AS (INSERT INTO wallet_status_change (id, wallet_id, status, reason, created_at) \
             SELECT * FROM unnest(CAST({} AS uuid[]), CAST({} AS uuid[]), CAST({} AS text[]), \
                 CAST({} AS text[]), CAST({} AS timestamptz[])))",
            param(array(c.iter().map(|c| c.id))),
            param(array(c.iter().map(|c| c.wallet_id))),
            param(texts(c.iter().map(|c| c.status.as_str()))),
            param(texts(c.iter().map(|c| c.reason.as_str()))),
            param(array(c.iter().map(|c| c.created_at))),
        ));
    }
    if !batch.transfer_tags.is_empty() {
        let g = batch.transfer_tags;
        parts.push(format!(
            "tg AS (INSERT INTO transfer_tag (wallet_id, key, value, created_at, transfer_id) \
             SELECT * FROM unnest(CAST({} AS uuid[]), CAST({} AS text[]), CAST({} AS text[]), \
                 CAST({} AS timestamptz[]), CAST({} AS uuid[])))",
            param(array(g.iter().map(|g| g.wallet_id))),
            param(texts(g.iter().map(|g| g.key))),
            param(texts(g.iter().map(|g| g.value))),
            param(array(g.iter().map(|g| g.created_at))),
            param(array(g.iter().map(|g| g.transfer_id))),
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
            ", (SELECT count(pg_notify({}, p)) FROM unnest(CAST({} AS text[])) AS p)",
            param(batch.channel.into()),
            param(many.to_vec().into())
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
    // One statement for all the wallets (a statement is a round trip to
    // the driver's SQLite thread): 16 parameters a row, 1,000 rows at most
    // within SQLite's 32,766.
    let mut updated = 0;
    for chunk in batch.wallets.chunks(1_000) {
        let rows = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 16);
        for u in chunk {
            let w = u.wallet;
            values.extend([
                w.id.into(),
                w.balance.into(),
                w.held.into(),
                w.open_holds.into(),
                w.incoming_held.into(),
                w.last_seq.into(),
                w.updated_at.into(),
                u.previous_seq.into(),
                w.status.as_str().into(),
                w.max_transfer_amount.into(),
                w.daily_outgoing_amount.into(),
                w.daily_outgoing_count.into(),
                w.outgoing_day.into(),
                w.outgoing_today.into(),
                w.outgoing_count_today.into(),
                w.credit_limit.into(),
            ]);
        }
        let result = conn
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                format!(
                    "WITH v(id, balance, held, open_holds, incoming_held, last_seq, updated_at, previous_seq, \
                         status, max_transfer_amount, daily_outgoing_amount, daily_outgoing_count, \
                         outgoing_day, outgoing_today, outgoing_count_today, credit_limit) \
                     AS (VALUES {rows}) \
                     UPDATE wallet SET balance = v.balance, held = v.held, open_holds = v.open_holds, \
                         incoming_held = v.incoming_held, last_seq = v.last_seq, updated_at = v.updated_at, \
                         status = v.status, max_transfer_amount = v.max_transfer_amount, \
                         daily_outgoing_amount = v.daily_outgoing_amount, \
                         daily_outgoing_count = v.daily_outgoing_count, outgoing_day = v.outgoing_day, \
                         outgoing_today = v.outgoing_today, outgoing_count_today = v.outgoing_count_today, \
                         credit_limit = v.credit_limit \
                     FROM v WHERE wallet.id = v.id AND wallet.last_seq = v.previous_seq"
                ),
                values,
            ))
            .await?;
        updated += usize::try_from(result.rows_affected()).unwrap_or(0);
    }
    for change in batch.status_changes {
        wallet_status_change::ActiveModel::from(change.clone())
            .insert(conn)
            .await?;
    }
    // SQLite allows 32,766 parameters per statement: 14 columns x 1,000 rows.
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
    // 13 columns x 1,000 rows stays within SQLite's 32,766 parameters.
    for chunk in batch.operations.chunks(1_000) {
        operation::Entity::insert_many(chunk.iter().cloned().map(operation::ActiveModel::from))
            .exec_without_returning(conn)
            .await?;
    }
    for chunk in batch.operation_tags.chunks(1_000) {
        let rows = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let values = chunk.iter().flat_map(|g| {
            [
                g.wallet_id.into(),
                g.key.into(),
                g.value.into(),
                g.seq.into(),
            ]
        });
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("INSERT INTO operation_tag (wallet_id, key, value, seq) VALUES {rows}"),
            values.collect::<Vec<sea_orm::Value>>(),
        ))
        .await?;
    }
    for chunk in batch.transfer_tags.chunks(1_000) {
        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let values = chunk.iter().flat_map(|g| {
            [
                g.wallet_id.into(),
                g.key.into(),
                g.value.into(),
                g.created_at.into(),
                g.transfer_id.into(),
            ]
        });
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "INSERT INTO transfer_tag (wallet_id, key, value, created_at, transfer_id) VALUES {rows}"
            ),
            values.collect::<Vec<sea_orm::Value>>(),
        ))
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

/// Stand-ins for NULL in typed arrays, which the driver sends without NULL
/// elements: values no column of a batch ever takes (ids are UUIDv7;
/// amounts are far from the 64-bit minimum; times come from the
/// database's clock, never 1970). Text says whether it is there in a
/// parallel boolean array, as any string is a valid description.
struct Nulls;

const NULLS: Nulls = Nulls;

impl Nulls {
    fn of_uuid(&self, value: Option<Uuid>) -> Uuid {
        value.unwrap_or(Uuid::nil())
    }
    fn of_bigint(&self, value: Option<i64>) -> i64 {
        value.unwrap_or(i64::MIN)
    }
    fn of_time(&self, value: Option<DateTime<Utc>>) -> DateTime<Utc> {
        value.unwrap_or(DateTime::UNIX_EPOCH)
    }
    fn uuid(&self, column: &str) -> String {
        format!("NULLIF({column}, CAST('00000000-0000-0000-0000-000000000000' AS uuid))")
    }
    fn bigint(&self, column: &str) -> String {
        format!("NULLIF({column}, CAST('-9223372036854775808' AS bigint))")
    }
    fn time(&self, column: &str) -> String {
        format!("NULLIF({column}, CAST('epoch' AS timestamptz))")
    }
    fn text(&self, column: &str, present: &str) -> String {
        format!("CASE WHEN {present} THEN {column} END")
    }
}

/// A typed array parameter (`uuid[]`, `bigint[]`, ...).
fn array<T>(values: impl Iterator<Item = T>) -> sea_orm::Value
where
    Vec<T>: Into<sea_orm::Value>,
{
    values.collect::<Vec<T>>().into()
}

/// A `text[]` parameter.
fn texts<'a>(values: impl Iterator<Item = &'a str>) -> sea_orm::Value {
    values.map(str::to_owned).collect::<Vec<String>>().into()
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
