//! Database migrations of walletql.
//!
//! Applied automatically when the server starts; also runnable on their own
//! (`cargo run -p migration -- up`, reading `DATABASE_URL`).

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_ledger;
mod m20261129_000001_constraints;
mod m20261130_000001_batch_writes;
mod m20261130_000002_history_indexes;
mod m20261130_000003_ledger_verbs;
mod m20261206_000001_transfer_lists;
mod m20261206_000002_incoming_holds;
mod m20261207_000001_ledger_batch;
mod m20261207_000002_time_by_sequence;
mod m20261208_000001_metadata;
mod m20261208_000002_wallet_controls;
mod m20261209_000001_credit_lines;
mod rules;

/// Largest balance a wallet may hold, in cents (one trillion dollars).
///
/// The service refuses anything that would exceed it; the database enforces it
/// again as a CHECK so that no code path can overflow the 64-bit column.
pub const MAX_BALANCE_CENTS: i64 = 100_000_000_000_000;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_ledger::Migration),
            Box::new(m20261129_000001_constraints::Migration),
            Box::new(m20261130_000001_batch_writes::Migration),
            Box::new(m20261130_000002_history_indexes::Migration),
            Box::new(m20261130_000003_ledger_verbs::Migration),
            Box::new(m20261206_000001_transfer_lists::Migration),
            Box::new(m20261206_000002_incoming_holds::Migration),
            Box::new(m20261207_000001_ledger_batch::Migration),
            Box::new(m20261207_000002_time_by_sequence::Migration),
            Box::new(m20261208_000001_metadata::Migration),
            Box::new(m20261208_000002_wallet_controls::Migration),
            Box::new(m20261209_000001_credit_lines::Migration),
        ]
    }
}
