//! Deposits and transfers.
//!
//! A transfer is one transaction: debit the payer with a conditional UPDATE
//! (`... WHERE balance >= amount`), credit the payee, then write the
//! transfer and its two ledger rows (with row locks always taken in id
//! order, see `store::lock_payee_first_if_lower`). The UPDATE
//! that changes a balance also advances the wallet's `last_seq`, which numbers
//! the new ledger row: the sequence follows the row lock, so it is gapless and
//! in commit order.

use chrono::Utc;
use entity::operation::{self, OperationKind};
use entity::{transfer as transfer_entity, wallet};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::idempotency::{self, Target};
use super::with_retries;
use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};
use crate::domain::money::Money;
use crate::domain::validate;
use crate::store::{Store, lock_payee_first_if_lower, reads};

pub struct DepositRequest {
    pub wallet_id: Uuid,
    pub amount: Money,
    pub description: Option<String>,
    pub idempotency_key: Option<String>,
}

pub struct DepositOutcome {
    pub operation: operation::Model,
    pub wallet: wallet::Model,
}

pub struct TransferRequest {
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: Money,
    pub description: Option<String>,
    pub idempotency_key: Option<String>,
}

pub struct TransferOutcome {
    pub transfer: transfer_entity::Model,
    /// The payer's TRANSFER_OUT row and the payee's TRANSFER_IN row.
    pub debit: operation::Model,
    pub credit: operation::Model,
}

/// Puts money into a wallet. Only the operator may deposit.
pub async fn deposit(
    store: &Store,
    caller: &Caller,
    request: DepositRequest,
) -> AppResult<DepositOutcome> {
    caller.require_operator()?;
    let description = request
        .description
        .as_deref()
        .map(validate::description)
        .transpose()?;
    let key = request
        .idempotency_key
        .as_deref()
        .map(validate::idempotency_key)
        .transpose()?;
    let scope = caller.idempotency_scope();
    let fingerprint = format!(
        "deposit:{}:{}:{}",
        request.wallet_id,
        request.amount.cents(),
        description.as_deref().unwrap_or("")
    );

    with_retries(store, || async {
        let operation_id = Uuid::now_v7();
        let mut write = store.begin_write().await?;
        if let Some(key) = key.as_deref()
            && !idempotency::claim(
                &write.tx,
                &scope,
                key,
                &fingerprint,
                Target::Operation(operation_id),
            )
            .await?
        {
            write.rollback().await?;
            return replay_deposit(store, &scope, key, &fingerprint).await;
        }
        let Some(wallet) = credit(&write.tx, request.wallet_id, request.amount).await? else {
            let exists = !reads::wallets_by_ids(&write.tx, &[request.wallet_id])
                .await?
                .is_empty();
            write.rollback().await?;
            return Err(if exists {
                AppError::BalanceLimitExceeded
            } else {
                AppError::NotFound("wallet")
            });
        };
        let operation = operation::Model {
            id: operation_id,
            wallet_id: wallet.id,
            seq: wallet.last_seq,
            kind: OperationKind::Deposit,
            amount: request.amount.cents(),
            balance_after: wallet.balance,
            transfer_id: None,
            counterparty_wallet_id: None,
            description: description.clone(),
            created_at: wallet.updated_at,
        };
        write.record(None, std::slice::from_ref(&operation)).await?;
        write.commit().await?;
        Ok(DepositOutcome { operation, wallet })
    })
    .await
}

/// Moves money from the caller's wallet to another.
pub async fn transfer(
    store: &Store,
    caller: &Caller,
    request: TransferRequest,
) -> AppResult<TransferOutcome> {
    let own_wallet = match caller {
        Caller::Client { wallet_id, .. } => *wallet_id,
        Caller::Anonymous => return Err(AppError::Unauthenticated),
        Caller::Operator => return Err(AppError::Forbidden),
    };
    if request.from_wallet_id != own_wallet {
        return Err(AppError::Forbidden);
    }
    if request.from_wallet_id == request.to_wallet_id {
        return Err(AppError::SameWallet);
    }
    let description = request
        .description
        .as_deref()
        .map(validate::description)
        .transpose()?;
    let key = request
        .idempotency_key
        .as_deref()
        .map(validate::idempotency_key)
        .transpose()?;
    let scope = caller.idempotency_scope();
    let fingerprint = format!(
        "transfer:{}:{}:{}:{}",
        request.from_wallet_id,
        request.to_wallet_id,
        request.amount.cents(),
        description.as_deref().unwrap_or("")
    );
    let (from, to, amount) = (request.from_wallet_id, request.to_wallet_id, request.amount);

    with_retries(store, || async {
        let transfer_id = Uuid::now_v7();
        let mut write = store.begin_write().await?;
        if let Some(key) = key.as_deref()
            && !idempotency::claim(
                &write.tx,
                &scope,
                key,
                &fingerprint,
                Target::Transfer(transfer_id),
            )
            .await?
        {
            write.rollback().await?;
            return replay_transfer(store, &scope, key, &fingerprint).await;
        }
        if !lock_payee_first_if_lower(&write.tx, from, to).await? {
            write.rollback().await?;
            return Err(AppError::NotFound("wallet"));
        }
        // The debit runs first and only succeeds if the money is there.
        let Some(payer) = debit(&write.tx, from, amount).await? else {
            write.rollback().await?;
            return Err(AppError::InsufficientFunds);
        };
        let Some(payee) = credit(&write.tx, to, amount).await? else {
            let exists = !reads::wallets_by_ids(&write.tx, &[to]).await?.is_empty();
            write.rollback().await?;
            return Err(if exists {
                AppError::BalanceLimitExceeded
            } else {
                AppError::NotFound("wallet")
            });
        };
        let now = payer.updated_at;
        let transfer = transfer_entity::Model {
            id: transfer_id,
            from_wallet_id: from,
            to_wallet_id: to,
            amount: amount.cents(),
            description: description.clone(),
            created_at: now,
        };
        let leg = |wallet: &wallet::Model, kind, counterparty| operation::Model {
            id: Uuid::now_v7(),
            wallet_id: wallet.id,
            seq: wallet.last_seq,
            kind,
            amount: amount.cents(),
            balance_after: wallet.balance,
            transfer_id: Some(transfer_id),
            counterparty_wallet_id: Some(counterparty),
            description: description.clone(),
            created_at: now,
        };
        let debit_row = leg(&payer, OperationKind::TransferOut, to);
        let credit_row = leg(&payee, OperationKind::TransferIn, from);
        write
            .record(Some(&transfer), &[debit_row.clone(), credit_row.clone()])
            .await?;
        write.commit().await?;
        Ok(TransferOutcome {
            transfer,
            debit: debit_row,
            credit: credit_row,
        })
    })
    .await
}

/// `UPDATE wallet SET balance = balance - amount ... WHERE id = ? AND balance >= amount`;
/// `None` when the funds are not there.
async fn debit<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    amount: Money,
) -> AppResult<Option<wallet::Model>> {
    let rows = wallet::Entity::update_many()
        .col_expr(
            wallet::Column::Balance,
            Expr::col(wallet::Column::Balance).sub(amount.cents()),
        )
        .col_expr(
            wallet::Column::LastSeq,
            Expr::col(wallet::Column::LastSeq).add(1),
        )
        .col_expr(wallet::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(wallet::Column::Id.eq(wallet_id))
        .filter(wallet::Column::Balance.gte(amount.cents()))
        .exec_with_returning(conn)
        .await?;
    Ok(rows.into_iter().next())
}

/// The credit side: refuses (returns `None`) rather than exceed the maximum
/// balance, or when the wallet does not exist.
async fn credit<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    amount: Money,
) -> AppResult<Option<wallet::Model>> {
    let Some(headroom) = Money::MAX_BALANCE.checked_sub(amount) else {
        return Ok(None);
    };
    let rows = wallet::Entity::update_many()
        .col_expr(
            wallet::Column::Balance,
            Expr::col(wallet::Column::Balance).add(amount.cents()),
        )
        .col_expr(
            wallet::Column::LastSeq,
            Expr::col(wallet::Column::LastSeq).add(1),
        )
        .col_expr(wallet::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(wallet::Column::Id.eq(wallet_id))
        .filter(wallet::Column::Balance.lte(headroom.cents()))
        .exec_with_returning(conn)
        .await?;
    Ok(rows.into_iter().next())
}

async fn replay_deposit(
    store: &Store,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> AppResult<DepositOutcome> {
    let record = idempotency::replay(store.db(), scope, key, fingerprint).await?;
    let operation = match record.operation_id {
        Some(id) => reads::operation_by_id(store.db(), id).await?,
        None => None,
    }
    .ok_or_else(|| AppError::Internal(anyhow::anyhow!("idempotency key {key} has no deposit")))?;
    let wallet = reads::wallets_by_ids(store.db(), &[operation.wallet_id])
        .await?
        .pop()
        .ok_or(AppError::NotFound("wallet"))?;
    Ok(DepositOutcome { operation, wallet })
}

async fn replay_transfer(
    store: &Store,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> AppResult<TransferOutcome> {
    let record = idempotency::replay(store.db(), scope, key, fingerprint).await?;
    let missing = || AppError::Internal(anyhow::anyhow!("idempotency key {key} has no transfer"));
    let transfer_id = record.transfer_id.ok_or_else(missing)?;
    let transfer = reads::transfers_by_ids(store.db(), &[transfer_id])
        .await?
        .pop()
        .ok_or_else(missing)?;
    let legs = operation::Entity::find()
        .filter(operation::Column::TransferId.eq(transfer_id))
        .all(store.db())
        .await?;
    let leg = |kind| {
        legs.iter()
            .find(|op| op.kind == kind)
            .cloned()
            .ok_or_else(missing)
    };
    Ok(TransferOutcome {
        debit: leg(OperationKind::TransferOut)?,
        credit: leg(OperationKind::TransferIn)?,
        transfer,
    })
}
