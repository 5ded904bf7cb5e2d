//! The ledger's write operations. Each owns its database transaction: the
//! balance change, the operation rows and the idempotency record commit
//! together or not at all.

mod clients;
mod idempotency;
mod money_moves;

pub use clients::{NewClient, create_client};
pub use money_moves::{
    DepositOutcome, DepositRequest, TransferOutcome, TransferRequest, deposit, transfer,
};

use std::future::Future;

use crate::domain::error::{AppError, AppResult};
use crate::store::{DbFailure, Store, is_retryable};

/// How many times a transaction that lost a race (serialization failure,
/// deadlock, busy database) is run again before the caller sees an error.
const ATTEMPTS: usize = 5;

/// Runs `attempt` until it succeeds or fails for a reason other than a
/// transient conflict. Transfers lock wallets in a fixed order, so conflicts
/// should not happen at all; this is the second line of defence that keeps
/// them from ever reaching a caller.
async fn with_retries<T, F, Fut>(store: &Store, mut attempt: F) -> AppResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = AppResult<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(AppError::Internal(err))
                if tries < ATTEMPTS
                    && err.downcast_ref::<DbFailure>().is_some_and(is_retryable) =>
            {
                store.record_retry();
                tracing::debug!(tries, error = %err, "retrying a conflicting transaction");
            }
            result => return result,
        }
    }
}
