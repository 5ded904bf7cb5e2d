//! Batching lookups without a timer.
//!
//! async-graphql's `DataLoader` gathers keys for a fixed delay (1 ms by
//! default) on a timer, and runs the batch in a task of its own: every
//! request that reads a wallet waited that millisecond, and a zero delay let
//! the batch start on the other worker thread before the request had
//! registered all its keys (split batches). Here the first key of a batch
//! makes the request's own task yield once (`tokio::task::yield_now`, whose
//! wake-up tokio defers until the task's current poll has finished), so
//! every resolver reached in that poll adds its key first; then that same
//! task runs the one query. Nothing waits on a clock, nothing crosses
//! threads, and a lone lookup costs one extra poll, not a millisecond.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, OnceCell};

/// What a batch resolves to: every key's value (absent when not found).
type Loaded<K, V, E> = Result<Arc<HashMap<K, V>>, E>;

/// One kind of key's open batch, per request.
pub struct Batcher<K, V, E> {
    open: Mutex<Option<Arc<Batch<K, V, E>>>>,
}

struct Batch<K, V, E> {
    keys: Mutex<Vec<K>>,
    result: OnceCell<Loaded<K, V, E>>,
    ready: Notify,
}

impl<K, V, E> Default for Batcher<K, V, E> {
    fn default() -> Self {
        Batcher {
            open: Mutex::new(None),
        }
    }
}

impl<K, V, E> Batcher<K, V, E>
where
    K: Clone + Eq + Hash,
    V: Clone,
    E: Clone,
{
    /// The value for `key`, loaded together with every other key asked for
    /// in the same poll of the request's task. `load` runs once per batch.
    pub async fn load_one<F, Fut>(&self, key: K, load: F) -> Result<Option<V>, E>
    where
        F: FnOnce(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
        E: From<Cancelled>,
    {
        let (batch, leader) = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            match open.as_ref() {
                Some(batch) => {
                    lock(&batch.keys).push(key.clone());
                    (batch.clone(), false)
                }
                None => {
                    let batch = Arc::new(Batch {
                        keys: Mutex::new(vec![key.clone()]),
                        result: OnceCell::new(),
                        ready: Notify::new(),
                    });
                    *open = Some(batch.clone());
                    (batch, true)
                }
            }
        };
        let loaded = if leader {
            let guard = Leader { batch: &batch };
            // Let the rest of this poll of the request add its keys.
            tokio::task::yield_now().await;
            {
                let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
                if open.as_ref().is_some_and(|b| Arc::ptr_eq(b, &batch)) {
                    *open = None;
                }
            }
            let mut keys = std::mem::take(&mut *lock(&batch.keys));
            dedup(&mut keys);
            let loaded = load(keys).await.map(Arc::new);
            guard.finish(loaded.clone());
            loaded
        } else {
            loop {
                let notified = batch.ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(loaded) = batch.result.get() {
                    break loaded.clone();
                }
                notified.await;
            }
        };
        Ok(loaded?.get(&key).cloned())
    }
}

/// The leader of a batch was dropped before it loaded (its request was
/// cancelled): the batch's other keys get this error instead of waiting.
#[derive(Clone, Copy, Debug)]
pub struct Cancelled;

/// Finishes the batch when the leader is done, or fails it if the leader is
/// dropped first.
struct Leader<'a, K, V, E: From<Cancelled>> {
    batch: &'a Batch<K, V, E>,
}

impl<K, V, E: From<Cancelled>> Leader<'_, K, V, E> {
    fn finish(self, loaded: Loaded<K, V, E>) {
        let _ = self.batch.result.set(loaded);
        self.batch.ready.notify_waiters();
    }
}

impl<K, V, E: From<Cancelled>> Drop for Leader<'_, K, V, E> {
    fn drop(&mut self) {
        if !self.batch.result.initialized() {
            let _ = self.batch.result.set(Err(E::from(Cancelled)));
        }
        self.batch.ready.notify_waiters();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn dedup<K: Eq + Hash + Clone>(keys: &mut Vec<K>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|k| seen.insert(k.clone()));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Failed;

    impl From<Cancelled> for Failed {
        fn from(_: Cancelled) -> Self {
            Failed
        }
    }

    type Calls = Mutex<Vec<Vec<u32>>>;

    async fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        let mut future = Some(future);
        std::future::poll_fn(|cx| {
            let poll = future.take().map(|f| f.poll(cx));
            std::task::Poll::Ready(poll.unwrap_or(std::task::Poll::Pending))
        })
        .await
    }

    async fn load(calls: &Calls, keys: Vec<u32>) -> Result<HashMap<u32, u32>, Failed> {
        lock(calls).push(keys.clone());
        tokio::task::yield_now().await;
        Ok(keys
            .into_iter()
            .filter(|k| *k != 0)
            .map(|k| (k, k * 10))
            .collect())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_of_one_poll_share_a_batch_and_later_ones_do_not() {
        let batcher: Batcher<u32, u32, Failed> = Batcher::default();
        let calls = Calls::default();
        let (a, b, c, zero) = tokio::join!(
            batcher.load_one(1, |keys| load(&calls, keys)),
            batcher.load_one(2, |keys| load(&calls, keys)),
            batcher.load_one(1, |keys| load(&calls, keys)),
            batcher.load_one(0, |keys| load(&calls, keys)),
        );
        assert_eq!(
            (a, b, c, zero),
            (Ok(Some(10)), Ok(Some(20)), Ok(Some(10)), Ok(None))
        );
        let after = batcher.load_one(3, |keys| load(&calls, keys)).await;
        assert_eq!(after, Ok(Some(30)));
        assert_eq!(*lock(&calls), vec![vec![1, 2, 0], vec![3]]);
    }

    #[tokio::test]
    async fn a_dropped_leader_fails_its_batch_instead_of_hanging() {
        let batcher: Batcher<u32, u32, Failed> = Batcher::default();
        let loads = AtomicUsize::new(0);
        let leader = batcher.load_one(1, |_| async {
            loads.fetch_add(1, Ordering::Relaxed);
            Ok(HashMap::new())
        });
        let follower = batcher.load_one(2, |_| async { Ok(HashMap::new()) });
        let mut leader = Box::pin(leader);
        // Poll the leader once (it yields), register the follower, then drop
        // the leader before it loads.
        assert!(poll_once(leader.as_mut()).await.is_pending());
        let mut follower = Box::pin(follower);
        assert!(poll_once(follower.as_mut()).await.is_pending());
        drop(leader);
        assert_eq!(follower.await, Err(Failed));
        assert_eq!(loads.load(Ordering::Relaxed), 0);
    }
}
