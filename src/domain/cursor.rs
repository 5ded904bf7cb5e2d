//! Opaque pagination cursors.
//!
//! A cursor names a position in a keyset (a wallet's operation sequence, or a
//! wallet id), never an offset, so a page deep in a history costs what the
//! first does. Cursors are base64 of a small versioned text; anything that does
//! not decode to the expected shape is refused as invalid input.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::error::{AppError, AppResult};

/// A position in one wallet's history: the operation with sequence `seq`
/// (0: before the first one), and that operation's id.
///
/// The id is what tells a cursor from before a restore: a database
/// restored to an earlier moment gives the sequence numbers after it to new
/// operations, and a cursor naming only `seq` would resume silently at a
/// different one. Cursors without it (`op1`, before the id was added) are
/// still read, unchecked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OperationCursor {
    pub wallet_id: Uuid,
    pub seq: i64,
    /// The operation at `seq`: none at 0, or in an `op1` cursor.
    pub operation: Option<Uuid>,
}

impl OperationCursor {
    pub fn encode(&self) -> String {
        let text = match self.operation {
            Some(id) => format!("op2:{}:{}:{id}", self.wallet_id, self.seq),
            None => format!("op1:{}:{}", self.wallet_id, self.seq),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(cursor: &str) -> AppResult<OperationCursor> {
        let text = decode_text(cursor)?;
        let mut parts = text.split(':');
        let (version, wallet, seq) = (parts.next(), parts.next(), parts.next());
        let operation = match (version, parts.next(), parts.next()) {
            (Some("op1"), None, _) => None,
            (Some("op2"), Some(id), None) => {
                Some(Uuid::parse_str(id).map_err(|_| invalid_cursor())?)
            }
            _ => return Err(invalid_cursor()),
        };
        let (Some(wallet), Some(seq)) = (wallet, seq) else {
            return Err(invalid_cursor());
        };
        let wallet_id = Uuid::parse_str(wallet).map_err(|_| invalid_cursor())?;
        let seq = seq.parse::<i64>().map_err(|_| invalid_cursor())?;
        // 0 is the position before a wallet's first operation.
        if seq < 0 || (seq == 0 && operation.is_some()) {
            return Err(invalid_cursor());
        }
        Ok(OperationCursor {
            wallet_id,
            seq,
            operation,
        })
    }

    /// Decodes a cursor that must point into `wallet_id`'s history: a cursor
    /// taken from another wallet is refused rather than silently reinterpreted.
    pub fn decode_for(cursor: &str, wallet_id: Uuid) -> AppResult<OperationCursor> {
        let decoded = OperationCursor::decode(cursor)?;
        if decoded.wallet_id != wallet_id {
            return Err(AppError::invalid("cursor belongs to another wallet"));
        }
        Ok(decoded)
    }

    /// Whether `operation` (wallet, sequence, id) is the one this cursor
    /// was taken at.
    pub fn names(&self, wallet_id: Uuid, seq: i64, id: Uuid) -> bool {
        self.wallet_id == wallet_id && self.seq == seq && self.operation == Some(id)
    }
}

/// A cursor whose operation is not in the history any more (or is another
/// one now): the database was restored to before it.
pub fn cursor_no_longer_valid() -> AppError {
    AppError::invalid(
        "cursor no longer valid: the operation it points at is not in this wallet's history \
         (was the database restored from a backup?); start again without it",
    )
}

/// A position in the list of wallets (ordered by id, which is time-ordered).
pub struct WalletCursor;

impl WalletCursor {
    pub fn encode(id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(format!("w1:{id}"))
    }

    pub fn decode(cursor: &str) -> AppResult<Uuid> {
        let text = decode_text(cursor)?;
        let id = text.strip_prefix("w1:").ok_or_else(invalid_cursor)?;
        Uuid::parse_str(id).map_err(|_| invalid_cursor())
    }
}

/// A position in a list of pending transfers (by deadline, then id).
pub struct TransferCursor;

impl TransferCursor {
    pub fn encode(expires_at: chrono::DateTime<chrono::Utc>, id: Uuid) -> String {
        URL_SAFE_NO_PAD.encode(format!("t1:{}:{id}", expires_at.timestamp_micros()))
    }

    pub fn decode(cursor: &str) -> AppResult<(chrono::DateTime<chrono::Utc>, Uuid)> {
        let text = decode_text(cursor)?;
        let rest = text.strip_prefix("t1:").ok_or_else(invalid_cursor)?;
        let (micros, id) = rest.split_once(':').ok_or_else(invalid_cursor)?;
        let micros: i64 = micros.parse().map_err(|_| invalid_cursor())?;
        let at = chrono::DateTime::from_timestamp_micros(micros).ok_or_else(invalid_cursor)?;
        Ok((at, Uuid::parse_str(id).map_err(|_| invalid_cursor())?))
    }
}

fn decode_text(cursor: &str) -> AppResult<String> {
    if cursor.len() > 200 {
        return Err(invalid_cursor());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid_cursor())?;
    String::from_utf8(bytes).map_err(|_| invalid_cursor())
}

fn invalid_cursor() -> AppError {
    AppError::invalid("invalid cursor")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_cursors_round_trip() -> AppResult<()> {
        let id = Uuid::now_v7();
        let c = OperationCursor {
            wallet_id: Uuid::now_v7(),
            seq: 42,
            operation: Some(id),
        };
        assert_eq!(OperationCursor::decode(&c.encode())?, c);
        assert_eq!(OperationCursor::decode_for(&c.encode(), c.wallet_id)?, c);
        assert!(OperationCursor::decode_for(&c.encode(), Uuid::now_v7()).is_err());
        assert!(c.names(c.wallet_id, 42, id));
        assert!(!c.names(c.wallet_id, 42, Uuid::now_v7()));
        assert!(!c.names(c.wallet_id, 41, id));
        // The position before the first operation has none.
        let start = OperationCursor {
            seq: 0,
            operation: None,
            ..c
        };
        assert_eq!(OperationCursor::decode(&start.encode())?, start);
        // An op1 cursor (before ids) is still read, unchecked.
        let old = URL_SAFE_NO_PAD.encode(format!("op1:{}:7", c.wallet_id));
        assert_eq!(OperationCursor::decode(&old)?.operation, None);
        Ok(())
    }

    #[test]
    fn malformed_cursors_are_invalid_input() {
        let forged = URL_SAFE_NO_PAD.encode(format!("op1:{}:-5", Uuid::nil()));
        let zero_with_id = URL_SAFE_NO_PAD.encode(format!("op2:{}:0:{}", Uuid::nil(), Uuid::nil()));
        let extra = URL_SAFE_NO_PAD.encode(format!("op2:{}:3:{}:x", Uuid::nil(), Uuid::nil()));
        let op1_with_id = URL_SAFE_NO_PAD.encode(format!("op1:{}:3:{}", Uuid::nil(), Uuid::nil()));
        let bad_id = URL_SAFE_NO_PAD.encode(format!("op2:{}:3:nope", Uuid::nil()));
        for bad in [
            "",
            "???",
            "b3Ax",
            &forged,
            &zero_with_id,
            &extra,
            &op1_with_id,
            &bad_id,
            &"A".repeat(300),
        ] {
            assert!(
                matches!(OperationCursor::decode(bad), Err(AppError::InvalidInput(_))),
                "{bad}"
            );
        }
        let wallet = WalletCursor::encode(Uuid::nil());
        assert!(OperationCursor::decode(&wallet).is_err());
        assert_eq!(WalletCursor::decode(&wallet).ok(), Some(Uuid::nil()));
    }
}
