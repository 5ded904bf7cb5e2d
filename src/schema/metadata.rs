//! Metadata in the API: the application's own `key = value` pairs on a
//! payment, given with the request and shown on its transfer and ledger
//! rows, and the filter that finds them.

use async_graphql::{InputObject, SimpleObject};

use crate::domain::error::{AppError, AppResult, FieldStep};
use crate::domain::metadata::{self, Metadata};

/// One of the application's own references on a payment (an order id, a
/// customer reference). At most 16 per request, keys distinct.
#[derive(InputObject, Clone, Debug)]
pub struct MetadataInput {
    /// 1 to 40 characters of letters, digits, `_`, `.` and `-`.
    pub key: String,
    /// At most 256 characters; no control or bidirectional formatting
    /// characters.
    pub value: String,
}

/// One `key = value` pair a payment carries; both parties of a transfer
/// see it. In key order.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct MetadataEntry {
    pub key: String,
    pub value: String,
}

/// The entries (exact match on both) a filter keeps.
#[derive(InputObject, Clone, Debug)]
pub struct MetadataFilterInput {
    pub key: String,
    pub value: String,
}

/// A request's metadata, checked (`INVALID_INPUT` at `["metadata", i,
/// "key"|"value"]` otherwise).
pub fn parse(input: Option<Vec<MetadataInput>>) -> AppResult<Metadata> {
    Metadata::parse(input.map(|entries| entries.into_iter().map(|e| (e.key, e.value)).collect()))
}

/// A stored column's entries, for the API.
pub fn entries(stored: Option<&str>) -> Vec<MetadataEntry> {
    Metadata::from_stored(stored)
        .entries()
        .iter()
        .map(|(key, value)| MetadataEntry {
            key: key.clone(),
            value: value.clone(),
        })
        .collect()
}

/// A filter's pair, checked like an entry's (at `["filter", "metadata",
/// "key"|"value"]`): a pair no request could store is a caller's mistake.
pub fn filter(input: Option<MetadataFilterInput>) -> AppResult<Option<(String, String)>> {
    let Some(input) = input else {
        return Ok(None);
    };
    metadata::check_entry(&input.key, &input.value).map_err(|err: AppError| {
        err.within(FieldStep::Name("metadata"))
            .within(FieldStep::Name("filter"))
    })?;
    Ok(Some((input.key, input.value)))
}
