//! Turns the `Authorization` header into a `Caller`.

use std::net::IpAddr;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::AppState;
use crate::domain::auth::{Caller, digest_hex, token_digest};
use crate::domain::error::{AppError, AppResult};
use crate::store::reads;

/// No header: anonymous. A header that is not a valid bearer token is refused
/// outright rather than treated as anonymous, so a typo never silently
/// downgrades a caller. `peer` is the caller's address (see below).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> AppResult<Caller> {
    match headers.get(AUTHORIZATION) {
        None => Ok(Caller::Anonymous),
        Some(value) => authenticate_value(state, value.to_str().ok(), peer).await,
    }
}

/// The caller named by an `Authorization` value (`Bearer <token>`); `None`
/// stands for a value that is not even text. An unknown token spends the
/// address's guessing budget (see `ratelimit`), so guessing tokens cannot
/// turn into unbounded database lookups.
pub async fn authenticate_value(
    state: &AppState,
    value: Option<&str>,
    peer: Option<IpAddr>,
) -> AppResult<Caller> {
    let token = value
        .and_then(bearer_token)
        .ok_or(AppError::Unauthenticated)?;
    let digest = token_digest(token);
    if state.operator.matches_digest(&digest) {
        return Ok(Caller::Operator);
    }
    let found = match state.callers.get(&digest) {
        Some(found) => Some(found),
        None => {
            state.rate_limiter.lookup_allowed(peer)?;
            let found = reads::caller_by_token_hash(state.store.db(), &digest_hex(&digest)).await?;
            match found {
                Some(found) => state.callers.insert(digest, found),
                None => state.rate_limiter.failed_lookup(peer)?,
            }
            found
        }
    };
    match found {
        Some((client_id, wallet_id)) => Ok(Caller::Client {
            client_id,
            wallet_id,
        }),
        None => Err(AppError::Unauthenticated),
    }
}

/// The token of a `Bearer <token>` credential; the scheme is matched
/// without regard to case (RFC 9110, 11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc ", "bEaReR abc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
