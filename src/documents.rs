//! The operation documents in `documents/`, written once and sent by every
//! client we own: the web app and the frontend checks read the files, the
//! Rust tests and the load generator take one operation from here.
//!
//! A client sends one operation with the fragments it spreads, not the whole
//! file: [`operation`] cuts that out, so what is measured and tested is what
//! an application sends.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use async_graphql::parser::{Pos, parse_query, types::DocumentOperations};

/// Every shared document, as one text (fragments are shared across files).
pub const ALL: &str = concat!(
    include_str!("../documents/wallet.graphql"),
    "\n",
    include_str!("../documents/payments.graphql"),
    "\n",
    include_str!("../documents/service.graphql"),
    "\n",
    include_str!("../documents/load.graphql"),
);

/// The operation called `name` in [`ALL`], followed by every fragment it
/// spreads (directly or through other fragments); `None` if there is none.
pub fn operation(name: &str) -> Option<&'static str> {
    static OPERATIONS: LazyLock<BTreeMap<String, String>> = LazyLock::new(cut_out);
    OPERATIONS.get(name).map(String::as_str)
}

/// Every operation of [`ALL`], each with its fragments.
fn cut_out() -> BTreeMap<String, String> {
    let Ok(document) = parse_query(ALL) else {
        return BTreeMap::new();
    };
    let DocumentOperations::Multiple(operations) = &document.operations else {
        return BTreeMap::new();
    };
    let offsets = LineOffsets::new(ALL);
    // Each definition runs from its start to the next definition's start.
    let mut starts: Vec<usize> = operations
        .values()
        .map(|o| o.pos)
        .chain(document.fragments.values().map(|f| f.pos))
        .map(|pos| offsets.offset(pos))
        .collect();
    starts.sort_unstable();
    let text_at = |pos: Pos| {
        let start = offsets.offset(pos);
        let end = starts
            .iter()
            .copied()
            .find(|&s| s > start)
            .unwrap_or(ALL.len());
        trim_comments(&ALL[start..end])
    };

    let with_fragments = |pos: Pos| {
        let mut text = text_at(pos);
        let mut included = BTreeSet::new();
        while let Some((fragment, definition)) = document
            .fragments
            .iter()
            .find(|(n, _)| !included.contains(n.as_str()) && spreads(&text, n.as_str()))
        {
            included.insert(fragment.as_str());
            text.push_str("\n\n");
            text.push_str(&text_at(definition.pos));
        }
        text
    };
    operations
        .iter()
        .map(|(name, definition)| (name.to_string(), with_fragments(definition.pos)))
        .collect()
}

/// Whether `text` holds the spread `...name` (a whole name, not a prefix).
fn spreads(text: &str, name: &str) -> bool {
    let spread = format!("...{name}");
    text.match_indices(&spread).any(|(at, _)| {
        !text[at + spread.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A definition without the comment lines that introduce the next one.
fn trim_comments(definition: &str) -> String {
    let mut lines: Vec<&str> = definition.trim_end().lines().collect();
    while lines
        .last()
        .is_some_and(|l| l.trim_start().starts_with('#'))
    {
        lines.pop();
    }
    lines.join("\n").trim_end().to_owned()
}

/// Byte offsets of each line of a text, to turn the parser's (line,
/// column) into a position in it.
struct LineOffsets<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineOffsets<'a> {
    fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1));
        Self {
            text,
            starts: starts.collect(),
        }
    }

    fn offset(&self, pos: Pos) -> usize {
        let line = self
            .starts
            .get(pos.line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let rest = self.text.get(line..).unwrap_or_default();
        line + rest
            .char_indices()
            .nth(pos.column.saturating_sub(1))
            .map_or(rest.len(), |(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_cut_out_with_its_fragments_and_parses_alone() {
        let Ok(document) = parse_query(ALL) else {
            panic!("the shared documents parse");
        };
        let DocumentOperations::Multiple(operations) = document.operations else {
            panic!("the shared documents hold several operations");
        };
        assert!(operations.len() > 10);
        for name in operations.keys() {
            let text = operation(name).unwrap_or_default();
            let alone = parse_query(text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            let DocumentOperations::Multiple(one) = &alone.operations else {
                panic!("{name} is named");
            };
            assert_eq!(
                one.keys().map(|n| n.as_str()).collect::<Vec<_>>(),
                [name.as_str()]
            );
            // No fragment more than it spreads (the server refuses unused ones).
            for fragment in alone.fragments.keys() {
                assert!(spreads(text, fragment), "{name} carries {fragment}");
            }
        }
        let me = operation("Me").unwrap_or_default();
        assert!(me.contains("fragment WalletBalances on Wallet"), "{me}");
        assert_eq!(operation("NoSuchOperation"), None);
    }

    #[test]
    fn a_spread_is_a_whole_name() {
        assert!(spreads("{ ...Wallet }", "Wallet"));
        assert!(!spreads("{ ...WalletBalances }", "Wallet"));
    }
}
