//! The GraphQL endpoint and the GraphiQL playground.

use std::time::Instant;

use async_graphql::ParseRequestError;
use async_graphql::{ErrorExtensions, Response as GqlResponse, ServerError};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::auth::authenticate;
use crate::domain::error::AppError;
use crate::schema::new_loader;

/// `POST /graphql`: one GraphQL request (batches are refused), within the
/// request timeout.
pub async fn graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(GraphQLRejection(ParseRequestError::PayloadTooLarge)) => {
            return refused(AppError::PayloadTooLarge(state.api_limits.max_body_bytes));
        }
        Err(GraphQLRejection(err)) if err.to_string().contains("length limit") => {
            return refused(AppError::PayloadTooLarge(state.api_limits.max_body_bytes));
        }
        Err(GraphQLRejection(err)) => {
            return refused(AppError::invalid(format!(
                "malformed GraphQL request: {err}"
            )));
        }
    };
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(err) => return refused(err),
    };
    let span = tracing::info_span!(
        "graphql",
        operation = request.operation_name.as_deref().unwrap_or("-"),
        caller = caller.kind(),
    );
    let request = request.data(caller).data(new_loader(state.store.clone()));
    let started = Instant::now();
    let execution = state.schema.execute(request).instrument(span.clone());
    let Ok(response) = tokio::time::timeout(state.api_limits.request_timeout, execution).await
    else {
        // Dropping the execution rolls back any transaction it had open.
        return refused(AppError::Timeout);
    };
    // Only when debug logging is on: collecting the codes allocates.
    if tracing::enabled!(tracing::Level::DEBUG) {
        span.in_scope(|| {
        let codes: Vec<_> = response
            .errors
            .iter()
            .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
                async_graphql::Value::String(code) => Some(code.as_str()),
                _ => None,
            })
            .collect();
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, errors = ?codes, "graphql request");
        });
    }
    GraphQLResponse::from(response).into_response()
}

/// A request refused outside GraphQL execution, in GraphQL's error shape.
pub fn refused(err: AppError) -> Response {
    let status = match err {
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        AppError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = err.code();
    let mut error = ServerError::new(err.to_string(), None);
    error.extensions = async_graphql::Error::new("")
        .extend_with(|_, ext| ext.set("code", code))
        .extensions;
    match &err {
        AppError::Internal(cause) => tracing::error!(error = ?cause, "request failed"),
        AppError::ServiceUnavailable(cause) => {
            tracing::warn!(error = %cause, "database unavailable")
        }
        _ => {}
    }
    (
        status,
        GraphQLResponse::from(GqlResponse::from_errors(vec![error])),
    )
        .into_response()
}

/// Turns the plain 413 that the body limit layer sends (when the declared
/// length is already too large) into the same JSON error as every refusal.
pub async fn payload_too_large(State(max_bytes): State<usize>, response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return refused(AppError::PayloadTooLarge(max_bytes));
    }
    response
}
