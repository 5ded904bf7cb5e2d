//! Relay connection arguments to keyset page queries, and back.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{ObjectType, OutputType};

use super::DEFAULT_PAGE_SIZE;
use crate::domain::error::{AppError, AppResult};
use crate::store::reads::{Direction, PageQuery};

/// The four Relay arguments, as received.
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
}

/// A validated page request: the query to run and the page size.
pub struct Page<K> {
    pub query: PageQuery<K>,
    pub size: usize,
}

impl PageArgs {
    /// Checks the arguments against `max` and decodes the cursors with `decode`.
    pub fn parse<K>(self, max: usize, decode: impl Fn(&str) -> AppResult<K>) -> AppResult<Page<K>> {
        let (size, direction) = match (self.first, self.last) {
            (Some(_), Some(_)) => {
                return Err(AppError::invalid("pass either `first` or `last`, not both"));
            }
            (Some(n), None) => (page_size("first", n, max)?, Direction::Forward),
            (None, Some(n)) => (page_size("last", n, max)?, Direction::Backward),
            (None, None) => (DEFAULT_PAGE_SIZE.min(max), Direction::Forward),
        };
        Ok(Page {
            query: PageQuery {
                after: (self.after.as_deref().map(&decode).transpose())
                    .map_err(|e| e.for_field("after"))?,
                before: (self.before.as_deref().map(&decode).transpose())
                    .map_err(|e| e.for_field("before"))?,
                fetch: size as u64 + 1,
                direction,
            },
            size,
        })
    }
}

fn page_size(name: &'static str, n: i32, max: usize) -> AppResult<usize> {
    usize::try_from(n)
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| {
            AppError::invalid_field(name, format!("`{name}` must be between 0 and {max}"))
        })
}

impl<K> Page<K> {
    /// Builds the connection from the fetched rows (in the list's natural
    /// order, possibly with one extra row beyond the page).
    pub fn connection<Row, Node: OutputType>(
        &self,
        rows: Vec<Row>,
        cursor: impl Fn(&Row) -> String,
        node: impl Fn(Row) -> Node,
    ) -> Connection<String, Node> {
        self.connection_with(rows, cursor, node, EmptyFields)
    }

    /// The same, with fields of the connection's own (`totalCount`).
    pub fn connection_with<Row, Node: OutputType, Extra: ObjectType>(
        &self,
        mut rows: Vec<Row>,
        cursor: impl Fn(&Row) -> String,
        node: impl Fn(Row) -> Node,
        extra: Extra,
    ) -> Connection<String, Node, Extra> {
        let more = rows.len() > self.size;
        let (has_previous, has_next) = match self.query.direction {
            Direction::Forward => {
                rows.truncate(self.size);
                (self.query.after.is_some(), more)
            }
            Direction::Backward => {
                // The extra row of a backward page sits at its start.
                if more {
                    rows.drain(..rows.len() - self.size);
                }
                (more, self.query.before.is_some())
            }
        };
        let mut connection = Connection::with_additional_fields(has_previous, has_next, extra);
        connection.edges = rows
            .into_iter()
            .map(|row| Edge::new(cursor(&row), node(row)))
            .collect();
        connection
    }
}
