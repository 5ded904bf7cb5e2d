//! The one error type of walletql, and the machine-readable code of each case.
//!
//! Every refusal a caller can cause has its own variant and code; anything
//! unexpected is `Internal`, logged with its cause and shown only as a generic
//! message.

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("cannot transfer from a wallet to itself")]
    SameWallet,
    #[error("this idempotency key was already used with different parameters")]
    IdempotencyKeyReused,
    #[error("the receiving wallet would exceed its maximum balance")]
    BalanceLimitExceeded,
    #[error("the transfer is not pending (it is {0}): it can no longer be captured or voided")]
    TransferNotPending(&'static str),
    #[error("only a posted payment can be refunded")]
    TransferNotRefundable,
    #[error("the refund would exceed what is left to refund of the transfer")]
    RefundExceedsTransfer,
    #[error("this wallet has too many pending transfers (at most {0})")]
    TooManyHolds(i32),
    #[error("a client with this email already exists")]
    EmailTaken,
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("not allowed for this caller")]
    Forbidden,
    #[error("WebSocket connections from this origin are not allowed (see CORS_ALLOWED_ORIGINS)")]
    ForbiddenOrigin,
    #[error("too many subscriptions on this connection (at most {0})")]
    TooManySubscriptions(usize),
    #[error(
        "this subscriber fell too far behind and was dropped: resubscribe with the cursor of the last event received"
    )]
    SubscriptionLagged,
    #[error(
        "events may have been missed while the event stream was interrupted: resubscribe per wallet with a cursor"
    )]
    EventsMissed,
    #[error("the database is unavailable; retry later (with the same idempotency key)")]
    ServiceUnavailable(#[source] anyhow::Error),
    #[error("the request body is larger than this server accepts ({0} bytes at most)")]
    PayloadTooLarge(usize),
    #[error("too many WebSocket connections (at most {0}); retry later")]
    TooManyConnections(usize),
    #[error("a GET request may only run a query: send mutations with POST")]
    MethodNotAllowed,
    #[error("query too complex: {0}")]
    QueryTooComplex(String),
    #[error("too many requests: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request took too long and was stopped; nothing was changed unless it committed")]
    Timeout,
    #[error("too many mutations in one request: {0}")]
    TooManyMutations(String),
    #[error("the request ran out of time before this mutation ran: it changed nothing")]
    TimedOutBeforeRun,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// The value of `extensions.code` in the GraphQL error.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidInput(_) => "INVALID_INPUT",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::InsufficientFunds => "INSUFFICIENT_FUNDS",
            AppError::SameWallet => "SAME_WALLET",
            AppError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            AppError::BalanceLimitExceeded => "BALANCE_LIMIT_EXCEEDED",
            AppError::TransferNotPending(_) => "TRANSFER_NOT_PENDING",
            AppError::TransferNotRefundable => "TRANSFER_NOT_REFUNDABLE",
            AppError::RefundExceedsTransfer => "REFUND_EXCEEDS_TRANSFER",
            AppError::TooManyHolds(_) => "TOO_MANY_HOLDS",
            AppError::EmailTaken => "EMAIL_TAKEN",
            AppError::Unauthenticated => "UNAUTHENTICATED",
            AppError::Forbidden | AppError::ForbiddenOrigin => "FORBIDDEN",
            AppError::TooManySubscriptions(_) => "TOO_MANY_SUBSCRIPTIONS",
            AppError::SubscriptionLagged => "SUBSCRIPTION_LAGGED",
            AppError::EventsMissed => "EVENTS_MISSED",
            AppError::ServiceUnavailable(_) => "SERVICE_UNAVAILABLE",
            AppError::Timeout | AppError::TimedOutBeforeRun => "TIMEOUT",
            AppError::TooManyMutations(_) => "TOO_MANY_MUTATIONS",
            AppError::QueryTooComplex(_) => "QUERY_TOO_COMPLEX",
            AppError::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            AppError::TooManyConnections(_) => "TOO_MANY_CONNECTIONS",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::InvalidInput(message.into())
    }
}

impl From<super::money::AmountError> for AppError {
    fn from(err: super::money::AmountError) -> Self {
        AppError::InvalidInput(err.to_string())
    }
}

pub type AppResult<T> = Result<T, AppError>;
