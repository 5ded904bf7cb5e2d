//! Null propagation as the GraphQL spec has it (section 6.4.4, "Handling
//! Field Errors"), which async-graphql 7 does not do: it leaves a failed
//! field out of the response instead of setting it to null, and never
//! nulls the parent of a failed non-null field.
//!
//! The request hooks (`extension.rs`) route every field's result through
//! [`NullPropagation::settle`]: a failed field becomes null and its error is
//! kept; a non-null field that is null (it failed, or one of its own non-null
//! fields did) marks its parent to become null in turn, up to the nearest
//! nullable field, or to `data` itself. Errors keep their path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use async_graphql::context::{QueryPathNode, QueryPathSegment};
use async_graphql::{PathSegment, Response, ServerError, ServerResult, Value};

/// One request's (or one subscription event's) field failures.
#[derive(Default)]
pub struct NullPropagation {
    /// Whether anything failed: fields resolve on the fast path until then.
    any: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The errors of fields turned into nulls, in the order they happened.
    errors: Vec<ServerError>,
    /// Paths of non-null fields (or list items) that came out null: their
    /// parent must be null too.
    null_non_null: Vec<Vec<PathSegment>>,
}

fn path_of(node: &QueryPathNode<'_>) -> Vec<PathSegment> {
    let mut path = Vec::new();
    let mut current = Some(node);
    while let Some(node) = current {
        path.push(match node.segment {
            QueryPathSegment::Name(name) => PathSegment::Field(name.to_owned()),
            QueryPathSegment::Index(index) => PathSegment::Index(index),
        });
        current = node.parent;
    }
    path.reverse();
    path
}

impl NullPropagation {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value the field at `node`, of type `return_type`, contributes to
    /// its parent, given what resolving it gave.
    pub fn settle(
        &self,
        node: &QueryPathNode<'_>,
        return_type: &str,
        result: ServerResult<Option<Value>>,
    ) -> ServerResult<Option<Value>> {
        if result.is_ok() && !self.any.load(Ordering::Acquire) {
            return result;
        }
        let path = path_of(node);
        let mut state = self.state();
        let child_null = state
            .null_non_null
            .iter()
            .any(|p| p.len() == path.len() + 1 && p.starts_with(&path));
        let value = match result {
            Ok(value) if !child_null => return Ok(value),
            Ok(_) => None,
            Err(mut error) => {
                if error.path.is_empty() {
                    error.path = path.clone();
                }
                state.errors.push(error);
                self.any.store(true, Ordering::Release);
                None
            }
        };
        if return_type.ends_with('!') {
            state.null_non_null.push(path);
        }
        Ok(value.or(Some(Value::Null)))
    }

    /// Applies what settled to a finished response: its errors are added,
    /// and `data` is null when a non-null root field is.
    pub fn finish(&self, mut response: Response) -> Response {
        if !self.any.swap(false, Ordering::AcqRel) {
            return response;
        }
        let mut state = self.state();
        if state.null_non_null.iter().any(|p| p.len() == 1) {
            response.data = Value::Null;
        }
        state.null_non_null.clear();
        response.errors.append(&mut state.errors);
        response
    }
}
