//! `GET /wallets/{walletId}/statement.csv?from=&to=`: a wallet's operations
//! from `from` (inclusive) to `to` (exclusive) as an RFC 4180 file, for its
//! owner or the operator.
//!
//! The file is streamed a keyset page at a time, so memory stays constant
//! however long the window; the rows of the window are fixed when it
//! starts (ledger rows never change, and the window's end is found first).
//! It is exempt from the request timeout (a year of a busy wallet takes a
//! while) but not from the rate limit. A failure mid-stream aborts the
//! response without its final chunk, so no client takes a truncated file
//! for a whole one. Cells from user text (description, metadata) never
//! start with `=`, `+`, `-`, `@`, tab or carriage return: such a cell gets
//! a leading `'`, as OWASP recommends against formula injection.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use entity::operation::OperationKind;
use sea_orm::ActiveEnum;
use uuid::Uuid;

use super::AppState;
use super::auth::authenticate;
use super::graphql::refused;
use super::listener::Peer;
use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};
use crate::domain::metadata::Metadata;
use crate::domain::money::format_cents;
use crate::store::reads::{self, StatementLine};

/// Lines read per page: a few hundred kilobytes of CSV at most.
const PAGE: u64 = 1_000;

const HEADER: [&str; 10] = [
    "sequence",
    "time",
    "kind",
    "amount",
    "balance_after",
    "available_after",
    "transfer_id",
    "counterparty_wallet_id",
    "description",
    "metadata",
];

pub async fn statement_csv(
    State(state): State<AppState>,
    peer: Peer,
    Path(wallet): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match start(&state, peer, &wallet, query.as_deref(), &headers).await {
        Ok(response) => response,
        Err(err) => refused(err),
    }
}

async fn start(
    state: &AppState,
    peer: Peer,
    wallet: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> AppResult<Response> {
    let address = peer.0.map(|addr| addr.ip());
    let caller = authenticate(state, headers, address).await?;
    state.rate_limiter.check(&caller, address)?;
    caller.require_authenticated()?;
    let wallet_id = Uuid::parse_str(wallet)
        .map_err(|_| AppError::invalid_field("walletId", "walletId must be a UUID"))?;
    let (from, to) = window(query)?;
    let db = state.store.db().clone();
    let found = reads::wallets_by_ids(&db, &[wallet_id]).await?;
    match found.first() {
        Some(wallet) => caller.require_read(wallet.client_id)?,
        None if caller == Caller::Operator => return Err(AppError::NotFound("wallet")),
        None => return Err(AppError::Forbidden),
    }
    let (first, end) = reads::seq_window(&db, wallet_id, from, to).await?;

    // The header first, then one chunk per page; an error ends the stream
    // with an error, which aborts the response.
    let header = Some(csv_chunk(std::iter::once(HEADER.map(str::to_owned)))?);
    let pages = futures_util::stream::unfold((header, first), move |(header, next)| {
        let db = db.clone();
        async move {
            if let Some(header) = header {
                return Some((Ok(header), (None, next)));
            }
            if next >= end {
                return None;
            }
            let page = reads::statement_page(&db, wallet_id, next, end, PAGE).await;
            let lines = match page {
                Ok(lines) if !lines.is_empty() => lines,
                Ok(_) => {
                    return Some((Err(failed("the window's rows ended early")), (None, end)));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "a statement stopped mid-stream");
                    return Some((Err(failed("reading the statement failed")), (None, end)));
                }
            };
            let after = lines.last().map_or(end, |line| line.seq + 1);
            let chunk = csv_chunk(lines.iter().map(cells))
                .map_err(|_| failed("writing the statement failed"));
            Some((chunk, (None, after)))
        }
    });
    let filename = format!(
        "statement-{wallet_id}-{}-{}.csv",
        from.format("%Y%m%dT%H%M%SZ"),
        to.format("%Y%m%dT%H%M%SZ")
    );
    let mut response = Response::new(Body::from_stream(pages));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn failed(why: &'static str) -> std::io::Error {
    std::io::Error::other(why)
}

/// `from` and `to` from the query string, RFC 3339, `from < to`.
fn window(query: Option<&str>) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| AppError::invalid_field("query", "a malformed query string"))?;
    let at = |name: &'static str| -> AppResult<DateTime<Utc>> {
        let value = pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
            .ok_or_else(|| AppError::invalid_field(name, format!("{name} is required")))?;
        DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| AppError::invalid_field(name, format!("{name} must be an RFC 3339 time")))
    };
    let (from, to) = (at("from")?, at("to")?);
    if from >= to {
        return Err(AppError::invalid_field("to", "to must be after from"));
    }
    Ok((from, to))
}

/// One line's cells, in `HEADER`'s order.
fn cells(line: &StatementLine) -> [String; 10] {
    let id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    let metadata = Metadata::from_stored(line.metadata.as_deref());
    let metadata = match metadata.is_empty() {
        true => String::new(),
        false => {
            let map: serde_json::Map<String, serde_json::Value> = (metadata.entries().iter())
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::Value::Object(map).to_string()
        }
    };
    [
        line.seq.to_string(),
        line.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        // As stored, the API's spelling.
        line.kind.to_value(),
        format_cents(signed(line.kind, line.amount)),
        format_cents(line.balance_after),
        format_cents(line.available_after.unwrap_or(line.balance_after)),
        id(line.transfer_id),
        id(line.counterparty_wallet_id),
        spreadsheet_safe(line.description.clone().unwrap_or_default()),
        spreadsheet_safe(metadata),
    ]
}

/// The amount with its direction: + for money in or released to the
/// wallet (and a hold placed for it), - for money out or held.
fn signed(kind: OperationKind, amount: i64) -> i64 {
    match kind {
        OperationKind::Deposit
        | OperationKind::TransferIn
        | OperationKind::HoldRelease
        | OperationKind::IncomingHold
        | OperationKind::CreditLimit => amount,
        OperationKind::Withdrawal
        | OperationKind::TransferOut
        | OperationKind::Hold
        | OperationKind::IncomingHoldRelease => -amount,
    }
}

/// A user's text as a cell a spreadsheet shows as text (OWASP's CSV
/// injection advice): a leading `=`, `+`, `-`, `@`, tab or carriage
/// return gets a `'` before it.
fn spreadsheet_safe(text: String) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text,
    }
}

/// Lines as RFC 4180 CSV, every cell quoted (OWASP's advice: a spreadsheet
/// whose list separator is `;` would otherwise split an unquoted
/// `x;=cmd…` into a cell that starts a formula), CRLF line ends.
fn csv_chunk(lines: impl Iterator<Item = [String; 10]>) -> AppResult<Bytes> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::with_capacity(64 * 1024));
    for line in lines {
        writer
            .write_record(&line)
            .map_err(|e| AppError::Internal(e.into()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_defused_and_quoting_follows_rfc_4180() {
        for risky in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                spreadsheet_safe(risky.to_owned()).starts_with('\''),
                "{risky}"
            );
        }
        assert_eq!(spreadsheet_safe("lunch".to_owned()), "lunch");
        let mut line: [String; 10] = Default::default();
        line[8] = "say \"hi\", then\nleave".to_owned();
        let chunk = csv_chunk(std::iter::once(line)).unwrap_or_default();
        assert_eq!(
            std::str::from_utf8(&chunk).unwrap_or_default(),
            "\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"say \"\"hi\"\", then\nleave\",\"\"\r\n"
        );
    }

    #[test]
    fn amounts_carry_their_direction() {
        assert_eq!(
            format_cents(signed(OperationKind::TransferOut, 1250)),
            "-12.50"
        );
        assert_eq!(format_cents(signed(OperationKind::Deposit, 5)), "0.05");
        assert_eq!(format_cents(signed(OperationKind::Hold, 100)), "-1.00");
    }
}
