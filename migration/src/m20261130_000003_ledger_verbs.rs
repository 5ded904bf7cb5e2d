//! Holds, captures, voids, refunds and withdrawals.
//!
//! - `wallet.held` (the sum of the wallet's open holds as payer) and
//!   `wallet.open_holds` (how many); `wallet_available_nonnegative` keeps
//!   `0 <= held <= balance`, so the database refuses a negative available
//!   balance as it refuses a negative balance;
//! - `operation.available_after` (`balance - held` after the row; NULL on
//!   rows from before, where it was `balance_after`), and the kinds
//!   `WITHDRAWAL`, `HOLD` and `HOLD_RELEASE` in `operation_kind_links`;
//! - `transfer.kind` (PAYMENT, REFUND), `status` (PENDING, POSTED, VOIDED,
//!   EXPIRED), `captured_amount`, `refunded_amount`, `refund_of`,
//!   `expires_at`, `settled_at`, kept coherent by `transfer_state`;
//! - partial indexes for open holds (by payer, by payee, by deadline) and
//!   for a payment's refunds.
//!
//! Every new column is nullable or has a constant default, so PostgreSQL
//! adds them without rewriting a table: the upgrade takes the time of the
//! rule checks and the partial indexes (one scan each), not of a rewrite.
//! Existing transfers read as PAYMENT and POSTED; their NULL
//! `captured_amount` and `settled_at` mean `amount` and `created_at`.

use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

use crate::rules::{self, Rule};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub(crate) const KIND_LINKS: &str = "operation_kind_links";
const KINDS_BEFORE: &str = "'DEPOSIT', 'TRANSFER_OUT', 'TRANSFER_IN'";
pub(crate) const KINDS: &str =
    "'DEPOSIT', 'TRANSFER_OUT', 'TRANSFER_IN', 'WITHDRAWAL', 'HOLD', 'HOLD_RELEASE'";

/// `operation_kind_known`, the CHECK that `operation` was created with,
/// names the kinds allowed. PostgreSQL replaces the constraint. SQLite
/// cannot alter a table's CHECK; its documented way to change one without
/// touching the data (ALTER TABLE, "making other kinds of table schema
/// changes") edits the stored CREATE TABLE text and bumps the schema
/// version, in one batch on one connection.
pub(crate) async fn set_known_kinds(
    manager: &SchemaManager<'_>,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    if manager.get_database_backend() == DbBackend::Postgres {
        return conn
            .execute_unprepared(&format!(
                "ALTER TABLE operation DROP CONSTRAINT IF EXISTS operation_kind_known, \
                 ADD CONSTRAINT operation_kind_known CHECK (kind IN ({to}))"
            ))
            .await
            .map(|_| ());
    }
    let version = conn
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA schema_version",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no schema version".into()))?
        .try_get_by_index::<i64>(0)?;
    let (from, to) = (from.replace('\'', "''"), to.replace('\'', "''"));
    conn.execute_unprepared(&format!(
        "PRAGMA writable_schema = ON; \
         UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (\"kind\" IN ({from}))', \
             'CHECK (\"kind\" IN ({to}))') WHERE type = 'table' AND name = 'operation'; \
         PRAGMA schema_version = {}; \
         PRAGMA writable_schema = OFF;",
        version + 1
    ))
    .await?;
    // A CREATE TABLE text other than expected would leave the rule as it
    // was: refuse rather than fail every new kind at run time.
    let widened = conn
        .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'operation'",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("no operation table".into()))?
        .try_get_by_index::<String>(0)?;
    if !widened.contains(&format!("CHECK (\"kind\" IN ({}))", to.replace("''", "'"))) {
        return Err(DbErr::Migration(
            "operation_kind_known could not be changed: unexpected CREATE TABLE text".into(),
        ));
    }
    Ok(())
}

pub(crate) fn kind_links(r: &str) -> String {
    format!(
        "({r}kind IN ('DEPOSIT', 'WITHDRAWAL') \
         AND {r}transfer_id IS NULL AND {r}counterparty_wallet_id IS NULL) \
         OR ({r}kind IN ('TRANSFER_OUT', 'TRANSFER_IN', 'HOLD', 'HOLD_RELEASE') \
         AND {r}transfer_id IS NOT NULL AND {r}counterparty_wallet_id IS NOT NULL)"
    )
}

fn old_kind_links(r: &str) -> String {
    format!(
        "({r}kind = 'DEPOSIT' \
         AND {r}transfer_id IS NULL AND {r}counterparty_wallet_id IS NULL) \
         OR ({r}kind IN ('TRANSFER_OUT', 'TRANSFER_IN') \
         AND {r}transfer_id IS NOT NULL AND {r}counterparty_wallet_id IS NOT NULL)"
    )
}

fn new_rules() -> [Rule; 3] {
    [
        Rule {
            table: "wallet",
            name: "wallet_available_nonnegative",
            column: "held",
            condition: |r| format!("{r}held >= 0 AND {r}held <= {r}balance AND {r}open_holds >= 0"),
        },
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
        },
        Rule {
            table: "transfer",
            name: "transfer_state",
            column: "status",
            condition: |r| {
                format!(
                    "{r}kind IN ('PAYMENT', 'REFUND') \
                     AND {r}status IN ('PENDING', 'POSTED', 'VOIDED', 'EXPIRED') \
                     AND ({r}kind = 'REFUND') = ({r}refund_of IS NOT NULL) \
                     AND ({r}captured_amount IS NULL \
                          OR ({r}captured_amount > 0 AND {r}captured_amount <= {r}amount)) \
                     AND {r}refunded_amount >= 0 \
                     AND {r}refunded_amount <= COALESCE({r}captured_amount, {r}amount) \
                     AND ({r}refunded_amount = 0 OR {r}status = 'POSTED') \
                     AND ({r}status <> 'PENDING' OR {r}expires_at IS NOT NULL)"
                )
            },
        },
    ]
}

const INDEXES: [&str; 4] = [
    "CREATE INDEX IF NOT EXISTS transfer_pending_from_idx \
     ON transfer (from_wallet_id, expires_at, id) WHERE status = 'PENDING'",
    "CREATE INDEX IF NOT EXISTS transfer_pending_to_idx \
     ON transfer (to_wallet_id, expires_at, id) WHERE status = 'PENDING'",
    "CREATE INDEX IF NOT EXISTS transfer_pending_expiry_idx \
     ON transfer (expires_at) WHERE status = 'PENDING'",
    "CREATE INDEX IF NOT EXISTS transfer_refund_of_idx \
     ON transfer (refund_of) WHERE refund_of IS NOT NULL",
];

const INDEX_NAMES: [&str; 4] = [
    "transfer_pending_from_idx",
    "transfer_pending_to_idx",
    "transfer_pending_expiry_idx",
    "transfer_refund_of_idx",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction of its own on both backends (sea-orm-migration opens
    /// none on SQLite): a failure leaves the schema as it was.
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
        // The rule checks scan their tables: not bound by the service's
        // statement timeout.
        conn.execute_unprepared("SET LOCAL statement_timeout = 0")
            .await?;
    }
    let columns = [
        ("wallet", big("held").not_null().default(0).to_owned()),
        (
            "wallet",
            ColumnDef::new(Alias::new("open_holds"))
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
        ),
        ("operation", big("available_after").null().to_owned()),
        ("transfer", text16("kind").default("PAYMENT").to_owned()),
        ("transfer", text16("status").default("POSTED").to_owned()),
        ("transfer", big("captured_amount").null().to_owned()),
        (
            "transfer",
            big("refunded_amount").not_null().default(0).to_owned(),
        ),
        (
            "transfer",
            ColumnDef::new(Alias::new("refund_of"))
                .uuid()
                .null()
                .to_owned(),
        ),
        ("transfer", time("expires_at")),
        ("transfer", time("settled_at")),
    ];
    set_known_kinds(manager, KINDS_BEFORE, KINDS).await?;
    // One column per statement: SQLite adds one at a time.
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
    if backend == DbBackend::Postgres {
        conn.execute_unprepared(&format!(
            "ALTER TABLE operation DROP CONSTRAINT IF EXISTS {KIND_LINKS}, \
                 ADD CONSTRAINT {KIND_LINKS} CHECK ({})",
            kind_links("")
        ))
        .await?;
        for rule in new_rules() {
            conn.execute_unprepared(&format!(
                "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
                rule.table,
                rule.name,
                (rule.condition)("")
            ))
            .await?;
        }
    } else {
        rules::drop_sqlite(conn, KIND_LINKS).await?;
        let links = Rule {
            table: "operation",
            name: KIND_LINKS,
            column: "kind",
            condition: kind_links,
        };
        rules::add_sqlite(conn, &links).await?;
        for rule in new_rules() {
            rules::add_sqlite(conn, &rule).await?;
        }
    }
    for index in INDEXES {
        conn.execute_unprepared(index).await?;
    }
    Ok(())
}

async fn down(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    for index in INDEX_NAMES {
        conn.execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
            .await?;
    }
    // Rows of the new kinds would break the old rule: the downgrade
    // refuses (with the rule's name) rather than lose them.
    if backend == DbBackend::Postgres {
        for rule in new_rules() {
            conn.execute_unprepared(&format!(
                "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                rule.table, rule.name
            ))
            .await?;
        }
        conn.execute_unprepared(&format!(
            "ALTER TABLE operation DROP CONSTRAINT IF EXISTS {KIND_LINKS}, \
                 ADD CONSTRAINT {KIND_LINKS} CHECK ({})",
            old_kind_links("")
        ))
        .await?;
    } else {
        for rule in new_rules() {
            rules::drop_sqlite(conn, rule.name).await?;
        }
        rules::drop_sqlite(conn, KIND_LINKS).await?;
        let links = Rule {
            table: "operation",
            name: KIND_LINKS,
            column: "kind",
            condition: old_kind_links,
        };
        rules::add_sqlite(conn, &links).await?;
    }
    set_known_kinds(manager, KINDS, KINDS_BEFORE).await?;
    let columns = [
        ("wallet", "held"),
        ("wallet", "open_holds"),
        ("operation", "available_after"),
        ("transfer", "kind"),
        ("transfer", "status"),
        ("transfer", "captured_amount"),
        ("transfer", "refunded_amount"),
        ("transfer", "refund_of"),
        ("transfer", "expires_at"),
        ("transfer", "settled_at"),
    ];
    for (table, column) in columns {
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

fn big(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).big_integer().to_owned()
}

fn text16(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .string_len(16)
        .not_null()
        .to_owned()
}

fn time(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}
