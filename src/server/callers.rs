//! Client tokens already seen, by the SHA-256 of the token.
//!
//! A token never changes owner and is never revoked (the API has no way to),
//! so a token found once stays valid: caching it saves one database round
//! trip on every authenticated request. Only tokens that were found are kept
//! (an unknown token costs its lookup every time, so guessing cannot fill
//! the cache), and the cache is emptied when it reaches its capacity, which
//! bounds its memory without bookkeeping per entry. Revocation, if it comes,
//! must clear the entry here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use uuid::Uuid;

/// Entries kept before the cache starts over: about 10 MB at most.
pub const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct CallerCache {
    entries: Mutex<HashMap<[u8; 32], (Uuid, Uuid)>>,
}

impl CallerCache {
    /// The (client, wallet) of a token hash seen before.
    pub fn get(&self, digest: &[u8; 32]) -> Option<(Uuid, Uuid)> {
        self.lock().get(digest).copied()
    }

    pub fn insert(&self, digest: [u8; 32], caller: (Uuid, Uuid)) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(digest, caller);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Uuid, Uuid)>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_it_was_given_and_starts_over_when_full() {
        let cache = CallerCache::default();
        let caller = (Uuid::now_v7(), Uuid::now_v7());
        cache.insert([1; 32], caller);
        assert_eq!(cache.get(&[1; 32]), Some(caller));
        assert_eq!(cache.get(&[2; 32]), None);
        for n in 0..CAPACITY {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(n as u64).to_le_bytes());
            digest[31] = 9;
            cache.insert(digest, caller);
        }
        // Full at the last insert: emptied, then given that entry.
        assert_eq!(cache.get(&[1; 32]), None);
        assert_eq!(cache.lock().len(), 1);
    }
}
