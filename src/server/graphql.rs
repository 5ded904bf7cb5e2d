//! The GraphQL endpoint and the GraphiQL playground.

use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use async_graphql::{ErrorExtensions, Response as GqlResponse, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::auth::authenticate;
use crate::domain::error::AppError;
use crate::schema::new_loader;

pub async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish(),
    )
}

pub async fn graphql(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let caller = match authenticate(&state, &headers).await {
        Ok(caller) => caller,
        Err(err) => return refused(err),
    };
    let request = request.into_inner();
    let span = tracing::info_span!(
        "graphql",
        operation = request.operation_name.as_deref().unwrap_or("-"),
        caller = caller.kind(),
    );
    let request = request.data(caller).data(new_loader(state.store.clone()));
    let started = Instant::now();
    let response = state.schema.execute(request).instrument(span.clone()).await;
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
    GraphQLResponse::from(response).into_response()
}

/// A request refused before execution, in GraphQL's error shape.
fn refused(err: AppError) -> Response {
    let status = match err {
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let code = err.code();
    let mut error = ServerError::new(err.to_string(), None);
    error.extensions = async_graphql::Error::new("")
        .extend_with(|_, ext| ext.set("code", code))
        .extensions;
    if let AppError::Internal(cause) = &err {
        tracing::error!(error = ?cause, "authentication failed");
    }
    (
        status,
        GraphQLResponse::from(GqlResponse::from_errors(vec![error])),
    )
        .into_response()
}
