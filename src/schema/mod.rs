//! The GraphQL schema: thin resolvers that check who is asking, convert
//! input, and call the ledger (writes) or the store (reads, via DataLoaders).

mod errors;
mod loaders;
mod mutation;
mod pagination;
mod query;
mod scalars;
mod subscription;
mod types;

use async_graphql::Schema;

pub use errors::ErrorCodes;
pub use loaders::{DbLoader, new_loader};
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::{SubscriptionRoot, SubscriptionSlots};

use crate::store::Store;

pub type WalletSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Largest `first`/`last` a connection accepts.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Builds the schema. Each request must carry its `Caller` and a fresh
/// `DataLoader<DbLoader>` as request data (see `server::graphql`).
pub fn build(store: Store) -> WalletSchema {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(store)
        .extension(ErrorCodes)
        .finish()
}

/// The SDL the server serves; `schema.graphql` must equal it.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .finish()
        .sdl()
}
