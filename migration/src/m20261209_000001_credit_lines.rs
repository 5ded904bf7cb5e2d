//! Credit lines (issue 20): a wallet's balance may go below zero, down to
//! `-credit_limit`.
//!
//! - `wallet.credit_limit` (cents, default 0: existing wallets have none);
//! - the kind `CREDIT_LIMIT`: a row of amount 0 written when a line
//!   changes, its `available_after` the new available balance, so the
//!   available-after chain still explains every change;
//! - `available_after` is now `balance - held + credit_limit`. A row that
//!   lowers it (`TRANSFER_OUT`, `WITHDRAWAL`, `HOLD`) may not leave it
//!   below zero: that is the rule that keeps a balance within its line,
//!   written per row because a wallet may sit below a line lowered under
//!   it (it then takes no debit until it is back within);
//! - balances and balances-after may be negative (to `-MAX_BALANCE_CENTS`),
//!   and `held` may exceed the balance: the old non-negative rules give way
//!   to the ones above.
//!
//! Every rule is looser than the one it replaces, so existing rows meet
//! them. PostgreSQL swaps them in one short transaction, NOT VALID (they
//! bind every row written from then on, and the exclusive lock lasts no
//! scan), then validates each in a transaction of its own, whose scan lets
//! reads and writes through. Each step is idempotent, so a migration cut
//! off between them runs again. SQLite edits its CREATE TABLE text
//! (`rules::rewrite_sqlite_checks`) and replaces trigger pairs. The new
//! column has a constant default: no table is rewritten.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use crate::MAX_BALANCE_CENTS;
use crate::m20261130_000003_ledger_verbs::{KIND_LINKS, set_known_kinds};
use crate::m20261206_000002_incoming_holds::{KINDS_AFTER, kind_links_after};
use crate::rules::{self, Rule};

#[derive(DeriveMigrationName)]
pub struct Migration;

const KINDS: &str = "'DEPOSIT', 'TRANSFER_OUT', 'TRANSFER_IN', 'WITHDRAWAL', 'HOLD', \
     'HOLD_RELEASE', 'INCOMING_HOLD', 'INCOMING_HOLD_RELEASE', 'CREDIT_LIMIT'";

fn kind_links(r: &str) -> String {
    format!(
        "({r}kind IN ('DEPOSIT', 'WITHDRAWAL', 'CREDIT_LIMIT') \
         AND {r}transfer_id IS NULL AND {r}counterparty_wallet_id IS NULL) \
         OR ({r}kind IN ('TRANSFER_OUT', 'TRANSFER_IN', 'HOLD', 'HOLD_RELEASE', \
             'INCOMING_HOLD', 'INCOMING_HOLD_RELEASE') \
         AND {r}transfer_id IS NOT NULL AND {r}counterparty_wallet_id IS NOT NULL)"
    )
}

/// Rules kept as triggers on SQLite (CHECKs on PostgreSQL): dropped by
/// name, then added with their new condition.
fn rules() -> [Rule; 4] {
    [
        Rule {
            table: "operation",
            name: KIND_LINKS,
            column: "kind",
            condition: kind_links,
        },
        Rule {
            table: "operation",
            name: "operation_available_after_range",
            column: "available_after",
            condition: |r| {
                format!(
                    "{r}available_after IS NULL OR {r}available_after >= 0 \
                     OR {r}kind NOT IN ('TRANSFER_OUT', 'WITHDRAWAL', 'HOLD')"
                )
            },
        },
        Rule {
            table: "wallet",
            name: "wallet_held_range",
            column: "held",
            condition: |r| format!("{r}held >= 0 AND {r}open_holds >= 0"),
        },
        Rule {
            table: "wallet",
            name: "wallet_credit_limit_range",
            column: "credit_limit",
            condition: |r| {
                format!("{r}credit_limit >= 0 AND {r}credit_limit <= {MAX_BALANCE_CENTS}")
            },
        },
    ]
}

/// The rule `wallet_held_range` and `wallet_credit_limit_range` replace.
fn available_nonnegative() -> Rule {
    Rule {
        table: "wallet",
        name: "wallet_available_nonnegative",
        column: "held",
        condition: |r| format!("{r}held >= 0 AND {r}held <= {r}balance AND {r}open_holds >= 0"),
    }
}

fn old_available_after_range() -> Rule {
    Rule {
        table: "operation",
        name: "operation_available_after_range",
        column: "available_after",
        condition: |r| {
            format!(
                "{r}available_after IS NULL \
                 OR ({r}available_after >= 0 AND {r}available_after <= {r}balance_after)"
            )
        },
    }
}

/// CHECKs that are part of the tables' CREATE statements: (table, name,
/// condition before, condition after), as SQLite stores them.
fn table_checks() -> [(&'static str, &'static str, String, String); 3] {
    let max = MAX_BALANCE_CENTS;
    [
        (
            "wallet",
            "wallet_balance_range",
            format!("\"balance\" >= 0 AND \"balance\" <= {max}"),
            format!("\"balance\" >= -{max} AND \"balance\" <= {max}"),
        ),
        (
            "operation",
            "operation_amount_positive",
            "\"amount\" > 0".to_owned(),
            "(\"kind\" = 'CREDIT_LIMIT' AND \"amount\" = 0) \
             OR (\"kind\" <> 'CREDIT_LIMIT' AND \"amount\" > 0)"
                .to_owned(),
        ),
        (
            "operation",
            "operation_balance_after_range",
            "\"balance_after\" >= 0".to_owned(),
            format!("\"balance_after\" >= -{max}"),
        ),
    ]
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
        txn.commit().await?;
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for (table, name) in validated() {
            let txn = manager.begin().await?;
            let conn = txn.get_connection();
            conn.execute_unprepared("SET LOCAL statement_timeout = 0")
                .await?;
            validate_postgres(conn, table, name).await?;
            txn.commit().await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let txn = manager.begin().await?;
        down(&txn).await?;
        txn.commit().await
    }
}

/// The constraints PostgreSQL validates after the swap.
fn validated() -> Vec<(&'static str, &'static str)> {
    let mut names = vec![("operation", "operation_kind_known")];
    names.extend(table_checks().iter().map(|c| (c.0, c.1)));
    names.extend(rules().iter().map(|r| (r.table, r.name)));
    names
}

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    let checks = table_checks();
    let mut replaced = vec![available_nonnegative()];
    replaced.extend(rules().into_iter().filter(|r| r.table == "operation"));
    if backend == DbBackend::Postgres {
        conn.execute_unprepared(
            "ALTER TABLE wallet ADD COLUMN IF NOT EXISTS credit_limit bigint NOT NULL DEFAULT 0",
        )
        .await?;
        add_postgres(
            conn,
            "operation",
            "operation_kind_known",
            &format!("kind IN ({KINDS})"),
        )
        .await?;
        for rule in &replaced {
            drop_postgres(conn, rule.table, rule.name).await?;
        }
        for (table, name, _, after) in &checks {
            add_postgres(conn, table, name, after).await?;
        }
        for rule in rules() {
            add_postgres(conn, rule.table, rule.name, &(rule.condition)("")).await?;
        }
    } else {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("wallet"))
                    .add_column(
                        ColumnDef::new(Alias::new("credit_limit"))
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        set_known_kinds(manager, KINDS_AFTER, KINDS).await?;
        for rule in &replaced {
            rules::drop_sqlite(conn, rule.name).await?;
        }
        rewrite_table_checks(conn, true).await?;
        for rule in rules() {
            rules::add_sqlite(conn, &rule).await?;
        }
    }
    Ok(())
}

async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    let old_links = Rule {
        table: "operation",
        name: KIND_LINKS,
        column: "kind",
        condition: kind_links_after,
    };
    let old = [
        old_links,
        old_available_after_range(),
        available_nonnegative(),
    ];
    // Once a line was set, its rows (and any negative balance) have no
    // meaning before this migration: refuse, rather than fail on a rule.
    let used = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT (SELECT COUNT(*) FROM operation WHERE kind = 'CREDIT_LIMIT') \
                  + (SELECT COUNT(*) FROM wallet WHERE balance < 0)",
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    if used > 0 {
        return Err(DbErr::Migration(
            "credit lines were used (CREDIT_LIMIT rows or negative balances): \
             m20261209_000001_credit_lines cannot be undone"
                .into(),
        ));
    }
    if backend == DbBackend::Postgres {
        conn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
        for rule in rules() {
            drop_postgres(conn, rule.table, rule.name).await?;
        }
        for (table, name, before, _) in table_checks() {
            add_postgres(conn, table, name, &before).await?;
            validate_postgres(conn, table, name).await?;
        }
        for rule in &old {
            add_postgres(conn, rule.table, rule.name, &(rule.condition)("")).await?;
            validate_postgres(conn, rule.table, rule.name).await?;
        }
    } else {
        for rule in rules() {
            rules::drop_sqlite(conn, rule.name).await?;
        }
        rewrite_table_checks(conn, false).await?;
        for rule in &old {
            rules::add_sqlite(conn, rule).await?;
        }
    }
    set_known_kinds(manager, KINDS, KINDS_AFTER).await?;
    manager
        .alter_table(
            Table::alter()
                .table(Alias::new("wallet"))
                .drop_column(Alias::new("credit_limit"))
                .to_owned(),
        )
        .await?;
    Ok(())
}

/// SQLite: the CHECKs in the tables' CREATE text, to the looser rules
/// (`up`) or back.
async fn rewrite_table_checks<C: ConnectionTrait>(conn: &C, up: bool) -> Result<(), DbErr> {
    let checks = table_checks();
    for table in ["wallet", "operation"] {
        let changes: Vec<(&str, &str)> = checks
            .iter()
            .filter(|c| c.0 == table)
            .map(|(_, _, before, after)| match up {
                true => (before.as_str(), after.as_str()),
                false => (after.as_str(), before.as_str()),
            })
            .collect();
        rules::rewrite_sqlite_checks(conn, table, &changes).await?;
    }
    Ok(())
}

async fn drop_postgres<C: ConnectionTrait>(conn: &C, table: &str, name: &str) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!(
        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
    ))
    .await
    .map(|_| ())
}

/// Replaces a constraint, NOT VALID: no scan, however large the table.
async fn add_postgres<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    name: &str,
    condition: &str,
) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!(
        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}, \
         ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID"
    ))
    .await
    .map(|_| ())
}

async fn validate_postgres<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    name: &str,
) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}"))
        .await
        .map(|_| ())
}
