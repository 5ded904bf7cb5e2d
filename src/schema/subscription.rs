use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::{Context, Result, Subscription};
use futures_util::{Stream, StreamExt};

use super::context::{caller, ledger, loader, readable_wallet, store};
use super::operations::{Operation, check_cursor};
use super::scalars::Id;
use super::wallets::Wallet;
use crate::domain::cursor::OperationCursor;
use crate::domain::error::{AppError, AppResult};
use crate::live::{self, FeedError};

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Operations as they commit. With `walletId`, one wallet's (for its owner
    /// or the operator): each exactly once, in order, resumable from any
    /// event's `cursor` with `after` (what was missed is replayed from the
    /// ledger first). Without `walletId`, every wallet's (operator only, live
    /// only).
    async fn operation_created(
        &self,
        ctx: &Context<'_>,
        wallet_id: Option<Id>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<Operation>> + use<>> {
        let caller = caller(ctx)?;
        caller.require_authenticated()?;
        let slot = match ctx.data_opt::<SubscriptionSlots>() {
            Some(slots) => Some(slots.acquire()?),
            None => None,
        };
        let store = store(ctx)?.clone();
        let hub = ledger(ctx)?.hub();
        let feed = match wallet_id.map(|id| id.0) {
            None => {
                caller.require_operator()?;
                if after.is_some() {
                    return Err(AppError::invalid_field(
                        "after",
                        "`after` needs a `walletId`: cursors are per wallet",
                    )
                    .into());
                }
                live::all_wallets_feed(hub.subscribe(None)).boxed()
            }
            Some(wallet_id) => {
                let after = after
                    .as_deref()
                    .map(|cursor| OperationCursor::decode_for(cursor, wallet_id))
                    .transpose()
                    .map_err(|e| e.for_field("after"))?;
                if let Some(cursor) = &after {
                    check_cursor(ctx, "after", cursor).await?;
                }
                let after = after.map(|cursor| cursor.seq);
                // Subscribe first, then read the wallet: whatever commits in
                // between arrives live and is told apart by its sequence.
                let subscription = hub.subscribe(Some(wallet_id));
                let wallet = readable_wallet(ctx, wallet_id).await?.0;
                let (start, catch_up) = match after {
                    Some(seq) if seq > wallet.last_seq => {
                        return Err(AppError::invalid_field(
                            "after",
                            "cursor is ahead of the wallet's history",
                        )
                        .into());
                    }
                    Some(seq) => (seq, true),
                    None => (wallet.last_seq, false),
                };
                let replay = loader(ctx)?.reader().for_replay();
                live::wallet_feed(store, replay, wallet_id, start, catch_up, subscription).boxed()
            }
        };
        let active = ActiveSubscription::start();
        Ok(feed.map(move |item| {
            // The slot and the gauge are released when the stream is dropped.
            let _held = (&slot, &active);
            match item {
                Ok(operation) => {
                    crate::metrics::event_delivered();
                    Ok(Operation(Arc::unwrap_or_clone(operation)))
                }
                Err(FeedError::Lagged) => {
                    crate::metrics::subscriber_dropped();
                    Err(AppError::SubscriptionLagged.into())
                }
                Err(FeedError::Missed) => Err(AppError::EventsMissed.into()),
                Err(FeedError::Database(err)) => Err(AppError::from(err).into()),
            }
        }))
    }

    /// A wallet's balances, live (for its owner or the operator): first the
    /// wallet as it is, then as each committed batch that changed it left
    /// it, one event per batch; its `cursor` only moves forward. A
    /// subscriber that falls behind is sent the newest state, never dropped.
    /// Only the balances, `operationCount`, `cursor` and
    /// `limits.creditLimit` are live (each is a ledger row): `status`, the
    /// other `limits` and `statusChanges` are as they were when the
    /// subscription started (query the wallet for them).
    async fn wallet_updated(
        &self,
        ctx: &Context<'_>,
        wallet_id: Id,
    ) -> Result<impl Stream<Item = Result<Wallet>> + use<>> {
        caller(ctx)?.require_authenticated()?;
        let slot = match ctx.data_opt::<SubscriptionSlots>() {
            Some(slots) => Some(slots.acquire()?),
            None => None,
        };
        let store = store(ctx)?.clone();
        // Subscribe first, then read: a batch committed in between arrives
        // live, and is told apart by its sequence.
        let subscription = ledger(ctx)?.hub().subscribe(Some(wallet_id.0));
        let wallet = readable_wallet(ctx, wallet_id.0).await?.0;
        let active = ActiveSubscription::start();
        let states = live::wallet_states(store, wallet, subscription);
        Ok(states.map(move |state| {
            let _held = (&slot, &active);
            match state {
                Ok(wallet) => {
                    crate::metrics::event_delivered();
                    Ok(Wallet(wallet))
                }
                Err(err) => Err(match err {
                    FeedError::Database(err) => AppError::from(err),
                    FeedError::Lagged => AppError::SubscriptionLagged,
                    FeedError::Missed => AppError::EventsMissed,
                }
                .into()),
            }
        }))
    }
}

/// Counts an active subscription in `live_subscriptions` while it lives.
struct ActiveSubscription;

impl ActiveSubscription {
    fn start() -> ActiveSubscription {
        crate::metrics::subscription_started();
        ActiveSubscription
    }
}

impl Drop for ActiveSubscription {
    fn drop(&mut self) {
        crate::metrics::subscription_ended();
    }
}

/// The per-connection cap on concurrent subscriptions.
#[derive(Clone)]
pub struct SubscriptionSlots {
    active: Arc<AtomicUsize>,
    max: usize,
}

impl SubscriptionSlots {
    pub fn new(max: usize) -> SubscriptionSlots {
        SubscriptionSlots {
            active: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    fn acquire(&self) -> AppResult<SlotGuard> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map_err(|_| AppError::TooManySubscriptions(self.max))?;
        Ok(SlotGuard(self.active.clone()))
    }
}

struct SlotGuard(Arc<AtomicUsize>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
