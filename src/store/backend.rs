//! The places where PostgreSQL and SQLite need different handling, together.

use std::ops::Deref;

use sea_orm::{DbErr, RuntimeErr};

use crate::domain::error::AppError;

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
/// pool that gave no connection in time, PostgreSQL's connection
/// exception class (08) and shutdown codes (57P01-57P03), or a write to a
/// server that is read-only (25006: a primary demoted under us).
pub fn is_unavailable(err: &DbErr) -> bool {
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
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
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

/// A query a hot standby cancelled to go on replaying the primary's WAL
/// (SQLSTATE 40001, or 40P01 for a buffer-pin deadlock): another server
/// can answer it.
pub fn is_recovery_conflict(err: &DbErr) -> bool {
    matches!(database_code(err).as_deref(), Some("40001" | "40P01"))
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
