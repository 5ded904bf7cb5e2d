//! walletql: a wallet and payment service with a GraphQL API.
//!
//! - `domain`: the rules (money, callers, cursors, errors), no I/O;
//! - `ledger`: deposits, transfers and clients, each in its own transaction;
//! - `store`: connections, migrations and every SQL query;
//! - `live`: committed operations fanned out to subscribers;
//! - `schema`: the GraphQL types and resolvers;
//! - `server`: HTTP wiring, authentication, shutdown;
//! - `config`, `telemetry`, `metrics`: settings, logs and Prometheus metrics;
//! - `documents`: the operation documents our own clients and tests send.

pub mod config;
pub mod documents;
pub mod domain;
pub mod ledger;
pub mod live;
pub mod metrics;
pub mod schema;
pub mod server;
pub mod store;
pub mod telemetry;
