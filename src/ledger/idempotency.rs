//! Idempotency keys, enforced by the database's primary key on
//! `(scope, key)` rather than in memory, so they hold across server instances.
//!
//! A write claims its key first, inside its own transaction. A concurrent
//! retry with the same key blocks on that row until the first commits (and
//! then finds the key taken) or rolls back (and then claims it itself), so
//! money moves once however the retries race.

use chrono::Utc;
use entity::idempotency_key;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, TryInsertResult};
use uuid::Uuid;

use crate::domain::error::{AppError, AppResult};

/// What a key stands for once claimed.
pub enum Target {
    Transfer(Uuid),
    Operation(Uuid),
}

/// Tries to claim `key` for this request; `false` means an earlier request
/// (committed) already holds it.
pub async fn claim<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
    fingerprint: &str,
    target: Target,
) -> AppResult<bool> {
    let (transfer_id, operation_id) = match target {
        Target::Transfer(id) => (Some(id), None),
        Target::Operation(id) => (None, Some(id)),
    };
    let row = idempotency_key::ActiveModel {
        scope: Set(scope.to_owned()),
        key: Set(key.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        transfer_id: Set(transfer_id),
        operation_id: Set(operation_id),
        created_at: Set(Utc::now()),
    };
    let result = idempotency_key::Entity::insert(row)
        .on_conflict_do_nothing()
        .exec_without_returning(conn)
        .await?;
    Ok(matches!(result, TryInsertResult::Inserted(n) if n > 0))
}

/// The committed record of a key that could not be claimed, checked against
/// this request's fingerprint.
pub async fn replay<C: ConnectionTrait>(
    conn: &C,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> AppResult<idempotency_key::Model> {
    let record = idempotency_key::Entity::find_by_id((scope.to_owned(), key.to_owned()))
        .one(conn)
        .await?
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("idempotency key vanished after a conflict"))
        })?;
    if record.fingerprint != fingerprint {
        return Err(AppError::IdempotencyKeyReused);
    }
    Ok(record)
}
