//! Per-request GraphQL metrics: type and name of the operation, and how
//! long the request took.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql::{Response, ServerResult, Variables};

pub struct RequestMetrics;

impl ExtensionFactory for RequestMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Recorder::default())
    }
}

/// One request's findings.
#[derive(Default)]
struct Recorder {
    /// The document's operations: name and type.
    operations: Mutex<Vec<(Option<String>, &'static str)>>,
    /// The operation that ran.
    chosen: Mutex<Option<(&'static str, String)>>,
}

fn kind(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// Operation names become label values: keep them short and plain, so a
/// client cannot blow up the number of series.
fn label(name: Option<&str>) -> String {
    match name {
        None => "anonymous".to_owned(),
        Some(n) if n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            n.to_owned()
        }
        Some(_) => "other".to_owned(),
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Recorder {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (kind, name) = self
            .chosen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(("invalid", "-".to_owned()));
        crate::metrics::graphql_request(kind, &name, started.elapsed().as_secs_f64());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations = match &document.operations {
            DocumentOperations::Single(op) => vec![(None, kind(op.node.ty))],
            DocumentOperations::Multiple(ops) => ops
                .iter()
                .map(|(name, op)| (Some(name.to_string()), kind(op.node.ty)))
                .collect(),
        };
        *self
            .operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = operations;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let found = self
            .operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(name, _)| name.is_none() || name.as_deref() == operation_name)
            .map(|(_, kind)| *kind);
        if let Some(kind) = found {
            *self.chosen.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((kind, label(operation_name)));
        }
        next.run(ctx, operation_name).await
    }
}
