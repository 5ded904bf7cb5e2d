//! The ledger: every write, through one posting engine.
//!
//! A money verb builds an `Entry` (its legs, conditions and idempotency
//! claim, see `entry`), queues it, and waits for its own outcome. The
//! committer settles queued entries in batches, one transaction each (see
//! `committer` and `settle`); the SQL is in `store::postings`. Publishing
//! committed operations is the committer's: a NOTIFY in the batch's
//! transaction on PostgreSQL, the in-process hub after commit on SQLite.

mod committer;
mod entry;
mod settle;

pub use crate::store::clients::NewClient;
pub use entry::{DepositOutcome, DepositRequest, TransferOutcome, TransferRequest};

use std::sync::Arc;

use entity::wallet;
use sea_orm::{DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};

use self::committer::Job;
use self::entry::{Entry, Posted};
use self::settle::Outcome;
use crate::domain::auth::{Caller, generate_token};
use crate::domain::error::{AppError, AppResult};
use crate::domain::validate;
use crate::live::{self, Hub, ListenerTask};
use crate::store::{Store, clients, postings, reads};

/// How the posting engine runs.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Events a live subscriber may fall behind by (see `live::Hub`).
    pub event_buffer: usize,
    /// Batches committing at once on PostgreSQL (SQLite has one writer).
    pub lanes: usize,
    /// Most entries in one batch.
    pub max_batch: usize,
    /// How long an idempotency key is kept; older ones are pruned and may
    /// be used again.
    pub key_retention: std::time::Duration,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            event_buffer: live::DEFAULT_BUFFER,
            lanes: DEFAULT_LANES,
            max_batch: DEFAULT_MAX_BATCH,
            key_retention: DEFAULT_KEY_RETENTION,
        }
    }
}

/// Lanes on PostgreSQL: while one batch waits for its commit's WAL flush,
/// another is gathered and run (see BENCHMARKS.md for the measurements).
pub const DEFAULT_LANES: usize = 2;
/// Entries per batch at most: large enough to amortise a commit, small
/// enough that a batch's locks are held for a few milliseconds only.
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Idempotency keys are kept a week by default.
pub const DEFAULT_KEY_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 60 * 60);
/// Keys deleted per pruning statement: a short transaction that never
/// holds writers up for long.
const PRUNE_BATCH: u64 = 1_000;
/// How often the pruner looks for expired keys.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Entries queued at most before a request waits for room.
const QUEUE_DEPTH: usize = 8_192;

/// The ledger service shared by every request.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    hub: Hub,
    queue: mpsc::Sender<Job>,
    /// PostgreSQL's LISTEN task, stopped with the ledger.
    _listener: Option<ListenerTask>,
    key_retention: std::time::Duration,
    /// The idempotency key pruner, stopped with the ledger.
    pruner: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pruner.abort();
    }
}

impl Ledger {
    /// Starts the committer's lanes and, on PostgreSQL, this process's
    /// LISTEN connection for live operations.
    pub async fn start(store: Store, options: LedgerOptions) -> Result<Ledger, DbErr> {
        // One batch can hold up to `max_batch` operations of one wallet, and
        // reaches the hub at once: a subscriber that had read everything
        // must not lag on a single batch.
        let hub = Hub::new(options.event_buffer.max(options.max_batch));
        let (queue, receiver) = mpsc::channel(QUEUE_DEPTH);
        let (lanes, listener) = match store.backend() {
            DbBackend::Postgres => {
                let listener = live::spawn_postgres_listener(store.clone(), &hub)
                    .await
                    .map_err(|e| {
                        DbErr::Custom(format!("cannot LISTEN for live operations: {e}"))
                    })?;
                (options.lanes, Some(listener))
            }
            _ => (1, None),
        };
        committer::start(&store, &hub, receiver, lanes, options.max_batch);
        let pruner = tokio::spawn(prune_forever(store.clone(), options.key_retention));
        Ok(Ledger {
            inner: Arc::new(Inner {
                store,
                hub,
                queue,
                _listener: listener,
                key_retention: options.key_retention,
                pruner: pruner.abort_handle(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Where live subscribers get committed operations.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Creates a client with an empty USD wallet; returns the client's API
    /// token, shown only now.
    pub async fn create_client(&self, name: &str, email: Option<&str>) -> AppResult<NewClient> {
        let name = validate::name(name)?;
        let email = email.map(validate::email).transpose()?;
        let token = generate_token()?;
        clients::create_client(self.store(), name, email, token).await
    }

    /// Puts money into a wallet (operator only).
    pub async fn deposit(
        &self,
        caller: &Caller,
        request: DepositRequest,
    ) -> AppResult<DepositOutcome> {
        let entry = entry::deposit(caller, request)?;
        self.post(entry).await?.into_deposit()
    }

    /// Moves money from the caller's wallet to another.
    pub async fn transfer(
        &self,
        caller: &Caller,
        request: TransferRequest,
    ) -> AppResult<TransferOutcome> {
        let entry = entry::transfer(caller, request)?;
        self.post(entry).await?.into_transfer()
    }

    /// Deletes every idempotency key older than the retention, a batch at a
    /// time; returns how many went. The background pruner calls this every
    /// minute; a key pruned may be used again.
    pub async fn prune_idempotency_keys(&self) -> AppResult<u64> {
        prune(self.store(), self.inner.key_retention).await
    }

    /// Queues an entry and waits for its outcome; a used idempotency key is
    /// answered from what its first use posted.
    async fn post(&self, entry: Entry) -> AppResult<Posted> {
        let claim = entry.claim.clone();
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Job { entry, reply })
            .await
            .map_err(|_| committer::lost())?;
        match answer.await.map_err(|_| committer::lost())? {
            Outcome::Posted(posted) => Ok(posted),
            Outcome::Refused(err) => Err(err),
            Outcome::Replay => {
                let claim = claim.ok_or_else(committer::lost)?;
                self.replay(&claim).await
            }
        }
    }

    async fn replay(&self, claim: &entry::Claim) -> AppResult<Posted> {
        let db = self.store().db();
        let record = postings::key_record(db, &claim.scope, &claim.key)
            .await?
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!("idempotency key vanished after a conflict"))
            })?;
        if record.fingerprint != claim.fingerprint {
            return Err(AppError::IdempotencyKeyReused);
        }
        let (transfer, operations) =
            postings::posted_rows(db, record.transfer_id, record.operation_id).await?;
        if operations.is_empty() {
            return Err(AppError::Internal(anyhow::anyhow!(
                "idempotency key {} has no ledger rows",
                claim.key
            )));
        }
        let ids: Vec<_> = operations.iter().map(|op| op.wallet_id).collect();
        let found = reads::wallets_by_ids(db, &ids).await?;
        let wallets: Vec<wallet::Model> = ids
            .iter()
            .filter_map(|id| found.iter().find(|w| w.id == *id).cloned())
            .collect();
        Ok(Posted {
            transfer,
            operations,
            wallets,
        })
    }
}

async fn prune(store: &Store, retention: std::time::Duration) -> AppResult<u64> {
    let retention = chrono::TimeDelta::from_std(retention)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("key retention: {e}")))?;
    let before = chrono::Utc::now() - retention;
    let mut pruned = 0;
    loop {
        // Each batch is its own short write transaction (SQLite: in turn
        // with the committer, through the writer slot).
        let write = store.begin_write().await?;
        let deleted = postings::prune_keys(&write.tx, before, PRUNE_BATCH).await?;
        write.commit().await?;
        pruned += deleted;
        if deleted < PRUNE_BATCH {
            return Ok(pruned);
        }
        tokio::task::yield_now().await;
    }
}

async fn prune_forever(store: Store, retention: std::time::Duration) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match prune(&store, retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned expired idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "pruning idempotency keys failed; will retry"),
        }
    }
}
