use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// What an operation did to its wallet.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum OperationKind {
    #[sea_orm(string_value = "DEPOSIT")]
    Deposit,
    #[sea_orm(string_value = "TRANSFER_OUT")]
    TransferOut,
    #[sea_orm(string_value = "TRANSFER_IN")]
    TransferIn,
    #[sea_orm(string_value = "WITHDRAWAL")]
    Withdrawal,
    /// Funds set aside for an authorised transfer: `balance` unchanged,
    /// the available balance lowered.
    #[sea_orm(string_value = "HOLD")]
    Hold,
    /// A hold given back (whole) on capture, void or expiry.
    #[sea_orm(string_value = "HOLD_RELEASE")]
    HoldRelease,
    /// On the payee's wallet: a hold placed for it. Its balances are
    /// unchanged; its incoming held balance rises.
    #[sea_orm(string_value = "INCOMING_HOLD")]
    IncomingHold,
    /// On the payee's wallet: a hold for it ended (before the TRANSFER_IN
    /// of a capture).
    #[sea_orm(string_value = "INCOMING_HOLD_RELEASE")]
    IncomingHoldRelease,
    /// The wallet's credit line changed: amount 0, balance unchanged, the
    /// available balance after is the new line's.
    #[sea_orm(string_value = "CREDIT_LIMIT")]
    CreditLimit,
}

/// One row of the append-only ledger: never updated, never deleted.
/// `seq` numbers a wallet's operations 1, 2, 3... without gaps. Serializable
/// because committed operations travel to subscribers as NOTIFY payloads.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "operation")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub wallet_id: Uuid,
    pub seq: i64,
    pub kind: OperationKind,
    pub amount: i64,
    pub balance_after: i64,
    /// `balance - held + credit_limit` after this row; rows from before
    /// holds have none (it was `balance_after`): see `available_after()`.
    pub available_after: Option<i64>,
    /// The wallet's incoming held balance after this row; rows from before
    /// incoming holds have none.
    pub incoming_held_after: Option<i64>,
    pub transfer_id: Option<Uuid>,
    pub counterparty_wallet_id: Option<Uuid>,
    pub description: Option<String>,
    /// `[[key, value], ...]` in key order (JSON), or NULL for none; on a
    /// transfer's ledger rows it is the transfer's.
    pub metadata: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl Model {
    /// The wallet's available balance right after this row.
    pub fn available_after(&self) -> i64 {
        self.available_after.unwrap_or(self.balance_after)
    }
}

impl ActiveModelBehavior for ActiveModel {}
