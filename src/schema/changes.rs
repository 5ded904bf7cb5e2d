//! What a money mutation changed, as its payload shows it: every wallet it
//! changed and every ledger row it wrote, as far as the caller may read
//! them. A normalised cache (Apollo's InMemoryCache, urql's graphcache,
//! Relay) updates each by its `__typename` and `id`, so a screen shows the
//! new balances without a refetch.

use std::collections::HashSet;

use async_graphql::SimpleObject;
use uuid::Uuid;

use super::operations::Operation;
use super::wallets::Wallet;
use crate::domain::auth::Caller;
use crate::ledger::Changes;

#[derive(SimpleObject, Default)]
pub struct Changed {
    /// Every wallet whose balances this mutation changed and that the caller
    /// may read (the operator reads all), as the mutation left it.
    pub wallets: Vec<Wallet>,
    /// The ledger rows this mutation wrote that the caller may read, in the
    /// order written.
    pub operations: Vec<Operation>,
}

impl Changed {
    /// The part of `changes` that `caller` may read.
    pub fn visible(caller: &Caller, changes: Changes) -> Changed {
        let readable: HashSet<Uuid> = changes
            .wallets
            .iter()
            .filter(|w| caller.can_read(w.client_id))
            .map(|w| w.id)
            .collect();
        Changed {
            operations: (changes.operations.into_iter())
                .filter(|op| readable.contains(&op.wallet_id))
                .map(Operation)
                .collect(),
            wallets: (changes.wallets.into_iter())
                .filter(|w| readable.contains(&w.id))
                .map(Wallet)
                .collect(),
        }
    }

    /// Adds what a later entry of the same request changed: its rows after
    /// these, and its wallets' newer states in place of the older ones.
    pub fn append(&mut self, later: Changed) {
        self.operations.extend(later.operations);
        for wallet in later.wallets {
            match self.wallets.iter_mut().find(|w| w.0.id == wallet.0.id) {
                Some(seen) => *seen = wallet,
                None => self.wallets.push(wallet),
            }
        }
    }
}
