//! What resolvers take from the request and the schema: the caller, the
//! store, the ledger, the request's loader; and the checks of what a caller
//! may read, in one place for every area.

use async_graphql::Context;
use entity::wallet;
use uuid::Uuid;

use super::loaders::{RequestLoader, TransferId, WalletId};
use super::payments::Transfer;
use super::scalars::Dec;
use super::wallets::Wallet;
use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};
use crate::domain::money::Money;
use crate::ledger::Ledger;
use crate::store::Store;

pub fn caller<'a>(ctx: &Context<'a>) -> AppResult<&'a Caller> {
    ctx.data::<Caller>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("request has no caller")))
}

pub fn store<'a>(ctx: &Context<'a>) -> AppResult<&'a Store> {
    ctx.data::<Store>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("schema has no store")))
}

pub fn ledger<'a>(ctx: &Context<'a>) -> AppResult<&'a Ledger> {
    ctx.data::<Ledger>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("schema has no ledger")))
}

/// The configured largest page (the default when the schema has none).
pub fn max_page_size(ctx: &Context<'_>) -> usize {
    ctx.data_opt::<super::MaxPageSize>().map_or(100, |m| m.0)
}

pub fn loader<'a>(ctx: &Context<'a>) -> AppResult<&'a RequestLoader> {
    ctx.data::<RequestLoader>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("request has no loader")))
}

/// Where the request's reads go (a replica when fresh enough).
pub fn reader<'a>(ctx: &Context<'a>) -> AppResult<&'a crate::store::reader::Reader> {
    Ok(loader(ctx)?.reader())
}

pub async fn load_wallet(ctx: &Context<'_>, id: Uuid) -> AppResult<Option<wallet::Model>> {
    Ok(loader(ctx)?.load_one(WalletId(id)).await?)
}

/// A wallet that must exist (it is referenced by a stored row), for a
/// caller already allowed to read it.
pub async fn wallet_by_id(ctx: &Context<'_>, id: Uuid) -> AppResult<Wallet> {
    load_wallet(ctx, id)
        .await?
        .map(Wallet)
        .ok_or(AppError::NotFound("wallet"))
}

/// Stored cents as a `Decimal`; a negative amount in storage is a bug.
pub fn money(cents: i64) -> AppResult<Dec> {
    Money::from_cents(cents)
        .map(Dec::from)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("negative amount in storage: {cents}")))
}

/// A stored balance, which a credit line lets go below zero.
pub fn signed_money(cents: i64) -> Dec {
    Dec(rust_decimal::Decimal::new(cents, 2))
}

/// An amount from the caller: positive, at most two decimals, bounded.
pub fn amount(value: Dec) -> AppResult<Money> {
    Ok(Money::amount(value.0)?)
}

/// Counts a money verb's outcome in /metrics and passes it on.
pub fn counted<T>(verb: &'static str, outcome: AppResult<T>) -> AppResult<T> {
    crate::metrics::ledger_request(verb, outcome.as_ref().map_or_else(AppError::code, |_| "OK"));
    outcome
}

/// The transfer a stored row links to, if it links to one (the link was
/// checked when the row was readable).
pub async fn linked_transfer(ctx: &Context<'_>, id: Option<Uuid>) -> AppResult<Option<Transfer>> {
    let Some(id) = id else {
        return Ok(None);
    };
    Ok(loader(ctx)?.load_one(TransferId(id)).await?.map(Transfer))
}

/// A transfer the caller may read: its payer, its payee, or the operator.
/// Anyone else is refused the same way whether or not it exists.
pub async fn readable_transfer(ctx: &Context<'_>, id: Uuid) -> AppResult<Transfer> {
    let caller = caller(ctx)?;
    caller.require_authenticated()?;
    let found = loader(ctx)?.load_one(TransferId(id)).await?;
    caller.require_party(found.as_ref().map(|t| (t.from_wallet_id, t.to_wallet_id)))?;
    found.map(Transfer).ok_or(AppError::NotFound("transfer"))
}

/// A wallet the caller may read. A client asking for a wallet that is not
/// its own is refused the same way whether or not that wallet exists.
pub async fn readable_wallet(ctx: &Context<'_>, id: Uuid) -> AppResult<Wallet> {
    let caller = caller(ctx)?;
    caller.require_authenticated()?;
    match load_wallet(ctx, id).await? {
        Some(wallet) => {
            caller.require_read(wallet.client_id)?;
            Ok(Wallet(wallet))
        }
        None if *caller == Caller::Operator => Err(AppError::NotFound("wallet")),
        None => Err(AppError::Forbidden),
    }
}

/// A mutation's answer: its payload, or its refusal with the refused value
/// located inside the mutation's one argument, `input`.
pub fn answer<T>(outcome: AppResult<T>) -> async_graphql::Result<Option<T>> {
    outcome
        .map(Some)
        .map_err(|err| err.in_argument("input").into())
}
