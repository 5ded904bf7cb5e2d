use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Why money moved: a payment, or a refund of one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum TransferKind {
    #[sea_orm(string_value = "PAYMENT")]
    Payment,
    #[sea_orm(string_value = "REFUND")]
    Refund,
}

/// Where a transfer is in its life: a one-phase transfer is born POSTED; an
/// authorised one is PENDING until it is captured (POSTED), voided or
/// expires. The three ends are final.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum TransferStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "POSTED")]
    Posted,
    #[sea_orm(string_value = "VOIDED")]
    Voided,
    #[sea_orm(string_value = "EXPIRED")]
    Expired,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Payment => "PAYMENT",
            TransferKind::Refund => "REFUND",
        }
    }
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "PENDING",
            TransferStatus::Posted => "POSTED",
            TransferStatus::Voided => "VOIDED",
            TransferStatus::Expired => "EXPIRED",
        }
    }
}

/// A movement of money between two wallets; its ledger rows are in
/// `operation`. `amount` never changes: what was sent or authorised.
///
/// Transfers written before holds existed have no `captured_amount` and no
/// `settled_at` (the upgrade adds the columns without rewriting the table):
/// see `captured` and `settled`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "transfer")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: i64,
    pub description: Option<String>,
    /// `[[key, value], ...]` in key order (JSON), or NULL for none; on a
    /// transfer's ledger rows it is the transfer's.
    pub metadata: Option<String>,
    pub created_at: DateTimeUtc,
    pub kind: TransferKind,
    pub status: TransferStatus,
    pub captured_amount: Option<i64>,
    pub refunded_amount: i64,
    pub refund_of: Option<Uuid>,
    pub expires_at: Option<DateTimeUtc>,
    pub settled_at: Option<DateTimeUtc>,
}

impl Model {
    /// What moved, once POSTED (a row from before holds: all of it).
    pub fn captured(&self) -> Option<i64> {
        (self.status == TransferStatus::Posted).then(|| self.captured_amount.unwrap_or(self.amount))
    }

    /// When it reached its final status (a row from before holds: when it
    /// was made); none while PENDING.
    pub fn settled(&self) -> Option<DateTimeUtc> {
        match self.status {
            TransferStatus::Pending => None,
            _ => Some(self.settled_at.unwrap_or(self.created_at)),
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
