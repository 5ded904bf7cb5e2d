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
//! them: PostgreSQL adds them NOT VALID and validates them in the same
//! transaction without blocking writes; SQLite edits its CREATE TABLE text
//! (`rules::rewrite_sqlite_checks`) and replaces trigger pairs. The new
//! column has a constant default: no table is rewritten.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

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
        // Validating the looser rules scans the operation table once.
        conn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
    }
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
    let checks = table_checks();
    let mut replaced = vec![available_nonnegative()];
    replaced.extend(rules().into_iter().filter(|r| r.table == "operation"));
    if backend == DbBackend::Postgres {
        for rule in &replaced {
            drop_postgres(conn, rule.table, rule.name).await?;
        }
        for (table, name, _, after) in &checks {
            drop_postgres(conn, table, name).await?;
            add_postgres(conn, table, name, after).await?;
        }
        for rule in rules() {
            add_postgres(conn, rule.table, rule.name, &(rule.condition)("")).await?;
        }
    } else {
        for rule in &replaced {
            rules::drop_sqlite(conn, rule.name).await?;
        }
        for table in ["wallet", "operation"] {
            let changes: Vec<(&str, &str)> = checks
                .iter()
                .filter(|c| c.0 == table)
                .map(|c| (c.2.as_str(), c.3.as_str()))
                .collect();
            rules::rewrite_sqlite_checks(conn, table, &changes).await?;
        }
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
    if backend == DbBackend::Postgres {
        for rule in rules() {
            drop_postgres(conn, rule.table, rule.name).await?;
        }
        for (table, name, before, _) in table_checks() {
            drop_postgres(conn, table, name).await?;
            add_postgres(conn, table, name, &before).await?;
        }
        for rule in &old {
            add_postgres(conn, rule.table, rule.name, &(rule.condition)("")).await?;
        }
    } else {
        for rule in rules() {
            rules::drop_sqlite(conn, rule.name).await?;
        }
        for table in ["wallet", "operation"] {
            let checks = table_checks();
            let changes: Vec<(&str, &str)> = checks
                .iter()
                .filter(|c| c.0 == table)
                .map(|c| (c.3.as_str(), c.2.as_str()))
                .collect();
            rules::rewrite_sqlite_checks(conn, table, &changes).await?;
        }
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

async fn drop_postgres<C: ConnectionTrait>(conn: &C, table: &str, name: &str) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!(
        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
    ))
    .await
    .map(|_| ())
}

/// Added NOT VALID, then validated: one scan of the table, inside the
/// migration's transaction.
async fn add_postgres<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    name: &str,
    condition: &str,
) -> Result<(), DbErr> {
    conn.execute_unprepared(&format!(
        "ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID"
    ))
    .await?;
    conn.execute_unprepared(&format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}"))
        .await
        .map(|_| ())
}
