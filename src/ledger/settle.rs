//! Settling a batch of entries against locked wallets, in memory.
//!
//! The batch's wallets are locked (and read) before this runs, so applying
//! the entries one after another here gives exactly what running them one
//! transaction each, in the same order, would give: each debit is checked
//! against the balance left by the entries before it, a refused entry
//! changes nothing, and the others still settle. The database re-checks the
//! result when it is written (see `store::postings`).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use entity::{operation, transfer, wallet};
use uuid::Uuid;

use super::entry::{Entry, Posted, leg_row};
use crate::domain::error::AppError;
use crate::domain::money::Money;

/// What happens to one entry of a batch.
#[derive(Debug)]
pub enum Outcome {
    Posted(Posted),
    Refused(AppError),
    /// Its idempotency key was already used: answer from the first use.
    Replay,
}

/// A wallet as the batch leaves it, and its `last_seq` before the batch
/// (the write checks it, to prove the row was not changed meanwhile).
#[derive(Clone, Debug)]
pub struct WalletChange {
    pub wallet: wallet::Model,
    pub previous_seq: i64,
}

/// Everything a batch writes, and each entry's outcome.
#[derive(Debug, Default)]
pub struct Settlement {
    pub outcomes: Vec<Outcome>,
    pub wallets: Vec<WalletChange>,
    pub transfers: Vec<transfer::Model>,
    /// In the order they were settled.
    pub operations: Vec<operation::Model>,
    /// Entries refused after their key was claimed: the claim is undone.
    pub released: Vec<usize>,
}

/// Settles `entries` in order. `replay[i]` says entry `i`'s key was already
/// used; `wallets` holds the locked rows of every wallet the entries touch
/// (a missing one does not exist).
pub fn settle(
    entries: &[&Entry],
    replay: &[bool],
    mut wallets: HashMap<Uuid, wallet::Model>,
    now: DateTime<Utc>,
) -> Settlement {
    let mut settlement = Settlement::default();
    let mut previous_seq: HashMap<Uuid, i64> = HashMap::new();
    let mut clock = now;
    for (index, entry) in entries.iter().enumerate() {
        if replay.get(index).copied().unwrap_or(false) {
            settlement.outcomes.push(Outcome::Replay);
            continue;
        }
        match apply(entry, &mut wallets, &mut clock) {
            Ok((posted, touched)) => {
                for (id, seq) in touched {
                    previous_seq.entry(id).or_insert(seq);
                }
                settlement
                    .operations
                    .extend(posted.operations.iter().cloned());
                settlement.transfers.extend(posted.transfer.iter().cloned());
                settlement.outcomes.push(Outcome::Posted(posted));
            }
            Err(err) => {
                if entry.claim.is_some() {
                    settlement.released.push(index);
                }
                settlement.outcomes.push(Outcome::Refused(err));
            }
        }
    }
    let mut changed: Vec<WalletChange> = previous_seq
        .into_iter()
        .filter_map(|(id, previous_seq)| {
            wallets.remove(&id).map(|wallet| WalletChange {
                wallet,
                previous_seq,
            })
        })
        .collect();
    changed.sort_by_key(|c| c.wallet.id);
    settlement.wallets = changed;
    settlement
}

/// Applies one entry's legs if every condition holds, else nothing. Returns
/// what was posted and the `last_seq` each touched wallet had before.
///
/// Each row's time is at least a microsecond after its wallet's last row
/// (so time never goes backwards within a wallet, whatever the clocks of the
/// servers writing to it) and after the batch's previous row (so the rows of
/// a batch are in time order as settled: that is how listeners order them).
fn apply(
    entry: &Entry,
    wallets: &mut HashMap<Uuid, wallet::Model>,
    clock: &mut DateTime<Utc>,
) -> Result<(Posted, Vec<(Uuid, i64)>), AppError> {
    let tick = TimeDelta::microseconds(1);
    let mut time = *clock;
    if entry
        .legs
        .iter()
        .any(|leg| !wallets.contains_key(&leg.wallet_id))
    {
        return Err(AppError::NotFound("wallet"));
    }
    // Check every leg before changing anything (against a copy, so an entry
    // with two legs on one wallet is checked as a whole).
    let mut after: Vec<wallet::Model> = Vec::with_capacity(entry.legs.len());
    for leg in &entry.legs {
        let current = after
            .iter()
            .rev()
            .find(|w| w.id == leg.wallet_id)
            .or_else(|| wallets.get(&leg.wallet_id))
            .ok_or(AppError::NotFound("wallet"))?;
        let balance = current
            .balance
            .checked_add(leg.delta)
            .ok_or(AppError::BalanceLimitExceeded)?;
        if balance < 0 {
            return Err(AppError::InsufficientFunds);
        }
        if balance > Money::MAX_BALANCE.cents() {
            return Err(AppError::BalanceLimitExceeded);
        }
        let mut next = current.clone();
        next.balance = balance;
        next.last_seq += 1;
        next.updated_at = (current.updated_at + tick).max(time);
        time = next.updated_at + tick;
        after.push(next);
    }
    *clock = time;
    let mut touched = Vec::with_capacity(after.len());
    let mut operations = Vec::with_capacity(after.len());
    for (i, (leg, wallet)) in entry.legs.iter().zip(&after).enumerate() {
        let id = if i == 0 {
            entry.first_operation_id
        } else {
            Uuid::now_v7()
        };
        operations.push(leg_row(entry, leg, id, wallet, wallet.updated_at));
        if let Some(before) = wallets.insert(wallet.id, wallet.clone()) {
            touched.push((wallet.id, before.last_seq));
        }
    }
    let transfer = entry.transfer.as_ref().map(|t| transfer::Model {
        id: t.id,
        from_wallet_id: t.from_wallet_id,
        to_wallet_id: t.to_wallet_id,
        amount: t.amount,
        description: entry.description.clone(),
        created_at: operations.first().map_or(*clock, |op| op.created_at),
    });
    Ok((
        Posted {
            transfer,
            operations,
            wallets: after,
        },
        touched,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::Caller;
    use crate::ledger::entry::{self, TransferRequest};

    fn wallet(id: Uuid, balance: i64) -> wallet::Model {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        wallet::Model {
            id,
            client_id: Uuid::now_v7(),
            currency: "USD".into(),
            balance,
            last_seq: 3,
            created_at: at,
            updated_at: at,
        }
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
        let s = settle(&refs, &[false; 6], wallets, Utc::now());
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
        let s = settle(&refs, &[false; 5], wallets, Utc::now());
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
        let s = settle(&refs, &[false, false, true, false], wallets, Utc::now());
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
}
