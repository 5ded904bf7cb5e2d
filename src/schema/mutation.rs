use async_graphql::{Context, InputObject, Object, Result};

use super::scalars::{Dec, Id};
use super::types::{CreateClientPayload, DepositPayload, TransferPayload, caller, ledger};
use crate::domain::error::AppError;
use crate::domain::money::Money;
use crate::ledger::{DepositRequest, TransferRequest};

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
pub struct TransferInput {
    pub from_wallet_id: Id,
    pub to_wallet_id: Id,
    /// Greater than zero, at most two decimals, at most 1000000000.00.
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
}

#[Object(name = "Mutation")]
impl MutationRoot {
    /// Creates a client with an empty wallet. Needs no token; returns the
    /// client's own token, which is never shown again.
    async fn create_client(
        &self,
        ctx: &Context<'_>,
        input: CreateClientInput,
    ) -> Result<CreateClientPayload> {
        let created = ledger(ctx)?
            .create_client(&input.name, input.email.as_deref())
            .await?;
        Ok(CreateClientPayload {
            client: created.client,
            wallet: created.wallet,
            token: created.token,
        })
    }

    /// Puts money into a wallet (operator only).
    async fn deposit(&self, ctx: &Context<'_>, input: DepositInput) -> Result<DepositPayload> {
        let request = DepositRequest {
            wallet_id: input.wallet_id.0,
            amount: Money::amount(input.amount.0).map_err(AppError::from)?,
            description: input.description,
            idempotency_key: input.idempotency_key,
        };
        let outcome = ledger(ctx)?.deposit(caller(ctx)?, request).await;
        crate::metrics::ledger_request(
            "deposit",
            outcome.as_ref().map_or_else(AppError::code, |_| "OK"),
        );
        let outcome = outcome?;
        Ok(DepositPayload {
            operation: outcome.operation,
            wallet: outcome.wallet,
        })
    }

    /// Moves money from the caller's wallet to another wallet, atomically.
    async fn transfer(&self, ctx: &Context<'_>, input: TransferInput) -> Result<TransferPayload> {
        let request = TransferRequest {
            from_wallet_id: input.from_wallet_id.0,
            to_wallet_id: input.to_wallet_id.0,
            amount: Money::amount(input.amount.0).map_err(AppError::from)?,
            description: input.description,
            idempotency_key: input.idempotency_key,
        };
        let outcome = ledger(ctx)?.transfer(caller(ctx)?, request).await;
        crate::metrics::ledger_request(
            "transfer",
            outcome.as_ref().map_or_else(AppError::code, |_| "OK"),
        );
        let outcome = outcome?;
        Ok(TransferPayload {
            transfer: outcome.transfer,
            debit: outcome.debit,
        })
    }
}
