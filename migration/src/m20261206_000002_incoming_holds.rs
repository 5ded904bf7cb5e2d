//! The payee's side of a pending transfer, in its own ledger:
//!
//! - `wallet.incoming_held`: the sum of the open holds to the wallet (money
//!   promised to it, not yet its own), kept `>= 0` by
//!   `wallet_incoming_held_nonnegative`;
//! - `operation.incoming_held_after` (NULL on rows from before), and the
//!   kinds `INCOMING_HOLD` and `INCOMING_HOLD_RELEASE` (rows on the payee's
//!   wallet, with a transfer and a counterparty, in `operation_kind_links`);
//!   `operation.kind` widens to 32 characters (PostgreSQL changes only the
//!   catalog for a longer varchar: no rewrite, no index rebuilt);
//! - every hold open now gets its `INCOMING_HOLD` row on the payee's wallet
//!   (the next sequence numbers, the migration's time), and the wallet its
//!   incoming held balance. Holds settled before have no payee rows; the
//!   audit exempts them.
//!
//! Open holds are few (each payer has at most MAX_OPEN_HOLDS_PER_WALLET and
//! they end within 30 days), so the backfill is one read and a write per
//! hold, inside the migration's one transaction.

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use sea_orm_migration::prelude::*;
use uuid::Uuid;

use crate::m20261130_000003_ledger_verbs::{KIND_LINKS, KINDS, kind_links, set_known_kinds};
use crate::rules::{self, Rule};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const KINDS_AFTER: &str = "'DEPOSIT', 'TRANSFER_OUT', 'TRANSFER_IN', 'WITHDRAWAL', 'HOLD', \
     'HOLD_RELEASE', 'INCOMING_HOLD', 'INCOMING_HOLD_RELEASE'";

pub(crate) fn kind_links_after(r: &str) -> String {
    format!(
        "({r}kind IN ('DEPOSIT', 'WITHDRAWAL') \
         AND {r}transfer_id IS NULL AND {r}counterparty_wallet_id IS NULL) \
         OR ({r}kind IN ('TRANSFER_OUT', 'TRANSFER_IN', 'HOLD', 'HOLD_RELEASE', \
             'INCOMING_HOLD', 'INCOMING_HOLD_RELEASE') \
         AND {r}transfer_id IS NOT NULL AND {r}counterparty_wallet_id IS NOT NULL)"
    )
}

fn incoming_rule() -> Rule {
    Rule {
        table: "wallet",
        name: "wallet_incoming_held_nonnegative",
        column: "incoming_held",
        condition: |r| format!("{r}incoming_held >= 0"),
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction of its own on both backends.
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let txn = manager.begin().await?;
        up(&txn).await?;
        txn.commit().await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let txn = manager.begin().await?;
        down(&txn).await?;
        txn.commit().await
    }
}

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    if backend == DbBackend::Postgres {
        conn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
        conn.execute_unprepared("ALTER TABLE operation ALTER COLUMN kind TYPE varchar(32)")
            .await?;
    }
    set_known_kinds(manager, KINDS, KINDS_AFTER).await?;
    let columns = [
        (
            "wallet",
            ColumnDef::new(Alias::new("incoming_held"))
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ),
        (
            "operation",
            ColumnDef::new(Alias::new("incoming_held_after"))
                .big_integer()
                .null()
                .to_owned(),
        ),
    ];
    for (table, mut column) in columns {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
    }
    let rule = incoming_rule();
    if backend == DbBackend::Postgres {
        conn.execute_unprepared(&format!(
            "ALTER TABLE operation DROP CONSTRAINT IF EXISTS {KIND_LINKS}, \
                 ADD CONSTRAINT {KIND_LINKS} CHECK ({})",
            kind_links_after("")
        ))
        .await?;
        conn.execute_unprepared(&format!(
            "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
            rule.table,
            rule.name,
            (rule.condition)("")
        ))
        .await?;
    } else {
        rules::drop_sqlite(conn, KIND_LINKS).await?;
        let links = Rule {
            table: "operation",
            name: KIND_LINKS,
            column: "kind",
            condition: kind_links_after,
        };
        rules::add_sqlite(conn, &links).await?;
        rules::add_sqlite(conn, &rule).await?;
    }
    backfill(conn, backend).await
}

/// An `INCOMING_HOLD` row on the payee's wallet for every hold open now.
async fn backfill<C: ConnectionTrait>(conn: &C, backend: DbBackend) -> Result<(), DbErr> {
    let holds = conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT t.id, t.from_wallet_id, t.to_wallet_id, t.amount, \
                 w.balance, w.held, w.last_seq, w.updated_at \
             FROM transfer t JOIN wallet w ON w.id = t.to_wallet_id \
             WHERE t.status = 'PENDING' ORDER BY t.to_wallet_id, t.created_at, t.id",
        ))
        .await?;
    let now = chrono::Utc::now();
    let tick = chrono::TimeDelta::microseconds(1);
    // The payee being filled in: id, last sequence, incoming held, time.
    let mut payee: Option<(Uuid, i64, i64, chrono::DateTime<chrono::Utc>)> = None;
    for row in holds {
        let transfer: Uuid = row.try_get_by_index(0)?;
        let payer: Uuid = row.try_get_by_index(1)?;
        let wallet: Uuid = row.try_get_by_index(2)?;
        let amount: i64 = row.try_get_by_index(3)?;
        let balance: i64 = row.try_get_by_index(4)?;
        let held: i64 = row.try_get_by_index(5)?;
        let (seq, incoming, at) = match payee {
            Some((id, seq, incoming, at)) if id == wallet => {
                (seq + 1, incoming + amount, at + tick)
            }
            previous => {
                if let Some(done) = previous {
                    finish_payee(conn, backend, done).await?;
                }
                let last_seq: i64 = row.try_get_by_index(6)?;
                let updated: chrono::DateTime<chrono::Utc> = row.try_get_by_index(7)?;
                (last_seq + 1, amount, Ord::max(now, updated + tick))
            }
        };
        payee = Some((wallet, seq, incoming, at));
        conn.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, \
                 available_after, incoming_held_after, transfer_id, counterparty_wallet_id, created_at) \
             VALUES ($1, $2, $3, 'INCOMING_HOLD', $4, $5, $6, $7, $8, $9, $10)",
            [
                Value::from(Uuid::now_v7()),
                wallet.into(),
                seq.into(),
                amount.into(),
                balance.into(),
                (balance - held).into(),
                incoming.into(),
                transfer.into(),
                payer.into(),
                at.into(),
            ],
        ))
        .await?;
    }
    if let Some(done) = payee {
        finish_payee(conn, backend, done).await?;
    }
    Ok(())
}

async fn finish_payee<C: ConnectionTrait>(
    conn: &C,
    backend: DbBackend,
    (id, seq, incoming, at): (Uuid, i64, i64, chrono::DateTime<chrono::Utc>),
) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        "UPDATE wallet SET last_seq = $1, incoming_held = $2, updated_at = $3 WHERE id = $4",
        [seq.into(), incoming.into(), at.into(), id.into()],
    ))
    .await?;
    Ok(())
}

async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    // The payee rows would break the old rules: the downgrade refuses while
    // there are any rather than lose them.
    let rule = incoming_rule();
    if backend == DbBackend::Postgres {
        conn.execute_unprepared(&format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            rule.table, rule.name
        ))
        .await?;
        conn.execute_unprepared(&format!(
            "ALTER TABLE operation DROP CONSTRAINT IF EXISTS {KIND_LINKS}, \
                 ADD CONSTRAINT {KIND_LINKS} CHECK ({})",
            kind_links("")
        ))
        .await?;
    } else {
        rules::drop_sqlite(conn, rule.name).await?;
        rules::drop_sqlite(conn, KIND_LINKS).await?;
        let links = Rule {
            table: "operation",
            name: KIND_LINKS,
            column: "kind",
            condition: kind_links,
        };
        rules::add_sqlite(conn, &links).await?;
    }
    set_known_kinds(manager, KINDS_AFTER, KINDS).await?;
    for (table, column) in [
        ("wallet", "incoming_held"),
        ("operation", "incoming_held_after"),
    ] {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .drop_column(Alias::new(column))
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}
