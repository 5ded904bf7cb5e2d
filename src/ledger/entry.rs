//! Ledger entries: what the posting engine applies.
//!
//! An entry is an action (legs known up front, or the end or refund of a
//! stored transfer, whose legs follow from that transfer once it is
//! locked), its idempotency claim, and who asked. Each money verb is a
//! builder here; all checks that need no stored row happen before queueing.

use chrono::{DateTime, Utc};
use entity::operation::{self, OperationKind};
use entity::transfer::{self, TransferKind, TransferStatus};
use entity::wallet::{self, WalletStatus};
use entity::wallet_status_change;
use uuid::Uuid;

use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};
use crate::domain::fingerprint::Fingerprint;
use crate::domain::metadata::Metadata;
use crate::domain::money::Money;
use crate::domain::validate;

/// One wallet's part of an entry.
#[derive(Clone, Debug)]
pub struct Leg {
    pub wallet_id: Uuid,
    /// Cents added to the balance; negative for a debit, which needs the
    /// available balance to cover it.
    pub delta: i64,
    /// Cents added to the held balance: a hold (+) or its release (-).
    pub held: i64,
    /// Cents added to the incoming held balance (the payee's side of a
    /// hold): placed (+) or ended (-).
    pub incoming: i64,
    pub kind: OperationKind,
    pub counterparty: Option<Uuid>,
}

impl Leg {
    fn new(wallet_id: Uuid, delta: i64, kind: OperationKind, counterparty: Option<Uuid>) -> Leg {
        Leg {
            wallet_id,
            delta,
            held: 0,
            incoming: 0,
            kind,
            counterparty,
        }
    }

    /// The payer's side of a hold: `held` placed (+) or released (-).
    pub fn hold(wallet_id: Uuid, held: i64, kind: OperationKind, counterparty: Uuid) -> Leg {
        Leg {
            wallet_id,
            delta: 0,
            held,
            incoming: 0,
            kind,
            counterparty: Some(counterparty),
        }
    }

    /// The payee's side of a hold: `incoming` placed (+) or ended (-).
    pub fn incoming(
        wallet_id: Uuid,
        incoming: i64,
        kind: OperationKind,
        counterparty: Uuid,
    ) -> Leg {
        Leg {
            wallet_id,
            delta: 0,
            held: 0,
            incoming,
            kind,
            counterparty: Some(counterparty),
        }
    }
}

/// An idempotency key and what it must match when it is used again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    /// The verb, its target and its parameters: a retry must repeat them.
    pub fingerprint: Fingerprint,
}

/// A transfer row an entry creates.
#[derive(Clone, Debug)]
pub struct NewTransfer {
    pub id: Uuid,
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: i64,
    pub kind: TransferKind,
    pub status: TransferStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub refund_of: Option<Uuid>,
}

/// How a pending transfer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// All of it (`None`) or part.
    Capture(Option<i64>),
    Void,
    /// By the sweeper, once its deadline has passed.
    Expire,
}

#[derive(Clone, Debug)]
pub enum Action {
    /// Legs known up front, and the transfer they make (if any).
    Post {
        legs: Vec<Leg>,
        transfer: Option<NewTransfer>,
    },
    /// Ends a pending transfer.
    End { transfer_id: Uuid, end: End },
    /// Pays back (part of) a posted payment as a new transfer `refund_id`.
    Refund {
        transfer_id: Uuid,
        amount: Option<i64>,
        refund_id: Uuid,
    },
    /// The operator's change to a wallet's status or limits: checked and
    /// written under the wallet's lock, like any movement.
    Configure { wallet_id: Uuid, controls: Controls },
}

/// What the operator changes of a wallet; each part left `None` stays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controls {
    /// A new status, and why.
    pub status: Option<(WalletStatus, String)>,
    /// Each limit: `Some(None)` removes it, `Some(Some(v))` sets it.
    pub max_transfer_amount: Option<Option<i64>>,
    pub daily_outgoing_amount: Option<Option<i64>>,
    pub daily_outgoing_count: Option<Option<i64>>,
    /// A new credit line, in cents (0: none).
    pub credit_limit: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Entry {
    /// The id of the entry's first ledger row, fixed before it is queued so
    /// that an idempotency claim can point at it.
    pub first_operation_id: Uuid,
    /// Who asked: checked against a stored transfer's parties.
    pub caller: Caller,
    pub action: Action,
    pub description: Option<String>,
    /// Stored like the description: on the transfer it makes, else on its
    /// one ledger row.
    pub metadata: Metadata,
    pub claim: Option<Claim>,
}

impl Entry {
    /// The transfer its rows link to: the one it makes or the one it ends.
    pub fn transfer_id(&self) -> Option<Uuid> {
        match &self.action {
            Action::Post { transfer, .. } => transfer.as_ref().map(|t| t.id),
            Action::End { transfer_id, .. } => Some(*transfer_id),
            Action::Refund { refund_id, .. } => Some(*refund_id),
            Action::Configure { .. } => None,
        }
    }

    /// What an idempotency record points at: the transfer, or the first row.
    pub fn target(&self) -> (Option<Uuid>, Option<Uuid>) {
        match self.transfer_id() {
            Some(id) => (Some(id), None),
            None => (None, Some(self.first_operation_id)),
        }
    }

    /// The stored transfer the entry acts on, locked before its wallets.
    pub fn acts_on(&self) -> Option<Uuid> {
        match &self.action {
            Action::Post { .. } | Action::Configure { .. } => None,
            Action::End { transfer_id, .. } | Action::Refund { transfer_id, .. } => {
                Some(*transfer_id)
            }
        }
    }
}

/// A posted entry: the transfer it made or ended (if any), a refund's
/// original as the refund left it, its ledger rows in leg order, and each
/// leg's wallet as the entry left it.
#[derive(Clone, Debug, Default)]
pub struct Posted {
    pub transfer: Option<transfer::Model>,
    pub original: Option<transfer::Model>,
    pub operations: Vec<operation::Model>,
    pub wallets: Vec<wallet::Model>,
    /// A configuration's status change, if the status changed.
    pub status_change: Option<wallet_status_change::Model>,
}

pub struct DepositRequest {
    pub wallet_id: Uuid,
    pub amount: Money,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub idempotency_key: Option<String>,
}

pub struct OperationOutcome {
    pub operation: operation::Model,
    pub wallet: wallet::Model,
    pub changes: Changes,
}

/// What a request changed: the ledger rows its entry wrote (in leg order)
/// and every wallet whose balances it changed, as the entry left it, each
/// once (in the order first touched). A replay shows the rows first
/// written and the wallets as they are now.
#[derive(Clone, Debug, Default)]
pub struct Changes {
    pub operations: Vec<operation::Model>,
    pub wallets: Vec<wallet::Model>,
}

impl Changes {
    /// From an entry's rows and each leg's wallet (moved, not copied).
    fn of(operations: Vec<operation::Model>, legs: Vec<wallet::Model>) -> Changes {
        let mut wallets: Vec<wallet::Model> = Vec::with_capacity(legs.len());
        for wallet in legs {
            match wallets.iter_mut().find(|w| w.id == wallet.id) {
                // A later leg on the same wallet: its state after both.
                Some(seen) => *seen = wallet,
                None => wallets.push(wallet),
            }
        }
        Changes {
            operations,
            wallets,
        }
    }
}

/// A hold placed, captured, voided or expired: the transfer as it is now.
pub struct HoldOutcome {
    pub transfer: transfer::Model,
    pub changes: Changes,
}

pub struct TransferRequest {
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: Money,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub idempotency_key: Option<String>,
}

pub struct TransferOutcome {
    pub transfer: transfer::Model,
    /// The payer's TRANSFER_OUT row and the payee's TRANSFER_IN row.
    pub debit: operation::Model,
    pub credit: operation::Model,
    pub changes: Changes,
}

pub struct AuthorizeRequest {
    pub from_wallet_id: Uuid,
    pub to_wallet_id: Uuid,
    pub amount: Money,
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub idempotency_key: String,
}

pub struct RefundRequest {
    pub transfer_id: Uuid,
    pub amount: Option<Money>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub idempotency_key: String,
}

pub struct WithdrawRequest {
    pub wallet_id: Uuid,
    pub amount: Money,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub idempotency_key: String,
}

/// A deposit: one credit leg. Only the operator may deposit.
pub fn deposit(caller: &Caller, request: DepositRequest) -> AppResult<Entry> {
    let DepositRequest {
        wallet_id,
        amount,
        description,
        metadata,
        idempotency_key,
    } = request;
    let leg = Leg::new(wallet_id, amount.cents(), OperationKind::Deposit, None);
    operator_leg(
        caller,
        "deposit",
        leg,
        (description, metadata),
        idempotency_key,
    )
}

/// A withdrawal: money leaving for an outside account (operator only).
pub fn withdraw(caller: &Caller, request: WithdrawRequest) -> AppResult<Entry> {
    let WithdrawRequest {
        wallet_id,
        amount,
        description,
        metadata,
        idempotency_key,
    } = request;
    let leg = Leg::new(wallet_id, -amount.cents(), OperationKind::Withdrawal, None);
    operator_leg(
        caller,
        "withdraw",
        leg,
        (description, metadata),
        Some(idempotency_key),
    )
}

/// The operator's money in or out of one wallet: a single leg, no transfer.
fn operator_leg(
    caller: &Caller,
    verb: &str,
    leg: Leg,
    (description, metadata): (Option<String>, Metadata),
    key: Option<String>,
) -> AppResult<Entry> {
    caller.require_operator()?;
    let description = checked_description(description)?;
    let fingerprint = Fingerprint::of(verb)
        .field(leg.wallet_id.as_bytes())
        .field(leg.delta.abs().to_be_bytes())
        .optional(description.as_deref())
        .metadata(metadata.entries())
        .finish(format!(
            "{verb}:{}:{}:{}",
            leg.wallet_id,
            leg.delta.abs(),
            description.as_deref().unwrap_or("")
        ));
    let claim = claim(caller, key, fingerprint)?;
    Ok(post(
        caller,
        vec![leg],
        None,
        (description, metadata),
        claim,
    ))
}

/// A transfer out of the caller's own wallet: a debit leg, then a credit leg.
pub fn transfer(caller: &Caller, request: TransferRequest) -> AppResult<Entry> {
    let (from, to) = payer_and_payee(caller, request.from_wallet_id, request.to_wallet_id)?;
    let amount = request.amount.cents();
    let description = checked_description(request.description)?;
    let fingerprint = Fingerprint::of("transfer")
        .field(from.as_bytes())
        .field(to.as_bytes())
        .field(amount.to_be_bytes())
        .optional(description.as_deref())
        .metadata(request.metadata.entries())
        .finish(format!(
            "transfer:{from}:{to}:{amount}:{}",
            description.as_deref().unwrap_or("")
        ));
    let legs = vec![
        Leg::new(from, -amount, OperationKind::TransferOut, Some(to)),
        Leg::new(to, amount, OperationKind::TransferIn, Some(from)),
    ];
    let header = NewTransfer {
        id: Uuid::now_v7(),
        from_wallet_id: from,
        to_wallet_id: to,
        amount,
        kind: TransferKind::Payment,
        status: TransferStatus::Posted,
        expires_at: None,
        refund_of: None,
    };
    let claim = claim(caller, request.idempotency_key, fingerprint)?;
    Ok(post(
        caller,
        legs,
        Some(header),
        (description, request.metadata),
        claim,
    ))
}

/// An authorisation: a hold on the payer's available balance, and a
/// PENDING transfer to capture or void before `expires_at`.
///
/// The deadline is checked against the clock last, once the claim is
/// built: a request refused only by the clock (its `expiresAt` has passed)
/// may be the retry of one that was stored, whose answer was lost; the
/// refusal carries the claim so the stored answer can be given instead.
pub fn authorize(
    caller: &Caller,
    request: AuthorizeRequest,
    now: DateTime<Utc>,
) -> Result<Entry, ClockRefusal> {
    let (from, to) = payer_and_payee(caller, request.from_wallet_id, request.to_wallet_id)?;
    let amount = request.amount.cents();
    let description = checked_description(request.description)?;
    // The deadline is part of the request only when the caller gave one
    // (a retry without one is the same request, whenever it comes).
    let deadline = request.expires_at.map(|t| t.timestamp_micros().to_string());
    let fingerprint = Fingerprint::of("authorize")
        .field(from.as_bytes())
        .field(to.as_bytes())
        .field(amount.to_be_bytes())
        .optional(deadline.as_deref())
        .optional(description.as_deref())
        .metadata(request.metadata.entries())
        .finish(format!(
            "authorize:{from}:{to}:{amount}:{}:{}",
            deadline.as_deref().unwrap_or(""),
            description.as_deref().unwrap_or("")
        ));
    let claim = claim(caller, Some(request.idempotency_key), fingerprint)?;
    let expires_at =
        validate::expires_at(request.expires_at, now).map_err(|error| ClockRefusal {
            error,
            claim: claim.clone().map(Box::new),
        })?;
    let header = NewTransfer {
        id: Uuid::now_v7(),
        from_wallet_id: from,
        to_wallet_id: to,
        amount,
        kind: TransferKind::Payment,
        status: TransferStatus::Pending,
        expires_at: Some(expires_at),
        refund_of: None,
    };
    let legs = vec![
        Leg::hold(from, amount, OperationKind::Hold, to),
        Leg::incoming(to, amount, OperationKind::IncomingHold, from),
    ];
    Ok(post(
        caller,
        legs,
        Some(header),
        (description, request.metadata),
        claim,
    ))
}

/// A request refused before queueing. When only the clock refused it,
/// `claim` is its idempotency claim: a stored use of it is answered instead.
#[derive(Debug)]
pub struct ClockRefusal {
    pub error: AppError,
    pub claim: Option<Box<Claim>>,
}

impl From<AppError> for ClockRefusal {
    fn from(error: AppError) -> Self {
        ClockRefusal { error, claim: None }
    }
}

/// Capturing or voiding a pending transfer (its payee or the operator).
pub fn end(
    caller: &Caller,
    transfer_id: Uuid,
    end: End,
    idempotency_key: String,
) -> AppResult<Entry> {
    caller.require_authenticated()?;
    let verb = match end {
        End::Capture(Some(cents)) => format!("capture:{cents}"),
        End::Capture(None) => "capture:all".to_owned(),
        End::Void => "void".to_owned(),
        End::Expire => "expire".to_owned(),
    };
    let fingerprint = Fingerprint::of(&verb)
        .field(transfer_id.as_bytes())
        .finish(format!("{verb}:{transfer_id}"));
    Ok(Entry {
        first_operation_id: Uuid::now_v7(),
        caller: caller.clone(),
        action: Action::End { transfer_id, end },
        description: None,
        metadata: Metadata::default(),
        claim: claim(caller, Some(idempotency_key), fingerprint)?,
    })
}

/// The sweeper's expiry of an overdue hold: no key (the transfer's status
/// makes it happen once).
pub fn expire(transfer_id: Uuid) -> Entry {
    Entry {
        first_operation_id: Uuid::now_v7(),
        caller: Caller::Operator,
        action: Action::End {
            transfer_id,
            end: End::Expire,
        },
        description: None,
        metadata: Metadata::default(),
        claim: None,
    }
}

/// A refund of a posted payment (its payee or the operator).
pub fn refund(caller: &Caller, request: RefundRequest) -> AppResult<Entry> {
    caller.require_authenticated()?;
    let description = checked_description(request.description)?;
    let amount = request.amount.map(Money::cents);
    let fingerprint = Fingerprint::of("refund")
        .field(request.transfer_id.as_bytes())
        .optional(amount.map(i64::to_be_bytes))
        .optional(description.as_deref())
        .metadata(request.metadata.entries())
        .finish(format!(
            "refund:{}:{}:{}",
            request.transfer_id,
            amount.map_or_else(|| "rest".to_owned(), |a| a.to_string()),
            description.as_deref().unwrap_or("")
        ));
    Ok(Entry {
        first_operation_id: Uuid::now_v7(),
        caller: caller.clone(),
        action: Action::Refund {
            transfer_id: request.transfer_id,
            amount,
            refund_id: Uuid::now_v7(),
        },
        description,
        metadata: request.metadata,
        claim: claim(caller, Some(request.idempotency_key), fingerprint)?,
    })
}

fn post(
    caller: &Caller,
    legs: Vec<Leg>,
    transfer: Option<NewTransfer>,
    (description, metadata): (Option<String>, Metadata),
    claim: Option<Claim>,
) -> Entry {
    Entry {
        first_operation_id: Uuid::now_v7(),
        caller: caller.clone(),
        action: Action::Post { legs, transfer },
        description,
        metadata,
        claim,
    }
}

/// The operator's change of a wallet's status (`reason` says why, for the
/// record).
pub fn set_status(
    caller: &Caller,
    wallet_id: Uuid,
    status: WalletStatus,
    reason: &str,
) -> AppResult<Entry> {
    caller.require_operator()?;
    let reason = validate::reason(reason)?;
    Ok(configure(
        caller,
        wallet_id,
        Controls {
            status: Some((status, reason)),
            ..Controls::default()
        },
    ))
}

/// The operator's change of a wallet's limits (amounts already checked).
pub fn set_limits(caller: &Caller, wallet_id: Uuid, controls: Controls) -> AppResult<Entry> {
    caller.require_operator()?;
    if controls
        .daily_outgoing_count
        .flatten()
        .is_some_and(|n| n <= 0)
    {
        return Err(AppError::invalid_field(
            "dailyOutgoingCount",
            "dailyOutgoingCount must be greater than zero (null removes the limit)",
        ));
    }
    Ok(configure(caller, wallet_id, controls))
}

fn configure(caller: &Caller, wallet_id: Uuid, controls: Controls) -> Entry {
    Entry {
        first_operation_id: Uuid::now_v7(),
        caller: caller.clone(),
        action: Action::Configure {
            wallet_id,
            controls,
        },
        description: None,
        metadata: Metadata::default(),
        claim: None,
    }
}

impl Posted {
    /// The wallet a configuration left.
    pub fn into_wallet(self) -> AppResult<wallet::Model> {
        (self.wallets.into_iter().next()).ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("a configuration without its wallet"))
        })
    }
}

/// A client moving money out of its own wallet to another.
fn payer_and_payee(caller: &Caller, from: Uuid, to: Uuid) -> AppResult<(Uuid, Uuid)> {
    let own_wallet = match caller {
        Caller::Client { wallet_id, .. } => *wallet_id,
        Caller::Anonymous => return Err(AppError::Unauthenticated),
        Caller::Operator => return Err(AppError::Forbidden),
    };
    if from != own_wallet {
        return Err(AppError::Forbidden);
    }
    if from == to {
        return Err(AppError::SameWallet);
    }
    Ok((from, to))
}

impl Posted {
    pub fn into_operation(self) -> AppResult<OperationOutcome> {
        let missing = || AppError::Internal(anyhow::anyhow!("an entry without its ledger row"));
        let changes = Changes::of(self.operations, self.wallets);
        Ok(OperationOutcome {
            operation: changes.operations.first().cloned().ok_or_else(missing)?,
            wallet: changes.wallets.first().cloned().ok_or_else(missing)?,
            changes,
        })
    }

    pub fn into_transfer(self) -> AppResult<TransferOutcome> {
        let missing = || AppError::Internal(anyhow::anyhow!("a transfer without its rows"));
        let changes = Changes::of(self.operations, self.wallets);
        let find = |kind| {
            (changes.operations.iter())
                .find(|op| op.kind == kind)
                .cloned()
                .ok_or_else(missing)
        };
        Ok(TransferOutcome {
            debit: find(OperationKind::TransferOut)?,
            credit: find(OperationKind::TransferIn)?,
            transfer: self.transfer.ok_or_else(missing)?,
            changes,
        })
    }

    /// The transfer the entry made or ended.
    pub fn into_hold(self) -> AppResult<HoldOutcome> {
        let transfer = self
            .transfer
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("an entry without its transfer")))?;
        Ok(HoldOutcome {
            transfer,
            changes: Changes::of(self.operations, self.wallets),
        })
    }

    /// What the entry changed, taken out of it.
    pub fn take_changes(&mut self) -> Changes {
        Changes::of(
            std::mem::take(&mut self.operations),
            std::mem::take(&mut self.wallets),
        )
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
    let transfer_id = entry.transfer_id();
    operation::Model {
        id,
        wallet_id: leg.wallet_id,
        seq: wallet.last_seq,
        kind: leg.kind,
        amount: if leg.held != 0 {
            leg.held.abs()
        } else if leg.incoming != 0 {
            leg.incoming.abs()
        } else {
            leg.delta.abs()
        },
        balance_after: wallet.balance,
        available_after: Some(wallet.available()),
        incoming_held_after: Some(wallet.incoming_held),
        transfer_id,
        counterparty_wallet_id: leg.counterparty,
        // Stored once: on the transfer when there is one (the legs read it
        // from there), else on the row itself.
        description: match transfer_id {
            Some(_) => None,
            None => entry.description.clone(),
        },
        metadata: match transfer_id {
            Some(_) => None,
            None => entry.metadata.stored(),
        },
        created_at: at,
    }
}

fn checked_description(raw: Option<String>) -> AppResult<Option<String>> {
    raw.as_deref().map(validate::description).transpose()
}

fn claim(
    caller: &Caller,
    key: Option<String>,
    fingerprint: Fingerprint,
) -> AppResult<Option<Claim>> {
    Ok(match key {
        Some(key) => Some(Claim {
            scope: caller.idempotency_scope(),
            key: validate::idempotency_key(&key)?,
            fingerprint,
        }),
        None => None,
    })
}
