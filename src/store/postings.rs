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
use entity::{idempotency_key, transfer, wallet};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    Statement, TryInsertResult,
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
    pub last_seq: i64,
    pub updated_at: DateTime<Utc>,
    pub previous_seq: i64,
}

/// Everything one batch writes.
pub struct BatchWrite<'a> {
    /// Claims of refused entries, undone.
    pub released: &'a [(&'a str, &'a str)],
    pub wallets: &'a [WalletUpdate],
    pub transfers: &'a [transfer::Model],
    pub operations: &'a [operation::Model],
    /// NOTIFY payloads on `channel`, delivered at commit (PostgreSQL only).
    pub channel: &'a str,
    pub notices: &'a [String],
}

/// Claims `claims`, in (scope, key) order so that two batches claiming the
/// same keys queue instead of deadlocking. Returns, for each claim, whether
/// it is this batch's; a key held by an uncommitted transaction is waited
/// for (its holder commits: taken; rolls back: ours).
pub async fn claim_keys<C: ConnectionTrait>(
    conn: &C,
    claims: &[KeyClaim<'_>],
) -> Result<Vec<bool>, DbErr> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    if conn.get_database_backend() == DbBackend::Postgres {
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
        return Ok(claims
            .iter()
            .map(|c| won.contains(&(c.scope.to_owned(), c.key.to_owned())))
            .collect());
    }
    let now = Utc::now();
    let mut claimed = Vec::with_capacity(claims.len());
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
        claimed.push(matches!(result, TryInsertResult::Inserted(n) if n > 0));
    }
    Ok(claimed)
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
            "SELECT id, client_id, currency, balance, last_seq, created_at, updated_at FROM wallet \
             WHERE id = ANY(CAST($1 AS uuid[])) ORDER BY id FOR UPDATE",
            [list.into()],
        ))
        .all(conn)
        .await
}

/// Writes a settled batch. Fails (and the caller rolls back) if a wallet
/// changed since it was locked, which would be a bug.
pub async fn write_batch<C: ConnectionTrait>(
    conn: &C,
    batch: &BatchWrite<'_>,
) -> Result<(), DbErr> {
    let updated = if conn.get_database_backend() == DbBackend::Postgres {
        write_postgres(conn, batch).await?
    } else {
        write_plain(conn, batch).await?
    };
    if updated != batch.wallets.len() {
        return Err(DbErr::Custom(format!(
            "{} of {} wallets changed while locked",
            batch.wallets.len() - updated.min(batch.wallets.len()),
            batch.wallets.len()
        )));
    }
    Ok(())
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
) -> Result<usize, DbErr> {
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(7);
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
        "w AS (UPDATE wallet SET balance = v.balance, last_seq = v.last_seq, updated_at = v.updated_at \
         FROM json_to_recordset(CAST({} AS json)) \
             AS v(id uuid, balance bigint, last_seq bigint, updated_at timestamptz, previous_seq bigint) \
         WHERE wallet.id = ANY(CAST({} AS uuid[])) AND wallet.id = v.id \
             AND wallet.last_seq = v.previous_seq RETURNING 1)",
        param(json(batch.wallets)?.into()),
        param(uuid_array(&wallet_ids).into())
    ));
    if !batch.transfers.is_empty() {
        parts.push(format!(
            "t AS (INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, created_at) \
             SELECT x.id, x.from_wallet_id, x.to_wallet_id, x.amount, x.description, x.created_at \
             FROM json_to_recordset(CAST({} AS json)) AS x(id uuid, from_wallet_id uuid, \
                 to_wallet_id uuid, amount bigint, description text, created_at timestamptz))",
            param(json(batch.transfers)?.into())
        ));
    }
    if !batch.operations.is_empty() {
        parts.push(format!(
            "o AS (INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, transfer_id, \
                 counterparty_wallet_id, description, created_at) \
             SELECT x.id, x.wallet_id, x.seq, x.kind, x.amount, x.balance_after, x.transfer_id, \
                 x.counterparty_wallet_id, x.description, x.created_at \
             FROM json_to_recordset(CAST({} AS json)) AS x(id uuid, wallet_id uuid, seq bigint, \
                 kind text, amount bigint, balance_after bigint, transfer_id uuid, \
                 counterparty_wallet_id uuid, description text, created_at timestamptz))",
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
    let sql = format!(
        "WITH {} SELECT (SELECT count(*) FROM w){notify}",
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
    Ok(usize::try_from(updated).unwrap_or(0))
}

/// SQLite: the same writes as plain statements (in process, each costs
/// microseconds; the commit's fsync is what a batch shares).
async fn write_plain<C: ConnectionTrait>(conn: &C, batch: &BatchWrite<'_>) -> Result<usize, DbErr> {
    for &(scope, key) in batch.released {
        idempotency_key::Entity::delete_by_id((scope.to_owned(), key.to_owned()))
            .exec(conn)
            .await?;
    }
    let mut updated = 0;
    for w in batch.wallets {
        let result = wallet::Entity::update_many()
            .col_expr(wallet::Column::Balance, Expr::value(w.balance))
            .col_expr(wallet::Column::LastSeq, Expr::value(w.last_seq))
            .col_expr(wallet::Column::UpdatedAt, Expr::value(w.updated_at))
            .filter(wallet::Column::Id.eq(w.id))
            .filter(Expr::col(wallet::Column::LastSeq).eq(w.previous_seq))
            .exec(conn)
            .await?;
        updated += usize::try_from(result.rows_affected).unwrap_or(0);
    }
    // SQLite allows 32,766 parameters per statement: 10 columns x 1,000 rows.
    for chunk in batch.transfers.chunks(1_000) {
        transfer::Entity::insert_many(chunk.iter().cloned().map(transfer::ActiveModel::from))
            .exec_without_returning(conn)
            .await?;
    }
    for chunk in batch.operations.chunks(1_000) {
        operation::Entity::insert_many(chunk.iter().cloned().map(operation::ActiveModel::from))
            .exec_without_returning(conn)
            .await?;
    }
    Ok(updated)
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
    operations.sort_by_key(|op| op.kind != OperationKind::TransferOut);
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
