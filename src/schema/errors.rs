//! From `AppError` to GraphQL errors with `extensions.code`.

use async_graphql::{Error, ErrorExtensions, Pos, Response, ServerError, Value};

use crate::domain::error::AppError;

impl From<AppError> for Error {
    fn from(err: AppError) -> Error {
        if let AppError::Internal(cause) = &err {
            // The cause is for the operators' logs, never for the caller.
            tracing::error!(error = ?cause, "internal error");
        }
        let code = err.code();
        let retry_after = match &err {
            AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let status = match &err {
            AppError::TransferNotPending(status) => Some(*status),
            _ => None,
        };
        Error::new(err.to_string()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
            if let Some(status) = status {
                ext.set("status", status);
            }
        })
    }
}

/// A refusal outside a resolver, with its code, located only when it has a
/// place in the document (a whole-request refusal has none).
pub fn server_error(err: AppError, pos: Option<Pos>) -> ServerError {
    let mut error = Error::from(err).into_server_error(pos.unwrap_or_default());
    if pos.is_none() {
        error.locations.clear();
    }
    error
}

/// Gives every error without a code one: those come from async-graphql's own
/// parsing and validation (a malformed document, an unknown field, a value of
/// the wrong type), which are all the caller's input, or from its complexity
/// limit (`QUERY_TOO_COMPLEX`). Applied to every HTTP response and to every
/// response of a WebSocket subscription (see `extension.rs`).
pub fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let code = if error.message.starts_with("Query is nested too deep")
            || error.message.starts_with("Query is too complex")
            || error
                .message
                .starts_with("The recursion depth of the query")
        {
            "QUERY_TOO_COMPLEX"
        } else {
            AppError::invalid("").code()
        };
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", Value::from(code));
        }
    }
    response
}
