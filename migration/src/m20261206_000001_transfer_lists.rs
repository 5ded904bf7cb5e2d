//! Indexes for a wallet's transfers, newest first (`Query.transfers`):
//! `(from_wallet_id, created_at, id)` for what it paid and `(to_wallet_id,
//! created_at, id)` for what it received. A page is one walk of each from
//! the cursor, merged: O(log n) however many transfers there are. Refunds
//! are few among many payments, so a filter on them walks partial indexes
//! of their own (`transfer_refunds_from_idx`, `transfer_refunds_to_idx`)
//! instead of every transfer of the wallet; pending transfers have theirs
//! already (issue 12).
//!
//! Plain `CREATE INDEX` (inside the migration's transaction) blocks writes
//! to `transfer` while it builds. On a large live database, build them
//! `CONCURRENTLY` by hand first (same names); the statements below then
//! skip them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS transfer_from_time_idx \
             ON transfer (from_wallet_id, created_at, id)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS transfer_to_time_idx \
             ON transfer (to_wallet_id, created_at, id)",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS transfer_refunds_from_idx \
             ON transfer (from_wallet_id, created_at, id) WHERE kind = 'REFUND'",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS transfer_refunds_to_idx \
             ON transfer (to_wallet_id, created_at, id) WHERE kind = 'REFUND'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS transfer_from_time_idx")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS transfer_to_time_idx")
            .await?;
        for index in ["transfer_refunds_from_idx", "transfer_refunds_to_idx"] {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }
        Ok(())
    }
}
