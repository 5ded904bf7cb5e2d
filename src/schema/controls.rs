//! The operator's controls on a wallet: its status (`setWalletStatus`,
//! with each change kept) and its limits on what leaves it
//! (`setWalletLimits`), checked under the wallet's lock by the posting
//! engine like any movement.

use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use entity::{wallet, wallet_status_change};
use uuid::Uuid;

use super::context::{amount, answer, caller, counted, ledger, money, reader};
use super::scalars::{Dec, Id, Timestamp};
use super::wallets::Wallet;
use crate::domain::error::{AppError, AppResult};
use crate::ledger::Controls;
use crate::store::reads;

/// Whether money may move: FROZEN lets nothing leave (money may still
/// arrive), CLOSED nothing in or out, for good.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "wallet::WalletStatus")]
pub enum WalletStatus {
    Active,
    /// Nothing leaves: transfers, batch items, withdrawals, new holds and
    /// refunds it would pay are `WALLET_FROZEN`; its payees cannot capture
    /// its holds (the operator can); voids and expiry proceed.
    Frozen,
    /// Nothing moves in or out (`WALLET_CLOSED`). Only a wallet with a zero
    /// balance and no open hold either way can be closed; final.
    Closed,
}

/// One change of a wallet's status, as the operator made it.
#[derive(SimpleObject)]
pub struct WalletStatusChange {
    pub status: WalletStatus,
    pub reason: String,
    pub changed_at: Timestamp,
}

impl From<wallet_status_change::Model> for WalletStatusChange {
    fn from(change: wallet_status_change::Model) -> Self {
        WalletStatusChange {
            status: change.status.into(),
            reason: change.reason,
            changed_at: Timestamp(change.created_at),
        }
    }
}

/// A wallet's limits on what leaves it, and today's use of them (a day is
/// a UTC date). Outgoing means transfers, batch items, holds when
/// authorised (a void, an expiry or the uncaptured rest of a capture gives
/// back to the day the hold was taken) and refunds the wallet pays;
/// withdrawals are not limited. Null: no limit.
pub struct WalletLimits(pub wallet::Model);

#[Object]
impl WalletLimits {
    /// The most one transfer, hold or refund out of the wallet may be.
    async fn max_transfer_amount(&self) -> Result<Option<Dec>> {
        Ok(self.0.max_transfer_amount.map(money).transpose()?)
    }

    /// The most that may leave the wallet in a day.
    async fn daily_outgoing_amount(&self) -> Result<Option<Dec>> {
        Ok(self.0.daily_outgoing_amount.map(money).transpose()?)
    }

    /// How many transfers, holds and refunds may leave it in a day.
    async fn daily_outgoing_count(&self) -> Option<i64> {
        self.0.daily_outgoing_count
    }

    /// What left it today.
    async fn outgoing_today(&self) -> Result<Dec> {
        Ok(money(self.today().0)?)
    }

    /// How far below zero its balance may go (0.00: not at all): the
    /// available balance is `balance - heldBalance + creditLimit`.
    /// Withdrawals cannot use it.
    async fn credit_limit(&self) -> Result<Dec> {
        Ok(money(self.0.credit_limit)?)
    }

    /// How many transfers, holds and refunds left it today.
    async fn outgoing_count_today(&self) -> i64 {
        self.today().1
    }
}

impl WalletLimits {
    fn today(&self) -> (i64, i64) {
        self.0.outgoing_on(wallet::utc_day(chrono::Utc::now()))
    }
}

/// A wallet's status changes, newest first (at most `first`, 100).
pub async fn status_changes(
    ctx: &Context<'_>,
    wallet_id: Uuid,
    first: Option<i32>,
) -> AppResult<Vec<WalletStatusChange>> {
    let limit = u64::try_from(first.unwrap_or(20).clamp(0, 100)).unwrap_or(20);
    let rows = reader(ctx)?
        .read(|db| async move { reads::status_changes(&db, wallet_id, limit).await })
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

#[derive(InputObject)]
pub struct SetWalletStatusInput {
    pub wallet_id: Id,
    pub status: WalletStatus,
    /// Why, kept with the change (1 to 500 characters).
    pub reason: String,
}

/// Each field left out stays as it is; null removes that limit.
#[derive(InputObject)]
pub struct SetWalletLimitsInput {
    pub wallet_id: Id,
    pub max_transfer_amount: MaybeUndefined<Dec>,
    pub daily_outgoing_amount: MaybeUndefined<Dec>,
    /// Greater than zero.
    pub daily_outgoing_count: MaybeUndefined<i64>,
    /// The credit line, at most 1000000000.00; null or 0.00 removes it.
    /// Lowered below what the wallet uses, it blocks debits until the
    /// wallet is back within it. Each change is a CREDIT_LIMIT row in the
    /// wallet's history.
    pub credit_limit: MaybeUndefined<Dec>,
}

#[derive(SimpleObject)]
pub struct SetWalletStatusPayload {
    /// The wallet as the change left it.
    pub wallet: Wallet,
}

#[derive(SimpleObject)]
pub struct SetWalletLimitsPayload {
    /// The wallet as the change left it.
    pub wallet: Wallet,
}

/// `None`: left out; `Some(None)`: null.
fn change<T, U>(
    value: MaybeUndefined<T>,
    convert: impl FnOnce(T) -> AppResult<U>,
) -> AppResult<Option<Option<U>>> {
    Ok(match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(convert(v)?)),
    })
}

#[derive(Default)]
pub struct ControlsMutation;

#[Object]
impl ControlsMutation {
    /// Freezes, unfreezes or closes a wallet (operator only). Setting the
    /// status it has changes nothing.
    async fn set_wallet_status(
        &self,
        ctx: &Context<'_>,
        input: SetWalletStatusInput,
    ) -> Result<Option<SetWalletStatusPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let wallet = ledger(ctx)?
                    .set_wallet_status(
                        caller,
                        input.wallet_id.0,
                        input.status.into(),
                        &input.reason,
                    )
                    .await;
                let wallet = counted("setWalletStatus", wallet)?;
                Ok(SetWalletStatusPayload {
                    wallet: Wallet(wallet),
                })
            }
            .await,
        )
    }

    /// Sets or removes a wallet's limits on what leaves it and its credit
    /// line (operator only), checked from its next movement on.
    async fn set_wallet_limits(
        &self,
        ctx: &Context<'_>,
        input: SetWalletLimitsInput,
    ) -> Result<Option<SetWalletLimitsPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let cents = |field: &'static str| {
                    move |value: Dec| {
                        amount(value).map(|m| m.cents()).map_err(|err| match err {
                            // The amount's rules, at this field.
                            AppError::InvalidInput(invalid) => {
                                AppError::invalid_field(field, invalid.to_string())
                            }
                            other => other,
                        })
                    }
                };
                let controls = Controls {
                    status: None,
                    max_transfer_amount: change(
                        input.max_transfer_amount,
                        cents("maxTransferAmount"),
                    )?,
                    daily_outgoing_amount: change(
                        input.daily_outgoing_amount,
                        cents("dailyOutgoingAmount"),
                    )?,
                    daily_outgoing_count: change(input.daily_outgoing_count, Ok)?,
                    credit_limit: change(input.credit_limit, |value: Dec| {
                        match value.0.is_zero() {
                            true => Ok(0),
                            false => cents("creditLimit")(value),
                        }
                    })?
                    .map(|line| line.unwrap_or(0)),
                };
                let wallet = ledger(ctx)?
                    .set_wallet_limits(caller, input.wallet_id.0, controls)
                    .await;
                let wallet = counted("setWalletLimits", wallet)?;
                Ok(SetWalletLimitsPayload {
                    wallet: Wallet(wallet),
                })
            }
            .await,
        )
    }
}
