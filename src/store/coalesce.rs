//! Read coalescing: lookups by key from concurrent requests share one query.
//!
//! Under load, most requests read a wallet by id. Run one by one, each
//! costs a pooled connection, a round trip and the wake-ups of a task
//! waiting for the pool, which is most of a read's CPU. Here requests queue
//! their keys and a few lanes each take whatever is queued and run one
//! `WHERE id IN (...)` for all of it (the same pattern as the ledger's group
//! commit). An idle server adds no waiting: a lone key is read at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use entity::{client, wallet};
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::reads;

type Reply<K, V> = oneshot::Sender<Result<Arc<HashMap<K, V>>, DbErr>>;

/// Keys wanted by one request, and where the rows go.
struct Want<K, V> {
    keys: Vec<K>,
    reply: Reply<K, V>,
}

/// A shared reader of one kind of row by key.
pub struct Coalescer<K, V> {
    queue: mpsc::Sender<Want<K, V>>,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Coalescer {
            queue: self.queue.clone(),
        }
    }
}

/// Lanes reading at once: a share of the pool, leaving room for the rest.
const LANES: usize = 4;
/// Most keys in one query.
const MAX_KEYS: usize = 512;

impl<K, V> Coalescer<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Starts the lanes; `read` runs one query for a set of keys. The lanes
    /// hold the pool, not the store, and stop when the last `Coalescer`
    /// clone is dropped.
    pub fn start<F, Fut>(db: &DatabaseConnection, read: F) -> Coalescer<K, V>
    where
        F: Fn(DatabaseConnection, Vec<K>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<K, V>, DbErr>> + Send,
    {
        let (queue, receiver) = mpsc::channel::<Want<K, V>>(4_096);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..LANES {
            let (db, read, receiver) = (db.clone(), read.clone(), receiver.clone());
            tokio::spawn(async move {
                loop {
                    let mut wants = Vec::new();
                    {
                        let mut receiver = receiver.lock().await;
                        match receiver.recv().await {
                            Some(want) => wants.push(want),
                            None => return,
                        }
                        let mut keys = wants.first().map_or(0, |w| w.keys.len());
                        while keys < MAX_KEYS {
                            match receiver.try_recv() {
                                Ok(want) => {
                                    keys += want.keys.len();
                                    wants.push(want);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    let mut keys: Vec<K> = wants.iter().flat_map(|w| w.keys.clone()).collect();
                    let mut seen = std::collections::HashSet::with_capacity(keys.len());
                    keys.retain(|k| seen.insert(k.clone()));
                    let rows = read(db.clone(), keys).await.map(Arc::new);
                    for want in wants {
                        let _ = want.reply.send(rows.clone());
                    }
                }
            });
        }
        Coalescer { queue }
    }

    /// The rows for `keys` (absent when not found), read with whatever other
    /// requests want at the same moment.
    pub async fn read(&self, keys: Vec<K>) -> Result<HashMap<K, V>, DbErr> {
        let (reply, rows) = oneshot::channel();
        let lost = || DbErr::Custom("the reader stopped".into());
        self.queue
            .send(Want {
                keys: keys.clone(),
                reply,
            })
            .await
            .map_err(|_| lost())?;
        let rows = rows.await.map_err(|_| lost())??;
        Ok(keys
            .into_iter()
            .filter_map(|k| rows.get(&k).map(|v| (k, v.clone())))
            .collect())
    }
}

/// The lookups by key that every server answers, each coalesced: wallets
/// by id, wallets by their client's id, clients by id. The primary has one
/// set, and each read replica its own.
pub struct ByKey {
    pub wallets: Coalescer<Uuid, wallet::Model>,
    pub wallets_of_clients: Coalescer<Uuid, wallet::Model>,
    pub clients: Coalescer<Uuid, client::Model>,
}

impl ByKey {
    pub fn start(db: &DatabaseConnection) -> ByKey {
        ByKey {
            wallets: Coalescer::start(db, |db, ids: Vec<Uuid>| async move {
                let rows = reads::wallets_by_ids(&db, &ids).await?;
                Ok(rows.into_iter().map(|w| (w.id, w)).collect())
            }),
            wallets_of_clients: Coalescer::start(db, |db, ids: Vec<Uuid>| async move {
                let rows = reads::wallets_by_client_ids(&db, &ids).await?;
                Ok(rows.into_iter().map(|w| (w.client_id, w)).collect())
            }),
            clients: Coalescer::start(db, |db, ids: Vec<Uuid>| async move {
                let rows = reads::clients_by_ids(&db, &ids).await?;
                Ok(rows.into_iter().map(|c| (c.id, c)).collect())
            }),
        }
    }
}
