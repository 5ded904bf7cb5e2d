//! Holds: a transfer authorised now (`authorizeTransfer`), captured or
//! voided later by its payee, or expired.

use async_graphql::{Context, InputObject, Object, Result};
use entity::transfer;

use super::context::{amount, caller, counted, ledger, wallet_by_id};
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
pub struct AuthorizeTransferPayload(pub transfer::Model);

#[Object]
#[allow(clippy::wrong_self_convention)]
impl AuthorizeTransferPayload {
    async fn transfer(&self) -> Transfer {
        Transfer(self.0.clone())
    }

    /// The payer's wallet (the caller's own) as it is now.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.0.from_wallet_id).await?)
    }
}

/// The payload of a capture or a void: the transfer ended by its payee
/// (or the operator); the payer is another client, the payee the caller.
macro_rules! ended_transfer_payload {
    ($name:ident) => {
        pub struct $name(pub transfer::Model);

        #[Object]
        #[allow(clippy::wrong_self_convention)]
        impl $name {
            async fn transfer(&self) -> Transfer {
                Transfer(self.0.clone())
            }

            /// The payer, of which only the id is visible.
            async fn from_wallet(&self) -> PublicWallet {
                PublicWallet::new(self.0.from_wallet_id)
            }

            /// The payee (the caller's own wallet) as it is now.
            async fn to_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
                Ok(wallet_by_id(ctx, self.0.to_wallet_id).await?)
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
        let request = AuthorizeRequest {
            from_wallet_id: input.from_wallet_id.0,
            to_wallet_id: input.to_wallet_id.0,
            amount: amount(input.amount)?,
            expires_at: input.expires_at.map(|t| t.0),
            description: input.description,
            idempotency_key: input.idempotency_key,
        };
        let transfer = ledger(ctx)?.authorize(caller(ctx)?, request).await;
        Ok(Some(AuthorizeTransferPayload(counted(
            "authorizeTransfer",
            transfer,
        )?)))
    }

    /// Posts a pending transfer (its payee or the operator): the hold is
    /// released and `amount` (at most the authorised amount) moves.
    async fn capture_transfer(
        &self,
        ctx: &Context<'_>,
        input: CaptureTransferInput,
    ) -> Result<Option<CaptureTransferPayload>> {
        let amount = input.amount.map(amount).transpose()?;
        let transfer = ledger(ctx)?
            .capture(
                caller(ctx)?,
                input.transfer_id.0,
                amount,
                input.idempotency_key,
            )
            .await;
        Ok(Some(CaptureTransferPayload(counted(
            "captureTransfer",
            transfer,
        )?)))
    }

    /// Cancels a pending transfer (its payee or the operator): the hold is
    /// released, nothing moves.
    async fn void_transfer(
        &self,
        ctx: &Context<'_>,
        input: VoidTransferInput,
    ) -> Result<Option<VoidTransferPayload>> {
        let transfer = ledger(ctx)?
            .void(caller(ctx)?, input.transfer_id.0, input.idempotency_key)
            .await;
        Ok(Some(VoidTransferPayload(counted(
            "voidTransfer",
            transfer,
        )?)))
    }
}
