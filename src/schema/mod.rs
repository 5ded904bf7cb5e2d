//! The GraphQL schema: thin resolvers that check who is asking, convert
//! input, and call the ledger (writes) or the store (reads, via batching loaders).

mod batch;
mod budget;
mod changes;
mod clients;
mod context;
mod controls;
mod errors;
mod extension;
mod freshness;
mod guard;
mod holds;
mod loaders;
mod metadata;
mod metrics;
mod node;
mod nulls;
mod operations;
mod pagination;
mod payments;
mod persisted;
mod scalars;
mod statements;
mod subscription;
mod wallets;

use async_graphql::{MergedObject, Schema};

pub use budget::{RequestBudget, SpendRate};
pub use errors::server_error;
pub use extension::RequestHooks;
pub use freshness::{COMMIT_LSN_HEADER, MIN_LSN_HEADER};
pub use guard::{DocumentLimits, Transport};
pub use loaders::{RequestLoader, new_loader};
pub use persisted::{DOCUMENT_ID, Documents, Manifest, load_manifest};
pub use subscription::{SubscriptionRoot, SubscriptionSlots};

use crate::config::ApiLimits;
use crate::ledger::Ledger;

// The queries, by area (one module each: its types, inputs and resolvers).
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    node::NodeQuery,
    clients::ClientsQuery,
    wallets::WalletsQuery,
    payments::PaymentsQuery,
);

/// Every mutation field is nullable and independent of its siblings (the
/// GraphQL spec's serial execution): a document with several mutations
/// answers each on its own, so one refused field never hides another that
/// committed. Per field, data means it committed and an error means it
/// changed nothing.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
// The areas, as for queries.
pub struct MutationRoot(
    clients::ClientsMutation,
    wallets::WalletsMutation,
    payments::PaymentsMutation,
    holds::HoldsMutation,
    controls::ControlsMutation,
);

pub type WalletSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Largest `first`/`last` a connection accepts (schema data).
#[derive(Clone, Copy, Debug)]
pub struct MaxPageSize(pub usize);

/// Builds the schema. Each request must carry its `Caller` and a fresh
/// `RequestLoader` as request data (see `server::graphql`).
pub fn build(ledger: Ledger, limits: &ApiLimits) -> WalletSchema {
    // Depth is measured by the guard (introspection on its own terms), which
    // also bounds fragment expansion before async-graphql's validation.
    let guard = DocumentLimits {
        max_depth: limits.max_depth,
        max_introspection_depth: limits.max_introspection_depth,
        max_fields: limits.max_complexity,
        max_page_size: limits.max_page_size,
        max_mutations: limits.max_mutations_per_request,
    };
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .data(ledger.store().clone())
    .data(ledger)
    .data(MaxPageSize(limits.max_page_size))
    .data(std::sync::Arc::new(Documents::new(
        limits.apq_cache_size,
        limits.trusted_documents.as_deref(),
    )))
    .limit_complexity(limits.max_complexity)
    .extension(RequestHooks(guard));
    if !limits.introspection {
        builder = builder.disable_introspection();
    }
    builder.finish()
}

/// The SDL the server serves; `schema.graphql` must equal it.
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .finish()
    .sdl_with_options(async_graphql::SDLExportOptions::new().include_specified_by())
}
