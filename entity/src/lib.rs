//! SeaORM entities of walletql: one module per table.
//!
//! Money columns hold integer cents (`i64`); the service converts them to
//! and from its `Money` type, never to floating point.

pub mod client;
pub mod idempotency_key;
pub mod operation;
pub mod transfer;
pub mod wallet;
pub mod wallet_status_change;
