//! Bounds a document's cost before async-graphql validates it.
//!
//! async-graphql expands fragment spreads when it checks a document's
//! recursion depth (right after parsing) and again when it validates it, so
//! a chain of fragments that each spread the previous one twice costs 2^n
//! before any limit is reached (2^31 within its recursion limit of 32). This
//! guard takes over parsing instead (the parse hook returns its document and
//! does not call the built-in parse): it sizes each fragment once
//! (memoised), so its own work is linear in the document, and refuses a
//! document that nests more than [`MAX_NESTING`] selection sets or whose
//! expansion has more selections than the complexity limit. Validation then
//! walks at most that many. It also:
//! - measures depth itself, counting introspection (`__schema`, `__type`) on
//!   its own, larger limit: the standard introspection query that GraphiQL,
//!   graphql-codegen and Apollo's tools send nests `ofType` eight levels deep,
//!   which ordinary fields never need;
//! - checks `first`/`last` against the largest page before complexity is
//!   computed, so an oversized page gets the documented `INVALID_INPUT`;
//! - serves only subscriptions over WebSocket: queries and mutations there
//!   would escape the HTTP request timeout and rate limits;
//! - runs only queries for `GET` (a link must never move money).

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Pos, ServerError, ServerResult, Value, Variables};

use super::errors::server_error;
use crate::domain::error::AppError;

/// How a request reached the schema, when that limits what it may run: set
/// as connection data of WebSocket sessions, as request data of `GET`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    HttpGet,
}

/// Deepest nesting of selection sets and fragment spreads (async-graphql's
/// own default recursion limit, which this guard replaces).
pub const MAX_NESTING: usize = 32;

/// The limits the guard enforces.
#[derive(Clone, Copy, Debug)]
pub struct DocumentLimits {
    /// Deepest nesting of ordinary fields.
    pub max_depth: usize,
    /// Deepest nesting inside `__schema` / `__type`.
    pub max_introspection_depth: usize,
    /// Most selections (fields, spreads, inline fragments) once every
    /// fragment is expanded: the complexity limit.
    pub max_fields: usize,
    /// Largest `first` / `last`.
    pub max_page_size: usize,
    /// Most root fields of a mutation (see `budget`).
    pub max_mutations: usize,
}

/// Parses `query` and bounds its cost (see the module's documentation).
pub fn parse(
    query: &str,
    variables: &Variables,
    limits: &DocumentLimits,
) -> ServerResult<ExecutableDocument> {
    let document = async_graphql::parser::parse_query(query).map_err(ServerError::from)?;
    check(&document, variables, limits)?;
    Ok(document)
}

/// Why an operation of type `ty` may not run over `transport`, if it may
/// not. Subscriptions reach the execute hook too, once per event.
pub fn transport_refusal(transport: Option<&Transport>, ty: OperationType) -> Option<ServerError> {
    let err = match (transport, ty) {
        (Some(Transport::WebSocket), OperationType::Query | OperationType::Mutation) => {
            AppError::invalid(
                "only subscriptions are served over WebSocket: send queries and mutations as HTTP requests",
            )
        }
        (Some(Transport::HttpGet), OperationType::Mutation) => AppError::MethodNotAllowed,
        _ => return None,
    };
    Some(server_error(err, None))
}

/// The measured size of a selection set, fragments expanded.
#[derive(Clone, Copy, Default)]
struct Size {
    /// Selections once expanded: what validation will walk.
    fields: u64,
    /// Nesting of ordinary fields.
    depth: usize,
    introspection_depth: usize,
    /// Nesting of selection sets, spreads counted (the recursion depth).
    height: usize,
}

impl Size {
    fn merge(&mut self, other: Size) {
        self.fields = self.fields.saturating_add(other.fields);
        self.depth = self.depth.max(other.depth);
        self.introspection_depth = self.introspection_depth.max(other.introspection_depth);
        self.height = self.height.max(other.height);
    }

    /// One level further in: a field, spread or inline fragment around it.
    fn nested(mut self) -> Size {
        self.fields = self.fields.saturating_add(1);
        self.height += 1;
        self
    }
}

/// Sizes fragments once each; a fragment in progress is a cycle.
struct Measure<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    defaults: HashMap<&'a Name, &'a Value>,
    limits: &'a DocumentLimits,
    sizes: HashMap<&'a Name, Option<Size>>,
}

/// Bounds an already parsed document's cost (see the module's
/// documentation).
pub fn check(
    document: &ExecutableDocument,
    variables: &Variables,
    limits: &DocumentLimits,
) -> ServerResult<()> {
    let defaults = document
        .operations
        .iter()
        .flat_map(|(_, op)| op.node.variable_definitions.iter())
        .filter_map(|def| Some((&def.node.name.node, def.node.default_value()?)))
        .collect();
    let mut measure = Measure {
        document,
        variables,
        defaults,
        limits,
        sizes: HashMap::new(),
    };
    let mut total = Size::default();
    for (_, operation) in document.operations.iter() {
        total.merge(measure.selection_set(&operation.node.selection_set.node, 0)?);
    }
    // Fragments no operation uses are only checked, never expanded, by
    // validation: their own size is bounded by the body limit.
    let too_complex = |what: String| server_error(AppError::QueryTooComplex(what), None);
    if total.height > MAX_NESTING {
        return Err(too_complex(format!(
            "the query nests selections and fragments more than {MAX_NESTING} deep"
        )));
    }
    if total.fields > limits.max_fields as u64 {
        return Err(too_complex(format!(
            "the query has more than {} fields once its fragments are expanded",
            limits.max_fields
        )));
    }
    if total.depth > limits.max_depth {
        return Err(too_complex(format!(
            "the query nests fields more than {} deep",
            limits.max_depth
        )));
    }
    if total.introspection_depth > limits.max_introspection_depth {
        return Err(too_complex(format!(
            "the introspection query nests more than {} deep",
            limits.max_introspection_depth
        )));
    }
    Ok(())
}

impl<'a> Measure<'a> {
    /// A fragment's size; `nesting` is how deep its spread is, which bounds
    /// this walk's own recursion.
    fn fragment(&mut self, name: &'a Name, pos: Option<Pos>, nesting: usize) -> ServerResult<Size> {
        match self.sizes.get(name) {
            Some(Some(size)) => return Ok(*size),
            Some(None) => {
                return Err(server_error(
                    AppError::invalid(format!("fragment `{name}` spreads itself")),
                    pos,
                ));
            }
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            // Unknown fragments are validation's to report.
            return Ok(Size::default());
        };
        self.sizes.insert(name, None);
        let size = self.selection_set(&fragment.node.selection_set.node, nesting)?;
        self.sizes.insert(name, Some(size));
        Ok(size)
    }

    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> ServerResult<Size> {
        let mut size = Size::default();
        if nesting > MAX_NESTING {
            // Deeper than allowed whatever follows: stop before the stack
            // grows with the document.
            size.height = nesting;
            return Ok(size);
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    self.page_arguments(field)?;
                    let inner = self.selection_set(&field.selection_set.node, nesting + 1)?;
                    let name = field.name.node.as_str();
                    let nested = if name == "__schema" || name == "__type" {
                        Size {
                            depth: 1,
                            introspection_depth: 1 + inner.depth.max(inner.introspection_depth),
                            ..inner
                        }
                    } else {
                        Size {
                            depth: 1 + inner.depth,
                            ..inner
                        }
                    };
                    size.merge(nested.nested());
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = self.fragment(
                        &spread.node.fragment_name.node,
                        Some(spread.pos),
                        nesting + 1,
                    )?;
                    size.merge(fragment.nested());
                }
                Selection::InlineFragment(inline) => {
                    let inner = self.selection_set(&inline.node.selection_set.node, nesting + 1)?;
                    size.merge(inner.nested());
                }
            }
            // Stop early: the sum only grows.
            if size.fields > self.limits.max_fields as u64 {
                return Ok(size);
            }
        }
        Ok(size)
    }

    /// `first` and `last` within the largest page, as literals or variables.
    fn page_arguments(&self, field: &async_graphql::parser::types::Field) -> ServerResult<()> {
        for (name, value) in &field.arguments {
            let name = match name.node.as_str() {
                "first" => "first",
                "last" => "last",
                _ => continue,
            };
            let resolved = value.node.clone().into_const_with(|var| {
                self.variables
                    .get(&var)
                    .or(self.defaults.get(&var).copied())
                    .cloned()
                    .ok_or(())
            });
            let number = match resolved {
                Ok(Value::Number(n)) => n.as_i64(),
                _ => None,
            };
            if let Some(n) = number
                && !(0..=self.limits.max_page_size as i64).contains(&n)
            {
                return Err(server_error(
                    AppError::invalid_field(
                        name,
                        format!(
                            "`{name}` must be between 0 and {}",
                            self.limits.max_page_size
                        ),
                    ),
                    Some(value.pos),
                ));
            }
        }
        Ok(())
    }
}
