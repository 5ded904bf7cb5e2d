//! Live operations: the in-process hub that fans committed operations out to
//! subscribers, the PostgreSQL listener that feeds it, and the resumable
//! per-wallet feed.
//!
//! Delivery: an operation reaches the hub only after its transaction has
//! committed (PostgreSQL delivers NOTIFY at commit, in commit order; SQLite
//! publishes right after commit, still holding the single writer slot). A
//! wallet's feed numbers its events by the ledger's gapless sequence, so it
//! can tell a duplicate or a gap, and fills every gap from the ledger itself.

mod feed;
mod hub;
mod listener;
pub mod notice;

pub use feed::{FeedError, all_wallets_feed, wallet_feed, wallet_states};
pub use hub::{Hub, HubMessage};
pub use listener::{ListenerTask, spawn_postgres_listener};

/// The PostgreSQL channel committed operations are announced on.
pub const CHANNEL: &str = "walletql_operations";

/// Events a subscriber may fall behind by before it is told and dropped.
pub const DEFAULT_BUFFER: usize = 256;
