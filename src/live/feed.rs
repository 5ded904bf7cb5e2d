//! Subscriber feeds: streams of committed operations.

use std::collections::VecDeque;
use std::sync::Arc;

use entity::operation::OperationKind;
use entity::{operation, wallet};
use futures_util::Stream;
use sea_orm::DbErr;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::hub::{HubMessage, Subscription};
use crate::store::reader::Reader;
use crate::store::{Store, reads};

/// Rows read from the ledger at a time while catching up.
const CATCH_UP_CHUNK: u64 = 100;

/// Why a feed ended early.
#[derive(Debug)]
pub enum FeedError {
    /// The subscriber fell more than the buffer behind; it should resubscribe
    /// with the cursor of the last event it received.
    Lagged,
    /// Events to an all-wallet feed may have been lost while the listening
    /// connection was down; per-wallet feeds recover these themselves.
    Missed,
    Database(DbErr),
}

/// Every committed operation of one wallet with a sequence number above
/// `after`, each exactly once and in order: first those already in the
/// ledger, then live ones.
///
/// `subscription` must have been taken *before* `after` was read, so that an
/// operation committed in between arrives live. Live events that repeat what
/// was read are skipped by sequence number; one that skips ahead means events
/// were missed, and the gap is read from the ledger. The same happens on a
/// resync. Memory is bounded: the catch-up reads a chunk at a time, and the
/// hub's buffer is fixed.
///
/// The first catch-up may be read through `replay` (a replica, when one is
/// fresh enough); it ends with a read on the primary, so that what the
/// replica had not replayed yet is not missed. Gap fills read the primary.
pub fn wallet_feed(
    store: Store,
    replay: Reader,
    wallet_id: Uuid,
    after: i64,
    catch_up: bool,
    subscription: Subscription,
) -> impl Stream<Item = Result<Arc<operation::Model>, FeedError>> + Send {
    struct State {
        store: Store,
        replay: Option<Reader>,
        wallet_id: Uuid,
        last: i64,
        catch_up: bool,
        ready: VecDeque<Arc<operation::Model>>,
        subscription: Subscription,
        done: bool,
    }
    let state = State {
        store,
        // Only a first catch-up reads a replica; later ones fill gaps.
        replay: catch_up.then_some(replay),
        wallet_id,
        last: after,
        catch_up,
        ready: VecDeque::new(),
        subscription,
        done: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            if let Some(operation) = state.ready.pop_front() {
                state.last = operation.seq;
                return Some((Ok(operation), state));
            }
            if state.catch_up {
                let (wallet_id, last) = (state.wallet_id, state.last);
                let read = match &state.replay {
                    Some(reader) => {
                        reader
                            .read(|db| async move {
                                reads::operations_after(&db, wallet_id, last, CATCH_UP_CHUNK).await
                            })
                            .await
                    }
                    None => {
                        reads::operations_after(state.store.db(), wallet_id, last, CATCH_UP_CHUNK)
                            .await
                    }
                };
                match read {
                    Ok(rows) => {
                        let full = rows.len() as u64 == CATCH_UP_CHUNK;
                        // The replay's end is read on the primary.
                        state.catch_up = full || state.replay.is_some();
                        if !full {
                            state.replay = None;
                        }
                        state.ready.extend(rows.into_iter().map(Arc::new));
                        continue;
                    }
                    Err(err) => {
                        state.done = true;
                        return Some((Err(FeedError::Database(err)), state));
                    }
                }
            }
            match state.subscription.recv().await {
                Ok(HubMessage::Operations(operations)) => {
                    let mut next = state.last + 1;
                    for operation in operations.iter() {
                        if operation.seq == next {
                            state.ready.push_back(operation.clone());
                            next += 1;
                        } else if operation.seq > next {
                            state.catch_up = true;
                            break;
                        }
                        // Older ones were already delivered.
                    }
                }
                Ok(HubMessage::Resync) => state.catch_up = true,
                Err(RecvError::Lagged(_)) => {
                    state.done = true;
                    return Some((Err(FeedError::Lagged), state));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// A wallet's state: first `wallet` as it was read (after `subscription`
/// was taken), then as each committed batch that changed it left it, one
/// event per batch, its sequence always higher than the last one sent.
///
/// A batch's rows carry what it left the wallet with (`balance_after`,
/// `available_after`), so an event costs no read. A subscriber that falls
/// behind, or a listener that may have missed events, gets the wallet read
/// again: only its newest state, never an error for being slow.
pub fn wallet_states(
    store: Store,
    wallet: wallet::Model,
    subscription: Subscription,
) -> impl Stream<Item = Result<wallet::Model, FeedError>> + Send {
    struct State {
        store: Store,
        current: wallet::Model,
        first: bool,
        subscription: Subscription,
    }
    let state = State {
        store,
        current: wallet,
        first: true,
        subscription,
    };
    futures_util::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        if state.first {
            state.first = false;
            return Some((Ok(state.current.clone()), Some(state)));
        }
        loop {
            match state.subscription.recv().await {
                Ok(HubMessage::Operations(operations)) => {
                    let (id, last_seq) = (state.current.id, state.current.last_seq);
                    // Batches before the first read are in it already.
                    let mut rows: Vec<&operation::Model> = operations
                        .iter()
                        .map(|op| op.as_ref())
                        .filter(|op| op.wallet_id == id && op.seq > last_seq)
                        .collect();
                    if rows.is_empty() {
                        continue;
                    }
                    rows.sort_by_key(|op| op.seq);
                    // Each row moves the state on from the one before; a
                    // row missing in between (none is expected) means
                    // reading the wallet as it is instead.
                    if rows.first().is_some_and(|row| row.seq == last_seq + 1) {
                        for row in rows {
                            follow(&mut state.current, row);
                        }
                        return Some((Ok(state.current.clone()), Some(state)));
                    }
                }
                Ok(HubMessage::Resync) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
            let read = reads::wallets_by_ids(state.store.db(), &[state.current.id]).await;
            match read.map(|rows| rows.into_iter().next()) {
                Ok(Some(wallet)) if wallet.last_seq > state.current.last_seq => {
                    state.current = wallet;
                    return Some((Ok(state.current.clone()), Some(state)));
                }
                Ok(_) => continue,
                Err(err) => return Some((Err(FeedError::Database(err)), None)),
            }
        }
    })
}

/// Every operation committed from now on, in any wallet (the operator's
/// view). It has no cursor to recover with: if events may have been lost,
/// it ends with `Missed`.
pub fn all_wallets_feed(
    subscription: Subscription,
) -> impl Stream<Item = Result<Arc<operation::Model>, FeedError>> + Send {
    let state = Some((subscription, VecDeque::<Arc<operation::Model>>::new()));
    futures_util::stream::unfold(state, |state| async move {
        let (mut subscription, mut ready) = state?;
        loop {
            if let Some(operation) = ready.pop_front() {
                return Some((Ok(operation), Some((subscription, ready))));
            }
            match subscription.recv().await {
                Ok(HubMessage::Operations(operations)) => ready.extend(operations.iter().cloned()),
                Ok(HubMessage::Resync) => return Some((Err(FeedError::Missed), None)),
                Err(RecvError::Lagged(_)) => return Some((Err(FeedError::Lagged), None)),
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// A wallet as one more of its rows leaves it. A row's available balance
/// after is `balance - held + credit_limit`: a CREDIT_LIMIT row moves the
/// line (its held is unchanged), any other row the held balance.
fn follow(wallet: &mut wallet::Model, row: &operation::Model) {
    match row.kind {
        OperationKind::CreditLimit => {
            wallet.credit_limit = row.available_after() - row.balance_after + wallet.held;
        }
        _ => wallet.held = row.balance_after + wallet.credit_limit - row.available_after(),
    }
    wallet.balance = row.balance_after;
    if let Some(incoming) = row.incoming_held_after {
        wallet.incoming_held = incoming;
    }
    wallet.last_seq = row.seq;
    wallet.updated_at = row.created_at;
}
