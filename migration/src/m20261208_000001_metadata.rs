//! Metadata (issue 20): the application's own `key = value` pairs on a
//! payment, and the indexes that find them.
//!
//! - `transfer.metadata` and `operation.metadata`: the pairs as a JSON
//!   array of `[key, value]` in key order, stored once like a description:
//!   on the transfer when there is one (its ledger rows show the
//!   transfer's), else on the row itself (a deposit, a withdrawal). NULL
//!   when there is none, so a ledger row without metadata costs a NULL bit.
//! - `operation_tag (wallet_id, key, value, seq)`: one row per pair per
//!   ledger row that shows it, so `operations(filter: {metadata})` walks
//!   one primary key from its cursor, O(log n) per page however long the
//!   history and however rare the pair.
//! - `transfer_tag (wallet_id, key, value, created_at, transfer_id)`: one
//!   row per pair per party, the same for `transfers(filter: {metadata})`
//!   in that list's order.
//!
//! Nothing is written for rows without metadata; existing rows have none.
//! Adding a NULL column is instant on both backends.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["transfer", "operation"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(ColumnDef::new(Alias::new("metadata")).text().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("operation_tag"))
                    .if_not_exists()
                    .col(ColumnDef::new(Alias::new("wallet_id")).uuid().not_null())
                    .col(ColumnDef::new(Alias::new("key")).string_len(40).not_null())
                    .col(
                        ColumnDef::new(Alias::new("value"))
                            .string_len(256)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("seq")).big_integer().not_null())
                    .primary_key(
                        Index::create()
                            .name("operation_tag_pkey")
                            .col(Alias::new("wallet_id"))
                            .col(Alias::new("key"))
                            .col(Alias::new("value"))
                            .col(Alias::new("seq")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("transfer_tag"))
                    .if_not_exists()
                    .col(ColumnDef::new(Alias::new("wallet_id")).uuid().not_null())
                    .col(ColumnDef::new(Alias::new("key")).string_len(40).not_null())
                    .col(
                        ColumnDef::new(Alias::new("value"))
                            .string_len(256)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("transfer_id")).uuid().not_null())
                    .primary_key(
                        Index::create()
                            .name("transfer_tag_pkey")
                            .col(Alias::new("wallet_id"))
                            .col(Alias::new("key"))
                            .col(Alias::new("value"))
                            .col(Alias::new("created_at"))
                            .col(Alias::new("transfer_id")),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["operation_tag", "transfer_tag"] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        for table in ["transfer", "operation"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new("metadata"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
