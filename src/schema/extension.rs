//! The schema's one extension, wiring the request hooks to the concerns
//! that need them: the document guard (`guard.rs`), the bounds and deadline
//! of mutations (`budget.rs`), null propagation (`nulls.rs`), error codes
//! (`errors.rs`), request metrics (`metrics.rs`) and read-your-writes
//! (`freshness.rs`).
//!
//! One extension rather than one per concern: async-graphql runs every
//! extension's `resolve` hook around every field and list item, so each
//! extension costs on every field of every response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextResolve, NextSubscribe, ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerResult, Value, Variables};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::budget::{self, MutationWork, RequestBudget};
use super::errors::{server_error, with_codes};
use super::freshness;
use super::guard::{self, DocumentLimits, Transport};
use super::metrics;
use super::nulls::NullPropagation;
use super::persisted::{Documents, Resolved};
use crate::domain::auth::Caller;
use crate::domain::error::AppError;

pub struct RequestHooks(pub DocumentLimits);

impl ExtensionFactory for RequestHooks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Hooks {
            limits: self.0,
            operations: Mutex::default(),
            chosen: Mutex::default(),
            mutation: AtomicBool::new(false),
            parsed: Mutex::default(),
            nulls: Arc::default(),
        })
    }
}

/// One request's hooks and what they learn along the way.
struct Hooks {
    limits: DocumentLimits,
    /// The document's operations: name, type, and what a mutation asks for.
    operations: Mutex<Vec<(Option<String>, OperationType, MutationWork)>>,
    /// The operation that ran: type and metrics label.
    chosen: Mutex<Option<(&'static str, String)>>,
    /// The operation that runs is a mutation.
    mutation: AtomicBool,
    /// A trusted document's parse, for the parse hook.
    parsed: Mutex<Option<ExecutableDocument>>,
    /// Shared with the stream of a subscription's responses.
    nulls: Arc<NullPropagation>,
}

impl Hooks {
    /// Notes the document's operations: their types, and what a mutation
    /// asks for (for the execute hook).
    fn remember(&self, document: &ExecutableDocument, variables: &Variables) {
        let operations = document
            .operations
            .iter()
            .map(|(name, op)| {
                let op = &op.node;
                let work = match op.ty {
                    OperationType::Mutation => {
                        let defaults: HashMap<_, _> = op
                            .variable_definitions
                            .iter()
                            .filter_map(|def| {
                                Some((&def.node.name.node, def.node.default_value()?))
                            })
                            .collect();
                        budget::mutation_work(
                            document,
                            &op.selection_set.node,
                            variables,
                            &defaults,
                        )
                    }
                    _ => MutationWork::default(),
                };
                (name.map(|n| n.to_string()), op.ty, work)
            })
            .collect();
        *self
            .operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = operations;
    }

    fn operation(&self, name: Option<&str>) -> Option<(OperationType, MutationWork)> {
        self.operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(n, _, _)| name.is_none() || n.as_deref() == name)
            .map(|(_, ty, work)| (*ty, *work))
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
        // A root mutation field that has not started when time is up does
        // not start.
        if path.parent.is_none()
            && self.mutation.load(Ordering::Acquire)
            && ctx
                .data_opt::<Arc<RequestBudget>>()
                .is_some_and(|budget| budget.expired())
        {
            let refused = Err(server_error(AppError::TimedOutBeforeRun, None));
            return self.nulls.settle(path, return_type, refused);
        }
        let result = next.run(ctx, info).await;
        self.nulls.settle(path, return_type, result)
    }

    /// Resolves a persisted query (`persisted.rs`) into the text or the
    /// parsed document the request runs.
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Some(documents) = ctx.data_opt::<Arc<Documents>>() {
            // HTTP carries the caller in the request, WebSocket in the
            // connection.
            let caller = (request.data.get(&std::any::TypeId::of::<Caller>()))
                .and_then(|caller| caller.downcast_ref::<Caller>())
                .or_else(|| ctx.data_opt::<Caller>());
            let resolved = documents
                .resolve(caller, &request.query, &mut request.extensions)
                .map_err(|err| server_error(err, None))?;
            match resolved {
                Resolved::AsSent => {}
                Resolved::Text(text) => request.query = text.to_string(),
                // Parsed once at start-up: the parse hook takes it from here.
                Resolved::Parsed(document) => {
                    *self.parsed.lock().unwrap_or_else(PoisonError::into_inner) = Some(document);
                }
            }
        }
        next.run(ctx, request).await
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
        let cached = self
            .parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let document = match cached {
            // A trusted document is bounded against these variables as any
            // parse is.
            Some(document) => {
                guard::check(&document, variables, &self.limits)?;
                document
            }
            None => guard::parse(query, variables, &self.limits)?,
        };
        self.remember(&document, variables);
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some((ty, work)) = self.operation(operation_name) {
            if let Some(refusal) = guard::transport_refusal(ctx.data_opt::<Transport>(), ty) {
                return Response::from_errors(vec![refusal]);
            }
            if ty == OperationType::Mutation {
                let budget = ctx.data_opt::<Arc<RequestBudget>>();
                let allowed = work
                    .check(self.limits.max_mutations)
                    .and_then(|()| budget.map_or(Ok(()), |budget| budget.start_mutation(work)));
                if let Err(err) = allowed {
                    return Response::from_errors(vec![server_error(err, None)]);
                }
                self.mutation.store(true, Ordering::Release);
                freshness::pin_to_primary(ctx);
            }
            *self.chosen.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((metrics::kind(ty), metrics::label(operation_name)));
        }
        let mut response = next.run(ctx, operation_name).await;
        if self.mutation.load(Ordering::Acquire) {
            freshness::mark_commit(ctx, &mut response);
        }
        response
    }
}
