//! The body limit of `POST /graphql`: `MAX_BODY_BYTES` for everything,
//! except an authenticated request whose document is one `transferBatch`
//! (up to 1,000 transfers), which may reach `MAX_BATCH_BODY_BYTES`.
//!
//! The layer in front (`router`) stops any body past the larger limit as it
//! arrives. This reads the body; once it passes the smaller limit, the
//! caller must be known (a stranger is refused before the rest is read)
//! and, once read, the document must be that one mutation. WebSocket
//! messages keep `MAX_BODY_BYTES`: mutations are not served there.

use async_graphql::parser::parse_query;
use async_graphql::parser::types::{OperationType, Selection};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::auth::authenticate;
use super::graphql::{Media, refused_as};
use super::listener::Peer;
use crate::domain::auth::Caller;
use crate::domain::error::AppError;

pub async fn gate(
    State(state): State<AppState>,
    peer: Peer,
    request: Request,
    next: Next,
) -> Response {
    let limits = &state.api_limits;
    if request.method() != Method::POST || limits.max_batch_body_bytes <= limits.max_body_bytes {
        return next.run(request).await;
    }
    let max = limits.max_body_bytes;
    let (parts, body) = request.into_parts();
    let media = Media::for_post(&parts.headers);
    let refused = |err| refused_as(err, media);
    let bytes = match read(body, limits.max_batch_body_bytes, max).await {
        Ok(bytes) => bytes,
        Err(err) => return refused(err),
    };
    if bytes.len() > max {
        let address = peer.0.map(|addr| addr.ip());
        let caller = authenticate(&state, &parts.headers, address).await;
        let known = matches!(caller, Ok(Caller::Client { .. } | Caller::Operator));
        if !known || !is_one_transfer_batch(&bytes) {
            return refused(AppError::PayloadTooLarge(max));
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Reads a request body of at most `limit` bytes; past it, the refusal
/// names `shown` (the limit the caller is told about).
pub async fn read(body: Body, limit: usize, shown: usize) -> Result<axum::body::Bytes, AppError> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        if err.to_string().contains("length limit") {
            AppError::PayloadTooLarge(shown)
        } else {
            AppError::invalid("the request body could not be read")
        }
    })
}

/// Whether a JSON GraphQL request's document is exactly one mutation
/// selecting only `transferBatch`.
fn is_one_transfer_batch(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Body {
        query: String,
    }
    let Ok(request) = serde_json::from_slice::<Body>(body) else {
        return false;
    };
    let Ok(document) = parse_query(&request.query) else {
        return false;
    };
    let mut operations = document.operations.iter();
    let (Some((_, operation)), None) = (operations.next(), operations.next()) else {
        return false;
    };
    let operation = &operation.node;
    document.fragments.is_empty()
        && operation.ty == OperationType::Mutation
        && matches!(
            operation.selection_set.node.items.as_slice(),
            [item] if matches!(&item.node, Selection::Field(field) if field.node.name.node == "transferBatch")
        )
}

#[cfg(test)]
mod tests {
    use super::is_one_transfer_batch;

    #[test]
    fn only_a_lone_transfer_batch_mutation_counts() {
        let body = |query: &str| {
            serde_json::json!({ "query": query })
                .to_string()
                .into_bytes()
        };
        assert!(is_one_transfer_batch(&body(
            "mutation { transferBatch(input: {transfers: [], atomic: false}) { fromWallet { id } } }"
        )));
        assert!(!is_one_transfer_batch(&body(
            "mutation { transferBatch(input: {transfers: [], atomic: false}) { fromWallet { id } } deposit { x } }"
        )));
        assert!(!is_one_transfer_batch(&body("query { transferBatch }")));
        assert!(!is_one_transfer_batch(&body(
            "mutation a { transferBatch } mutation b { transferBatch }"
        )));
        assert!(!is_one_transfer_batch(b"not json"));
    }
}
