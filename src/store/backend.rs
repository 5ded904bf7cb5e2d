//! The places where PostgreSQL and SQLite need different handling, together.

use std::ops::Deref;

use entity::{operation, transfer, wallet};
use sea_orm::sea_query::LockType;
use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, RuntimeErr, Statement,
};
use uuid::Uuid;

use crate::domain::error::AppError;

/// Keeps a transfer's row locks in ascending id order, so that A-to-B and
/// B-to-A at the same moment queue on the same first row instead of each
/// holding one lock and waiting for the other (a deadlock).
///
/// The debit locks the payer's row and the credit the payee's. When the
/// payer sorts first that is already ascending and nothing is needed; when
/// the payee sorts first, its row is locked here, before the debit. Returns
/// whether the payee exists (when it was looked at). SQLite runs one writer
/// at a time, so there is nothing to order there.
pub async fn lock_payee_first_if_lower<C: ConnectionTrait>(
    conn: &C,
    payer: Uuid,
    payee: Uuid,
) -> Result<bool, DbErr> {
    if payee > payer || conn.get_database_backend() != DbBackend::Postgres {
        return Ok(true);
    }
    let locked = wallet::Entity::find()
        .select_only()
        .column(wallet::Column::Id)
        .filter(wallet::Column::Id.eq(payee))
        .lock(LockType::Update)
        .into_tuple::<Uuid>()
        .one(conn)
        .await?;
    Ok(locked.is_some())
}

/// One statement that writes a transfer (if any) and its ledger rows and
/// announces the rows with NOTIFY: PostgreSQL only. Data-modifying CTEs let
/// the three writes share a round trip; the foreign keys between them are
/// checked at the end of the statement, when all rows exist.
pub fn ledger_insert_postgres(
    transfer: Option<&transfer::Model>,
    operations: &[operation::Model],
    payload: String,
) -> Statement {
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let param = |v: sea_orm::Value, values: &mut Vec<sea_orm::Value>| {
        values.push(v);
        format!("${}", values.len())
    };
    let mut sql = String::from("WITH ");
    if let Some(t) = transfer {
        let cols = [
            param(t.id.into(), &mut values),
            param(t.from_wallet_id.into(), &mut values),
            param(t.to_wallet_id.into(), &mut values),
            param(t.amount.into(), &mut values),
            param(t.description.clone().into(), &mut values),
            param(t.created_at.into(), &mut values),
        ];
        sql.push_str(&format!(
            "t AS (INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, created_at) VALUES ({})), ",
            cols.join(", ")
        ));
    }
    let rows: Vec<String> = operations
        .iter()
        .map(|o| {
            let kind: String = o.kind.to_value();
            let cols = [
                param(o.id.into(), &mut values),
                param(o.wallet_id.into(), &mut values),
                param(o.seq.into(), &mut values),
                param(kind.into(), &mut values),
                param(o.amount.into(), &mut values),
                param(o.balance_after.into(), &mut values),
                param(o.transfer_id.into(), &mut values),
                param(o.counterparty_wallet_id.into(), &mut values),
                param(o.description.clone().into(), &mut values),
                param(o.created_at.into(), &mut values),
            ];
            format!("({})", cols.join(", "))
        })
        .collect();
    sql.push_str(&format!(
        "o AS (INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, transfer_id, \
         counterparty_wallet_id, description, created_at) VALUES {}) ",
        rows.join(", ")
    ));
    let channel = param(crate::live::CHANNEL.into(), &mut values);
    let payload = param(payload.into(), &mut values);
    sql.push_str(&format!("SELECT pg_notify({channel}, {payload})"));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        app_error(&err)
    }
}

/// The `AppError` for a database failure. Failures a caller can do nothing
/// about but wait are told apart from bugs: an unreachable or restarting
/// database, an exhausted pool, a statement over its time limit.
pub fn app_error(err: &DbErr) -> AppError {
    if is_unavailable(err) {
        return AppError::ServiceUnavailable(anyhow::anyhow!("{err}"));
    }
    if database_code(err).as_deref() == Some("57014") {
        return AppError::Timeout;
    }
    AppError::Internal(DbFailure::from(err).into())
}

/// A database error kept for the logs and for `is_retryable`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DbFailure {
    message: String,
    pub code: Option<String>,
}

impl From<&DbErr> for DbFailure {
    fn from(err: &DbErr) -> Self {
        DbFailure {
            message: err.to_string(),
            code: database_code(err),
        }
    }
}

/// The database cannot be reached or is going away: a connection error, a
/// pool that gave no connection in time, or PostgreSQL's connection
/// exception class (08) and shutdown codes (57P01-57P03).
fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e.deref(),
        DbErr::Conn(_) => return true,
        _ => return false,
    };
    match sqlx {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        Sqlx::Protocol(_) => true,
        Sqlx::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Whether a failed transaction may simply be run again: a serialization
/// failure or a deadlock on PostgreSQL, a busy database on SQLite.
pub fn is_retryable(err: &DbFailure) -> bool {
    matches!(
        err.code.as_deref(),
        Some("40001" | "40P01" | "5" | "6" | "517")
    )
}

/// Whether `err` is a unique violation involving `column` of `table`.
///
/// PostgreSQL names the constraint (`client_email_key`), SQLite the columns
/// (`client.email`); both mention the table and column, which is what is
/// matched here.
pub fn unique_violation_on(err: &DbErr, table: &str, column: &str) -> bool {
    match err.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) => {
            message.contains(&format!("{table}_{column}"))
                || message.contains(&format!("{table}.{column}"))
        }
        _ => false,
    }
}

fn database_code(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => match e.deref() {
            sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        },
        _ => None,
    }
}
