//! Read-your-writes across replicas, at the request's edges: a mutation
//! reads on the primary, and its answer says the position its commits
//! reached (`extensions.commitLsn`, header `x-commit-lsn`), which this
//! instance also remembers for its caller.

use async_graphql::extensions::ExtensionContext;
use async_graphql::{Response, Value};

use super::loaders::RequestLoader;
use crate::domain::auth::Caller;
use crate::store::Store;

/// The response header with the commit position.
pub const COMMIT_LSN_HEADER: &str = "x-commit-lsn";
/// The request header with a position the reads must see.
pub const MIN_LSN_HEADER: &str = "x-min-lsn";

/// A mutation's reads (its payloads) see what it wrote: the primary's.
pub fn pin_to_primary(ctx: &ExtensionContext<'_>) {
    if let Some(loader) = ctx.data_opt::<RequestLoader>() {
        loader.reader().pin_to_primary();
    }
}

/// After a mutation with any field answered (so something committed, or
/// a key was replayed): its commit position, when replicas are in use.
pub fn mark_commit(ctx: &ExtensionContext<'_>, response: &mut Response) {
    let answered = match &response.data {
        Value::Object(fields) => fields.values().any(|v| *v != Value::Null),
        _ => false,
    };
    let Some(store) = ctx.data_opt::<Store>() else {
        return;
    };
    let Some(lsn) = store.commit_position().filter(|_| answered) else {
        return;
    };
    if let Some(identity) = ctx.data_opt::<Caller>().and_then(Caller::identity) {
        store.remember_commit(identity, lsn);
    }
    let text = lsn.to_string();
    if let Ok(value) = text.parse() {
        response.http_headers.insert(COMMIT_LSN_HEADER, value);
    }
    response
        .extensions
        .insert("commitLsn".to_owned(), Value::String(text));
}
