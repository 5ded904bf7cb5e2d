//! Persisted queries, resolved before a request is parsed (the schema's
//! `prepare_request` hook, so HTTP and WebSocket alike):
//!
//! - Apollo's automatic persisted queries (APQ): a request carrying
//!   `extensions.persistedQuery {version: 1, sha256Hash}` and no query runs
//!   the query stored under that hash, or is `PERSISTED_QUERY_NOT_FOUND`
//!   (Apollo's link then sends the query with its hash, which the server
//!   checks, `sha256(query)` in hex, and keeps in a bounded LRU).
//! - Trusted documents (`TRUSTED_DOCUMENTS`, a manifest of id -> document as
//!   graphql-codegen's client preset writes it): only listed documents run,
//!   by id (`extensions.persistedQuery.sha256Hash` or `documentId`) or by
//!   their exact text; anything else is `DOCUMENT_NOT_TRUSTED`, except from
//!   the operator, and APQ registration is off. Each listed document is
//!   parsed once, at start-up; the guard still sizes it against each
//!   request's variables.
//!
//! The stored text is what runs: the guard parses and bounds it as any
//! other query (a cached document never skips the document limits).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::Value;
use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};

/// Where `documentId` (GraphQL-over-HTTP's persisted documents) is carried
/// into the request's extensions by the HTTP handler.
pub const DOCUMENT_ID: &str = "documentId";

/// The listed documents, parsed, by id and by text.
struct TrustedDocuments {
    by_id: HashMap<String, Arc<ExecutableDocument>>,
    by_text: HashMap<String, Arc<ExecutableDocument>>,
}

/// The server's persisted documents (schema data).
pub struct Documents {
    /// APQ registrations, hash -> query; none with trusted documents.
    apq: Option<Mutex<LruCache<String, Arc<str>>>>,
    /// TRUSTED_DOCUMENTS.
    trusted: Option<TrustedDocuments>,
}

/// What a request runs once its persisted query is resolved.
pub enum Resolved {
    /// Its own `query` text, unchanged.
    AsSent,
    /// A stored text, to be parsed as any query.
    Text(Arc<str>),
    /// A listed document, already parsed.
    Parsed(ExecutableDocument),
}

/// A trusted-documents manifest: id -> document text.
pub type Manifest = HashMap<String, String>;

/// Reads a manifest (`{"<id>": "query ...", ...}`), checking that each
/// document parses.
pub fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading TRUSTED_DOCUMENTS {}", path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
        format!(
            "TRUSTED_DOCUMENTS {} is not a JSON object of id -> document",
            path.display()
        )
    })?;
    for (id, document) in &manifest {
        async_graphql::parser::parse_query(document)
            .with_context(|| format!("trusted document {id} does not parse"))?;
    }
    Ok(manifest)
}

impl Documents {
    /// APQ with an LRU of `apq_cache_size` queries (0: APQ off), or, with a
    /// manifest, trusted documents only.
    pub fn new(apq_cache_size: usize, manifest: Option<&Manifest>) -> Documents {
        let trusted = manifest.map(|manifest| {
            let mut documents = TrustedDocuments {
                by_id: HashMap::new(),
                by_text: HashMap::new(),
            };
            for (id, text) in manifest {
                // `load_manifest` checked that each parses.
                let Ok(parsed) = async_graphql::parser::parse_query(text) else {
                    continue;
                };
                let parsed = Arc::new(parsed);
                documents.by_id.insert(id.clone(), parsed.clone());
                documents.by_text.insert(text.clone(), parsed);
            }
            documents
        });
        let apq = match (&trusted, NonZeroUsize::new(apq_cache_size)) {
            (None, Some(size)) => Some(Mutex::new(LruCache::new(size))),
            _ => None,
        };
        Documents { apq, trusted }
    }

    /// Resolves the persisted query a request names (its extensions
    /// `persistedQuery` and `documentId` are taken out).
    pub fn resolve(
        &self,
        caller: Option<&Caller>,
        query: &str,
        extensions: &mut HashMap<String, Value>,
    ) -> AppResult<Resolved> {
        let persisted = extensions
            .remove("persistedQuery")
            .map(persisted_hash)
            .transpose()?;
        let document_id = match extensions.remove(DOCUMENT_ID) {
            Some(Value::String(id)) => Some(id),
            Some(_) => return Err(AppError::invalid("documentId must be a string")),
            None => None,
        };
        let id = document_id.or(persisted);
        match &self.trusted {
            Some(trusted) => Self::trusted(trusted, caller, query, id),
            None => self.automatic(query, id),
        }
    }

    fn trusted(
        trusted: &TrustedDocuments,
        caller: Option<&Caller>,
        query: &str,
        id: Option<String>,
    ) -> AppResult<Resolved> {
        if let Some(document) = id.as_deref().and_then(|id| trusted.by_id.get(id)) {
            return Ok(Resolved::Parsed(ExecutableDocument::clone(document)));
        }
        // The operator, the service's own back office, runs anything it sends.
        if matches!(caller, Some(Caller::Operator)) && !query.is_empty() {
            return Ok(Resolved::AsSent);
        }
        // A listed document sent as text (a client without the id link).
        if id.is_none()
            && let Some(document) = trusted.by_text.get(query)
        {
            return Ok(Resolved::Parsed(ExecutableDocument::clone(document)));
        }
        Err(AppError::DocumentNotTrusted)
    }

    fn automatic(&self, query: &str, hash: Option<String>) -> AppResult<Resolved> {
        let Some(hash) = hash else {
            return Ok(Resolved::AsSent);
        };
        let Some(apq) = &self.apq else {
            return Err(AppError::PersistedQueryNotFound);
        };
        let mut apq = apq.lock().unwrap_or_else(PoisonError::into_inner);
        if query.is_empty() {
            return match apq.get(&hash) {
                Some(text) => Ok(Resolved::Text(text.clone())),
                None => Err(AppError::PersistedQueryNotFound),
            };
        }
        if sha256_hex(query) != hash.to_ascii_lowercase() {
            return Err(AppError::invalid(
                "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query",
            ));
        }
        apq.put(hash.to_ascii_lowercase(), Arc::from(query));
        Ok(Resolved::AsSent)
    }
}

/// `extensions.persistedQuery`: version 1 and its hash.
fn persisted_hash(value: Value) -> AppResult<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PersistedQuery {
        version: i64,
        sha256_hash: String,
    }
    let persisted: PersistedQuery = async_graphql::from_value(value).map_err(|_| {
        AppError::invalid("extensions.persistedQuery must be {version: 1, sha256Hash: \"...\"}")
    })?;
    if persisted.version != 1 {
        return Err(AppError::invalid(
            "only version 1 of extensions.persistedQuery is supported",
        ));
    }
    Ok(persisted.sha256_hash)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persisted(hash: &str) -> HashMap<String, Value> {
        let mut extensions = HashMap::new();
        let value = serde_json::json!({ "version": 1, "sha256Hash": hash });
        extensions.insert(
            "persistedQuery".to_owned(),
            Value::from_json(value).unwrap_or_default(),
        );
        extensions
    }

    #[test]
    fn automatic_persisted_queries_register_then_run_by_hash() {
        let documents = Documents::new(2, None);
        let query = "{ me { name } }";
        let hash = sha256_hex(query);
        let unknown = documents.resolve(None, "", &mut persisted(&hash));
        assert_eq!(
            unknown.err().map(|e| e.code()),
            Some("PERSISTED_QUERY_NOT_FOUND")
        );
        let wrong = documents.resolve(None, query, &mut persisted(&sha256_hex("{ x }")));
        assert_eq!(wrong.err().map(|e| e.code()), Some("INVALID_INPUT"));
        assert!(matches!(
            documents.resolve(None, query, &mut persisted(&hash)),
            Ok(Resolved::AsSent)
        ));
        match documents.resolve(None, "", &mut persisted(&hash)) {
            Ok(Resolved::Text(text)) => assert_eq!(&*text, query),
            _ => panic!("the registered query runs by its hash"),
        }
        // Bounded: two newer registrations push the first out.
        for other in ["{ a }", "{ b }"] {
            let _ = documents.resolve(None, other, &mut persisted(&sha256_hex(other)));
        }
        let evicted = documents.resolve(None, "", &mut persisted(&hash));
        assert_eq!(
            evicted.err().map(|e| e.code()),
            Some("PERSISTED_QUERY_NOT_FOUND")
        );
    }

    #[test]
    fn trusted_documents_run_only_what_is_listed() {
        let manifest: Manifest = [("abc".to_owned(), "{ me { name } }".to_owned())].into();
        let documents = Documents::new(100, Some(&manifest));
        let client = Caller::Client {
            client_id: uuid::Uuid::nil(),
            wallet_id: uuid::Uuid::nil(),
        };
        let by_id = documents.resolve(Some(&client), "", &mut persisted("abc"));
        assert!(matches!(by_id, Ok(Resolved::Parsed(_))));
        let mut by_document_id = HashMap::new();
        by_document_id.insert(DOCUMENT_ID.to_owned(), Value::from("abc"));
        let by_document_id = documents.resolve(Some(&client), "", &mut by_document_id);
        assert!(matches!(by_document_id, Ok(Resolved::Parsed(_))));
        let as_text = documents.resolve(Some(&client), "{ me { name } }", &mut HashMap::new());
        assert!(matches!(as_text, Ok(Resolved::Parsed(_))));
        for (query, mut extensions) in [
            ("{ wallets { nodes { id } } }", HashMap::new()),
            ("", persisted("nope")),
            // Registration is off: a hash of its own text is no pass.
            ("{ __typename }", persisted(&sha256_hex("{ __typename }"))),
        ] {
            let refused = documents.resolve(Some(&client), query, &mut extensions);
            assert_eq!(
                refused.err().map(|e| e.code()),
                Some("DOCUMENT_NOT_TRUSTED")
            );
        }
        let operator = documents.resolve(
            Some(&Caller::Operator),
            "{ wallets { nodes { id } } }",
            &mut HashMap::new(),
        );
        assert!(matches!(operator, Ok(Resolved::AsSent)));
    }
}
