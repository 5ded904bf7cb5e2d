//! Ids and tokens of seeded clients, derived from their index.
//!
//! Wallet `n` is `00000000-0000-7000-9000-` followed by `n` in 12 hex digits,
//! which SQL can compute too (see `pgbench/transfer.sql`). Seeded tokens are
//! predictable on purpose: a seeded database is for benchmarks only.

use uuid::Uuid;

pub fn client_id(n: u64) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0000 | u128::from(n))
}

pub fn wallet_id(n: u64) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_7000_9000_0000_0000_0000 | u128::from(n))
}

pub fn token(n: u64) -> String {
    format!("wq_seed_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_what_sql_computes() {
        assert_eq!(
            wallet_id(255).to_string(),
            "00000000-0000-7000-9000-0000000000ff"
        );
        assert_eq!(
            client_id(1).to_string(),
            "00000000-0000-7000-8000-000000000001"
        );
        assert_ne!(token(1), token(2));
    }
}
