//! One LISTEN connection per process on PostgreSQL, feeding the hub.

use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgPool};

use super::CHANNEL;
use super::hub::{Hub, WeakHub};
use super::notice;
use crate::store::{Store, reads};

/// Starts listening before returning (so nothing committed after start-up
/// is missed), then keeps listening in the background until the hub is gone.
/// When the connection drops, notifications sent meanwhile are lost: after
/// reconnecting, the hub tells every subscriber to resync from the ledger.
/// A notification names wallets and sequence ranges; the rows of watched
/// wallets are read from the ledger, one query per notification, and none
/// when nobody in this process watches them.
/// The returned guard stops the task when dropped.
pub async fn spawn_postgres_listener(
    store: Store,
    hub: &Hub,
) -> Result<ListenerTask, sea_orm::sqlx::Error> {
    let pool = store
        .listen_pool()
        .cloned()
        .ok_or(sea_orm::sqlx::Error::PoolClosed)?;
    let listener = listen(&pool).await?;
    let task = tokio::spawn(run(pool, store, listener, hub.downgrade()));
    Ok(ListenerTask(task.abort_handle()))
}

/// Owns the background LISTEN task: dropping it closes the connection.
pub struct ListenerTask(tokio::task::AbortHandle);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// LISTEN on a connection of `pool`, which follows the primary.
async fn listen(pool: &PgPool) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // We reconnect ourselves, so that we know when to resync.
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn run(pool: PgPool, store: Store, mut listener: PgListener, hub: WeakHub) {
    let mut moves = store.primary_moves();
    loop {
        let received = match moves.as_mut() {
            Some(moves) => tokio::select! {
                received = listener.try_recv() => received,
                // The primary moved: this connection may be to a demoted
                // server that will never notify again.
                _ = moves.changed() => Ok(None),
            },
            None => listener.try_recv().await,
        };
        match received {
            Ok(Some(notification)) => {
                let Some(hub) = hub.upgrade() else { return };
                let Some(ranges) = notice::decode(notification.payload()) else {
                    tracing::warn!("ignoring a malformed notification");
                    continue;
                };
                let wanted: Vec<_> = ranges
                    .into_iter()
                    .filter(|r| hub.wants(r.wallet_id))
                    .map(|r| (r.wallet_id, r.from, r.to))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                match reads::operations_in_ranges(store.db(), &wanted).await {
                    Ok(operations) => hub.dispatch(operations),
                    Err(err) => {
                        // Subscribers fill the gap from the ledger themselves.
                        tracing::warn!(error = %err, "cannot read announced operations; resyncing");
                        hub.resync();
                    }
                }
            }
            Ok(None) | Err(_) => {
                tracing::warn!("lost the LISTEN connection; reconnecting");
                let mut delay = Duration::from_millis(100);
                listener = loop {
                    if hub.upgrade().is_none() {
                        return;
                    }
                    match listen(&pool).await {
                        Ok(listener) => break listener,
                        Err(err) => {
                            tracing::warn!(error = %err, retry_in = ?delay, "cannot LISTEN yet");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                };
                tracing::info!("listening again; subscribers resync from the ledger");
                let Some(hub) = hub.upgrade() else { return };
                hub.resync();
            }
        }
    }
}
