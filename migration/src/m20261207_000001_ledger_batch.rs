//! `ledger_batch` (PostgreSQL): one row per batch the posting engine
//! commits, written in the batch's own transaction, with its transaction id.
//!
//! When the connection breaks during COMMIT, the committer cannot know
//! whether the batch committed. It settles that from this table: on the
//! same server and timeline, `pg_xact_status(xid)`; on a promoted standby
//! (a newer timeline), the row's presence, as the batch's absence there is
//! final. Ids are UUIDv7 (time-ordered), so rows older than the settling
//! window are pruned by a range of the primary key. SQLite commits in
//! process and has no such case: the table is PostgreSQL's only.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE IF NOT EXISTS ledger_batch (id uuid PRIMARY KEY, xid xid8 NOT NULL)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS ledger_batch")
            .await?;
        Ok(())
    }
}
