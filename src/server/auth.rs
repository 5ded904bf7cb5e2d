//! Turns the `Authorization` header into a `Caller`.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::AppState;
use crate::domain::auth::{Caller, hash_token};
use crate::domain::error::{AppError, AppResult};
use crate::store::reads;

/// No header: anonymous. A header that is not a valid bearer token is refused
/// outright rather than treated as anonymous, so a typo never silently
/// downgrades a caller.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> AppResult<Caller> {
    match headers.get(AUTHORIZATION) {
        None => Ok(Caller::Anonymous),
        Some(value) => authenticate_value(state, value.to_str().ok()).await,
    }
}

/// The caller named by an `Authorization` value (`Bearer <token>`); `None`
/// stands for a value that is not even text.
pub async fn authenticate_value(state: &AppState, value: Option<&str>) -> AppResult<Caller> {
    let token = value
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AppError::Unauthenticated)?;
    if state.operator.matches(token) {
        return Ok(Caller::Operator);
    }
    match reads::caller_by_token_hash(state.store.db(), &hash_token(token)).await? {
        Some((client_id, wallet_id)) => Ok(Caller::Client {
            client_id,
            wallet_id,
        }),
        None => Err(AppError::Unauthenticated),
    }
}
