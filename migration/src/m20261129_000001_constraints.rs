//! Rules the data already obeys, enforced by the database too, so that no
//! code path (nor a hand-written statement) can break them:
//!
//! - `client_email_lowercase`: an email is stored lower-cased, and
//!   `client_email_lower_uniq` keeps `lower(email)` unique, so two addresses
//!   that differ only in case cannot both exist;
//! - `operation_kind_links`: a deposit names no transfer and no counterparty,
//!   a transfer leg names both;
//! - `wallet_last_seq_nonnegative`: `last_seq` is 0 before any operation;
//! - `operation_balance_after_max`: a balance-after stays within the limit of
//!   a wallet's balance (`operation_balance_after_range` already keeps it >= 0);
//! - `idempotency_key_one_target`: a key stands for exactly one result, a
//!   transfer or a deposit's operation.
//!
//! PostgreSQL gets CHECK constraints. SQLite cannot add one to an existing
//! table, so there each rule is a pair of triggers (before insert, before
//! update) that abort with `CHECK constraint failed: <name>`, the wording of
//! SQLite's own CHECKs.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

use crate::MAX_BALANCE_CENTS;
use crate::rules::Rule;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn rules() -> [Rule; 5] {
    [
        Rule {
            table: "client",
            name: "client_email_lowercase",
            column: "email",
            condition: |r| format!("{r}email = lower({r}email)"),
        },
        Rule {
            table: "operation",
            name: "operation_kind_links",
            column: "kind",
            condition: |r| {
                format!(
                    "({r}kind = 'DEPOSIT' \
                     AND {r}transfer_id IS NULL AND {r}counterparty_wallet_id IS NULL) \
                     OR ({r}kind IN ('TRANSFER_OUT', 'TRANSFER_IN') \
                     AND {r}transfer_id IS NOT NULL AND {r}counterparty_wallet_id IS NOT NULL)"
                )
            },
        },
        Rule {
            table: "wallet",
            name: "wallet_last_seq_nonnegative",
            column: "last_seq",
            condition: |r| format!("{r}last_seq >= 0"),
        },
        Rule {
            table: "operation",
            name: "operation_balance_after_max",
            column: "balance_after",
            condition: |r| format!("{r}balance_after <= {MAX_BALANCE_CENTS}"),
        },
        Rule {
            table: "idempotency_key",
            name: "idempotency_key_one_target",
            column: "transfer_id",
            condition: |r| {
                format!(
                    "({r}transfer_id IS NOT NULL AND {r}operation_id IS NULL) \
                     OR ({r}transfer_id IS NULL AND {r}operation_id IS NOT NULL)"
                )
            },
        },
    ]
}

/// Emails equal but for case collide here (on both backends).
const EMAIL_INDEX: &str =
    "CREATE UNIQUE INDEX IF NOT EXISTS client_email_lower_uniq ON client (lower(email))";
const DROP_EMAIL_INDEX: &str = "DROP INDEX IF EXISTS client_email_lower_uniq";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// Step by step rather than in one transaction: on PostgreSQL each
    /// constraint is added NOT VALID (a moment's lock, no scan) and validated
    /// afterwards (a scan that lets reads and writes go on). Every step can be
    /// repeated, so a run that stopped half-way is finished by the next one.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        if backend == DbBackend::Postgres {
            up_postgres(manager).await
        } else if backend == DbBackend::Sqlite {
            up_sqlite(manager).await
        } else {
            Err(DbErr::Migration(format!("unsupported backend {backend:?}")))
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        if backend == DbBackend::Postgres {
            let conn = manager.get_connection();
            conn.execute_unprepared(DROP_EMAIL_INDEX).await?;
            for rule in rules() {
                conn.execute_unprepared(&format!(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                    rule.table, rule.name
                ))
                .await?;
            }
            Ok(())
        } else if backend == DbBackend::Sqlite {
            let txn = manager.begin().await?;
            let conn = txn.get_connection();
            conn.execute_unprepared(DROP_EMAIL_INDEX).await?;
            for rule in rules() {
                crate::rules::drop_sqlite(conn, rule.name).await?;
            }
            txn.commit().await
        } else {
            Err(DbErr::Migration(format!("unsupported backend {backend:?}")))
        }
    }
}

async fn up_postgres(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for rule in rules() {
        // Only the catalogue changes: rows written from now on are checked,
        // the ones already there are not read yet.
        conn.execute_unprepared(&format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}, \
             ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID",
            table = rule.table,
            name = rule.name,
            condition = (rule.condition)(""),
        ))
        .await?;
    }
    for rule in rules() {
        // The scan of existing rows; on a large table it may outlast the
        // service's statement timeout, which is lifted for it alone.
        let txn = manager.begin().await?;
        let conn = txn.get_connection();
        conn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
        conn.execute_unprepared(&format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            rule.table, rule.name
        ))
        .await?;
        txn.commit().await?;
    }
    // Holds off new clients (not reads, not money moves) while it is built.
    let txn = manager.begin().await?;
    let conn = txn.get_connection();
    conn.execute_unprepared("SET LOCAL statement_timeout = 0")
        .await?;
    conn.execute_unprepared(EMAIL_INDEX).await?;
    txn.commit().await
}

async fn up_sqlite(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let txn = manager.begin().await?;
    let conn = txn.get_connection();
    for rule in rules() {
        crate::rules::add_sqlite(conn, &rule).await?;
    }
    conn.execute_unprepared(EMAIL_INDEX).await?;
    txn.commit().await
}
