//! Ledger entries: what the posting engine applies.
//!
//! An entry is a set of legs, each moving a signed amount on one wallet and
//! leaving one ledger row there, plus the transfer row that ties them
//! together (if any), its idempotency claim, and what it returns. Deposits
//! and transfers are builders of entries; a new money verb is a new builder
//! (and, if it needs one, a new leg condition), not a new transaction.

use chrono::{DateTime, Utc};
use entity::operation::{self, OperationKind};
use entity::{transfer, wallet};
use uuid::Uuid;

use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};
use crate::domain::money::Money;
use crate::domain::validate;

/// One wallet's part of an entry.
#[derive(Clone, Debug)]
pub struct Leg {
    pub wallet_id: Uuid,
    /// Cents; negative for a debit, which needs the funds to be there.
    pub delta: i64,
    pub kind: OperationKind,
    pub counterparty: Option<Uuid>,
}

/// An idempotency key and what it must match when it is used again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    /// The request's parameters: a retry must repeat them exactly.
    pub fingerprint: String,
}

/// A transfer row written with the entry's legs.
#[derive(Clone, Debug)]
pub struct TransferHeader {
    pub id: Uuid,
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: i64,
}

#[derive(Clone, Debug)]
pub struct Entry {
    /// The id of the entry's first ledger row, fixed before it is queued so
    /// that an idempotency claim can point at it.
    pub first_operation_id: Uuid,
    pub legs: Vec<Leg>,
    pub transfer: Option<TransferHeader>,
    pub description: Option<String>,
    pub claim: Option<Claim>,
}

impl Entry {
    /// What an idempotency record points at: the transfer, or the first row.
    pub fn target(&self) -> (Option<Uuid>, Option<Uuid>) {
        match &self.transfer {
            Some(t) => (Some(t.id), None),
            None => (None, Some(self.first_operation_id)),
        }
    }
}

/// A posted entry: its transfer (if any), its ledger rows in leg order, and
/// each leg's wallet as the entry left it.
#[derive(Clone, Debug)]
pub struct Posted {
    pub transfer: Option<transfer::Model>,
    pub operations: Vec<operation::Model>,
    pub wallets: Vec<wallet::Model>,
}

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
    pub transfer: transfer::Model,
    /// The payer's TRANSFER_OUT row and the payee's TRANSFER_IN row.
    pub debit: operation::Model,
    pub credit: operation::Model,
}

/// A deposit: one credit leg. Only the operator may deposit.
pub fn deposit(caller: &Caller, request: DepositRequest) -> AppResult<Entry> {
    caller.require_operator()?;
    let description = checked_description(request.description)?;
    let fingerprint = format!(
        "deposit:{}:{}:{}",
        request.wallet_id,
        request.amount.cents(),
        description.as_deref().unwrap_or("")
    );
    Ok(Entry {
        first_operation_id: Uuid::now_v7(),
        legs: vec![Leg {
            wallet_id: request.wallet_id,
            delta: request.amount.cents(),
            kind: OperationKind::Deposit,
            counterparty: None,
        }],
        transfer: None,
        description,
        claim: claim(caller, request.idempotency_key, fingerprint)?,
    })
}

/// A transfer out of the caller's own wallet: a debit leg, then a credit leg.
pub fn transfer(caller: &Caller, request: TransferRequest) -> AppResult<Entry> {
    let own_wallet = match caller {
        Caller::Client { wallet_id, .. } => *wallet_id,
        Caller::Anonymous => return Err(AppError::Unauthenticated),
        Caller::Operator => return Err(AppError::Forbidden),
    };
    let (from, to, amount) = (request.from_wallet_id, request.to_wallet_id, request.amount);
    if from != own_wallet {
        return Err(AppError::Forbidden);
    }
    if from == to {
        return Err(AppError::SameWallet);
    }
    let description = checked_description(request.description)?;
    let fingerprint = format!(
        "transfer:{from}:{to}:{}:{}",
        amount.cents(),
        description.as_deref().unwrap_or("")
    );
    Ok(Entry {
        first_operation_id: Uuid::now_v7(),
        legs: vec![
            Leg {
                wallet_id: from,
                delta: -amount.cents(),
                kind: OperationKind::TransferOut,
                counterparty: Some(to),
            },
            Leg {
                wallet_id: to,
                delta: amount.cents(),
                kind: OperationKind::TransferIn,
                counterparty: Some(from),
            },
        ],
        transfer: Some(TransferHeader {
            id: Uuid::now_v7(),
            from_wallet_id: from,
            to_wallet_id: to,
            amount: amount.cents(),
        }),
        description,
        claim: claim(caller, request.idempotency_key, fingerprint)?,
    })
}

impl Posted {
    pub fn into_deposit(self) -> AppResult<DepositOutcome> {
        let missing = || AppError::Internal(anyhow::anyhow!("a deposit without its ledger row"));
        Ok(DepositOutcome {
            operation: self.operations.into_iter().next().ok_or_else(missing)?,
            wallet: self.wallets.into_iter().next().ok_or_else(missing)?,
        })
    }

    pub fn into_transfer(self) -> AppResult<TransferOutcome> {
        let missing = || AppError::Internal(anyhow::anyhow!("a transfer without its rows"));
        let find = |kind| {
            self.operations
                .iter()
                .find(|op| op.kind == kind)
                .cloned()
                .ok_or_else(missing)
        };
        Ok(TransferOutcome {
            debit: find(OperationKind::TransferOut)?,
            credit: find(OperationKind::TransferIn)?,
            transfer: self.transfer.ok_or_else(missing)?,
        })
    }
}

/// The ledger row a leg leaves, given its wallet after the leg.
pub fn leg_row(
    entry: &Entry,
    leg: &Leg,
    id: Uuid,
    wallet: &wallet::Model,
    at: DateTime<Utc>,
) -> operation::Model {
    operation::Model {
        id,
        wallet_id: leg.wallet_id,
        seq: wallet.last_seq,
        kind: leg.kind,
        amount: leg.delta.abs(),
        balance_after: wallet.balance,
        transfer_id: entry.transfer.as_ref().map(|t| t.id),
        counterparty_wallet_id: leg.counterparty,
        // Stored once: on the transfer when there is one (the legs read it
        // from there), else on the row itself.
        description: match entry.transfer {
            Some(_) => None,
            None => entry.description.clone(),
        },
        created_at: at,
    }
}

fn checked_description(raw: Option<String>) -> AppResult<Option<String>> {
    raw.as_deref().map(validate::description).transpose()
}

fn claim(caller: &Caller, key: Option<String>, fingerprint: String) -> AppResult<Option<Claim>> {
    Ok(match key {
        Some(key) => Some(Claim {
            scope: caller.idempotency_scope(),
            key: validate::idempotency_key(&key)?,
            fingerprint,
        }),
        None => None,
    })
}
