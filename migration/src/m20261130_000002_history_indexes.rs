//! Indexes for history at volume:
//!
//! - `operation_wallet_time_idx` on `(wallet_id, created_at, seq)`: the
//!   balance at a point in time is one probe (the newest row of the wallet
//!   before that time), however deep the history;
//! - `operation_wallet_kind_idx` on `(wallet_id, kind, seq)`: a history
//!   filtered by kind walks only the rows of those kinds;
//! - `idempotency_key_created_idx` on `created_at`: keys past their
//!   retention are pruned oldest first without scanning the table;
//! - `operation_transfer_idx` becomes partial (`WHERE transfer_id IS NOT
//!   NULL`): deposits have no transfer, and their NULLs filled the right edge
//!   of the index for nothing.
//!
//! Plain `CREATE INDEX` (inside the migration's transaction) blocks writes
//! to `operation` while it builds: seconds per ten million rows here. On a
//! large live database, build the indexes `CONCURRENTLY` by hand first
//! (same names); the statements below then skip them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS operation_wallet_time_idx \
             ON operation (wallet_id, created_at, seq)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS operation_wallet_kind_idx \
             ON operation (wallet_id, kind, seq)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS idempotency_key_created_idx \
             ON idempotency_key (created_at)",
        )
        .await?;
        // One batch of statements, so that both run on the same connection
        // (SQLite's pool could otherwise create on one that has not seen the
        // drop).
        db.execute_unprepared(
            "DROP INDEX IF EXISTS operation_transfer_idx; \
             CREATE INDEX operation_transfer_idx ON operation (transfer_id) \
             WHERE transfer_id IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS operation_wallet_time_idx")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS operation_wallet_kind_idx")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS idempotency_key_created_idx")
            .await?;
        db.execute_unprepared(
            "DROP INDEX IF EXISTS operation_transfer_idx; \
             CREATE INDEX operation_transfer_idx ON operation (transfer_id)",
        )
        .await?;
        Ok(())
    }
}
