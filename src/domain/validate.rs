//! Limits on the free-text parts of requests, checked before any I/O.

use super::error::{AppError, AppResult};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 320;
pub const MAX_DESCRIPTION_CHARS: usize = 500;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A client's display name: trimmed, non-empty, bounded, no control characters.
pub fn name(raw: &str) -> AppResult<String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(AppError::invalid_field("name", "name must not be empty"));
    }
    bounded_text("name", name, MAX_NAME_CHARS)?;
    Ok(name.to_owned())
}

/// An email address, lower-cased so that uniqueness ignores case. Only the
/// shape `local@domain` is checked: deliverability is not ours to judge.
pub fn email(raw: &str) -> AppResult<String> {
    let email = raw.trim().to_lowercase();
    bounded_text("email", &email, MAX_EMAIL_CHARS)?;
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        return Err(AppError::invalid_field(
            "email",
            "email must look like name@example.com",
        ));
    }
    Ok(email)
}

pub fn description(raw: &str) -> AppResult<String> {
    bounded_text("description", raw, MAX_DESCRIPTION_CHARS)?;
    Ok(raw.to_owned())
}

/// Why the operator changed a wallet's status: kept with the change.
pub fn reason(raw: &str) -> AppResult<String> {
    if raw.trim().is_empty() {
        return Err(AppError::invalid_field(
            "reason",
            "reason must not be empty",
        ));
    }
    bounded_text("reason", raw, MAX_DESCRIPTION_CHARS)?;
    Ok(raw.to_owned())
}

/// Idempotency keys are opaque to us, but bounded and printable.
pub fn idempotency_key(raw: &str) -> AppResult<String> {
    if raw.is_empty() {
        return Err(AppError::invalid_field(
            "idempotencyKey",
            "idempotencyKey must not be empty",
        ));
    }
    bounded_text("idempotencyKey", raw, MAX_IDEMPOTENCY_KEY_CHARS)?;
    Ok(raw.to_owned())
}

/// Text a caller sent: at most `max_chars` characters, none of them control
/// or bidirectional formatting characters.
pub fn bounded_text(field: &'static str, value: &str, max_chars: usize) -> AppResult<()> {
    if value.chars().count() > max_chars {
        return Err(AppError::invalid_field(
            field,
            format!("{field} must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(AppError::invalid_field(
            field,
            format!("{field} must not contain control or bidirectional-override characters"),
        ));
    }
    Ok(())
}

/// Unicode's bidirectional formatting characters (embeddings, overrides,
/// isolates, marks): invisible, and able to make text read as something
/// else (U+202E turns "txt.exe" around).
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// How long a hold lasts when its request names no deadline.
pub const DEFAULT_HOLD: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// The furthest deadline a hold may have.
pub const MAX_HOLD: chrono::TimeDelta = chrono::TimeDelta::days(30);

/// A hold's deadline: in the future, at most `MAX_HOLD` ahead of `now`;
/// `DEFAULT_HOLD` ahead when none is given. To the microsecond, as both
/// backends store it (and as cursors over deadlines carry it).
pub fn expires_at(
    raw: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<chrono::DateTime<chrono::Utc>> {
    let at = raw.unwrap_or(now + DEFAULT_HOLD);
    let at = chrono::DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at);
    if raw.is_none() {
        return Ok(at);
    }
    if at <= now {
        return Err(AppError::invalid_field(
            "expiresAt",
            "expiresAt must be in the future",
        ));
    }
    if at > now + MAX_HOLD {
        return Err(AppError::invalid_field(
            "expiresAt",
            "expiresAt must be at most 30 days ahead",
        ));
    }
    Ok(at)
}

/// Items of one `transferBatch` at most.
pub const MAX_BATCH_ITEMS: usize = 1_000;

/// How often overdue holds are looked for and expired: a hold is EXPIRED
/// within about this long after its deadline (and refused to capture or
/// void from the deadline on, swept or not).
pub const HOLD_SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Ada  ").ok().as_deref(), Some("Ada"));
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
        assert!(name("a\u{0}b").is_err());
        assert!(name("invoice\u{202E}fdp.exe").is_err());
        assert!(description("pay \u{2067}back").is_err());
        assert!(name("Zoë Ångström").is_ok());
    }

    #[test]
    fn emails_are_lowercased_and_shaped() {
        assert_eq!(
            email("Ada@Example.COM").ok().as_deref(),
            Some("ada@example.com")
        );
        for bad in ["", "ada", "@x", "ada@", "a@b@c", "a b@c"] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idempotency_keys_are_bounded() {
        assert!(idempotency_key("").is_err());
        assert!(idempotency_key(&"k".repeat(256)).is_err());
        assert!(idempotency_key("order-42").is_ok());
    }

    #[test]
    fn deadlines_are_future_bounded_and_to_the_microsecond() {
        let now = chrono::Utc::now();
        let default = expires_at(None, now).unwrap_or(now);
        assert_eq!(
            default.timestamp_micros(),
            (now + DEFAULT_HOLD).timestamp_micros()
        );
        assert_eq!(default.timestamp_subsec_nanos() % 1_000, 0);
        assert!(expires_at(Some(now), now).is_err());
        assert!(expires_at(Some(now + MAX_HOLD + chrono::TimeDelta::seconds(1)), now).is_err());
        assert!(expires_at(Some(now + MAX_HOLD), now).is_ok());
    }
}
