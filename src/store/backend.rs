//! The places where PostgreSQL and SQLite need different handling, together.

use std::ops::Deref;

use entity::wallet;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, RuntimeErr,
};
use uuid::Uuid;

/// Locks the given wallets in ascending id order and returns the ids that
/// exist.
///
/// Two transfers in opposite directions (A to B, B to A) then queue on the
/// same first row instead of each holding one lock and waiting for the other,
/// so they never deadlock. SQLite runs one writer at a time, so there is
/// nothing to order; it only reports which wallets exist.
pub async fn lock_wallets_in_order<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, DbErr> {
    let mut query = wallet::Entity::find()
        .select_only()
        .column(wallet::Column::Id)
        .filter(wallet::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(wallet::Column::Id);
    if conn.get_database_backend() == DbBackend::Postgres {
        query = query.lock(LockType::Update);
    }
    query.into_tuple::<Uuid>().all(conn).await
}

/// Whether a failed transaction may simply be run again: a serialization
/// failure or a deadlock on PostgreSQL, a busy database on SQLite.
pub fn is_retryable(err: &DbErr) -> bool {
    matches!(
        database_code(err).as_deref(),
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
