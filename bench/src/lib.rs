//! Benchmark tools for walletql: `seed` fills a PostgreSQL database with
//! clients and a ledger, `loadgen` drives a running server over HTTP.
//! Both share the deterministic ids and tokens of seeded clients, so the
//! load generator (and the pgbench ceiling script) can act as any of them
//! without a list.

pub mod ids;
pub mod loadgen;
pub mod seed;
