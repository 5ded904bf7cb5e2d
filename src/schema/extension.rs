//! The schema's one extension, wiring the request hooks to the concerns
//! that need them: the document guard (`guard.rs`), null propagation
//! (`nulls.rs`), error codes (`errors.rs`) and request metrics
//! (`metrics.rs`).
//!
//! One extension rather than one per concern: async-graphql runs every
//! extension's `resolve` hook around every field and list item, so each
//! extension costs on every field of every response.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
    NextResolve, NextSubscribe, ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Value, Variables};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::errors::with_codes;
use super::guard::{self, DocumentLimits, Transport};
use super::metrics;
use super::nulls::NullPropagation;

pub struct RequestHooks(pub DocumentLimits);

impl ExtensionFactory for RequestHooks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Hooks {
            limits: self.0,
            operations: Mutex::default(),
            chosen: Mutex::default(),
            nulls: Arc::default(),
        })
    }
}

/// One request's hooks and what they learn along the way.
struct Hooks {
    limits: DocumentLimits,
    /// The document's operations: name and type.
    operations: Mutex<Vec<(Option<String>, OperationType)>>,
    /// The operation that ran: type and metrics label.
    chosen: Mutex<Option<(&'static str, String)>>,
    /// Shared with the stream of a subscription's responses.
    nulls: Arc<NullPropagation>,
}

impl Hooks {
    fn operation(&self, name: Option<&str>) -> Option<OperationType> {
        self.operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(n, _)| name.is_none() || n.as_deref() == name)
            .map(|(_, ty)| *ty)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Hooks {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = with_codes(self.nulls.finish(next.run(ctx).await));
        let (kind, name) = self
            .chosen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(("invalid", "-".to_owned()));
        crate::metrics::graphql_request(kind, &name, started.elapsed().as_secs_f64());
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Events resolve one after another: each takes its own failures.
        let nulls = self.nulls.clone();
        next.run(ctx, stream)
            .map(move |response| with_codes(nulls.finish(response)))
            .boxed()
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let (path, return_type) = (info.path_node, info.return_type);
        let result = next.run(ctx, info).await;
        self.nulls.settle(path, return_type, result)
    }

    /// Replaces the built-in parse (which expands fragments): `next` is not
    /// called.
    async fn parse_query(
        &self,
        _ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = guard::parse(query, variables, &self.limits)?;
        *self
            .operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = document
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), op.node.ty))
            .collect();
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(ty) = self.operation(operation_name) {
            if let Some(refusal) = guard::transport_refusal(ctx.data_opt::<Transport>(), ty) {
                return Response::from_errors(vec![refusal]);
            }
            *self.chosen.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((metrics::kind(ty), metrics::label(operation_name)));
        }
        next.run(ctx, operation_name).await
    }
}
