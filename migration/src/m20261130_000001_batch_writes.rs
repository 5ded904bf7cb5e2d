//! Ready for batched writes (the posting engine commits many entries per
//! transaction):
//!
//! - drops the foreign keys from ledger rows to their transfer and their
//!   counterparty, and from a transfer to its two wallets. They cost 7-12% of
//!   a single transfer and about 60% of a batch, and repeat what is already
//!   guaranteed: each leg's own wallet keeps its foreign key, and the audit
//!   (`walletql verify`) checks that every transfer has exactly its two legs,
//!   on its two wallets, naming each other as counterparties;
//! - leaves a fifth of each wallet page free (fillfactor 80), so the many
//!   updates of a hot wallet stay HOT (heap-only: no index is touched).
//!
//! PostgreSQL only: SQLite cannot drop a constraint from a table, and its
//! writes are not bound by these checks.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const DROPPED: [(&str, &str, &str, &str); 4] = [
    (
        "operation",
        "operation_transfer_fk",
        "transfer_id",
        "transfer",
    ),
    (
        "operation",
        "operation_counterparty_fk",
        "counterparty_wallet_id",
        "wallet",
    ),
    (
        "transfer",
        "transfer_from_wallet_fk",
        "from_wallet_id",
        "wallet",
    ),
    (
        "transfer",
        "transfer_to_wallet_fk",
        "to_wallet_id",
        "wallet",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, name, _, _) in DROPPED {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
            ))
            .await?;
        }
        db.execute_unprepared("ALTER TABLE wallet SET (fillfactor = 80)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE wallet RESET (fillfactor)")
            .await?;
        for (table, name, column, target) in DROPPED {
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) REFERENCES {target} (id)"
            ))
            .await?;
        }
        Ok(())
    }
}
