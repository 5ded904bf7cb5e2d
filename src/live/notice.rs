//! The NOTIFY payload that announces a committed batch: for each wallet, the
//! range of sequence numbers the batch wrote, e.g.
//! `0192…c3:41:43 0192…d1:7:7`. A listener reads the rows it needs (only
//! watched wallets) from the ledger. PostgreSQL caps a payload below 8,000
//! bytes, so a large batch sends several, in one transaction: they arrive
//! together, in order.

use std::collections::HashMap;

use entity::operation;
use uuid::Uuid;

/// Largest payload we send; PostgreSQL refuses 8,000 bytes and more.
const MAX_PAYLOAD_BYTES: usize = 7_900;

/// Operations `from..=to` of one wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub wallet_id: Uuid,
    pub from: i64,
    pub to: i64,
}

/// The payloads announcing `operations` (as settled: each wallet's rows are
/// consecutive in its sequence).
pub fn encode(operations: &[operation::Model]) -> Vec<String> {
    let mut ranges: Vec<SeqRange> = Vec::new();
    let mut index: HashMap<Uuid, usize> = HashMap::with_capacity(operations.len());
    for op in operations {
        match index.get(&op.wallet_id).and_then(|&i| ranges.get_mut(i)) {
            Some(range) => {
                range.from = range.from.min(op.seq);
                range.to = range.to.max(op.seq);
            }
            None => {
                index.insert(op.wallet_id, ranges.len());
                ranges.push(SeqRange {
                    wallet_id: op.wallet_id,
                    from: op.seq,
                    to: op.seq,
                });
            }
        }
    }
    let mut payloads = Vec::new();
    let mut current = String::new();
    for range in ranges {
        let item = format!("{}:{}:{}", range.wallet_id.simple(), range.from, range.to);
        if !current.is_empty() && current.len() + 1 + item.len() > MAX_PAYLOAD_BYTES {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&item);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// The ranges of a payload; `None` if it is not one of ours.
pub fn decode(payload: &str) -> Option<Vec<SeqRange>> {
    payload
        .split_ascii_whitespace()
        .map(|item| {
            let mut parts = item.split(':');
            let range = SeqRange {
                wallet_id: Uuid::try_parse(parts.next()?).ok()?,
                from: parts.next()?.parse().ok()?,
                to: parts.next()?.parse().ok()?,
            };
            (parts.next().is_none() && range.from <= range.to).then_some(range)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use entity::operation::OperationKind;

    fn op(wallet_id: Uuid, seq: i64) -> operation::Model {
        operation::Model {
            id: Uuid::now_v7(),
            wallet_id,
            seq,
            kind: OperationKind::Deposit,
            amount: 1,
            balance_after: 1,
            available_after: Some(1),
            incoming_held_after: None,
            transfer_id: None,
            counterparty_wallet_id: None,
            description: None,
            metadata: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn ranges_round_trip_and_payloads_stay_under_the_limit() {
        let wallets: Vec<Uuid> = (0..500).map(|_| Uuid::now_v7()).collect();
        let mut ops = Vec::new();
        for (i, w) in wallets.iter().enumerate() {
            ops.push(op(*w, 1_000_000 + i as i64));
            ops.push(op(*w, 1_000_001 + i as i64));
        }
        let payloads = encode(&ops);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        let ranges: Vec<SeqRange> = payloads
            .iter()
            .flat_map(|p| decode(p).unwrap_or_default())
            .collect();
        assert_eq!(ranges.len(), 500);
        for (i, (range, w)) in ranges.iter().zip(&wallets).enumerate() {
            assert_eq!(range.wallet_id, *w);
            assert_eq!(
                (range.from, range.to),
                (1_000_000 + i as i64, 1_000_001 + i as i64)
            );
        }
        assert_eq!(decode("not a payload"), None);
        assert_eq!(decode(&format!("{}:5:4", wallets[0].simple())), None);
    }
}
