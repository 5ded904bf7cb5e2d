//! Loaders: every lookup a resolver makes by key goes through here, so a
//! page of 100 wallets with their clients costs one statement per kind of
//! thing, not one per wallet. The queries are async-graphql `Loader`s; the
//! batching is ours (see `batch`), without the `DataLoader`'s timer.

use std::collections::HashMap;
use std::sync::Arc;

use std::hash::Hash;

use async_graphql::dataloader::Loader;
use entity::{client, operation, transfer, wallet};
use sea_orm::DbErr;
use uuid::Uuid;

use super::batch::{Batcher, Cancelled};
use crate::domain::error::AppError;
use crate::store::reader::Reader;
use crate::store::reads::{self, OperationFilter, PageQuery};

/// The queries behind the loaders, one per key type.
pub struct DbLoader {
    reader: Reader,
}

/// A request's loaders: one batch at a time per key type. A fresh one per
/// request, so nothing is cached between requests.
pub struct RequestLoader {
    db: DbLoader,
    wallets: Batcher<WalletId, wallet::Model, LoadError>,
    wallets_of_clients: Batcher<WalletOfClient, wallet::Model, LoadError>,
    clients: Batcher<ClientId, client::Model, LoadError>,
    transfers: Batcher<TransferId, transfer::Model, LoadError>,
    operations: Batcher<OperationId, operation::Model, LoadError>,
    operations_at: Batcher<OperationAt, operation::Model, LoadError>,
    refunds: Batcher<RefundsOf, Vec<transfer::Model>, LoadError>,
    pages: Batcher<OperationPage, Vec<operation::Model>, LoadError>,
}

pub fn new_loader(reader: Reader) -> RequestLoader {
    RequestLoader {
        db: DbLoader { reader },
        wallets: Batcher::default(),
        wallets_of_clients: Batcher::default(),
        clients: Batcher::default(),
        transfers: Batcher::default(),
        operations: Batcher::default(),
        operations_at: Batcher::default(),
        refunds: Batcher::default(),
        pages: Batcher::default(),
    }
}

/// Which batcher serves a key type.
pub trait Keyed<K> {
    type Value;
    fn batcher(&self) -> &Batcher<K, Self::Value, LoadError>;
}

macro_rules! keyed {
    ($key:ty, $value:ty, $field:ident) => {
        impl Keyed<$key> for RequestLoader {
            type Value = $value;
            fn batcher(&self) -> &Batcher<$key, $value, LoadError> {
                &self.$field
            }
        }
    };
}

keyed!(WalletId, wallet::Model, wallets);
keyed!(WalletOfClient, wallet::Model, wallets_of_clients);
keyed!(ClientId, client::Model, clients);
keyed!(TransferId, transfer::Model, transfers);
keyed!(OperationId, operation::Model, operations);
keyed!(OperationAt, operation::Model, operations_at);
keyed!(RefundsOf, Vec<transfer::Model>, refunds);
keyed!(OperationPage, Vec<operation::Model>, pages);

impl RequestLoader {
    /// Where the request's reads go.
    pub fn reader(&self) -> &Reader {
        &self.db.reader
    }

    /// The value for `key`, batched with the request's other lookups of
    /// the same kind.
    pub async fn load_one<K, V>(&self, key: K) -> Result<Option<V>, LoadError>
    where
        Self: Keyed<K, Value = V>,
        DbLoader: Loader<K, Value = V, Error = LoadError>,
        K: Clone + Eq + Hash + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let db = &self.db;
        self.batcher()
            .load_one(key, |keys| async move { db.load(&keys).await })
            .await
    }
}

/// A loader's error, cloneable because one failed batch answers many keys.
#[derive(Clone, Debug)]
pub struct LoadError(Arc<DbErr>);

impl From<DbErr> for LoadError {
    fn from(err: DbErr) -> Self {
        LoadError(Arc::new(err))
    }
}

impl From<Cancelled> for LoadError {
    fn from(_: Cancelled) -> Self {
        LoadError(Arc::new(DbErr::Custom(
            "the lookup was cancelled with its request".into(),
        )))
    }
}

impl From<LoadError> for AppError {
    fn from(err: LoadError) -> Self {
        crate::store::app_error(&err.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalletId(pub Uuid);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(pub Uuid);

/// A client's wallet, by the client's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalletOfClient(pub Uuid);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferId(pub Uuid);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OperationId(pub Uuid);

/// The operation at a position of a wallet's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OperationAt {
    pub wallet_id: Uuid,
    pub seq: i64,
}

/// A payment's refunds, by the payment's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RefundsOf(pub Uuid);

/// One page of one wallet's history; keys with equal pages are batched into
/// a single statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OperationPage {
    pub wallet_id: Uuid,
    pub page: PageQuery<i64>,
    pub filter: OperationFilter,
}

fn by_key<K: std::hash::Hash + Eq, V>(rows: Vec<V>, key: impl Fn(&V) -> K) -> HashMap<K, V> {
    rows.into_iter().map(|row| (key(&row), row)).collect()
}

impl Loader<WalletId> for DbLoader {
    type Value = wallet::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[WalletId]) -> Result<HashMap<WalletId, wallet::Model>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self.reader.wallets_by_ids(ids).await?;
        Ok(rows.into_iter().map(|(id, w)| (WalletId(id), w)).collect())
    }
}

impl Loader<WalletOfClient> for DbLoader {
    type Value = wallet::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[WalletOfClient],
    ) -> Result<HashMap<WalletOfClient, wallet::Model>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self.reader.wallets_by_client_ids(ids).await?;
        Ok(rows
            .into_iter()
            .map(|(id, w)| (WalletOfClient(id), w))
            .collect())
    }
}

impl Loader<ClientId> for DbLoader {
    type Value = client::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[ClientId]) -> Result<HashMap<ClientId, client::Model>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let rows = self.reader.clients_by_ids(ids).await?;
        Ok(rows.into_iter().map(|(id, c)| (ClientId(id), c)).collect())
    }
}

impl Loader<TransferId> for DbLoader {
    type Value = transfer::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[TransferId],
    ) -> Result<HashMap<TransferId, transfer::Model>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let ids = &ids;
        let rows = (self.reader)
            .read(|db| async move { reads::transfers_by_ids(&db, ids).await })
            .await?;
        Ok(by_key(rows, |t| TransferId(t.id)))
    }
}

impl Loader<OperationId> for DbLoader {
    type Value = operation::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[OperationId],
    ) -> Result<HashMap<OperationId, operation::Model>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let ids = &ids;
        let rows = (self.reader)
            .read(|db| async move { reads::operations_by_ids(&db, ids).await })
            .await?;
        Ok(by_key(rows, |op| OperationId(op.id)))
    }
}

impl Loader<OperationAt> for DbLoader {
    type Value = operation::Model;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[OperationAt],
    ) -> Result<HashMap<OperationAt, operation::Model>, LoadError> {
        let at: Vec<(Uuid, i64)> = keys.iter().map(|k| (k.wallet_id, k.seq)).collect();
        let at = &at;
        let rows = (self.reader)
            .read(|db| async move { reads::operations_at(&db, at).await })
            .await?;
        Ok(by_key(rows, |op| OperationAt {
            wallet_id: op.wallet_id,
            seq: op.seq,
        }))
    }
}

impl Loader<RefundsOf> for DbLoader {
    type Value = Vec<transfer::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[RefundsOf],
    ) -> Result<HashMap<RefundsOf, Vec<transfer::Model>>, LoadError> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut found: HashMap<RefundsOf, Vec<transfer::Model>> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        let ids = &ids;
        let refunds = (self.reader)
            .read(|db| async move { reads::refunds_of(&db, ids).await })
            .await?;
        for refund in refunds {
            if let Some(of) = refund.refund_of {
                found.entry(RefundsOf(of)).or_default().push(refund);
            }
        }
        Ok(found)
    }
}

impl Loader<OperationPage> for DbLoader {
    type Value = Vec<operation::Model>;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[OperationPage],
    ) -> Result<HashMap<OperationPage, Vec<operation::Model>>, LoadError> {
        // Group the wallets that ask for the same page shape.
        let mut groups: HashMap<(&PageQuery<i64>, &OperationFilter), Vec<Uuid>> = HashMap::new();
        for key in keys {
            groups
                .entry((&key.page, &key.filter))
                .or_default()
                .push(key.wallet_id);
        }
        let mut pages = HashMap::with_capacity(keys.len());
        for ((page, filter), wallet_ids) in groups {
            let ids = &wallet_ids;
            let mut found = (self.reader)
                .read(|db| async move { reads::operation_pages(&db, ids, page, filter).await })
                .await?;
            for wallet_id in wallet_ids {
                let key = OperationPage {
                    wallet_id,
                    page: page.clone(),
                    filter: filter.clone(),
                };
                pages.insert(key, found.remove(&wallet_id).unwrap_or_default());
            }
        }
        Ok(pages)
    }
}
