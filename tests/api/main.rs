//! Integration tests: the real server over real HTTP, on PostgreSQL and on
//! the embedded SQLite backend.

mod helpers;

mod authorization;
mod binary;
mod clients;
mod concurrency;
mod dataloader;
mod deposits;
mod errors;
mod idempotency;
mod pagination;
mod schema;
mod subscriptions;
mod transfers;
mod ws;
