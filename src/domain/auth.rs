//! Who is calling, and what each caller may do.
//!
//! Tokens are random 256-bit secrets shown once; only their SHA-256 is stored.
//! A client token is looked up by its hash (so no secret is ever compared byte
//! by byte); the operator token is compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::error::{AppError, AppResult};

const TOKEN_PREFIX: &str = "wq_";

/// The authenticated party of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header: may only create a client.
    Anonymous,
    /// A client, by its own token: its own wallet, and transfers out of it.
    Client { client_id: Uuid, wallet_id: Uuid },
    /// The operator: may deposit and read everything.
    Operator,
}

impl Caller {
    /// A short name of the kind of caller, for logs (never the identity's secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Client { .. } => "client",
            Caller::Operator => "operator",
        }
    }

    /// Who the caller is, for remembering what it wrote (the operator is
    /// one identity); anonymous callers have none.
    pub fn identity(&self) -> Option<Uuid> {
        match self {
            Caller::Client { client_id, .. } => Some(*client_id),
            Caller::Operator => Some(Uuid::nil()),
            Caller::Anonymous => None,
        }
    }

    /// Whether the caller may see the private parts (balance, history, owner)
    /// of a wallet owned by `owner`.
    pub fn can_read(&self, owner: Uuid) -> bool {
        match self {
            Caller::Operator => true,
            Caller::Client { client_id, .. } => *client_id == owner,
            Caller::Anonymous => false,
        }
    }

    /// Refuses unless the caller may read what `owner` owns. Anonymous callers
    /// are told to authenticate; other clients are refused without learning
    /// whether the thing exists.
    pub fn require_read(&self, owner: Uuid) -> AppResult<()> {
        match self {
            Caller::Anonymous => Err(AppError::Unauthenticated),
            _ if self.can_read(owner) => Ok(()),
            _ => Err(AppError::Forbidden),
        }
    }

    /// Refuses unless the caller may see the transfer `transfer` between
    /// the wallets `(payer, payee)`: its payer, its payee, or the operator.
    /// `None` is a transfer that does not exist: only the operator learns
    /// that; anyone else is refused as if it existed.
    pub fn require_party(&self, transfer: Option<(Uuid, Uuid)>) -> AppResult<()> {
        match (self, transfer) {
            (Caller::Anonymous, _) => Err(AppError::Unauthenticated),
            (Caller::Operator, Some(_)) => Ok(()),
            (Caller::Operator, None) => Err(AppError::NotFound("transfer")),
            (Caller::Client { wallet_id, .. }, Some((payer, payee)))
                if *wallet_id == payer || *wallet_id == payee =>
            {
                Ok(())
            }
            (Caller::Client { .. }, _) => Err(AppError::Forbidden),
        }
    }

    pub fn require_authenticated(&self) -> AppResult<()> {
        match self {
            Caller::Anonymous => Err(AppError::Unauthenticated),
            _ => Ok(()),
        }
    }

    pub fn require_operator(&self) -> AppResult<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Anonymous => Err(AppError::Unauthenticated),
            Caller::Client { .. } => Err(AppError::Forbidden),
        }
    }

    /// The namespace of the caller's idempotency keys: two callers may use the
    /// same key without colliding.
    pub fn idempotency_scope(&self) -> String {
        match self {
            Caller::Operator => "operator".to_owned(),
            Caller::Client { client_id, .. } => format!("client:{client_id}"),
            Caller::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// A new random API token.
pub fn generate_token() -> AppResult<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("no randomness for a token: {e}")))?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// A token's SHA-256: computed once per request, then used for the operator
/// comparison, the cache and the stored form.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The stored form of a token digest: lower-case hex.
pub fn digest_hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a token: SHA-256, lower-case hex.
pub fn hash_token(token: &str) -> String {
    digest_hex(&token_digest(token))
}

/// The operator's token, kept only as a digest.
#[derive(Clone)]
pub struct OperatorToken {
    digest: [u8; 32],
}

impl OperatorToken {
    pub fn new(token: &str) -> OperatorToken {
        OperatorToken {
            digest: token_digest(token),
        }
    }

    pub fn matches(&self, presented: &str) -> bool {
        self.matches_digest(&token_digest(presented))
    }

    /// Compares digests in constant time, so response timing tells nothing
    /// about how much of a guess was right.
    pub fn matches_digest(&self, presented: &[u8; 32]) -> bool {
        self.digest.ct_eq(presented).into()
    }
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_prefixed() -> AppResult<()> {
        let (a, b) = (generate_token()?, generate_token()?);
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        Ok(())
    }

    #[test]
    fn operator_token_matches_only_itself() {
        let op = OperatorToken::new("secret");
        assert!(op.matches("secret"));
        assert!(!op.matches("secreT"));
        assert!(!op.matches(""));
    }

    #[test]
    fn clients_read_only_their_own() {
        let me = Uuid::now_v7();
        let client = Caller::Client {
            client_id: me,
            wallet_id: Uuid::now_v7(),
        };
        assert!(client.require_read(me).is_ok());
        assert!(matches!(
            client.require_read(Uuid::now_v7()),
            Err(AppError::Forbidden)
        ));
        assert!(matches!(
            Caller::Anonymous.require_read(me),
            Err(AppError::Unauthenticated)
        ));
        assert!(Caller::Operator.require_read(me).is_ok());
        assert!(matches!(
            client.require_operator(),
            Err(AppError::Forbidden)
        ));
    }
}
