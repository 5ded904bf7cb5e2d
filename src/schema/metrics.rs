//! Per-request GraphQL metrics: the label values for the type and name of
//! an operation (recorded by the request hooks in `extension.rs`).

use async_graphql::parser::types::OperationType;

pub fn kind(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// Operation names become label values: keep them short and plain (and
/// `crate::metrics` keeps their number bounded).
pub fn label(name: Option<&str>) -> String {
    match name {
        None => "anonymous".to_owned(),
        Some(n) if n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            n.to_owned()
        }
        Some(_) => "other".to_owned(),
    }
}
