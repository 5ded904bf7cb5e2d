//! Drops `operation_wallet_time_idx` on `(wallet_id, created_at, seq)`: a
//! time bound is now turned into a sequence bound by a binary search of
//! `UNIQUE (wallet_id, seq)` (see `store::reads::first_seq_from`), which
//! orders a wallet's rows the same way. The index cost every ledger row
//! about 50 bytes and one more index insert.
//!
//! The search needs time never to go back along a wallet's sequence. The
//! posting engine guarantees that for every row it wrote (issue 11), and
//! `walletql verify` checks it; rows from before could go back by the few
//! milliseconds between two servers' clocks. Before the drop, such rows
//! are moved forward to the latest time before them in their wallet (and
//! the wallet's `updated_at` with its newest row), so every time answer
//! stays exact: a row whose time went back was in truth settled after the
//! rows before it. Finding them is one pass over `operation`; on a
//! database with none, nothing is written.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Statement};
use sea_orm_migration::prelude::*;
use uuid::Uuid;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Wallets with a row earlier than the row before it.
const DISORDERED: &str = "SELECT DISTINCT wallet_id FROM ( \
     SELECT wallet_id, created_at, \
            LAG(created_at) OVER (PARTITION BY wallet_id ORDER BY seq) AS previous \
     FROM operation) x \
     WHERE created_at < previous";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        let wallets: Vec<Uuid> = db
            .query_all_raw(Statement::from_string(backend, DISORDERED))
            .await?
            .iter()
            .map(|row| row.try_get_by_index(0))
            .collect::<Result<_, _>>()?;
        for wallet in wallets {
            move_forward(db, backend, wallet).await?;
        }
        db.execute_unprepared("DROP INDEX IF EXISTS operation_wallet_time_idx")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS operation_wallet_time_idx \
                 ON operation (wallet_id, created_at, seq)",
            )
            .await?;
        Ok(())
    }
}

/// Gives each of a wallet's rows the latest time of the rows up to it.
async fn move_forward<C: ConnectionTrait>(
    db: &C,
    backend: sea_orm::DbBackend,
    wallet: Uuid,
) -> Result<(), DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            "SELECT id, created_at FROM operation WHERE wallet_id = $1 ORDER BY seq",
            [wallet.into()],
        ))
        .await?;
    let mut latest: Option<DateTime<Utc>> = None;
    let mut moved: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for row in &rows {
        let id: Uuid = row.try_get_by_index(0)?;
        let at: DateTime<Utc> = row.try_get_by_index(1)?;
        match latest {
            Some(before) if at < before => {
                moved.insert(id, before);
            }
            _ => latest = Some(at),
        }
    }
    for (id, at) in &moved {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE operation SET created_at = $1 WHERE id = $2",
            [(*at).into(), (*id).into()],
        ))
        .await?;
    }
    // The wallet's last change is its newest row's time (audited).
    if let Some(at) = latest {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE wallet SET updated_at = $1 WHERE id = $2",
            [at.into(), wallet.into()],
        ))
        .await?;
    }
    Ok(())
}
