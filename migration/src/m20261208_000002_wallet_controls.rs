//! Wallet controls (issue 20): a status (`ACTIVE`, `FROZEN`, `CLOSED`) with
//! each change kept (`wallet_status_change`), and the operator's limits on
//! what leaves a wallet with the day's use of them.
//!
//! Every column has a default (existing wallets are ACTIVE, unlimited, with
//! nothing used), so adding them rewrites nothing on PostgreSQL 11+ and is
//! instant on SQLite. The rules are CHECKs on PostgreSQL and trigger pairs
//! on SQLite (`rules`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::rules::{self, Rule};

#[derive(DeriveMigrationName)]
pub struct Migration;

const RULES: &[Rule] = &[
    Rule {
        table: "wallet",
        name: "wallet_status_known",
        column: "status",
        condition: |p| format!("{p}status IN ('ACTIVE', 'FROZEN', 'CLOSED')"),
    },
    Rule {
        table: "wallet",
        name: "wallet_limits_positive",
        column: "max_transfer_amount",
        condition: |p| {
            format!(
                "({p}max_transfer_amount IS NULL OR {p}max_transfer_amount > 0) \
                 AND ({p}daily_outgoing_amount IS NULL OR {p}daily_outgoing_amount > 0) \
                 AND ({p}daily_outgoing_count IS NULL OR {p}daily_outgoing_count > 0) \
                 AND {p}outgoing_today >= 0 AND {p}outgoing_count_today >= 0"
            )
        },
    },
    Rule {
        table: "wallet",
        name: "wallet_closed_empty",
        column: "status",
        condition: |p| {
            format!(
                "{p}status <> 'CLOSED' OR ({p}balance = 0 AND {p}held = 0 \
                 AND {p}incoming_held = 0 AND {p}open_holds = 0)"
            )
        },
    },
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(Alias::new("status"))
                .string_len(16)
                .not_null()
                .default("ACTIVE")
                .to_owned(),
            ColumnDef::new(Alias::new("max_transfer_amount"))
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("daily_outgoing_amount"))
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("daily_outgoing_count"))
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("outgoing_day"))
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Alias::new("outgoing_today"))
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(Alias::new("outgoing_count_today"))
                .big_integer()
                .not_null()
                .default(0)
                .to_owned(),
        ];
        // One column per statement: SQLite adds one at a time.
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("wallet"))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("wallet_status_change"))
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Alias::new("id"))
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("wallet_id")).uuid().not_null())
                    .col(
                        ColumnDef::new(Alias::new("status"))
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("reason"))
                            .string_len(500)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS wallet_status_change_wallet_idx \
             ON wallet_status_change (wallet_id, created_at, id)",
        )
        .await?;
        for rule in RULES {
            if manager.get_database_backend() == DbBackend::Postgres {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} CHECK ({})",
                    rule.table,
                    rule.name,
                    (rule.condition)("")
                ))
                .await?;
            } else {
                rules::add_sqlite(db, rule).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for rule in RULES {
            if manager.get_database_backend() == DbBackend::Postgres {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                    rule.table, rule.name
                ))
                .await?;
            } else {
                rules::drop_sqlite(db, rule.name).await?;
            }
        }
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("wallet_status_change"))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        for column in [
            "status",
            "max_transfer_amount",
            "daily_outgoing_amount",
            "daily_outgoing_count",
            "outgoing_day",
            "outgoing_today",
            "outgoing_count_today",
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("wallet"))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
