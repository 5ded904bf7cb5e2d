//! Settling a batch of entries against locked rows, in memory.
//!
//! The batch's transfers and wallets are locked (and read) before this
//! runs, so applying the entries one after another here gives exactly what
//! running them one transaction each, in the same order, would give: each
//! debit is checked against the available balance left by the entries
//! before it, a refused entry changes nothing, and the others still settle.
//! An atomic group (a `transferBatch` with `atomic: true`) settles whole or
//! not at all. The database re-checks the result when it is written (see
//! `store::postings`).

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use entity::operation::OperationKind;
use entity::transfer::{TransferKind, TransferStatus};
use entity::wallet::WalletStatus;
use entity::{operation, transfer, wallet, wallet_status_change};
use uuid::Uuid;

use super::entry::{Action, Controls, End, Entry, Leg, NewTransfer, Posted, leg_row};
use crate::domain::auth::Caller;
use crate::domain::error::{AppError, Limit, Remaining};
use crate::domain::money::Money;

/// What happens to one entry of a batch.
#[derive(Debug)]
pub enum Outcome {
    Posted(Box<Posted>),
    Refused(AppError),
    /// Its idempotency key was already used: answer from the first use.
    Replay,
    /// Another entry of its atomic group was refused: nothing of the group
    /// was written.
    Aborted,
}

/// What an entry's idempotency key found when the batch claimed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Key {
    /// Claimed by this batch (or the entry has no key).
    #[default]
    Fresh,
    /// Used before by the same request: answered from its first result.
    Used,
    /// Used before by another request: refused (the key stays the other's).
    Reused,
}

/// Limits the settlement enforces.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Pending transfers a payer may have at once.
    pub max_open_holds: i32,
}

/// A wallet as the batch leaves it, and its `last_seq` before the batch
/// (the write checks it, to prove the row was not changed meanwhile).
#[derive(Clone, Debug)]
pub struct WalletChange {
    pub wallet: wallet::Model,
    pub previous_seq: i64,
}

/// A stored transfer as the batch leaves it, and what it was when locked
/// (the write's conditions).
#[derive(Clone, Debug)]
pub struct TransferChange {
    pub transfer: transfer::Model,
    pub previous_status: TransferStatus,
    /// Cents refunded by this batch.
    pub refunded: i64,
}

/// The rows a batch locked, and the database's clock in its transaction.
#[derive(Debug, Default)]
pub struct Locked {
    pub wallets: HashMap<Uuid, wallet::Model>,
    pub transfers: HashMap<Uuid, transfer::Model>,
    pub now: DateTime<Utc>,
    /// The time of each configured wallet's newest status change (read
    /// under its lock): a new one is later, whatever this server's clock.
    pub status_changed: HashMap<Uuid, DateTime<Utc>>,
}

/// Everything a batch writes, and each entry's outcome.
#[derive(Debug, Default)]
pub struct Settlement {
    pub outcomes: Vec<Outcome>,
    pub wallets: Vec<WalletChange>,
    /// New transfers.
    pub transfers: Vec<transfer::Model>,
    /// Stored transfers ended or refunded.
    pub changes: Vec<TransferChange>,
    /// In the order they were settled.
    pub operations: Vec<operation::Model>,
    /// Entries refused after their key was claimed: the claim is undone.
    pub released: Vec<usize>,
    /// Wallet status changes, kept with their reasons.
    pub status_changes: Vec<wallet_status_change::Model>,
}

/// The batch's state as entries settle: cloned at the start of an atomic
/// group, to go back to if one of its entries is refused.
#[derive(Clone)]
struct Book {
    wallets: HashMap<Uuid, wallet::Model>,
    status_changed: HashMap<Uuid, DateTime<Utc>>,
    previous_seq: HashMap<Uuid, i64>,
    transfers: HashMap<Uuid, transfer::Model>,
    changed: BTreeSet<Uuid>,
    clock: DateTime<Utc>,
}

/// Settles `entries` in order. `keys[i]` is what entry `i`'s key found;
/// consecutive entries with the same `groups[i]` settle all or none;
/// `locked` holds every row the entries act on (a missing one does not
/// exist).
pub fn settle(
    entries: &[&Entry],
    keys: &[Key],
    groups: &[Option<usize>],
    locked: Locked,
    rules: Rules,
    now: DateTime<Utc>,
) -> Settlement {
    let db_now = locked.now;
    let original = locked.transfers.clone();
    let mut book = Book {
        wallets: locked.wallets,
        status_changed: locked.status_changed,
        previous_seq: HashMap::new(),
        transfers: locked.transfers,
        changed: BTreeSet::new(),
        // To the microsecond, as the databases store times: what a request
        // is answered with is what a later read returns.
        clock: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
    };
    let mut settlement = Settlement::default();
    let key = |i: usize| keys.get(i).copied().unwrap_or_default();
    // A refused entry gives its key back only if this batch claimed it.
    let claimed = |i: usize| entries[i].claim.is_some() && key(i) == Key::Fresh;
    let mut index = 0;
    while index < entries.len() {
        let group = groups.get(index).copied().flatten();
        let end = match group {
            Some(g) => (index..entries.len())
                .find(|&j| groups.get(j).copied().flatten() != Some(g))
                .unwrap_or(entries.len()),
            None => index + 1,
        };
        let snapshot = group.map(|_| {
            (
                book.clone(),
                settlement.operations.len(),
                settlement.transfers.len(),
                settlement.status_changes.len(),
            )
        });
        let mut failed = None;
        for (i, entry) in entries.iter().enumerate().take(end).skip(index) {
            if key(i) == Key::Used {
                settlement.outcomes.push(Outcome::Replay);
                continue;
            }
            if failed.is_some() {
                settlement.outcomes.push(Outcome::Aborted);
                continue;
            }
            let applied = match key(i) {
                Key::Reused => Err(AppError::IdempotencyKeyReused),
                _ => apply(entry, &mut book, rules, db_now),
            };
            match applied {
                Ok(posted) => {
                    settlement
                        .operations
                        .extend(posted.operations.iter().cloned());
                    settlement
                        .status_changes
                        .extend(posted.status_change.iter().cloned());
                    if let Some(t) = &posted.transfer
                        && !original.contains_key(&t.id)
                    {
                        settlement.transfers.push(t.clone());
                    }
                    settlement.outcomes.push(Outcome::Posted(Box::new(posted)));
                }
                Err(err) => {
                    settlement.outcomes.push(Outcome::Refused(err));
                    failed = Some(i);
                }
            }
        }
        match (failed, snapshot) {
            (Some(_), Some((before, operations, transfers, status_changes))) => {
                // The group settles whole or not at all.
                book = before;
                settlement.operations.truncate(operations);
                settlement.transfers.truncate(transfers);
                settlement.status_changes.truncate(status_changes);
                for i in index..end {
                    if let Some(outcome @ Outcome::Posted(_)) = settlement.outcomes.get_mut(i) {
                        *outcome = Outcome::Aborted;
                    }
                }
                settlement
                    .released
                    .extend((index..end).filter(|&i| claimed(i)));
            }
            (Some(i), None) if claimed(i) => settlement.released.push(i),
            _ => {}
        }
        index = end;
    }
    let mut changed: Vec<WalletChange> = book
        .previous_seq
        .into_iter()
        .filter_map(|(id, previous_seq)| {
            book.wallets.remove(&id).map(|wallet| WalletChange {
                wallet,
                previous_seq,
            })
        })
        .collect();
    changed.sort_by_key(|c| c.wallet.id);
    settlement.wallets = changed;
    settlement.changes = book
        .changed
        .iter()
        .filter_map(|id| {
            let before = original.get(id)?;
            let after = book.transfers.get(id)?;
            Some(TransferChange {
                transfer: after.clone(),
                previous_status: before.status,
                refunded: after.refunded_amount - before.refunded_amount,
            })
        })
        .collect();
    settlement
}

/// What an entry does, once the transfer it acts on is known.
struct Plan {
    legs: Vec<Leg>,
    new_transfer: Option<NewTransfer>,
    /// The stored transfer it changes, as changed (its `settled_at` is set
    /// when the rows get their time).
    edit: Option<transfer::Model>,
    /// A refund's original, as the refund leaves it.
    original: Option<transfer::Model>,
}

/// Applies one entry if every condition holds, else changes nothing.
///
/// Each row's time is at least a microsecond after its wallet's last row
/// (so time never goes backwards within a wallet, whatever the clocks of the
/// servers writing to it) and after the batch's previous row (so the rows of
/// a batch are in time order as settled: that is how listeners order them).
fn apply(
    entry: &Entry,
    book: &mut Book,
    rules: Rules,
    db_now: DateTime<Utc>,
) -> Result<Posted, AppError> {
    if let Action::Configure {
        wallet_id,
        controls,
    } = &entry.action
    {
        return configure(*wallet_id, controls, book);
    }
    let plan = plan(entry, &book.transfers, db_now)?;
    let tick = TimeDelta::microseconds(1);
    let mut time = book.clock;
    let must_exist = plan.legs.iter().map(|leg| leg.wallet_id).chain(
        plan.new_transfer
            .iter()
            .flat_map(|t| [t.from_wallet_id, t.to_wallet_id]),
    );
    for id in must_exist {
        if !book.wallets.contains_key(&id) {
            return Err(AppError::NotFound("wallet"));
        }
    }
    // Refusals in the documented order: FORBIDDEN (in `plan`), the
    // wallets' status, their limits, then funds and balance (each leg).
    check_status(entry, &plan, &book.wallets)?;
    let use_of_day = use_of_day(&plan, &book.wallets, time)?;
    // Check every leg before changing anything (against a copy, so an entry
    // with several legs on one wallet is checked as a whole).
    let mut after: Vec<wallet::Model> = Vec::with_capacity(plan.legs.len());
    for leg in &plan.legs {
        let current = after
            .iter()
            .rev()
            .find(|w| w.id == leg.wallet_id)
            .or_else(|| book.wallets.get(&leg.wallet_id))
            .ok_or(AppError::NotFound("wallet"))?;
        let next = apply_leg(current, leg, rules, time)?;
        time = next.updated_at + tick;
        after.push(next);
    }
    book.clock = time;
    if let Some(usage) = use_of_day {
        for wallet in after.iter_mut().filter(|w| w.id == usage.wallet_id) {
            wallet.outgoing_day = usage.day;
            wallet.outgoing_today = usage.amount;
            wallet.outgoing_count_today = usage.count;
        }
    }
    let mut operations = Vec::with_capacity(after.len());
    for (i, (leg, wallet)) in plan.legs.iter().zip(&after).enumerate() {
        let id = if i == 0 {
            entry.first_operation_id
        } else {
            Uuid::now_v7()
        };
        operations.push(leg_row(entry, leg, id, wallet, wallet.updated_at));
        if let Some(before) = book.wallets.insert(wallet.id, wallet.clone()) {
            book.previous_seq
                .entry(wallet.id)
                .or_insert(before.last_seq);
        }
    }
    let at = operations.first().map_or(book.clock, |op| op.created_at);
    let transfer = match (plan.new_transfer, plan.edit) {
        (Some(t), _) => Some(transfer::Model {
            id: t.id,
            from_wallet_id: t.from_wallet_id,
            to_wallet_id: t.to_wallet_id,
            amount: t.amount,
            description: entry.description.clone(),
            metadata: entry.metadata.stored(),
            created_at: at,
            kind: t.kind,
            status: t.status,
            captured_amount: (t.status == TransferStatus::Posted).then_some(t.amount),
            refunded_amount: 0,
            refund_of: t.refund_of,
            expires_at: t.expires_at,
            settled_at: (t.status == TransferStatus::Posted).then_some(at),
        }),
        (None, Some(mut edited)) => {
            edited.settled_at = Some(at);
            book.changed.insert(edited.id);
            book.transfers.insert(edited.id, edited.clone());
            Some(edited)
        }
        (None, None) => None,
    };
    if let Some(original) = &plan.original {
        book.changed.insert(original.id);
        book.transfers.insert(original.id, original.clone());
    }
    Ok(Posted {
        transfer,
        original: plan.original,
        operations,
        wallets: after,
        status_change: None,
    })
}

/// The operator's change to a wallet's status or limits, under its lock.
/// A CLOSED wallet stays closed; closing needs nothing in it and no open
/// hold either way. Setting what is already set changes nothing.
fn configure(wallet_id: Uuid, controls: &Controls, book: &mut Book) -> Result<Posted, AppError> {
    let current = book
        .wallets
        .get(&wallet_id)
        .ok_or(AppError::NotFound("wallet"))?;
    let mut next = current.clone();
    let mut status_change = None;
    if let Some((status, reason)) = &controls.status
        && *status != current.status
    {
        if current.status == WalletStatus::Closed {
            return Err(AppError::WalletClosed);
        }
        if *status == WalletStatus::Closed
            && (current.balance != 0
                || current.held != 0
                || current.incoming_held != 0
                || current.open_holds != 0)
        {
            return Err(AppError::WalletNotEmpty);
        }
        next.status = *status;
        // After the wallet's newest change, so the newest by time is the
        // status, whatever the clocks of the servers that made them.
        let at = match book.status_changed.get(&wallet_id) {
            Some(last) => book.clock.max(*last + TimeDelta::microseconds(1)),
            None => book.clock,
        };
        status_change = Some(wallet_status_change::Model {
            id: Uuid::now_v7(),
            wallet_id,
            status: *status,
            reason: reason.clone(),
            created_at: at,
        });
        book.status_changed.insert(wallet_id, at);
        book.clock = book.clock.max(at + TimeDelta::microseconds(1));
    }
    if let Some(limit) = controls.max_transfer_amount {
        next.max_transfer_amount = limit;
    }
    if let Some(limit) = controls.daily_outgoing_amount {
        next.daily_outgoing_amount = limit;
    }
    if let Some(limit) = controls.daily_outgoing_count {
        next.daily_outgoing_count = limit;
    }
    // A new credit line is a ledger row (amount 0) so that the available
    // balance's history explains every change of it. Closing removes it.
    let mut operations = Vec::new();
    let line = match next.status {
        WalletStatus::Closed if current.status != WalletStatus::Closed => Some(0),
        _ => controls.credit_limit,
    };
    if let Some(line) = line
        && line != current.credit_limit
    {
        if current.status == WalletStatus::Closed {
            return Err(AppError::WalletClosed);
        }
        next.credit_limit = line;
        next.last_seq += 1;
        next.updated_at = (current.updated_at + TimeDelta::microseconds(1)).max(book.clock);
        book.clock = next.updated_at + TimeDelta::microseconds(1);
        operations.push(operation::Model {
            id: Uuid::now_v7(),
            wallet_id,
            seq: next.last_seq,
            kind: OperationKind::CreditLimit,
            amount: 0,
            balance_after: next.balance,
            available_after: Some(next.available()),
            incoming_held_after: Some(next.incoming_held),
            transfer_id: None,
            counterparty_wallet_id: None,
            description: None,
            metadata: None,
            created_at: next.updated_at,
        });
    }
    if next != *current {
        let previous_seq = current.last_seq;
        book.previous_seq.entry(wallet_id).or_insert(previous_seq);
        book.wallets.insert(wallet_id, next.clone());
    }
    Ok(Posted {
        wallets: vec![next],
        operations,
        status_change,
        ..Posted::default()
    })
}

/// A wallet's status may refuse an entry: nothing moves in or out of a
/// CLOSED wallet; nothing leaves a FROZEN one (a debit or a new hold),
/// except the operator's capture of a hold placed before the freeze.
fn check_status(
    entry: &Entry,
    plan: &Plan,
    wallets: &HashMap<Uuid, wallet::Model>,
) -> Result<(), AppError> {
    let status = |id: &Uuid| wallets.get(id).map(|w| w.status);
    if plan
        .legs
        .iter()
        .any(|leg| status(&leg.wallet_id) == Some(WalletStatus::Closed))
    {
        return Err(AppError::WalletClosed);
    }
    let operator_capture = matches!(entry.caller, Caller::Operator)
        && matches!(
            entry.action,
            Action::End {
                end: End::Capture(_),
                ..
            }
        );
    let leaves = |leg: &Leg| leg.delta < 0 || leg.held > 0;
    if !operator_capture
        && plan
            .legs
            .iter()
            .any(|leg| leaves(leg) && status(&leg.wallet_id) == Some(WalletStatus::Frozen))
    {
        return Err(AppError::WalletFrozen);
    }
    Ok(())
}

/// A payer's use of its daily limits once an entry applies.
struct UseOfDay {
    wallet_id: Uuid,
    /// UTC days since 1970-01-01.
    day: i64,
    amount: i64,
    count: i64,
}

/// What an entry does to its payer's limits: a new payment, hold or
/// refund is checked against them and counted on the day of its payer's
/// row (`LIMIT_EXCEEDED` otherwise); the end of a hold gives back to the
/// day the hold was taken from what did not leave (all of it and its count
/// on a void or expiry, the uncaptured rest on a capture). Withdrawals and
/// deposits are not limited.
fn use_of_day(
    plan: &Plan,
    wallets: &HashMap<Uuid, wallet::Model>,
    time: DateTime<Utc>,
) -> Result<Option<UseOfDay>, AppError> {
    if let Some(t) = &plan.new_transfer {
        let Some(payer) = wallets.get(&t.from_wallet_id) else {
            return Ok(None);
        };
        // The payer's row is the entry's first: its time is this.
        let at = (payer.updated_at + TimeDelta::microseconds(1)).max(time);
        let day = wallet::utc_day(at);
        let (used, count) = payer.outgoing_on(day);
        if let Some(max) = payer.max_transfer_amount
            && t.amount > max
        {
            return Err(AppError::LimitExceeded {
                limit: Limit::MaxTransferAmount,
                remaining: Remaining::Cents(max),
            });
        }
        if let Some(limit) = payer.daily_outgoing_amount
            && used.saturating_add(t.amount) > limit
        {
            return Err(AppError::LimitExceeded {
                limit: Limit::DailyOutgoingAmount,
                remaining: Remaining::Cents((limit - used).max(0)),
            });
        }
        if let Some(limit) = payer.daily_outgoing_count
            && count + 1 > limit
        {
            return Err(AppError::LimitExceeded {
                limit: Limit::DailyOutgoingCount,
                remaining: Remaining::Count((limit - count).max(0)),
            });
        }
        return Ok(Some(UseOfDay {
            wallet_id: payer.id,
            day,
            amount: used + t.amount,
            count: count + 1,
        }));
    }
    let Some(ended) = &plan.edit else {
        return Ok(None);
    };
    let (amount, count) = match ended.status {
        TransferStatus::Posted => (
            ended.amount - ended.captured_amount.unwrap_or(ended.amount),
            0,
        ),
        TransferStatus::Voided | TransferStatus::Expired => (ended.amount, 1),
        TransferStatus::Pending => (0, 0),
    };
    let Some(payer) = wallets.get(&ended.from_wallet_id) else {
        return Ok(None);
    };
    if payer.outgoing_day != wallet::utc_day(ended.created_at) || (amount == 0 && count == 0) {
        return Ok(None);
    }
    Ok(Some(UseOfDay {
        wallet_id: payer.id,
        day: payer.outgoing_day,
        amount: (payer.outgoing_today - amount).max(0),
        count: (payer.outgoing_count_today - count).max(0),
    }))
}

/// A wallet after one leg, if the leg may apply: a leg that lowers the
/// available balance (a debit or a new hold) needs it to cover the leg,
/// credit line included (`balance - held + credit_limit`); a withdrawal
/// needs the wallet's own money (`balance - held`). A leg that does not
/// lower it always applies, even to a wallet below a line lowered under
/// what it uses: money coming in is what brings it back.
fn apply_leg(
    current: &wallet::Model,
    leg: &Leg,
    rules: Rules,
    time: DateTime<Utc>,
) -> Result<wallet::Model, AppError> {
    let balance = current
        .balance
        .checked_add(leg.delta)
        .ok_or(AppError::BalanceLimitExceeded)?;
    let held = current.held + leg.held;
    let incoming = current.incoming_held + leg.incoming;
    if held < 0 || incoming < 0 {
        return Err(AppError::Internal(anyhow::anyhow!(
            "a release of more than wallet {} holds",
            current.id
        )));
    }
    let mut next = current.clone();
    next.balance = balance;
    next.held = held;
    let lowers = leg.delta - leg.held < 0;
    let short = match leg.kind {
        OperationKind::Withdrawal => next.own_available() < 0,
        _ => next.available() < 0,
    };
    if lowers && short {
        return Err(AppError::InsufficientFunds);
    }
    if balance > Money::MAX_BALANCE.cents() || balance < -Money::MAX_BALANCE.cents() {
        return Err(AppError::BalanceLimitExceeded);
    }
    let open_holds = match leg.kind {
        OperationKind::Hold => current.open_holds + 1,
        OperationKind::HoldRelease => current.open_holds - 1,
        _ => current.open_holds,
    };
    if open_holds > rules.max_open_holds && leg.kind == OperationKind::Hold {
        return Err(AppError::TooManyHolds(rules.max_open_holds));
    }
    next.incoming_held = incoming;
    next.open_holds = open_holds.max(0);
    next.last_seq += 1;
    next.updated_at = (current.updated_at + TimeDelta::microseconds(1)).max(time);
    Ok(next)
}

/// The legs and transfer changes of an entry, given the locked transfers.
fn plan(
    entry: &Entry,
    transfers: &HashMap<Uuid, transfer::Model>,
    db_now: DateTime<Utc>,
) -> Result<Plan, AppError> {
    let caller = &entry.caller;
    match &entry.action {
        Action::Post { legs, transfer } => Ok(Plan {
            legs: legs.clone(),
            new_transfer: transfer.clone(),
            edit: None,
            original: None,
        }),
        Action::End { transfer_id, end } => {
            let t = visible(caller, transfers.get(transfer_id))?;
            if *end != End::Expire && !is_payee_or_operator(caller, t) {
                return Err(AppError::Forbidden);
            }
            if t.status != TransferStatus::Pending {
                return Err(AppError::TransferNotPending(t.status.as_str()));
            }
            // On the database's clock, as the write's condition checks it.
            let due = t.expires_at.is_none_or(|at| at <= db_now);
            match (end, due) {
                (End::Expire, false) => return Err(AppError::TransferNotPending("PENDING")),
                (End::Capture(_) | End::Void, true) => {
                    return Err(AppError::TransferNotPending("EXPIRED"));
                }
                _ => {}
            }
            let (payer, payee) = (t.from_wallet_id, t.to_wallet_id);
            // Both sides of the hold end first; a capture then moves money.
            let mut legs = vec![
                Leg::hold(payer, -t.amount, OperationKind::HoldRelease, payee),
                Leg::incoming(payee, -t.amount, OperationKind::IncomingHoldRelease, payer),
            ];
            let mut edited = t.clone();
            match end {
                End::Capture(amount) => {
                    let amount = amount.unwrap_or(t.amount);
                    if amount > t.amount {
                        return Err(AppError::invalid_field(
                            "amount",
                            "amount must not exceed the authorised amount",
                        ));
                    }
                    legs.push(transfer_leg(
                        payer,
                        -amount,
                        OperationKind::TransferOut,
                        payee,
                    ));
                    legs.push(transfer_leg(
                        payee,
                        amount,
                        OperationKind::TransferIn,
                        payer,
                    ));
                    edited.status = TransferStatus::Posted;
                    edited.captured_amount = Some(amount);
                }
                End::Void => edited.status = TransferStatus::Voided,
                End::Expire => edited.status = TransferStatus::Expired,
            }
            Ok(Plan {
                legs,
                new_transfer: None,
                edit: Some(edited),
                original: None,
            })
        }
        Action::Refund {
            transfer_id,
            amount,
            refund_id,
        } => {
            let t = visible(caller, transfers.get(transfer_id))?;
            if !is_payee_or_operator(caller, t) {
                return Err(AppError::Forbidden);
            }
            let captured = match (t.kind, t.captured()) {
                (TransferKind::Payment, Some(captured)) => captured,
                _ => return Err(AppError::TransferNotRefundable),
            };
            let left = captured - t.refunded_amount;
            let amount = amount.unwrap_or(left);
            if amount <= 0 || amount > left {
                return Err(AppError::RefundExceedsTransfer);
            }
            let (payee, payer) = (t.to_wallet_id, t.from_wallet_id);
            let mut original = t.clone();
            original.refunded_amount += amount;
            Ok(Plan {
                legs: vec![
                    transfer_leg(payee, -amount, OperationKind::TransferOut, payer),
                    transfer_leg(payer, amount, OperationKind::TransferIn, payee),
                ],
                new_transfer: Some(NewTransfer {
                    id: *refund_id,
                    from_wallet_id: payee,
                    to_wallet_id: payer,
                    amount,
                    kind: TransferKind::Refund,
                    status: TransferStatus::Posted,
                    expires_at: None,
                    refund_of: Some(t.id),
                }),
                edit: None,
                original: Some(original),
            })
        }
        Action::Configure { .. } => Err(AppError::Internal(anyhow::anyhow!(
            "a configuration has no legs to plan"
        ))),
    }
}

fn transfer_leg(wallet_id: Uuid, delta: i64, kind: OperationKind, counterparty: Uuid) -> Leg {
    Leg {
        wallet_id,
        delta,
        held: 0,
        incoming: 0,
        kind,
        counterparty: Some(counterparty),
    }
}

/// A stored transfer the caller may see (see `Caller::require_party`).
fn visible<'t>(
    caller: &Caller,
    transfer: Option<&'t transfer::Model>,
) -> Result<&'t transfer::Model, AppError> {
    caller.require_party(transfer.map(|t| (t.from_wallet_id, t.to_wallet_id)))?;
    transfer.ok_or(AppError::NotFound("transfer"))
}

fn is_payee_or_operator(caller: &Caller, t: &transfer::Model) -> bool {
    match caller {
        Caller::Operator => true,
        Caller::Client { wallet_id, .. } => *wallet_id == t.to_wallet_id,
        Caller::Anonymous => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::Caller;
    use crate::ledger::entry::{self, TransferRequest};

    fn wallet(id: Uuid, balance: i64) -> wallet::Model {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        wallet::Model {
            balance,
            last_seq: 3,
            ..wallet::Model::empty(id, Uuid::now_v7(), at)
        }
    }

    fn run(
        entries: &[&Entry],
        replay: &[bool],
        wallets: HashMap<Uuid, wallet::Model>,
    ) -> Settlement {
        let keys: Vec<Key> = replay
            .iter()
            .map(|&used| if used { Key::Used } else { Key::Fresh })
            .collect();
        let locked = Locked {
            wallets,
            now: Utc::now(),
            ..Locked::default()
        };
        let groups = vec![None; entries.len()];
        let rules = Rules { max_open_holds: 2 };
        settle(entries, &keys, &groups, locked, rules, Utc::now())
    }

    fn transfer(from: Uuid, to: Uuid, cents: i64) -> Entry {
        let caller = Caller::Client {
            client_id: Uuid::now_v7(),
            wallet_id: from,
        };
        let amount = Money::from_cents(cents).unwrap_or_default();
        entry::transfer(
            &caller,
            TransferRequest {
                from_wallet_id: from,
                to_wallet_id: to,
                amount,
                description: None,
                metadata: Default::default(),
                idempotency_key: None,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_payer_gets_exactly_the_transfers_that_fit_in_order() {
        let (payer, payee) = (Uuid::now_v7(), Uuid::now_v7());
        let amounts = [400, 700, 300, 100, 50, 1];
        let entries: Vec<Entry> = amounts.iter().map(|&a| transfer(payer, payee, a)).collect();
        let refs: Vec<&Entry> = entries.iter().collect();
        let wallets = HashMap::from([(payer, wallet(payer, 1_000)), (payee, wallet(payee, 0))]);
        let s = run(&refs, &[false; 6], wallets);
        let posted: Vec<bool> = s
            .outcomes
            .iter()
            .map(|o| matches!(o, Outcome::Posted(_)))
            .collect();
        // 400 fits (600 left), 700 does not, 300 (300 left), 100 (200), 50 (150), 1.
        assert_eq!(posted, [true, false, true, true, true, true]);
        assert!(matches!(
            s.outcomes[1],
            Outcome::Refused(AppError::InsufficientFunds)
        ));
        let payer_rows: Vec<(i64, i64)> = s
            .operations
            .iter()
            .filter(|op| op.wallet_id == payer)
            .map(|op| (op.seq, op.balance_after))
            .collect();
        assert_eq!(
            payer_rows,
            [(4, 600), (5, 300), (6, 200), (7, 150), (8, 149)]
        );
        // Times are to the microsecond, as stored: an answer and a later
        // read agree.
        assert!(
            s.operations
                .iter()
                .all(|op| op.created_at.timestamp_subsec_nanos() % 1_000 == 0)
        );
        let final_payer = s.wallets.iter().find(|c| c.wallet.id == payer);
        assert_eq!(
            final_payer.map(|c| (c.wallet.balance, c.previous_seq)),
            Some((149, 3))
        );
    }

    #[test]
    fn times_never_go_back_within_a_wallet() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let entries: Vec<Entry> = (0..5).map(|_| transfer(a, b, 1)).collect();
        let refs: Vec<&Entry> = entries.iter().collect();
        let mut wa = wallet(a, 100);
        // This wallet's last row is "in the future" of this server's clock.
        wa.updated_at = Utc::now() + TimeDelta::seconds(5);
        let wallets = HashMap::from([(a, wa.clone()), (b, wallet(b, 0))]);
        let s = run(&refs, &[false; 5], wallets);
        let times: Vec<_> = s
            .operations
            .iter()
            .filter(|op| op.wallet_id == a)
            .map(|op| op.created_at)
            .collect();
        assert_eq!(times.len(), 5);
        assert!(times[0] > wa.updated_at);
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn missing_wallets_and_limits_refuse_only_their_entry() {
        let (a, b, ghost) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let entries = [
            transfer(a, ghost, 10),
            transfer(a, b, 10),
            transfer(a, b, 10),
            transfer(a, b, 10),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let full = wallet(b, Money::MAX_BALANCE.cents() - 15);
        let wallets = HashMap::from([(a, wallet(a, 100)), (b, full)]);
        let s = run(&refs, &[false, false, true, false], wallets);
        assert!(matches!(
            s.outcomes[0],
            Outcome::Refused(AppError::NotFound(_))
        ));
        assert!(matches!(s.outcomes[1], Outcome::Posted(_)));
        assert!(matches!(s.outcomes[2], Outcome::Replay));
        assert!(matches!(
            s.outcomes[3],
            Outcome::Refused(AppError::BalanceLimitExceeded)
        ));
        let a_after = s.wallets.iter().find(|c| c.wallet.id == a);
        assert_eq!(a_after.map(|c| c.wallet.balance), Some(90));
        let b_after = s.wallets.iter().find(|c| c.wallet.id == b);
        assert_eq!(b_after.map(|c| c.wallet.last_seq), Some(4));
        assert_eq!(s.operations.len(), 2);
    }

    fn hold(from: Uuid, to: Uuid, cents: i64) -> Entry {
        let caller = Caller::Client {
            client_id: Uuid::now_v7(),
            wallet_id: from,
        };
        entry::authorize(
            &caller,
            entry::AuthorizeRequest {
                from_wallet_id: from,
                to_wallet_id: to,
                amount: Money::from_cents(cents).unwrap_or_default(),
                expires_at: None,
                description: None,
                metadata: Default::default(),
                idempotency_key: Uuid::now_v7().to_string(),
            },
            Utc::now(),
        )
        .unwrap_or_else(|e| panic!("{}", e.error))
    }

    #[test]
    fn holds_spend_the_available_balance_and_count_against_the_limit() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let entries = [
            hold(a, b, 60),
            transfer(a, b, 50),
            hold(a, b, 30),
            hold(a, b, 1),
            transfer(a, b, 10),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let wallets = HashMap::from([(a, wallet(a, 100)), (b, wallet(b, 0))]);
        let s = run(&refs, &[false; 5], wallets);
        let codes: Vec<&str> = s
            .outcomes
            .iter()
            .map(|o| match o {
                Outcome::Posted(_) => "OK",
                Outcome::Refused(e) => e.code(),
                _ => "?",
            })
            .collect();
        // 60 held leaves 40; 30 more leaves 10; the limit is two holds.
        assert_eq!(
            codes,
            ["OK", "INSUFFICIENT_FUNDS", "OK", "TOO_MANY_HOLDS", "OK"]
        );
        let payer = s.wallets.iter().find(|c| c.wallet.id == a);
        assert_eq!(
            payer.map(|c| (c.wallet.balance, c.wallet.held, c.wallet.open_holds)),
            Some((90, 90, 2))
        );
        let available: Vec<Option<i64>> = s
            .operations
            .iter()
            .filter(|op| op.wallet_id == a)
            .map(|op| op.available_after)
            .collect();
        assert_eq!(available, [Some(40), Some(10), Some(0)]);
        assert_eq!(s.released, [3], "the refused hold's key is given back");
    }

    fn code(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Posted(_) => "OK",
            Outcome::Refused(e) => e.code(),
            _ => "?",
        }
    }

    #[test]
    fn a_credit_line_is_spent_and_a_lowered_one_refuses_every_debit() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let line = |cents| {
            entry::set_limits(
                &Caller::Operator,
                a,
                Controls {
                    credit_limit: Some(cents),
                    ..Controls::default()
                },
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let withdraw = |cents| {
            entry::withdraw(
                &Caller::Operator,
                entry::WithdrawRequest {
                    wallet_id: a,
                    amount: Money::from_cents(cents).unwrap_or_default(),
                    description: None,
                    metadata: Default::default(),
                    idempotency_key: Uuid::now_v7().to_string(),
                },
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let entries = [
            line(100),
            withdraw(1),        // credit is not paid out
            transfer(a, b, 60), // -60, 40 available
            hold(a, b, 40),     // 0 available
            transfer(a, b, 1),  // nothing left
            line(50),           // under its use: -50 available
            transfer(b, a, 30), // money in is always taken: -20
            transfer(a, b, 1),  // still below the line
            transfer(b, a, 25), // 5 available
            transfer(a, b, 5),  // back within: fits exactly
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let wallets = HashMap::from([(a, wallet(a, 0)), (b, wallet(b, 1_000))]);
        let s = run(&refs, &[false; 10], wallets);
        let codes: Vec<&str> = s.outcomes.iter().map(code).collect();
        assert_eq!(
            codes,
            [
                "OK",
                "INSUFFICIENT_FUNDS",
                "OK",
                "OK",
                "INSUFFICIENT_FUNDS",
                "OK",
                "OK",
                "INSUFFICIENT_FUNDS",
                "OK",
                "OK"
            ]
        );
        // Each row's available balance after counts the line in effect.
        let rows: Vec<(OperationKind, i64, Option<i64>)> = s
            .operations
            .iter()
            .filter(|op| op.wallet_id == a)
            .map(|op| (op.kind, op.balance_after, op.available_after))
            .collect();
        assert_eq!(
            rows,
            [
                (OperationKind::CreditLimit, 0, Some(100)),
                (OperationKind::TransferOut, -60, Some(40)),
                (OperationKind::Hold, -60, Some(0)),
                (OperationKind::CreditLimit, -60, Some(-50)),
                (OperationKind::TransferIn, -30, Some(-20)),
                (OperationKind::TransferIn, -5, Some(5)),
                (OperationKind::TransferOut, -10, Some(0)),
            ]
        );
        let after = s.wallets.iter().find(|c| c.wallet.id == a);
        assert_eq!(
            after.map(|c| (c.wallet.credit_limit, c.wallet.available())),
            Some((50, 0))
        );
    }

    #[test]
    fn an_atomic_group_settles_whole_or_not_at_all() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let entries = [
            transfer(a, b, 10),
            transfer(a, b, 20),
            transfer(a, b, 500),
            transfer(a, b, 30),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let wallets = HashMap::from([(a, wallet(a, 100)), (b, wallet(b, 0))]);
        let locked = Locked {
            wallets,
            now: Utc::now(),
            ..Locked::default()
        };
        // Entries 1 and 2 are one atomic group; 2 does not fit.
        let groups = [None, Some(7), Some(7), None];
        let rules = Rules { max_open_holds: 2 };
        let s = settle(&refs, &[Key::Fresh; 4], &groups, locked, rules, Utc::now());
        assert!(matches!(s.outcomes[0], Outcome::Posted(_)));
        assert!(matches!(s.outcomes[1], Outcome::Aborted));
        assert!(matches!(
            s.outcomes[2],
            Outcome::Refused(AppError::InsufficientFunds)
        ));
        assert!(matches!(s.outcomes[3], Outcome::Posted(_)));
        let payer_rows: Vec<(i64, i64)> = s
            .operations
            .iter()
            .filter(|op| op.wallet_id == a)
            .map(|op| (op.seq, op.balance_after))
            .collect();
        // Nothing of the group is left: sequences stay gapless.
        assert_eq!(payer_rows, [(4, 90), (5, 60)]);
        assert_eq!(s.transfers.len(), 2);
    }
}
