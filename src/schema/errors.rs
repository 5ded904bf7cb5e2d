//! From `AppError` to GraphQL errors with `extensions.code`.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextRequest, NextSubscribe,
};
use async_graphql::{Error, ErrorExtensions, Response, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

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
        Error::new(err.to_string()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(secs) = retry_after {
                ext.set("retryAfter", secs);
            }
        })
    }
}

/// Gives every error without a code one: those come from async-graphql's own
/// parsing and validation (a malformed document, an unknown field, a value of
/// the wrong type), which are all the caller's input, or from its complexity
/// limit (`QUERY_TOO_COMPLEX`). The same for HTTP requests and for every
/// response of a WebSocket subscription.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let code = if error.message.starts_with("Query is nested too deep")
            || error.message.starts_with("Query is too complex")
            || error.message.starts_with("The recursion depth of the query")
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

#[async_graphql::async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        with_codes(next.run(ctx).await)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream).map(with_codes).boxed()
    }
}
