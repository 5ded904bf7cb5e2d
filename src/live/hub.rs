use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use entity::operation;
use tokio::sync::broadcast;
use uuid::Uuid;

/// What a subscriber receives from the hub.
#[derive(Clone, Debug)]
pub enum HubMessage {
    /// Operations committed together, in commit order (on a wallet's
    /// channel, that wallet's only): one message per batch however many
    /// rows it has, so a subscriber that has read everything never lags on
    /// a single batch, even a `transferBatch` of 1,000 rows on one wallet.
    Operations(Arc<[Arc<operation::Model>]>),
    /// Events may have been lost (the listening connection was down): check
    /// the ledger for anything after the last event seen.
    Resync,
}

/// Fans operations out to subscribers: one bounded broadcast channel per
/// watched wallet, plus one for subscribers to every wallet.
///
/// A broadcast channel holds at most `buffer` events whatever the number or
/// speed of its receivers: a receiver that falls further behind learns that
/// it lagged, and the sender never waits. So a slow subscriber can neither
/// grow memory nor slow anyone down.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    wallets: Mutex<HashMap<Uuid, broadcast::Sender<HubMessage>>>,
    all: broadcast::Sender<HubMessage>,
    buffer: usize,
}

impl Hub {
    pub fn new(buffer: usize) -> Hub {
        let buffer = buffer.max(1);
        Hub {
            inner: Arc::new(Inner {
                wallets: Mutex::new(HashMap::new()),
                all: broadcast::channel(buffer).0,
                buffer,
            }),
        }
    }

    /// Events for one wallet, or for every wallet with `None`.
    pub fn subscribe(&self, wallet: Option<Uuid>) -> Subscription {
        let receiver = match wallet {
            None => self.inner.all.subscribe(),
            Some(id) => self
                .wallets()
                .entry(id)
                .or_insert_with(|| broadcast::channel(self.inner.buffer).0)
                .subscribe(),
        };
        Subscription {
            hub: self.clone(),
            wallet,
            receiver: Some(receiver),
        }
    }

    /// Delivers committed operations, in the order given.
    pub fn dispatch(&self, operations: impl IntoIterator<Item = operation::Model>) {
        let operations: Vec<Arc<operation::Model>> = operations.into_iter().map(Arc::new).collect();
        if operations.is_empty() {
            return;
        }
        let mut wallets = self.wallets();
        let mut watched: HashMap<Uuid, Vec<Arc<operation::Model>>> = HashMap::new();
        for op in &operations {
            if wallets.contains_key(&op.wallet_id) {
                watched.entry(op.wallet_id).or_default().push(op.clone());
            }
        }
        for (wallet, ops) in watched {
            if let Some(sender) = wallets.get(&wallet)
                && sender.send(HubMessage::Operations(ops.into())).is_err()
            {
                // Nobody listens any more.
                wallets.remove(&wallet);
            }
        }
        let _ = self
            .inner
            .all
            .send(HubMessage::Operations(operations.into()));
    }

    /// Whether anyone here listens to this wallet's operations.
    pub fn wants(&self, wallet: Uuid) -> bool {
        self.inner.all.receiver_count() > 0 || self.wallets().contains_key(&wallet)
    }

    /// Tells every subscriber that events may have been missed.
    pub fn resync(&self) {
        for sender in self.wallets().values() {
            let _ = sender.send(HubMessage::Resync);
        }
        let _ = self.inner.all.send(HubMessage::Resync);
    }

    /// Wallets with at least one subscriber in this process.
    pub fn watched_wallets(&self) -> usize {
        self.wallets().len()
    }

    fn wallets(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, broadcast::Sender<HubMessage>>> {
        // The map stays consistent even if a holder panicked: every change
        // is a single insert or remove.
        self.inner
            .wallets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle that does not keep the hub alive, for background tasks that
    /// should end with it.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }
}

pub struct WeakHub(std::sync::Weak<Inner>);

impl WeakHub {
    pub fn upgrade(&self) -> Option<Hub> {
        self.0.upgrade().map(|inner| Hub { inner })
    }
}

/// A subscriber's end of the hub; unregisters its wallet when the last
/// subscriber of that wallet goes away.
pub struct Subscription {
    hub: Hub,
    wallet: Option<Uuid>,
    receiver: Option<broadcast::Receiver<HubMessage>>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<HubMessage, broadcast::error::RecvError> {
        match self.receiver.as_mut() {
            Some(receiver) => receiver.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        if let Some(id) = self.wallet {
            let mut wallets = self.hub.wallets();
            if wallets.get(&id).is_some_and(|s| s.receiver_count() == 0) {
                wallets.remove(&id);
            }
        }
    }
}
