//! The metadata index rows a batch writes: each pair a ledger row shows
//! (its transfer's, or a deposit's or withdrawal's own), and each pair of a
//! new transfer once per party. Existing transfers (a capture, a refund's
//! original) are indexed already.

use std::collections::HashMap;

use entity::{operation, transfer};
use uuid::Uuid;

use super::settle::Settlement;
use crate::domain::metadata::Metadata;
use crate::store::postings::{OperationTag, TransferTag};

/// The metadata of a batch's rows, read once from their columns.
pub struct Shown {
    /// By transfer id: the batch's new transfers and the stored ones it
    /// ends (their ledger rows show it too).
    transfers: HashMap<Uuid, Metadata>,
    /// By ledger row id: rows without a transfer.
    operations: HashMap<Uuid, Metadata>,
}

impl Shown {
    pub fn of(settlement: &Settlement) -> Shown {
        let transfers = (settlement.transfers.iter())
            .chain(settlement.changes.iter().map(|c| &c.transfer))
            .filter(|t| t.metadata.is_some())
            .map(|t| (t.id, Metadata::from_stored(t.metadata.as_deref())))
            .collect();
        let operations = (settlement.operations.iter())
            .filter(|o| o.metadata.is_some())
            .map(|o| (o.id, Metadata::from_stored(o.metadata.as_deref())))
            .collect();
        Shown {
            transfers,
            operations,
        }
    }

    pub fn operation_tags(&self, operations: &[operation::Model]) -> Vec<OperationTag<'_>> {
        let mut tags = Vec::new();
        for o in operations {
            let shown = match o.transfer_id {
                Some(id) => self.transfers.get(&id),
                None => self.operations.get(&o.id),
            };
            for (key, value) in shown.map(Metadata::entries).unwrap_or_default() {
                tags.push(OperationTag {
                    wallet_id: o.wallet_id,
                    key,
                    value,
                    seq: o.seq,
                });
            }
        }
        tags
    }

    pub fn transfer_tags(&self, transfers: &[transfer::Model]) -> Vec<TransferTag<'_>> {
        let mut tags = Vec::new();
        for t in transfers {
            let entries = self.transfers.get(&t.id).map(Metadata::entries);
            for (key, value) in entries.unwrap_or_default() {
                for wallet_id in [t.from_wallet_id, t.to_wallet_id] {
                    tags.push(TransferTag {
                        wallet_id,
                        key,
                        value,
                        created_at: t.created_at,
                        transfer_id: t.id,
                    });
                }
            }
        }
        tags
    }
}
