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
mod tags;

pub use crate::store::clients::NewClient;
pub use entry::{
    AuthorizeRequest, Changes, Controls, DepositRequest, HoldOutcome, OperationOutcome,
    RefundRequest, TransferOutcome, TransferRequest, WithdrawRequest,
};

use std::sync::Arc;

use entity::operation::OperationKind;
use entity::{operation, transfer, wallet};
use sea_orm::{DbBackend, DbErr};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use self::committer::Job;
use self::entry::{Action, End, Entry, Posted};
use self::settle::{Outcome, Rules};
use crate::domain::auth::{Caller, generate_token};
use crate::domain::error::{AppError, AppResult};
use crate::domain::money::Money;
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
    /// Pending transfers a payer may have at once.
    pub max_open_holds: i32,
    /// Whether this process sweeps overdue holds (every server does by
    /// default; several sweeping is safe).
    pub sweep_holds: bool,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            event_buffer: live::DEFAULT_BUFFER,
            lanes: DEFAULT_LANES,
            max_batch: DEFAULT_MAX_BATCH,
            key_retention: DEFAULT_KEY_RETENTION,
            max_open_holds: DEFAULT_MAX_OPEN_HOLDS,
            sweep_holds: true,
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
/// Pending transfers per payer at most, by default.
pub const DEFAULT_MAX_OPEN_HOLDS: i32 = 1_000;
/// How long a batch's `ledger_batch` row is kept: far longer than a
/// committer may spend settling a cut-off COMMIT.
const BATCH_RETENTION: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Overdue holds expired per sweep at most (the next sweep takes the rest).
const SWEEP_BATCH: u64 = 1_000;
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
    /// What the committer enforces (a preview applies the same).
    rules: Rules,
    /// The idempotency key pruner and the hold sweeper, stopped with the
    /// ledger.
    pruner: tokio::task::AbortHandle,
    sweeper: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pruner.abort();
        self.sweeper.abort();
    }
}

/// A `transferBatch` with `atomic: true` that was refused: the item that
/// failed and why.
#[derive(Debug)]
pub struct BatchRefused {
    pub index: usize,
    pub error: AppError,
}

/// A refund, and the payment it pays back as the refund left it.
pub struct RefundOutcome {
    pub refund: transfer::Model,
    pub original: transfer::Model,
    pub changes: Changes,
}

impl Ledger {
    /// Starts the committer's lanes and, on PostgreSQL, this process's
    /// LISTEN connection for live operations.
    pub async fn start(store: Store, options: LedgerOptions) -> Result<Ledger, DbErr> {
        // A batch reaches the hub as one message per wallet, however many
        // rows it has: the buffer counts batches.
        let hub = Hub::new(options.event_buffer);
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
        let rules = Rules {
            max_open_holds: options.max_open_holds,
        };
        committer::start(&store, &hub, receiver, lanes, options.max_batch, rules);
        let pruner = tokio::spawn(prune_forever(store.clone(), options.key_retention));
        let sweeper = match options.sweep_holds {
            true => tokio::spawn(sweep_forever(store.clone(), queue.clone())),
            false => tokio::spawn(async {}),
        };
        Ok(Ledger {
            inner: Arc::new(Inner {
                store,
                hub,
                queue,
                _listener: listener,
                key_retention: options.key_retention,
                rules,
                pruner: pruner.abort_handle(),
                sweeper: sweeper.abort_handle(),
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
    ) -> AppResult<OperationOutcome> {
        let entry = entry::deposit(caller, request)?;
        self.post(entry).await?.into_operation()
    }

    /// Takes money out of a wallet to an outside account (operator only).
    pub async fn withdraw(
        &self,
        caller: &Caller,
        request: WithdrawRequest,
    ) -> AppResult<OperationOutcome> {
        let entry = entry::withdraw(caller, request)?;
        self.post(entry).await?.into_operation()
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

    /// What `transfer` would answer now: the same checks (authorisation,
    /// status, limits, funds, the payee's balance limit) against the
    /// wallets as the primary has them, with nothing locked or written. A
    /// key used before previews its stored result. Answers the payer's
    /// available balance after it, in cents.
    pub async fn preview_transfer(
        &self,
        caller: &Caller,
        request: AppResult<TransferRequest>,
    ) -> Result<i64, AppError> {
        let entry = request.and_then(|request| entry::transfer(caller, request))?;
        let db = self.store().db();
        if let Some(claim) = &entry.claim
            && let Some(posted) = self.stored(claim).await?
        {
            // As the transfer left the payer, not as it is now.
            return posted
                .operations
                .iter()
                .find(|op| op.kind == OperationKind::TransferOut)
                .map(operation::Model::available_after)
                .ok_or_else(committer::lost);
        }
        let Action::Post { legs, .. } = &entry.action else {
            return Err(committer::lost());
        };
        let ids: Vec<Uuid> = legs.iter().map(|leg| leg.wallet_id).collect();
        let wallets = reads::wallets_by_ids(db, &ids).await?;
        let now = chrono::Utc::now();
        let locked = settle::Locked {
            wallets: wallets.into_iter().map(|w| (w.id, w)).collect(),
            now,
            ..settle::Locked::default()
        };
        let settled = settle::settle(
            &[&entry],
            &[settle::Key::Fresh],
            &[None],
            locked,
            self.inner.rules,
            now,
        );
        match settled.outcomes.into_iter().next() {
            Some(Outcome::Posted(posted)) => posted
                .wallets
                .first()
                .map(wallet::Model::available)
                .ok_or_else(committer::lost),
            Some(Outcome::Refused(error)) => Err(error),
            _ => Err(committer::lost()),
        }
    }

    /// Holds money of the caller's wallet for a payee: a PENDING transfer.
    pub async fn authorize(
        &self,
        caller: &Caller,
        request: AuthorizeRequest,
    ) -> AppResult<HoldOutcome> {
        let entry = match entry::authorize(caller, request, chrono::Utc::now()) {
            Ok(entry) => entry,
            // A retry after the deadline passed: the stored answer, if the
            // first attempt committed.
            Err(entry::ClockRefusal {
                error,
                claim: Some(claim),
            }) => {
                let stored = self.stored(&claim).await?;
                return stored.ok_or(error)?.into_hold();
            }
            Err(refusal) => return Err(refusal.error),
        };
        self.post(entry).await?.into_hold()
    }

    /// Captures a pending transfer (all of it, or `amount`).
    pub async fn capture(
        &self,
        caller: &Caller,
        transfer_id: Uuid,
        amount: Option<Money>,
        idempotency_key: String,
    ) -> AppResult<HoldOutcome> {
        let end = End::Capture(amount.map(Money::cents));
        let entry = entry::end(caller, transfer_id, end, idempotency_key)?;
        self.post(entry).await?.into_hold()
    }

    /// Voids a pending transfer: its hold is released.
    pub async fn void(
        &self,
        caller: &Caller,
        transfer_id: Uuid,
        idempotency_key: String,
    ) -> AppResult<HoldOutcome> {
        let entry = entry::end(caller, transfer_id, End::Void, idempotency_key)?;
        self.post(entry).await?.into_hold()
    }

    /// Pays back (part of) a posted payment, from its payee to its payer.
    pub async fn refund(
        &self,
        caller: &Caller,
        request: RefundRequest,
    ) -> AppResult<RefundOutcome> {
        let entry = entry::refund(caller, request)?;
        let mut posted = self.post(entry).await?;
        let changes = posted.take_changes();
        let original = match posted.original {
            Some(original) => original,
            // A replay: the payment as it is now.
            None => {
                let refund_of = posted.transfer.as_ref().and_then(|t| t.refund_of);
                let id = refund_of.ok_or_else(committer::lost)?;
                reads::transfer_by_id(self.store().db(), id)
                    .await?
                    .ok_or(AppError::NotFound("transfer"))?
            }
        };
        Ok(RefundOutcome {
            refund: posted.transfer.ok_or_else(committer::lost)?,
            original,
            changes,
        })
    }

    /// Many transfers out of the caller's wallet in one request. Each item
    /// settles on its own (`atomic: false`, one result per item, in order)
    /// or all of them do (`atomic: true`): then the first refusal is the
    /// answer. An item whose key was used before is answered from its
    /// first use in both modes.
    ///
    /// `requests` are the items as parsed: one that could not be (a
    /// malformed amount) is refused in its place.
    pub async fn transfer_batch(
        &self,
        caller: &Caller,
        requests: Vec<AppResult<TransferRequest>>,
        atomic: bool,
    ) -> Result<Vec<AppResult<TransferOutcome>>, BatchRefused> {
        if requests.len() > validate::MAX_BATCH_ITEMS {
            return Err(BatchRefused {
                index: validate::MAX_BATCH_ITEMS,
                error: AppError::invalid_field(
                    "transfers",
                    format!(
                        "a batch holds at most {} transfers",
                        validate::MAX_BATCH_ITEMS
                    ),
                ),
            });
        }
        let mut keys = std::collections::HashSet::new();
        let mut built: Vec<AppResult<Entry>> = Vec::with_capacity(requests.len());
        for request in requests {
            let entry = request
                .and_then(|r| entry::transfer(caller, r))
                .and_then(|entry| match &entry.claim {
                    Some(c) if !keys.insert(c.key.clone()) => Err(AppError::invalid_field(
                        "idempotencyKey",
                        "idempotencyKey is used by another item of this batch",
                    )),
                    _ => Ok(entry),
                });
            built.push(entry);
        }
        if atomic && let Some(index) = built.iter().position(Result::is_err) {
            let error = match built.swap_remove(index) {
                Err(error) => error,
                Ok(_) => committer::lost(),
            };
            return Err(BatchRefused { index, error });
        }
        let entries: Vec<Entry> = built
            .iter()
            .filter_map(|e| e.as_ref().ok().cloned())
            .collect();
        let mut outcomes = self.post_many(entries, atomic).await.into_iter();
        let mut results = Vec::with_capacity(built.len());
        for (index, item) in built.into_iter().enumerate() {
            let entry = match item {
                Ok(entry) => entry,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let outcome = outcomes
                .next()
                .unwrap_or_else(|| Outcome::Refused(committer::lost()));
            let result = match outcome {
                Outcome::Aborted => continue,
                Outcome::Refused(error) if atomic => return Err(BatchRefused { index, error }),
                outcome => self.answer(outcome, entry.claim.as_ref()).await,
            };
            results.push(result.and_then(Posted::into_transfer));
        }
        Ok(results)
    }
    /// Expires the holds past their deadline now (what the sweeper does
    /// every `HOLD_SWEEP_PERIOD`); returns how many this call expired.
    pub async fn expire_overdue_holds(&self) -> AppResult<usize> {
        sweep(self.store(), &self.inner.queue).await
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
        let outcome = self.post_many(vec![entry], false).await.pop();
        let outcome = outcome.unwrap_or_else(|| Outcome::Refused(committer::lost()));
        self.answer(outcome, claim.as_ref()).await
    }

    /// Queues entries as one job and waits for their outcomes, in order.
    async fn post_many(&self, entries: Vec<Entry>, atomic: bool) -> Vec<Outcome> {
        let count = entries.len();
        let lost = || {
            (0..count)
                .map(|_| Outcome::Refused(committer::lost()))
                .collect()
        };
        if count == 0 {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            entries,
            atomic,
            reply,
        };
        if self.inner.queue.send(job).await.is_err() {
            return lost();
        }
        answer.await.unwrap_or_else(|_| lost())
    }

    async fn answer(&self, outcome: Outcome, claim: Option<&entry::Claim>) -> AppResult<Posted> {
        match outcome {
            Outcome::Posted(posted) => Ok(*posted),
            Outcome::Refused(err) => Err(err),
            Outcome::Aborted => Err(committer::lost()),
            Outcome::Replay => self.replay(claim.ok_or_else(committer::lost)?).await,
        }
    }

    async fn replay(&self, claim: &entry::Claim) -> AppResult<Posted> {
        self.stored(claim).await?.ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("idempotency key vanished after a conflict"))
        })
    }

    /// What the first use of `claim`'s key posted, if it is stored; a key
    /// stored for another request is `IDEMPOTENCY_KEY_REUSED`.
    async fn stored(&self, claim: &entry::Claim) -> AppResult<Option<Posted>> {
        let db = self.store().db();
        let Some(record) = postings::key_record(db, &claim.scope, &claim.key).await? else {
            return Ok(None);
        };
        if !claim.fingerprint.matches(&record.fingerprint) {
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
        Ok(Some(Posted {
            transfer,
            original: None,
            operations,
            wallets,
            status_change: None,
        }))
    }

    /// Sets a wallet's status (operator only), under its lock: see
    /// `settle::configure` for what may change.
    pub async fn set_wallet_status(
        &self,
        caller: &Caller,
        wallet_id: Uuid,
        status: wallet::WalletStatus,
        reason: &str,
    ) -> AppResult<wallet::Model> {
        let entry = entry::set_status(caller, wallet_id, status, reason)?;
        self.post(entry).await?.into_wallet()
    }

    /// Sets or removes a wallet's limits (operator only).
    pub async fn set_wallet_limits(
        &self,
        caller: &Caller,
        wallet_id: Uuid,
        controls: Controls,
    ) -> AppResult<wallet::Model> {
        let entry = entry::set_limits(caller, wallet_id, controls)?;
        self.post(entry).await?.into_wallet()
    }
}

/// Expires overdue holds: every `HOLD_SWEEP_PERIOD`, the pending transfers
/// past their deadline (on the database's clock) go through the committer
/// as expiry entries. Several servers may sweep the same hold: the first
/// to lock it expires it, the others find it no longer pending.
async fn sweep_forever(store: Store, queue: mpsc::Sender<Job>) {
    let mut every = tokio::time::interval(validate::HOLD_SWEEP_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match sweep(&store, &queue).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "expired overdue holds"),
            Err(err) => tracing::warn!(error = %err, "sweeping overdue holds failed; will retry"),
        }
    }
}

/// One sweep: expires up to `SWEEP_BATCH` overdue holds; returns how many
/// this call expired.
async fn sweep(store: &Store, queue: &mpsc::Sender<Job>) -> AppResult<usize> {
    let overdue = postings::overdue_holds(store.db(), SWEEP_BATCH).await?;
    if overdue.is_empty() {
        return Ok(0);
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        entries: overdue.into_iter().map(entry::expire).collect(),
        atomic: false,
        reply,
    };
    queue.send(job).await.map_err(|_| committer::lost())?;
    let outcomes = answer.await.map_err(|_| committer::lost())?;
    Ok(outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Posted(_)))
        .count())
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
        let deleted = postings::prune_keys(&write.tx, before, PRUNE_BATCH).await?
            + postings::prune_batches(&write.tx, chrono::Utc::now() - BATCH_RETENTION, PRUNE_BATCH)
                .await?;
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
            Ok(pruned) => tracing::info!(pruned, "pruned expired idempotency keys and batch marks"),
            Err(err) => tracing::warn!(error = %err, "pruning idempotency keys failed; will retry"),
        }
    }
}
