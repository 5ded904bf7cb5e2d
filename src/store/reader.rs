//! Where one request's reads go: a replica when one is fresh enough for
//! it (see `replicas`), else the primary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use entity::{client, wallet};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::Store;
use super::backend::{is_recovery_conflict, is_unavailable};
use super::coalesce::{ByKey, Coalescer};
use super::replicas::{Lsn, Node};

/// A request's reads. Cloning shares the pin and the replica.
///
/// Reads within a request never go back in time: the first read picks a
/// replica and the later ones stay on it while it fits; once one read is
/// on the primary (none fitted, or the replica failed), the rest are too.
#[derive(Clone)]
pub struct Reader {
    store: Store,
    /// Whose writes the reads must see (remembered on this instance).
    caller: Option<Uuid>,
    /// A position the reads must see (`x-min-lsn`, `minLsn`).
    floor: Option<Lsn>,
    /// Reads that feed a write or a live stream stay on the primary.
    pinned: Arc<AtomicBool>,
    /// The replica this request reads from, once picked.
    chosen: Arc<Mutex<Option<Arc<Node>>>>,
}

impl Reader {
    pub fn new(store: Store, caller: Option<Uuid>, floor: Option<Lsn>) -> Reader {
        Reader {
            store,
            caller,
            floor,
            pinned: Arc::default(),
            chosen: Arc::default(),
        }
    }

    /// From now on, every read of this request is on the primary (a
    /// mutation reads what it wrote).
    pub fn pin_to_primary(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// For a subscription's replay: any fresh replica, with no floor, as
    /// the replay ends with a read on the primary (`live::wallet_feed`)
    /// that brings whatever the replica had not replayed yet.
    pub fn for_replay(&self) -> Reader {
        Reader::new(self.store.clone(), None, None)
    }

    async fn replica(&self) -> Option<Arc<Node>> {
        if self.pinned.load(Ordering::Acquire) {
            return None;
        }
        let replicas = self.store.replicas.as_ref()?;
        let remembered = self.caller.and_then(|c| replicas.remembered(c));
        let floor = self.floor.max(remembered);
        let chosen = self
            .chosen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let node = match chosen {
            // Another replica could be further behind than this one was.
            Some(node) => replicas.still_fits(&node, floor).then_some(node),
            None => replicas.pick(floor).await,
        };
        match &node {
            Some(node) => {
                *self.chosen.lock().unwrap_or_else(PoisonError::into_inner) = Some(node.clone());
            }
            None => self.pin_to_primary(),
        }
        node
    }

    /// Runs `on_replica` on a replica fit for this request, and
    /// `on_primary` if there is none or the replica failed in a way another
    /// server would not (unreachable, a recovery conflict).
    async fn routed<T, R, RF, P, PF>(&self, on_replica: R, on_primary: P) -> Result<T, DbErr>
    where
        R: FnOnce(Arc<Node>) -> RF,
        RF: Future<Output = Result<T, DbErr>>,
        P: FnOnce() -> PF,
        PF: Future<Output = Result<T, DbErr>>,
    {
        if self.store.replicas.is_none() {
            return on_primary().await;
        }
        if let Some(node) = self.replica().await {
            match on_replica(node.clone()).await {
                Ok(found) => {
                    crate::metrics::db_read("replica");
                    return Ok(found);
                }
                Err(err) if is_unavailable(&err) || is_recovery_conflict(&err) => {
                    if is_unavailable(&err) {
                        node.set_down();
                    }
                    self.pin_to_primary();
                    tracing::debug!(error = %err, "replica read failed: reading from the primary");
                }
                Err(err) => return Err(err),
            }
        }
        crate::metrics::db_read("primary");
        on_primary().await
    }

    /// Runs one read, given the connection to run it on.
    pub async fn read<T, F, Fut>(&self, read: F) -> Result<T, DbErr>
    where
        F: Fn(DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        self.routed(
            |node| read(node.db.clone()),
            || read(self.store.db().clone()),
        )
        .await
    }

    /// A lookup by key, read together with other requests' on the same
    /// server (`which` picks it from a server's set).
    async fn by_key<K, V>(
        &self,
        keys: Vec<K>,
        which: impl Fn(&ByKey) -> &Coalescer<K, V>,
    ) -> Result<HashMap<K, V>, DbErr>
    where
        K: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let primary = which(&self.store.by_key);
        if self.store.replicas.is_none() {
            return primary.read(keys).await;
        }
        let again = keys.clone();
        let which = &which;
        self.routed(
            |node| async move { which(&node.by_key).read(keys).await },
            || primary.read(again),
        )
        .await
    }

    pub async fn wallets_by_ids(
        &self,
        ids: Vec<Uuid>,
    ) -> Result<HashMap<Uuid, wallet::Model>, DbErr> {
        self.by_key(ids, |keyed| &keyed.wallets).await
    }

    pub async fn wallets_by_client_ids(
        &self,
        ids: Vec<Uuid>,
    ) -> Result<HashMap<Uuid, wallet::Model>, DbErr> {
        self.by_key(ids, |keyed| &keyed.wallets_of_clients).await
    }

    pub async fn clients_by_ids(
        &self,
        ids: Vec<Uuid>,
    ) -> Result<HashMap<Uuid, client::Model>, DbErr> {
        self.by_key(ids, |keyed| &keyed.clients).await
    }
}
