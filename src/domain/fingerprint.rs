//! What makes two uses of one idempotency key the same request.
//!
//! A fingerprint is the SHA-256 of the verb and its fields, each written
//! with its length first, so no field can run into the next: a description
//! ending in what looks like another field is still only a description.
//! Optional fields say whether they are there (an empty description is not
//! no description). Metadata, when a verb carries it, is written last,
//! sorted by key; none and an empty list are the same.
//!
//! Keys stored before this encoding hold the old `verb:field:field` text.
//! A request carries that text too (`legacy`), and matches a stored
//! fingerprint equal to either, so a retry of a request answered before an
//! upgrade still gets its first answer.

use sha2::{Digest, Sha256};

/// The stored form of a fingerprint starts with this, so it can never equal
/// an old one (those start with the verb).
const VERSION: &str = "v2:";

/// A request's fingerprint: what is stored with its key, and the old text
/// an earlier version stored for the same request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    stored: String,
    legacy: Option<String>,
}

impl Fingerprint {
    /// Starts the fingerprint of `verb`.
    pub fn of(verb: &str) -> Builder {
        Builder {
            hasher: Sha256::new(),
            metadata: Vec::new(),
        }
        .field(verb)
    }

    /// What is stored with the key.
    pub fn stored(&self) -> &str {
        &self.stored
    }

    /// Whether `stored` (read with a key) was stored by this same request.
    pub fn matches(&self, stored: &str) -> bool {
        stored == self.stored || self.legacy.as_deref() == Some(stored)
    }
}

/// Writes a fingerprint's fields, in a verb's fixed order.
pub struct Builder {
    hasher: Sha256,
    metadata: Vec<(String, String)>,
}

impl Builder {
    /// A field that is always there.
    pub fn field(mut self, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        self.hasher.update((value.len() as u64).to_be_bytes());
        self.hasher.update(value);
        self
    }

    /// A field that may be absent.
    pub fn optional(mut self, value: Option<impl AsRef<[u8]>>) -> Self {
        match value {
            None => {
                self.hasher.update([0u8]);
                self
            }
            Some(value) => {
                self.hasher.update([1u8]);
                self.field(value)
            }
        }
    }

    /// The request's metadata; written last, in key order.
    pub fn metadata(mut self, entries: &[(String, String)]) -> Self {
        self.metadata = entries.to_vec();
        self
    }

    /// The finished fingerprint; `legacy` is the old text of this request,
    /// which can match only when it carries no metadata (the old text had
    /// none).
    pub fn finish(mut self, legacy: String) -> Fingerprint {
        let mut metadata = std::mem::take(&mut self.metadata);
        metadata.sort();
        self.hasher.update((metadata.len() as u64).to_be_bytes());
        let mut builder = self;
        for (key, value) in &metadata {
            builder = builder.field(key).field(value);
        }
        let digest = builder.hasher.finalize();
        let mut stored = String::with_capacity(VERSION.len() + 64);
        stored.push_str(VERSION);
        for byte in digest {
            stored.push_str(&format!("{byte:02x}"));
        }
        Fingerprint {
            stored,
            legacy: metadata.is_empty().then_some(legacy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(description: Option<&str>, metadata: &[(&str, &str)]) -> Fingerprint {
        let metadata: Vec<(String, String)> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Fingerprint::of("transfer")
            .field("a")
            .field("b")
            .field(100i64.to_string())
            .optional(description)
            .metadata(&metadata)
            .finish(format!("transfer:a:b:100:{}", description.unwrap_or("")))
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let one = Fingerprint::of("v")
            .field("ab")
            .field("c")
            .finish(String::new());
        let two = Fingerprint::of("v")
            .field("a")
            .field("bc")
            .finish(String::new());
        assert_ne!(one.stored(), two.stored());
    }

    #[test]
    fn an_empty_description_is_not_none() {
        assert_ne!(
            transfer(Some(""), &[]).stored(),
            transfer(None, &[]).stored()
        );
        // The old text could not tell them apart: both match it.
        assert!(transfer(Some(""), &[]).matches("transfer:a:b:100:"));
        assert!(transfer(None, &[]).matches("transfer:a:b:100:"));
    }

    #[test]
    fn metadata_is_ordered_by_key_and_none_is_empty() {
        assert_eq!(
            transfer(None, &[("a", "1"), ("b", "2")]),
            transfer(None, &[("b", "2"), ("a", "1")])
        );
        assert_ne!(
            transfer(None, &[("a", "1")]).stored(),
            transfer(None, &[("a", "2")]).stored()
        );
        assert_ne!(
            transfer(Some("x"), &[("k", "v")]).stored(),
            transfer(Some("x:k=v"), &[]).stored()
        );
        // With metadata, the old text (which had none) never matches.
        assert!(!transfer(Some("x"), &[("k", "v")]).matches("transfer:a:b:100:x"));
        assert_eq!(transfer(None, &[]).stored(), {
            let none: &[(String, String)] = &[];
            Fingerprint::of("transfer")
                .field("a")
                .field("b")
                .field("100")
                .optional(None::<&str>)
                .metadata(none)
                .finish(String::new())
                .stored
        });
    }

    #[test]
    fn the_stored_form_is_versioned_and_never_an_old_text() {
        let print = transfer(Some("lunch"), &[]);
        assert!(print.stored().starts_with(VERSION));
        assert_eq!(print.stored().len(), VERSION.len() + 64);
        assert!(print.matches(print.stored()));
        assert!(print.matches("transfer:a:b:100:lunch"));
        assert!(!print.matches("transfer:a:b:100:dinner"));
    }
}
