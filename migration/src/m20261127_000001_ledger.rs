//! The ledger schema: clients, their wallets, transfers, the append-only
//! operation log and idempotency keys.
//!
//! Money columns are 64-bit integers holding cents, on every backend. The
//! database refuses a negative balance on its own (CHECK), so a bug in the
//! service cannot overdraw a wallet.

use sea_orm_migration::{prelude::*, schema::*};

use crate::MAX_BALANCE_CENTS;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Client {
    Table,
    Id,
    Name,
    Email,
    TokenHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Wallet {
    Table,
    Id,
    ClientId,
    Currency,
    Balance,
    LastSeq,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Transfer {
    Table,
    Id,
    FromWalletId,
    ToWalletId,
    Amount,
    Description,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Operation {
    Table,
    Id,
    WalletId,
    Seq,
    Kind,
    Amount,
    BalanceAfter,
    TransferId,
    CounterpartyWalletId,
    Description,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKey {
    Table,
    Scope,
    Key,
    Fingerprint,
    TransferId,
    OperationId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Client::Table)
                    .col(pk_uuid(Client::Id))
                    .col(string_len(Client::Name, 200))
                    .col(string_len_null(Client::Email, 320).unique_key())
                    .col(string_len_uniq(Client::TokenHash, 64))
                    .col(timestamp_with_time_zone(Client::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Wallet::Table)
                    .col(pk_uuid(Wallet::Id))
                    .col(uuid_uniq(Wallet::ClientId))
                    .col(string_len(Wallet::Currency, 3))
                    .col(big_integer(Wallet::Balance))
                    .col(big_integer(Wallet::LastSeq))
                    .col(timestamp_with_time_zone(Wallet::CreatedAt))
                    .col(timestamp_with_time_zone(Wallet::UpdatedAt))
                    .check((
                        "wallet_balance_range",
                        Expr::col(Wallet::Balance)
                            .gte(0)
                            .and(Expr::col(Wallet::Balance).lte(MAX_BALANCE_CENTS)),
                    ))
                    .check(("wallet_currency_usd", Expr::col(Wallet::Currency).eq("USD")))
                    .foreign_key(
                        ForeignKey::create()
                            .name("wallet_client_fk")
                            .from(Wallet::Table, Wallet::ClientId)
                            .to(Client::Table, Client::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Transfer::Table)
                    .col(pk_uuid(Transfer::Id))
                    .col(uuid(Transfer::FromWalletId))
                    .col(uuid(Transfer::ToWalletId))
                    .col(big_integer(Transfer::Amount))
                    .col(string_len_null(Transfer::Description, 500))
                    .col(timestamp_with_time_zone(Transfer::CreatedAt))
                    .check((
                        "transfer_amount_positive",
                        Expr::col(Transfer::Amount).gt(0),
                    ))
                    .check((
                        "transfer_distinct_wallets",
                        Expr::col(Transfer::FromWalletId).ne(Expr::col(Transfer::ToWalletId)),
                    ))
                    .foreign_key(
                        ForeignKey::create()
                            .name("transfer_from_wallet_fk")
                            .from(Transfer::Table, Transfer::FromWalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("transfer_to_wallet_fk")
                            .from(Transfer::Table, Transfer::ToWalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Operation::Table)
                    .col(pk_uuid(Operation::Id))
                    .col(uuid(Operation::WalletId))
                    .col(big_integer(Operation::Seq))
                    .col(string_len(Operation::Kind, 16))
                    .col(big_integer(Operation::Amount))
                    .col(big_integer(Operation::BalanceAfter))
                    .col(uuid_null(Operation::TransferId))
                    .col(uuid_null(Operation::CounterpartyWalletId))
                    .col(string_len_null(Operation::Description, 500))
                    .col(timestamp_with_time_zone(Operation::CreatedAt))
                    .check((
                        "operation_kind_known",
                        Expr::col(Operation::Kind).is_in([
                            "DEPOSIT",
                            "TRANSFER_OUT",
                            "TRANSFER_IN",
                        ]),
                    ))
                    .check((
                        "operation_amount_positive",
                        Expr::col(Operation::Amount).gt(0),
                    ))
                    .check((
                        "operation_balance_after_range",
                        Expr::col(Operation::BalanceAfter).gte(0),
                    ))
                    .check(("operation_seq_positive", Expr::col(Operation::Seq).gt(0)))
                    .foreign_key(
                        ForeignKey::create()
                            .name("operation_wallet_fk")
                            .from(Operation::Table, Operation::WalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("operation_transfer_fk")
                            .from(Operation::Table, Operation::TransferId)
                            .to(Transfer::Table, Transfer::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("operation_counterparty_fk")
                            .from(Operation::Table, Operation::CounterpartyWalletId)
                            .to(Wallet::Table, Wallet::Id),
                    )
                    .to_owned(),
            )
            .await?;

        // The history's order and its cursors: page N costs what page 1 does.
        manager
            .create_index(
                Index::create()
                    .name("operation_wallet_seq_uniq")
                    .table(Operation::Table)
                    .col(Operation::WalletId)
                    .col(Operation::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("operation_transfer_idx")
                    .table(Operation::Table)
                    .col(Operation::TransferId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKey::Table)
                    .col(string_len(IdempotencyKey::Scope, 64))
                    .col(string_len(IdempotencyKey::Key, 255))
                    .col(text(IdempotencyKey::Fingerprint))
                    .col(uuid_null(IdempotencyKey::TransferId))
                    .col(uuid_null(IdempotencyKey::OperationId))
                    .col(timestamp_with_time_zone(IdempotencyKey::CreatedAt))
                    .primary_key(
                        Index::create()
                            .name("idempotency_key_pk")
                            .col(IdempotencyKey::Scope)
                            .col(IdempotencyKey::Key),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKey::Table.into_iden(),
            Operation::Table.into_iden(),
            Transfer::Table.into_iden(),
            Wallet::Table.into_iden(),
            Client::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
