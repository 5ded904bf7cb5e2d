use async_graphql::{Context, ErrorExtensions, InputObject, Object, Result};

use super::scalars::{Dec, Id, Timestamp};
use super::types::{
    AuthorizeTransferPayload, CaptureTransferPayload, CreateClientPayload, DepositPayload,
    RefundTransferPayload, Transfer, TransferBatchPayload, TransferBatchResult, TransferPayload,
    VoidTransferPayload, WithdrawPayload, caller, ledger,
};
use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};
use crate::domain::money::Money;
use crate::ledger::{
    AuthorizeRequest, DepositRequest, RefundRequest, TransferRequest, WithdrawRequest,
};

/// Every root field is nullable and independent of its siblings (the
/// GraphQL spec's serial execution): a document with several mutations
/// answers each on its own, so one refused field never hides another that
/// committed. Per field, data means it committed and an error means it
/// changed nothing.
pub struct MutationRoot;

#[derive(InputObject)]
pub struct CreateClientInput {
    pub name: String,
    pub email: Option<String>,
}

#[derive(InputObject)]
pub struct DepositInput {
    pub wallet_id: Id,
    /// Greater than zero, at most two decimals, at most 1000000000.00.
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct WithdrawInput {
    pub wallet_id: Id,
    /// Greater than zero, at most two decimals; within the available balance.
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct TransferInput {
    pub from_wallet_id: Id,
    pub to_wallet_id: Id,
    /// Greater than zero, at most two decimals, at most 1000000000.00.
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
}

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

#[derive(InputObject)]
pub struct RefundTransferInput {
    /// A POSTED payment.
    pub transfer_id: Id,
    /// At most what is left to refund; all of it when left out.
    pub amount: Option<Dec>,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct TransferBatchInput {
    /// Up to 1,000 transfers, each out of the caller's own wallet; their
    /// idempotency keys must differ.
    pub transfers: Vec<TransferInput>,
    /// true: all post or none does (a refusal is the failing item's code,
    /// with `extensions.index`). false: each item posts on its own.
    pub atomic: bool,
}

fn amount(value: Dec) -> AppResult<Money> {
    Ok(Money::amount(value.0)?)
}

fn transfer_request(input: TransferInput) -> AppResult<TransferRequest> {
    Ok(TransferRequest {
        from_wallet_id: input.from_wallet_id.0,
        to_wallet_id: input.to_wallet_id.0,
        amount: amount(input.amount)?,
        description: input.description,
        idempotency_key: input.idempotency_key,
    })
}

/// Counts a money verb's outcome in /metrics and passes it on.
fn counted<T>(verb: &'static str, outcome: AppResult<T>) -> AppResult<T> {
    crate::metrics::ledger_request(verb, outcome.as_ref().map_or_else(AppError::code, |_| "OK"));
    outcome
}

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a client with an empty wallet. Needs no token; returns the
    /// client's own token, which is never shown again.
    async fn create_client(
        &self,
        ctx: &Context<'_>,
        input: CreateClientInput,
    ) -> Result<Option<CreateClientPayload>> {
        let created = ledger(ctx)?
            .create_client(&input.name, input.email.as_deref())
            .await?;
        Ok(Some(CreateClientPayload {
            client: created.client,
            wallet: created.wallet,
            token: created.token,
        }))
    }

    /// Puts money into a wallet (operator only).
    async fn deposit(
        &self,
        ctx: &Context<'_>,
        input: DepositInput,
    ) -> Result<Option<DepositPayload>> {
        let request = DepositRequest {
            wallet_id: input.wallet_id.0,
            amount: amount(input.amount)?,
            description: input.description,
            idempotency_key: input.idempotency_key,
        };
        let outcome = counted("deposit", ledger(ctx)?.deposit(caller(ctx)?, request).await)?;
        Ok(Some(DepositPayload {
            operation: outcome.operation,
            wallet: outcome.wallet,
        }))
    }

    /// Takes money out of a wallet to an outside account (operator only):
    /// a WITHDRAWAL row, within the wallet's available balance.
    async fn withdraw(
        &self,
        ctx: &Context<'_>,
        input: WithdrawInput,
    ) -> Result<Option<WithdrawPayload>> {
        let request = WithdrawRequest {
            wallet_id: input.wallet_id.0,
            amount: amount(input.amount)?,
            description: input.description,
            idempotency_key: input.idempotency_key,
        };
        let outcome = counted(
            "withdraw",
            ledger(ctx)?.withdraw(caller(ctx)?, request).await,
        )?;
        Ok(Some(WithdrawPayload {
            operation: outcome.operation,
            wallet: outcome.wallet,
        }))
    }

    /// Moves money from the caller's wallet to another wallet, atomically.
    async fn transfer(
        &self,
        ctx: &Context<'_>,
        input: TransferInput,
    ) -> Result<Option<TransferPayload>> {
        let request = transfer_request(input)?;
        let outcome = counted(
            "transfer",
            ledger(ctx)?.transfer(caller(ctx)?, request).await,
        )?;
        Ok(Some(TransferPayload {
            transfer: outcome.transfer,
            debit: outcome.debit,
        }))
    }

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

    /// Pays back (part of) a POSTED payment (its payee or the operator): a
    /// new REFUND transfer from the payee to the payer.
    async fn refund_transfer(
        &self,
        ctx: &Context<'_>,
        input: RefundTransferInput,
    ) -> Result<Option<RefundTransferPayload>> {
        let request = RefundRequest {
            transfer_id: input.transfer_id.0,
            amount: input.amount.map(amount).transpose()?,
            description: input.description,
            idempotency_key: input.idempotency_key,
        };
        let outcome = counted(
            "refundTransfer",
            ledger(ctx)?.refund(caller(ctx)?, request).await,
        )?;
        Ok(Some(RefundTransferPayload {
            refund: outcome.refund,
            original: outcome.original,
        }))
    }

    /// Up to 1,000 transfers out of the caller's wallet in one request and
    /// one transaction.
    async fn transfer_batch(
        &self,
        ctx: &Context<'_>,
        input: TransferBatchInput,
    ) -> Result<Option<TransferBatchPayload>> {
        let caller = caller(ctx)?;
        let from_wallet_id = match caller {
            Caller::Client { wallet_id, .. } => *wallet_id,
            Caller::Anonymous => return Err(AppError::Unauthenticated.into()),
            Caller::Operator => return Err(AppError::Forbidden.into()),
        };
        let atomic = input.atomic;
        let requests: Vec<AppResult<TransferRequest>> =
            input.transfers.into_iter().map(transfer_request).collect();
        let outcomes = ledger(ctx)?
            .transfer_batch(caller, requests, atomic)
            .await
            .map_err(|refused| at_index(refused.error, refused.index))?;
        let results = outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                crate::metrics::ledger_request(
                    "transferBatch",
                    outcome.as_ref().map_or_else(AppError::code, |_| "OK"),
                );
                let index = i32::try_from(index).unwrap_or(i32::MAX);
                match outcome {
                    Ok(posted) => TransferBatchResult {
                        index,
                        transfer: Some(Transfer(posted.transfer)),
                        code: None,
                        message: None,
                    },
                    Err(err) => TransferBatchResult {
                        index,
                        transfer: None,
                        code: Some(err.code().to_owned()),
                        message: Some(err.to_string()),
                    },
                }
            })
            .collect();
        Ok(Some(TransferBatchPayload {
            results,
            from_wallet_id,
        }))
    }
}

/// A refusal of one item of an atomic batch: its code, and its index.
fn at_index(err: AppError, index: usize) -> async_graphql::Error {
    async_graphql::Error::from(err).extend_with(|_, ext| ext.set("index", index))
}
