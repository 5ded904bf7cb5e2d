//! From `AppError` to GraphQL errors with `extensions.code`.

use async_graphql::{Enum, Error, ErrorExtensions, Pos, Response, ServerError, Value};

use crate::domain::error::{AppError, FieldStep, Remaining};

impl From<AppError> for Error {
    fn from(err: AppError) -> Error {
        if let AppError::BatchItemRefused { index, error } = err {
            return Error::from(*error).extend_with(|_, ext| ext.set("index", index));
        }
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
        let limit = match &err {
            AppError::LimitExceeded { limit, remaining } => Some((limit.as_str(), *remaining)),
            _ => None,
        };
        let field = field_value(err.field());
        Error::new(err.to_string()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = field {
                ext.set("field", field);
            }
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
            if let Some(status) = status {
                ext.set("status", status);
            }
            if let Some((limit, remaining)) = limit {
                ext.set("limit", limit);
                // Cents as a decimal string, like every amount; a count as
                // a number.
                match remaining {
                    Remaining::Cents(_) => ext.set("remaining", remaining.to_string()),
                    Remaining::Count(count) => ext.set("remaining", count),
                }
            }
        })
    }
}

/// `extensions.field`: the path to the offending input value, as a list of
/// names and indexes; none when the error points at no single value.
fn field_value(path: &[FieldStep]) -> Option<Value> {
    if path.is_empty() {
        return None;
    }
    Some(Value::List(
        path.iter()
            .map(|step| match step {
                FieldStep::Name(name) => Value::from(*name),
                FieldStep::Index(index) => Value::from(*index),
            })
            .collect(),
    ))
}

/// The input path of async-graphql's own refusal of a value, from its
/// message (`Invalid value for argument "input.transfers.3.toWalletId",
/// expected type "UUID"`).
fn coercion_field(message: &str) -> Option<Value> {
    let path = message
        .strip_prefix("Invalid value for argument \"")?
        .split('"')
        .next()?;
    let steps = path
        .split('.')
        .map(|step| match step.parse::<usize>() {
            Ok(index) => Value::from(index),
            Err(_) => Value::from(step),
        })
        .collect();
    Some(Value::List(steps))
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
        let field = coercion_field(&error.message);
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", Value::from(code));
            if let Some(field) = field {
                extensions.set("field", field);
            }
        }
    }
    response
}

/// Every code an error can carry, in `extensions.code` (over HTTP and
/// WebSocket alike) and in a batch item's `code`. Choose what to show by
/// code, never by message text; the README's table says what each means.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "crate::domain::error::ErrorCode")]
pub enum ErrorCode {
    /// A malformed request or value; `extensions.field` points at the value.
    InvalidInput,
    NotFound,
    /// The payer's available balance (credit line included; a
    /// withdrawal's: without it) is below the amount, or below zero after a
    /// lowered credit line.
    InsufficientFunds,
    SameWallet,
    /// The idempotency key was used before for another request.
    IdempotencyKeyReused,
    BalanceLimitExceeded,
    /// `extensions.status` says what the transfer is now.
    TransferNotPending,
    TransferNotRefundable,
    RefundExceedsTransfer,
    TooManyHolds,
    /// The wallet is frozen: nothing may leave it (money may still arrive).
    WalletFrozen,
    /// The wallet is closed: nothing moves in or out.
    WalletClosed,
    /// Only a wallet with a zero balance and no open holds either way can
    /// be closed.
    WalletNotEmpty,
    /// `extensions.limit` names the wallet's limit (`MAX_TRANSFER_AMOUNT`,
    /// `DAILY_OUTGOING_AMOUNT`, `DAILY_OUTGOING_COUNT`) and
    /// `extensions.remaining` what is left of it today.
    LimitExceeded,
    EmailTaken,
    Unauthenticated,
    Forbidden,
    TooManySubscriptions,
    /// Resubscribe with the last event's cursor.
    SubscriptionLagged,
    EventsMissed,
    /// Retry with backoff, with the same idempotency key.
    ServiceUnavailable,
    /// The database connection broke while this committed: read the history
    /// before retrying, or retry with the same idempotency key (safe).
    OutcomeUnknown,
    Timeout,
    /// More mutation fields or entries than one request may run; nothing ran.
    TooManyMutations,
    QueryTooComplex,
    MethodNotAllowed,
    TooManyConnections,
    /// `extensions.retryAfter` says how many seconds to wait.
    RateLimited,
    PayloadTooLarge,
    /// With trusted documents on, only listed documents run.
    DocumentNotTrusted,
    /// The server does not know the persisted query's hash: send the query.
    PersistedQueryNotFound,
    Internal,
}
