//! Metadata: the application's own references on a payment (an order id, a
//! customer reference), as `key = value` pairs, bounded so that a caller
//! cannot make a ledger row large or its text misleading.

use std::collections::HashSet;

use super::error::{AppError, AppResult, FieldStep};
use super::validate;

/// At most this many entries on one request.
pub const MAX_ENTRIES: usize = 16;
/// A key: 1 to this many characters of `[A-Za-z0-9_.-]`.
pub const MAX_KEY_CHARS: usize = 40;
/// A value: at most this many characters, none of them control or
/// bidirectional formatting characters.
pub const MAX_VALUE_CHARS: usize = 256;

/// A request's metadata, checked, in key order (keys are distinct).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata(Vec<(String, String)>);

impl Metadata {
    /// Checks `entries` as a caller sent them (`None`: no metadata, the same
    /// as an empty list). A refusal names the entry and its part:
    /// `["metadata", 3, "key"]`.
    pub fn parse(entries: Option<Vec<(String, String)>>) -> AppResult<Metadata> {
        let entries = entries.unwrap_or_default();
        if entries.len() > MAX_ENTRIES {
            return Err(AppError::invalid_field(
                "metadata",
                format!("metadata holds at most {MAX_ENTRIES} entries"),
            ));
        }
        let mut keys = HashSet::with_capacity(entries.len());
        for (i, (key, value)) in entries.iter().enumerate() {
            let at = |error: AppError| {
                error
                    .within(FieldStep::Index(i))
                    .within(FieldStep::Name("metadata"))
            };
            check_entry(key, value).map_err(at)?;
            if !keys.insert(key.as_str()) {
                return Err(at(AppError::invalid_field(
                    "key",
                    format!("metadata key {key} is given twice"),
                )));
            }
        }
        let mut entries = entries;
        entries.sort();
        Ok(Metadata(entries))
    }

    /// The entries, in key order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As a ledger stores it: a JSON array of `[key, value]` in key order,
    /// or `None` for no metadata (a NULL column).
    pub fn stored(&self) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        serde_json::to_string(&self.0).ok()
    }

    /// Read back from its column. Only this module writes it; an
    /// unreadable value (a hand edit) shows as none and is logged, rather
    /// than failing every read of the row.
    pub fn from_stored(stored: Option<&str>) -> Metadata {
        let Some(text) = stored else {
            return Metadata::default();
        };
        match serde_json::from_str::<Vec<(String, String)>>(text) {
            Ok(entries) => Metadata(entries),
            Err(err) => {
                tracing::warn!(%err, "unreadable metadata column");
                Metadata::default()
            }
        }
    }
}

/// One `key = value` pair's rules (also a filter's): a refusal names
/// `key` or `value`.
pub fn check_entry(key: &str, value: &str) -> AppResult<()> {
    check_key(key)?;
    validate::bounded_text("value", value, MAX_VALUE_CHARS)?;
    Ok(())
}

fn check_key(key: &str) -> AppResult<()> {
    let length = key.chars().count();
    if length == 0 || length > MAX_KEY_CHARS {
        return Err(AppError::invalid_field(
            "key",
            format!("a metadata key is 1 to {MAX_KEY_CHARS} characters"),
        ));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(AppError::invalid_field(
            "key",
            "a metadata key holds only letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stored_form_round_trips_and_none_is_null() {
        let metadata =
            Metadata::parse(entries(&[("order", "A-1"), ("b", "x \"y\" ,]")])).expect("valid");
        let stored = metadata.stored().expect("some");
        assert_eq!(stored, r#"[["b","x \"y\" ,]"],["order","A-1"]]"#);
        assert_eq!(Metadata::from_stored(Some(&stored)), metadata);
        assert_eq!(Metadata::default().stored(), None);
        assert!(Metadata::from_stored(None).is_empty());
        assert!(Metadata::from_stored(Some("not json")).is_empty());
    }

    use super::*;
    use crate::domain::error::Invalid;

    fn entries(pairs: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn refused_at(pairs: &[(&str, &str)]) -> Vec<FieldStep> {
        match Metadata::parse(entries(pairs)) {
            Err(AppError::InvalidInput(Invalid { field, .. })) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn entries_come_back_in_key_order_and_none_is_empty() {
        let metadata =
            Metadata::parse(entries(&[("order", "42"), ("customer", "c-7")])).expect("valid");
        assert_eq!(
            metadata.entries(),
            [
                ("customer".to_owned(), "c-7".to_owned()),
                ("order".to_owned(), "42".to_owned())
            ]
        );
        assert_eq!(
            Metadata::parse(None).ok(),
            Metadata::parse(Some(Vec::new())).ok()
        );
        assert!(Metadata::parse(None).is_ok_and(|m| m.is_empty()));
    }

    #[test]
    fn each_bound_is_refused_at_its_entry() {
        let name = |n: &'static str| FieldStep::Name(n);
        assert_eq!(
            refused_at(&[("ok", "1"), ("", "x")]),
            [name("metadata"), FieldStep::Index(1), name("key")]
        );
        let long_key = "k".repeat(MAX_KEY_CHARS + 1);
        assert_eq!(
            refused_at(&[(long_key.as_str(), "x")]),
            [name("metadata"), FieldStep::Index(0), name("key")]
        );
        assert!(Metadata::parse(entries(&[(&"k".repeat(MAX_KEY_CHARS), "x")])).is_ok());
        assert_eq!(
            refused_at(&[("order id", "x")]),
            [name("metadata"), FieldStep::Index(0), name("key")]
        );
        assert_eq!(
            refused_at(&[("a", "1"), ("b", "2"), ("a", "3")]),
            [name("metadata"), FieldStep::Index(2), name("key")]
        );
        let long_value = "v".repeat(MAX_VALUE_CHARS + 1);
        assert_eq!(
            refused_at(&[("a", long_value.as_str())]),
            [name("metadata"), FieldStep::Index(0), name("value")]
        );
        assert!(Metadata::parse(entries(&[("a", &"v".repeat(MAX_VALUE_CHARS))])).is_ok());
        assert_eq!(
            refused_at(&[("a", "line\nbreak")]),
            [name("metadata"), FieldStep::Index(0), name("value")]
        );
        assert_eq!(
            refused_at(&[("a", "pay \u{202E}txt.exe")]),
            [name("metadata"), FieldStep::Index(0), name("value")]
        );
        let many: Vec<(String, String)> = (0..=MAX_ENTRIES)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(matches!(
            Metadata::parse(Some(many.clone())),
            Err(AppError::InvalidInput(Invalid { ref field, .. })) if field == &[name("metadata")]
        ));
        assert!(Metadata::parse(Some(many[..MAX_ENTRIES].to_vec())).is_ok());
    }
}
