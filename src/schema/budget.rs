//! What one mutation document may do, bounded before any of it runs, and
//! the request's deadline between its fields.
//!
//! Aliases and fragments let a small document ask for many writes: twenty
//! aliased `transferBatch`es sharing one variable of 450 items are 9,000
//! transfers in 60 KB. So each mutation operation is sized when the
//! document is parsed, once its variables are known: its root fields
//! (every fragment spread counted each time it is spread) and the ledger
//! entries they ask for (a `transferBatch` counts its items). More than
//! `MAX_MUTATIONS_PER_REQUEST` fields or [`MAX_ENTRIES`] entries is
//! `TOO_MANY_MUTATIONS`, before the first field runs. Over HTTP, each field
//! also spends one unit of the caller's rate budget: the request spent one
//! at the door, the others are spent all at once or the request is
//! `RATE_LIMITED` (the operator has no rate, only these bounds).
//!
//! Root mutation fields run one after another. Once the request's time is
//! up, a field that has not started is refused with `TIMEOUT` (it changed
//! nothing) and the one in flight is let finish, so the answer still shows
//! every field that committed (see `server::graphql`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_graphql::parser::types::{ExecutableDocument, Field, Selection, SelectionSet};
use async_graphql::{Name, Value, Variables};

use super::guard::MAX_NESTING;
use crate::domain::error::{AppError, AppResult};
use crate::domain::validate::MAX_BATCH_ITEMS;

/// Most ledger entries one request may ask for: one full `transferBatch`.
pub const MAX_ENTRIES: usize = MAX_BATCH_ITEMS;

/// What a mutation operation asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MutationWork {
    /// Root fields, fragments expanded (`__typename` aside).
    pub fields: usize,
    /// Ledger entries: one per field, a `transferBatch`'s items each.
    pub entries: usize,
}

impl MutationWork {
    fn add(&mut self, other: MutationWork) {
        self.fields = self.fields.saturating_add(other.fields);
        self.entries = self.entries.saturating_add(other.entries);
    }

    /// Refuses work past the limits.
    pub fn check(&self, max_fields: usize) -> AppResult<()> {
        if self.fields > max_fields {
            return Err(AppError::TooManyMutations(format!(
                "a request may run at most {max_fields} mutation fields (aliases and fragments counted), this one has {}",
                self.fields
            )));
        }
        if self.entries > MAX_ENTRIES {
            return Err(AppError::TooManyMutations(format!(
                "a request may ask for at most {MAX_ENTRIES} transfers and other entries (batch items counted), this one asks for {}",
                self.entries
            )));
        }
        Ok(())
    }
}

/// Sizes the root of a mutation operation. The document passed the guard's
/// checks: its fragments do not spread themselves and expand to a bounded
/// size.
pub fn mutation_work(
    document: &ExecutableDocument,
    root: &SelectionSet,
    variables: &Variables,
    defaults: &HashMap<&Name, &Value>,
) -> MutationWork {
    let mut walk = Walk {
        document,
        variables,
        defaults,
        fragments: HashMap::new(),
    };
    walk.selection_set(root, 0)
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    defaults: &'a HashMap<&'a Name, &'a Value>,
    /// Fragments sized so far.
    fragments: HashMap<&'a Name, MutationWork>,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> MutationWork {
        let mut work = MutationWork::default();
        if nesting > MAX_NESTING {
            return work;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    if field.name.node == "__typename" {
                        continue;
                    }
                    let entries = match field.name.node.as_str() {
                        "transferBatch" => self.batch_items(field),
                        _ => 1,
                    };
                    work.add(MutationWork { fields: 1, entries });
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let size = match self.fragments.get(name) {
                        Some(size) => *size,
                        None => {
                            let Some(fragment) = self.document.fragments.get(name) else {
                                continue;
                            };
                            let size =
                                self.selection_set(&fragment.node.selection_set.node, nesting + 1);
                            self.fragments.insert(name, size);
                            size
                        }
                    };
                    work.add(size);
                }
                Selection::InlineFragment(inline) => {
                    work.add(self.selection_set(&inline.node.selection_set.node, nesting + 1));
                }
            }
        }
        work
    }

    /// The items of `transferBatch(input: {transfers: [...]})`, written out
    /// or in variables. A single item coerces to a list of one; a value
    /// validation will refuse counts one.
    fn batch_items(&self, field: &Field) -> usize {
        let Some(input) = field.get_argument("input") else {
            return 1;
        };
        let input = input.node.clone().into_const_with(|name| {
            self.variables
                .get(&name)
                .or_else(|| self.defaults.get(&name).copied())
                .cloned()
                .ok_or(())
        });
        match input {
            Ok(Value::Object(input)) => match input.get("transfers") {
                Some(Value::List(items)) => items.len(),
                _ => 1,
            },
            _ => 1,
        }
    }
}

/// Spends `n` more units of the caller's rate budget, all or none.
pub type SpendRate = Box<dyn Fn(u32) -> AppResult<()> + Send + Sync>;

/// A request's deadline and the rest of its caller's rate budget, as the
/// HTTP transport sets them (request data, in an `Arc`).
pub struct RequestBudget {
    deadline: Instant,
    spend: SpendRate,
    /// A mutation began: past the deadline the request must be let finish
    /// the field in flight rather than be dropped.
    writing: AtomicBool,
}

impl RequestBudget {
    pub fn new(deadline: Instant, spend: SpendRate) -> RequestBudget {
        RequestBudget {
            deadline,
            spend,
            writing: AtomicBool::new(false),
        }
    }

    /// Whether a mutation has begun running.
    pub fn writing(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }

    /// Spends the units of a mutation's fields beyond the one the request
    /// spent at the door, then marks the request as writing.
    pub fn start_mutation(&self, work: MutationWork) -> AppResult<()> {
        if let Some(more) = work.fields.checked_sub(1).filter(|n| *n > 0) {
            (self.spend)(u32::try_from(more).unwrap_or(u32::MAX))?;
        }
        self.writing.store(true, Ordering::Release);
        Ok(())
    }

    /// Whether the request's time is up.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(query: &str, variables: serde_json::Value) -> MutationWork {
        let document = async_graphql::parser::parse_query(query).expect("parse");
        let variables = Variables::from_json(variables);
        let (_, operation) = document.operations.iter().next().expect("one operation");
        let defaults = operation
            .node
            .variable_definitions
            .iter()
            .filter_map(|def| Some((&def.node.name.node, def.node.default_value()?)))
            .collect();
        mutation_work(
            &document,
            &operation.node.selection_set.node,
            &variables,
            &defaults,
        )
    }

    #[test]
    fn aliases_fragments_and_batch_items_are_counted() {
        let one = work(
            "mutation { transfer(input: $i) { transfer { id } } }",
            serde_json::json!({}),
        );
        assert_eq!(
            one,
            MutationWork {
                fields: 1,
                entries: 1
            }
        );
        let aliased = work(
            "mutation { a: transfer { x } b: transfer { x } __typename ...F ...F ... on Mutation { deposit { x } } }
             fragment F on Mutation { c: voidTransfer { x } d: captureTransfer { x } }",
            serde_json::json!({}),
        );
        assert_eq!(
            aliased,
            MutationWork {
                fields: 7,
                entries: 7
            }
        );
        let items = serde_json::json!([{}, {}, {}]);
        let shared = work(
            "mutation($t: [TransferInput!]!) { a: transferBatch(input: {transfers: $t, atomic: false}) { x } b: transferBatch(input: {transfers: $t, atomic: false}) { x } }",
            serde_json::json!({ "t": items }),
        );
        assert_eq!(
            shared,
            MutationWork {
                fields: 2,
                entries: 6
            }
        );
        let whole = work(
            "mutation($in: TransferBatchInput!) { transferBatch(input: $in) { x } }",
            serde_json::json!({ "in": { "transfers": items, "atomic": true } }),
        );
        assert_eq!(
            whole,
            MutationWork {
                fields: 1,
                entries: 3
            }
        );
        let literal = work(
            "mutation($t: [TransferInput!]! = [{}, {}]) { transferBatch(input: {transfers: [{}, {}, {}, {}], atomic: true}) { x } b: transferBatch(input: {transfers: $t, atomic: true}) { x } }",
            serde_json::json!({}),
        );
        assert_eq!(
            literal,
            MutationWork {
                fields: 2,
                entries: 6
            }
        );
    }

    #[test]
    fn limits_refuse_with_their_code() {
        assert!(
            MutationWork {
                fields: 10,
                entries: 1000
            }
            .check(10)
            .is_ok()
        );
        let fields = MutationWork {
            fields: 11,
            entries: 11,
        }
        .check(10);
        assert!(matches!(fields, Err(AppError::TooManyMutations(_))));
        let entries = MutationWork {
            fields: 2,
            entries: 1001,
        }
        .check(10);
        assert_eq!(entries.map_err(|e| e.code()), Err("TOO_MANY_MUTATIONS"));
    }
}
