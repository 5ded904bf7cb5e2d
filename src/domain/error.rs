//! The one error type of walletql, and the machine-readable code of each case.
//!
//! Every refusal a caller can cause has its own variant and code; anything
//! unexpected is `Internal`, logged with its cause and shown only as a generic
//! message.

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    InvalidInput(Invalid),
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
    #[error("the wallet is frozen: no money may leave it")]
    WalletFrozen,
    #[error("the wallet is closed: no money may move in or out")]
    WalletClosed,
    #[error("a wallet can be closed only with a zero balance and no open holds either way")]
    WalletNotEmpty,
    #[error("this would exceed the wallet's {} limit ({remaining} left)", limit.as_str())]
    LimitExceeded { limit: Limit, remaining: Remaining },
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
    /// The connection to the database broke while this entry's batch
    /// committed, and the database could not yet tell whether it did.
    #[error("{}", outcome_unknown(*retry_safe))]
    OutcomeUnknown { retry_safe: bool },
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
    #[error("this server runs only its trusted documents: send a listed document id")]
    DocumentNotTrusted,
    #[error("PersistedQueryNotFound")]
    PersistedQueryNotFound,
    /// An item of an atomic `transferBatch` refused, so none posted.
    #[error("{error}")]
    BatchItemRefused { index: usize, error: Box<AppError> },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn outcome_unknown(retry_safe: bool) -> &'static str {
    if retry_safe {
        "the database connection broke while this committed, and whether it did is not known yet: \
         retrying with the same idempotencyKey is safe and answers what happened"
    } else {
        "the database connection broke while this committed, and whether it did is not known yet: \
         read the wallet's history before retrying (without an idempotencyKey a retry may apply it twice)"
    }
}

/// Every code a caller can meet, in `extensions.code`, in a batch item's
/// result, and in the schema's `ErrorCode` enum (derived from this one, so a
/// new code is in the schema or the build fails).
/// Which of a wallet's limits a movement would exceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    MaxTransferAmount,
    DailyOutgoingAmount,
    DailyOutgoingCount,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxTransferAmount => "MAX_TRANSFER_AMOUNT",
            Limit::DailyOutgoingAmount => "DAILY_OUTGOING_AMOUNT",
            Limit::DailyOutgoingCount => "DAILY_OUTGOING_COUNT",
        }
    }
}

/// What is left of a limit: cents, or a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Remaining {
    Cents(i64),
    Count(i64),
}

impl std::fmt::Display for Remaining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remaining::Cents(cents) => {
                write!(f, "{}", crate::domain::money::format_cents(*cents))
            }
            Remaining::Count(count) => write!(f, "{count}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidInput,
    NotFound,
    InsufficientFunds,
    SameWallet,
    IdempotencyKeyReused,
    BalanceLimitExceeded,
    TransferNotPending,
    TransferNotRefundable,
    RefundExceedsTransfer,
    TooManyHolds,
    WalletFrozen,
    WalletClosed,
    WalletNotEmpty,
    LimitExceeded,
    EmailTaken,
    Unauthenticated,
    Forbidden,
    TooManySubscriptions,
    SubscriptionLagged,
    EventsMissed,
    ServiceUnavailable,
    OutcomeUnknown,
    Timeout,
    TooManyMutations,
    QueryTooComplex,
    MethodNotAllowed,
    TooManyConnections,
    RateLimited,
    PayloadTooLarge,
    DocumentNotTrusted,
    PersistedQueryNotFound,
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of the README's table.
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::InvalidInput,
        ErrorCode::NotFound,
        ErrorCode::InsufficientFunds,
        ErrorCode::SameWallet,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::BalanceLimitExceeded,
        ErrorCode::TransferNotPending,
        ErrorCode::TransferNotRefundable,
        ErrorCode::RefundExceedsTransfer,
        ErrorCode::TooManyHolds,
        ErrorCode::WalletFrozen,
        ErrorCode::WalletClosed,
        ErrorCode::WalletNotEmpty,
        ErrorCode::LimitExceeded,
        ErrorCode::EmailTaken,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::TooManySubscriptions,
        ErrorCode::SubscriptionLagged,
        ErrorCode::EventsMissed,
        ErrorCode::ServiceUnavailable,
        ErrorCode::OutcomeUnknown,
        ErrorCode::Timeout,
        ErrorCode::TooManyMutations,
        ErrorCode::QueryTooComplex,
        ErrorCode::MethodNotAllowed,
        ErrorCode::TooManyConnections,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::DocumentNotTrusted,
        ErrorCode::PersistedQueryNotFound,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "INVALID_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ErrorCode::SameWallet => "SAME_WALLET",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::BalanceLimitExceeded => "BALANCE_LIMIT_EXCEEDED",
            ErrorCode::TransferNotPending => "TRANSFER_NOT_PENDING",
            ErrorCode::TransferNotRefundable => "TRANSFER_NOT_REFUNDABLE",
            ErrorCode::RefundExceedsTransfer => "REFUND_EXCEEDS_TRANSFER",
            ErrorCode::TooManyHolds => "TOO_MANY_HOLDS",
            ErrorCode::WalletFrozen => "WALLET_FROZEN",
            ErrorCode::WalletClosed => "WALLET_CLOSED",
            ErrorCode::WalletNotEmpty => "WALLET_NOT_EMPTY",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::EmailTaken => "EMAIL_TAKEN",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::TooManySubscriptions => "TOO_MANY_SUBSCRIPTIONS",
            ErrorCode::SubscriptionLagged => "SUBSCRIPTION_LAGGED",
            ErrorCode::EventsMissed => "EVENTS_MISSED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::OutcomeUnknown => "OUTCOME_UNKNOWN",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::TooManyMutations => "TOO_MANY_MUTATIONS",
            ErrorCode::QueryTooComplex => "QUERY_TOO_COMPLEX",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::DocumentNotTrusted => "DOCUMENT_NOT_TRUSTED",
            ErrorCode::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            ErrorCode::Internal => "INTERNAL",
        }
    }
}

/// One step of the path to an input value: a field of an input object or
/// an item of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldStep {
    Name(&'static str),
    Index(usize),
}

/// An input the caller must fix: why, and where (`extensions.field`, the
/// path from the field's arguments to the offending value; empty when the
/// request as a whole is at fault).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub field: Vec<FieldStep>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl AppError {
    /// The value of `extensions.code` in the GraphQL error.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    pub fn error_code(&self) -> ErrorCode {
        match self {
            AppError::InvalidInput(_) => ErrorCode::InvalidInput,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::InsufficientFunds => ErrorCode::InsufficientFunds,
            AppError::SameWallet => ErrorCode::SameWallet,
            AppError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            AppError::BalanceLimitExceeded => ErrorCode::BalanceLimitExceeded,
            AppError::TransferNotPending(_) => ErrorCode::TransferNotPending,
            AppError::TransferNotRefundable => ErrorCode::TransferNotRefundable,
            AppError::RefundExceedsTransfer => ErrorCode::RefundExceedsTransfer,
            AppError::TooManyHolds(_) => ErrorCode::TooManyHolds,
            AppError::WalletFrozen => ErrorCode::WalletFrozen,
            AppError::WalletClosed => ErrorCode::WalletClosed,
            AppError::WalletNotEmpty => ErrorCode::WalletNotEmpty,
            AppError::LimitExceeded { .. } => ErrorCode::LimitExceeded,
            AppError::EmailTaken => ErrorCode::EmailTaken,
            AppError::Unauthenticated => ErrorCode::Unauthenticated,
            AppError::Forbidden | AppError::ForbiddenOrigin => ErrorCode::Forbidden,
            AppError::TooManySubscriptions(_) => ErrorCode::TooManySubscriptions,
            AppError::SubscriptionLagged => ErrorCode::SubscriptionLagged,
            AppError::EventsMissed => ErrorCode::EventsMissed,
            AppError::ServiceUnavailable(_) => ErrorCode::ServiceUnavailable,
            AppError::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
            AppError::Timeout | AppError::TimedOutBeforeRun => ErrorCode::Timeout,
            AppError::TooManyMutations(_) => ErrorCode::TooManyMutations,
            AppError::QueryTooComplex(_) => ErrorCode::QueryTooComplex,
            AppError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            AppError::TooManyConnections(_) => ErrorCode::TooManyConnections,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            AppError::DocumentNotTrusted => ErrorCode::DocumentNotTrusted,
            AppError::PersistedQueryNotFound => ErrorCode::PersistedQueryNotFound,
            AppError::BatchItemRefused { error, .. } => error.error_code(),
            AppError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// An input refused as a whole (no single field to point at).
    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::InvalidInput(Invalid {
            message: message.into(),
            field: Vec::new(),
        })
    }

    /// An input refused for the value of `field`.
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> AppError {
        AppError::InvalidInput(Invalid {
            message: message.into(),
            field: vec![FieldStep::Name(field)],
        })
    }

    /// The same error, its field (if it names one) found inside `step`:
    /// `amount` inside `input` is `["input", "amount"]`.
    pub fn within(self, step: FieldStep) -> AppError {
        match self {
            AppError::InvalidInput(mut invalid) if !invalid.field.is_empty() => {
                invalid.field.insert(0, step);
                AppError::InvalidInput(invalid)
            }
            AppError::BatchItemRefused { index, error } => AppError::BatchItemRefused {
                index,
                error: Box::new(error.within(step)),
            },
            other => other,
        }
    }

    /// The same error pointing at `name` if it points nowhere yet (a
    /// malformed cursor: at the argument it came in).
    pub fn for_field(mut self, name: &'static str) -> AppError {
        if let AppError::InvalidInput(invalid) = &mut self
            && invalid.field.is_empty()
        {
            invalid.field.push(FieldStep::Name(name));
        }
        self
    }

    /// The same error, its field (if any) found inside argument `name`.
    pub fn in_argument(self, name: &'static str) -> AppError {
        self.within(FieldStep::Name(name))
    }

    /// The field an `INVALID_INPUT` points at (empty if none).
    pub fn field(&self) -> &[FieldStep] {
        match self {
            AppError::InvalidInput(invalid) => &invalid.field,
            AppError::BatchItemRefused { error, .. } => error.field(),
            _ => &[],
        }
    }
}

impl From<super::money::AmountError> for AppError {
    fn from(err: super::money::AmountError) -> Self {
        AppError::invalid_field("amount", err.to_string())
    }
}

pub type AppResult<T> = Result<T, AppError>;
