//! Holds: a transfer authorised now (`authorizeTransfer`), captured or
//! voided later by its payee, or expired.

use async_graphql::{ComplexObject, Context, InputObject, Object, Result, SimpleObject};
use entity::transfer;

use super::changes::Changed;
use super::context::{amount, answer, caller, counted, ledger, wallet_by_id};
use super::metadata::{self, MetadataInput};
use super::payments::Transfer;
use super::scalars::{Dec, Id, Timestamp};
use super::wallets::{PublicWallet, Wallet};
use crate::ledger::AuthorizeRequest;

#[derive(InputObject)]
pub struct AuthorizeTransferInput {
    pub from_wallet_id: Id,
    pub to_wallet_id: Id,
    /// Held on the payer's available balance until capture, void or expiry.
    pub amount: Dec,
    /// In the future, at most 30 days ahead; 7 days ahead when left out.
    pub expires_at: Option<Timestamp>,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
    pub description: Option<String>,
    /// The application's own references (at most 16), shown on the
    /// transfer and its ledger rows; part of what a retry must repeat.
    pub metadata: Option<Vec<MetadataInput>>,
}

#[derive(InputObject)]
pub struct CaptureTransferInput {
    pub transfer_id: Id,
    /// At most the authorised amount; all of it when left out. The rest of
    /// the hold is released.
    pub amount: Option<Dec>,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
}

#[derive(InputObject)]
pub struct VoidTransferInput {
    pub transfer_id: Id,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
}

/// A new PENDING transfer: its hold is on the caller's wallet.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AuthorizeTransferPayload {
    #[graphql(skip)]
    pub transfer: transfer::Model,
    #[graphql(flatten)]
    pub changed: Changed,
}

#[ComplexObject]
#[allow(clippy::wrong_self_convention)]
impl AuthorizeTransferPayload {
    async fn transfer(&self) -> Transfer {
        Transfer(self.transfer.clone())
    }

    /// The payer's wallet (the caller's own) as it is now.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.transfer.from_wallet_id).await?)
    }
}

/// The payload of a capture or a void: the transfer ended by its payee
/// (or the operator); the payer is another client, the payee the caller.
macro_rules! ended_transfer_payload {
    ($name:ident) => {
        #[derive(SimpleObject)]
        #[graphql(complex)]
        pub struct $name {
            #[graphql(skip)]
            pub transfer: transfer::Model,
            #[graphql(flatten)]
            pub changed: Changed,
        }

        #[ComplexObject]
        #[allow(clippy::wrong_self_convention)]
        impl $name {
            async fn transfer(&self) -> Transfer {
                Transfer(self.transfer.clone())
            }

            /// The payer, of which only the id is visible (the operator
            /// finds it in `wallets`).
            async fn from_wallet(&self) -> PublicWallet {
                PublicWallet::new(self.transfer.from_wallet_id)
            }

            /// The payee (the caller's own wallet) as it is now.
            async fn to_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
                Ok(wallet_by_id(ctx, self.transfer.to_wallet_id).await?)
            }
        }
    };
}

ended_transfer_payload!(CaptureTransferPayload);
ended_transfer_payload!(VoidTransferPayload);

#[derive(Default)]
pub struct HoldsMutation;

#[Object]
impl HoldsMutation {
    /// Holds money of the caller's wallet for a payee: a PENDING transfer,
    /// which the payee (or the operator) captures or voids before it
    /// expires.
    async fn authorize_transfer(
        &self,
        ctx: &Context<'_>,
        input: AuthorizeTransferInput,
    ) -> Result<Option<AuthorizeTransferPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let request = AuthorizeRequest {
                    from_wallet_id: input.from_wallet_id.0,
                    to_wallet_id: input.to_wallet_id.0,
                    amount: amount(input.amount)?,
                    expires_at: input.expires_at.map(|t| t.0),
                    description: input.description,
                    metadata: metadata::parse(input.metadata)?,
                    idempotency_key: input.idempotency_key,
                };
                let held = ledger(ctx)?.authorize(caller, request).await;
                let held = counted("authorizeTransfer", held)?;
                Ok(AuthorizeTransferPayload {
                    changed: Changed::visible(caller, held.changes),
                    transfer: held.transfer,
                })
            }
            .await,
        )
    }

    /// Posts a pending transfer (its payee or the operator): the hold is
    /// released and `amount` (at most the authorised amount) moves.
    async fn capture_transfer(
        &self,
        ctx: &Context<'_>,
        input: CaptureTransferInput,
    ) -> Result<Option<CaptureTransferPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let amount = input.amount.map(amount).transpose()?;
                let ended = ledger(ctx)?
                    .capture(caller, input.transfer_id.0, amount, input.idempotency_key)
                    .await;
                let ended = counted("captureTransfer", ended)?;
                Ok(CaptureTransferPayload {
                    changed: Changed::visible(caller, ended.changes),
                    transfer: ended.transfer,
                })
            }
            .await,
        )
    }

    /// Cancels a pending transfer (its payee or the operator): the hold is
    /// released, nothing moves.
    async fn void_transfer(
        &self,
        ctx: &Context<'_>,
        input: VoidTransferInput,
    ) -> Result<Option<VoidTransferPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let ended = ledger(ctx)?
                    .void(caller, input.transfer_id.0, input.idempotency_key)
                    .await;
                let ended = counted("voidTransfer", ended)?;
                Ok(VoidTransferPayload {
                    changed: Changed::visible(caller, ended.changes),
                    transfer: ended.transfer,
                })
            }
            .await,
        )
    }
}
