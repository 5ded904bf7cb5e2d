//! Integration tests: the real server over real HTTP, on PostgreSQL and on
//! the embedded SQLite backend.

mod helpers;

mod abuse;
mod authorization;
mod binary;
mod clients;
mod concurrency;
mod controls;
mod crash;
mod credit;
mod dataloader;
mod deposits;
mod documents;
mod errors;
mod group_commit;
mod history;
mod holds;
mod idempotency;
mod incoming;
mod limits;
mod lists;
mod metadata;
mod mutations;
mod nodes;
mod observability;
mod pagination;
mod persisted;
mod preview;
mod properties;
mod schema;
mod shared_documents;
mod statements;
mod subscriptions;
mod transfers;
mod typed;
mod verbs;
mod verify;
mod ws;
mod ws_limits;
