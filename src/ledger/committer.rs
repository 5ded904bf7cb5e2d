//! Group commit: concurrent entries share transactions.
//!
//! Requests queue their entries; a few lanes take turns at the queue. A lane
//! takes everything queued (up to `max_batch`), commits it as one
//! transaction, answers each request, and comes back. While it commits, the
//! next lane gathers what arrives meanwhile, so a busy server fills batches
//! by itself and an idle one commits a lone request at once: nobody waits on
//! a timer. SQLite has one lane (one writer), so one fsync covers a batch.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::{DbBackend, DbErr};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::entry::{Action, Entry};
use super::settle::{Key, Locked, Outcome, Rules, Settlement, settle};
use super::tags::Shown;
use crate::domain::error::AppError;
use crate::live::{CHANNEL, Hub, notice};
use crate::store::postings::{
    self, BatchFate, BatchMark, BatchWrite, Claimed, KeyClaim, TransferUpdate, WalletUpdate,
};
use crate::store::{DbFailure, Store, app_error, is_retryable, is_unavailable, reads};

/// How many times a batch that lost a race (deadlock, serialization
/// failure, busy database) is run again before its requests see an error.
/// Wallets are locked in id order, so this should never be needed.
const ATTEMPTS: usize = 5;

/// Entries a request has queued (one, or a `transferBatch`'s items), and
/// where their outcomes go, in the same order.
pub struct Job {
    pub entries: Vec<Entry>,
    /// All the entries settle, or none.
    pub atomic: bool,
    pub reply: oneshot::Sender<Vec<Outcome>>,
}

impl Job {
    fn claims(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .filter_map(|e| e.claim.as_ref())
            .map(|c| (c.scope.as_str(), c.key.as_str()))
    }
}

/// Starts `lanes` lanes taking batches from `queue`. They stop when every
/// sender of the queue is gone.
pub fn start(
    store: &Store,
    hub: &Hub,
    queue: mpsc::Receiver<Job>,
    lanes: usize,
    max_batch: usize,
    rules: Rules,
) {
    let queue = Arc::new(Mutex::new(queue));
    let bulk = Arc::new(Mutex::new(()));
    for _ in 0..lanes.max(1) {
        tokio::spawn(lane(
            store.clone(),
            hub.clone(),
            queue.clone(),
            bulk.clone(),
            max_batch.max(1),
            rules,
        ));
    }
}

async fn lane(
    store: Store,
    hub: Hub,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    bulk: Arc<Mutex<()>>,
    max_batch: usize,
    rules: Rules,
) {
    let mut carried: Vec<Job> = Vec::new();
    loop {
        let mut jobs = std::mem::take(&mut carried);
        if jobs.is_empty() {
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => jobs.push(job),
                None => return,
            }
            gather(&mut queue, &mut jobs, max_batch);
        } else if let Ok(mut queue) = queue.try_lock() {
            // With work carried over, never wait for a lane idling at the
            // queue: add what is there, if the queue is free, and go.
            gather(&mut queue, &mut jobs, max_batch);
        }
        // A key used twice in one batch: the first use settles here, the
        // others in the next batch, where they find it taken (or free, if
        // the first was refused).
        let mut keys: HashSet<(String, String)> = HashSet::new();
        let (now, later): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| {
            let free = job
                .claims()
                .all(|(s, k)| !keys.contains(&(s.to_owned(), k.to_owned())));
            if free {
                keys.extend(job.claims().map(|(s, k)| (s.to_owned(), k.to_owned())));
            }
            free
        });
        carried = later;
        let entries: usize = now.iter().map(|job| job.entries.len()).sum();
        crate::metrics::ledger_batch(entries);
        // Batches larger than `max_batch` (a `transferBatch` of up to 1,000)
        // commit one at a time: two of them touch many of the same wallets,
        // and would otherwise queue on each other's row locks in the
        // database, each holding its own locks while it waits.
        let _turn = match entries > max_batch {
            true => Some(bulk.lock().await),
            false => None,
        };
        let mut outcomes = commit(&store, &hub, &now, rules).await.into_iter();
        // With replicas, the position a reader must wait for is known
        // before anyone hears of the commit.
        store.note_commit().await;
        for job in now {
            let mine: Vec<Outcome> = outcomes.by_ref().take(job.entries.len()).collect();
            // The request may have gone (timed out); what committed stays.
            let _ = job.reply.send(mine);
        }
    }
}

/// Adds whatever is queued right now, while the batch has fewer than
/// `max_batch` entries (a job's entries are never split).
fn gather(queue: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>, max_batch: usize) {
    while jobs.iter().map(|job| job.entries.len()).sum::<usize>() < max_batch {
        match queue.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Commits one batch, running it again after a transient conflict; every
/// job gets its own outcome, or all get the error that stopped the batch.
async fn commit(store: &Store, hub: &Hub, jobs: &[Job], rules: Rules) -> Vec<Outcome> {
    let entries: Vec<&Entry> = jobs.iter().flat_map(|job| &job.entries).collect();
    let groups: Vec<Option<usize>> = jobs
        .iter()
        .enumerate()
        .flat_map(|(i, job)| std::iter::repeat_n(job.atomic.then_some(i), job.entries.len()))
        .collect();
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt(store, hub, &entries, &groups, rules).await {
            Ok(settlement) => return settlement.outcomes,
            Err(Failed::Db(err)) if tries < ATTEMPTS && is_retryable(&DbFailure::from(&err)) => {
                store.record_retry();
                tracing::debug!(tries, error = %err, "retrying a conflicting batch");
            }
            Err(Failed::Lost(err)) if tries < ATTEMPTS => {
                store.record_retry();
                tracing::warn!(tries, error = %err, "a batch's COMMIT was lost; running it again");
            }
            Err(Failed::Db(err) | Failed::Lost(err)) => {
                store.suspect(&err);
                tracing::error!(error = %err, entries = jobs.len(), "a batch failed");
                return entries
                    .iter()
                    .map(|_| Outcome::Refused(app_error(&err)))
                    .collect();
            }
            Err(Failed::Unknown) => {
                tracing::error!(entries = entries.len(), "a batch's outcome is unknown");
                return entries
                    .iter()
                    .map(|entry| {
                        Outcome::Refused(AppError::OutcomeUnknown {
                            retry_safe: entry.claim.is_some(),
                        })
                    })
                    .collect();
            }
        }
    }
}

/// Why a batch's attempt gave no settlement.
enum Failed {
    /// It failed and changed nothing.
    Db(DbErr),
    /// The connection broke during COMMIT and the database says it never
    /// committed: it may run again.
    Lost(DbErr),
    /// The connection broke during COMMIT and no server could tell.
    Unknown,
}

impl From<DbErr> for Failed {
    fn from(err: DbErr) -> Self {
        Failed::Db(err)
    }
}

/// How long a committer asks after a batch whose COMMIT was cut off (the
/// time a failover takes) before answering `OUTCOME_UNKNOWN`.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

/// Whether the batch marked `mark` committed, asked of whichever server is
/// the primary now, until it can tell or `SETTLE_WITHIN` has passed.
async fn settle_lost_commit(store: &Store, mark: BatchMark) -> BatchFate {
    let deadline = tokio::time::Instant::now() + SETTLE_WITHIN;
    loop {
        match postings::batch_fate(store.db(), mark).await {
            Ok(BatchFate::Unknown) => {}
            Ok(fate) => return fate,
            Err(err) => store.suspect(&err),
        }
        if tokio::time::Instant::now() >= deadline {
            return BatchFate::Unknown;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn attempt(
    store: &Store,
    hub: &Hub,
    entries: &[&Entry],
    groups: &[Option<usize>],
    rules: Rules,
) -> Result<Settlement, Failed> {
    let write = store.begin_write().await?;
    // Each claim with the index of its entry.
    let (claiming, claims): (Vec<usize>, Vec<KeyClaim>) = entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let claim = entry.claim.as_ref()?;
            let (transfer_id, operation_id) = entry.target();
            Some((
                i,
                KeyClaim {
                    scope: &claim.scope,
                    key: &claim.key,
                    fingerprint: &claim.fingerprint,
                    transfer_id,
                    operation_id,
                },
            ))
        })
        .unzip();
    // Transfers first, then wallets, each in id order: the order every
    // batch locks in, so overlapping batches never deadlock. A batch that
    // acts on no stored transfer (most: transfers and deposits) claims its
    // keys and locks its wallets in one statement.
    let mut locked = Locked {
        now: Utc::now(),
        ..Locked::default()
    };
    let simple = entries.iter().all(|entry| entry.acts_on().is_none());
    let (claimed, mut found) = if simple {
        let wallet_ids: Vec<Uuid> = entries
            .iter()
            .flat_map(|entry| wallets_of(entry, &locked))
            .collect();
        postings::claim_keys_and_lock_wallets(&write.tx, &claims, &wallet_ids).await?
    } else {
        (postings::claim_keys(&write.tx, &claims).await?, Vec::new())
    };
    let mut keys = vec![Key::Fresh; entries.len()];
    for (i, found) in claiming.into_iter().zip(claimed) {
        keys[i] = match found {
            Claimed::Ours => Key::Fresh,
            Claimed::Used => Key::Used,
            Claimed::Reused => Key::Reused,
        };
    }
    if !simple {
        // The entries that will be applied, whose rows are locked.
        let live = || {
            entries
                .iter()
                .zip(&keys)
                .filter(|(_, key)| **key == Key::Fresh)
                .map(|(entry, _)| *entry)
        };
        let transfer_ids: Vec<Uuid> = live().filter_map(Entry::acts_on).collect();
        if !transfer_ids.is_empty() {
            let (transfers, now) = postings::lock_transfers(&write.tx, &transfer_ids).await?;
            locked.now = now;
            locked.transfers = transfers.into_iter().map(|t| (t.id, t)).collect();
        }
        let wallet_ids: Vec<Uuid> = live()
            .flat_map(|entry| wallets_of(entry, &locked))
            .collect();
        found = postings::lock_wallets(&write.tx, &wallet_ids).await?;
    }
    locked.wallets = found.into_iter().map(|w| (w.id, w)).collect();
    let configured: Vec<Uuid> = entries
        .iter()
        .filter_map(|entry| match &entry.action {
            Action::Configure { wallet_id, .. } => Some(*wallet_id),
            _ => None,
        })
        .collect();
    if !configured.is_empty() {
        locked.status_changed = reads::newest_status_changes(&write.tx, &configured).await?;
    }
    let locked_now = locked.now;
    let settlement = settle(entries, &keys, groups, locked, rules, Utc::now());

    if settlement.wallets.is_empty() && settlement.released.is_empty() {
        write.rollback().await?;
        return Ok(settlement);
    }
    let released: Vec<(&str, &str)> = settlement
        .released
        .iter()
        .filter_map(|&i| entries.get(i)?.claim.as_ref())
        .map(|c| (c.scope.as_str(), c.key.as_str()))
        .collect();
    let updates: Vec<WalletUpdate> = settlement
        .wallets
        .iter()
        .map(|c| WalletUpdate {
            wallet: &c.wallet,
            previous_seq: c.previous_seq,
        })
        .collect();
    let changes: Vec<TransferUpdate> = settlement
        .changes
        .iter()
        .map(|c| TransferUpdate {
            id: c.transfer.id,
            status: c.transfer.status,
            captured_amount: c.transfer.captured_amount,
            settled_at: c.transfer.settled_at,
            refunded: c.refunded,
            previous_status: c.previous_status,
        })
        .collect();
    let postgres = store.backend() == DbBackend::Postgres;
    // PostgreSQL delivers the notices at commit, in commit order, to every
    // instance; elsewhere the rows go to the hub after commit (below).
    let notices = if postgres {
        notice::encode(&settlement.operations)
    } else {
        Vec::new()
    };
    let shown = Shown::of(&settlement);
    let operation_tags = shown.operation_tags(&settlement.operations);
    let transfer_tags = shown.transfer_tags(&settlement.transfers);
    let mark = postings::write_batch(
        &write.tx,
        &BatchWrite {
            released: &released,
            wallets: &updates,
            transfers: &settlement.transfers,
            changes: &changes,
            now: locked_now,
            operations: &settlement.operations,
            operation_tags: &operation_tags,
            status_changes: &settlement.status_changes,
            transfer_tags: &transfer_tags,
            channel: CHANNEL,
            notices: &notices,
            id: Uuid::now_v7(),
        },
    )
    .await?;
    if let Err(err) = write.commit().await {
        // A broken connection during COMMIT: the batch may have committed.
        // Never guess: ask the database (the new primary, after a failover).
        let Some(mark) = mark.filter(|_| is_unavailable(&err)) else {
            return Err(Failed::Db(err));
        };
        store.suspect(&err);
        match settle_lost_commit(store, mark).await {
            BatchFate::Committed => {
                tracing::warn!(batch = %mark.id, "a cut-off COMMIT had committed")
            }
            BatchFate::NotCommitted => return Err(Failed::Lost(err)),
            BatchFate::Unknown => return Err(Failed::Unknown),
        }
    }
    if !postgres && !settlement.operations.is_empty() {
        // One lane writes on SQLite, so the hub gets batches in commit order.
        hub.dispatch(settlement.operations.iter().cloned());
    }
    Ok(settlement)
}

/// The wallets an entry changes: its legs' and its transfer's, or those of
/// the stored transfer it acts on (once locked).
fn wallets_of(entry: &Entry, locked: &Locked) -> Vec<Uuid> {
    match &entry.action {
        Action::Post { legs, transfer } => legs
            .iter()
            .map(|leg| leg.wallet_id)
            .chain(
                transfer
                    .iter()
                    .flat_map(|t| [t.from_wallet_id, t.to_wallet_id]),
            )
            .collect(),
        Action::Configure { wallet_id, .. } => vec![*wallet_id],
        Action::End { transfer_id, .. } | Action::Refund { transfer_id, .. } => locked
            .transfers
            .get(transfer_id)
            .map(|t| vec![t.from_wallet_id, t.to_wallet_id])
            .unwrap_or_default(),
    }
}

/// Why a request got no answer from the committer.
pub fn lost() -> AppError {
    AppError::Internal(anyhow::anyhow!("the committer stopped before answering"))
}
