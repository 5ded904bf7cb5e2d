//! The GraphQL endpoint and the GraphiQL playground.

use async_graphql::http::GraphiQLSource;
use async_graphql::{ErrorExtensions, Response as GqlResponse, ServerError};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use super::auth::authenticate;
use crate::domain::error::AppError;
use crate::schema::new_loader;

pub async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
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
    let request = request
        .into_inner()
        .data(caller)
        .data(new_loader(state.store.clone()));
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
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
